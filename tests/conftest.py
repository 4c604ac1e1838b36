"""Shared fixtures: the real Firestore emulator (once per session), the Alpaca simulator and the
Discord sink (per test), and a builder for reconcilers wired exactly as production wires them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud import firestore

from crypto_signals.bootstrap import build_reconciler
from crypto_signals.config import load_settings
from crypto_signals.engine.reconciler import StateReconciler
from crypto_signals.sandbox.alpaca_sim import AlpacaSimulator
from crypto_signals.sandbox.discord_sink import DiscordSink
from crypto_signals.sandbox.firestore_emulator import (
    EmulatorNotInstalled,
    FirestoreEmulator,
)
from crypto_signals.sandbox.scenarios import World

API_KEY = "PKTESTKEY0123456789"
SECRET_KEY = "test-secret-abcdefghijklmnop0123456789"
PROJECT = "demo-crypto-signals-test"


@pytest.fixture(scope="session")
def emulator() -> Iterator[FirestoreEmulator]:
    emu = FirestoreEmulator(project=PROJECT)
    try:
        emu.start()
    except EmulatorNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = emu.address
    yield emu
    emu.stop()
    if previous is None:
        os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
    else:
        os.environ["FIRESTORE_EMULATOR_HOST"] = previous


@pytest.fixture
def db(emulator: FirestoreEmulator) -> firestore.Client:
    if not emulator.is_running():
        emulator.start()  # a fault test may have stopped it
    emulator.clear()
    return firestore.Client(project=PROJECT)


@pytest.fixture
def sim() -> Iterator[AlpacaSimulator]:
    with AlpacaSimulator(api_key=API_KEY, secret_key=SECRET_KEY) as simulator:
        yield simulator


@pytest.fixture
def sink() -> Iterator[DiscordSink]:
    with DiscordSink() as s:
        yield s


@pytest.fixture
def world(db: firestore.Client, sim: AlpacaSimulator) -> World:
    return World(db, sim, "test_positions")


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def env(emulator: FirestoreEmulator, sim: AlpacaSimulator, sink: DiscordSink) -> dict[str, str]:
    """The environment a deployed reconciler would have, pointed at the stand-ins."""
    return {
        "ENVIRONMENT": "DEV",
        "RECONCILER_ENABLED": "true",
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "FIRESTORE_EMULATOR_HOST": emulator.address,
        "ALPACA_API_KEY": API_KEY,
        "ALPACA_SECRET_KEY": SECRET_KEY,
        "ALPACA_BASE_URL": sim.base_url,
        "ALPACA_TIMEOUT_SECONDS": "2",
        "ALPACA_MAX_RETRIES": "1",
        "DISCORD_WEBHOOK_URL": sink.webhook_url,
        "DISCORD_TIMEOUT_SECONDS": "2",
        "FIRESTORE_TIMEOUT_SECONDS": "3",
    }


@pytest.fixture
def make_reconciler(env: dict[str, str], db: firestore.Client) -> Any:
    def build(**overrides: str) -> StateReconciler:
        return build_reconciler(load_settings({**env, **overrides}), client=db)

    return build
