"""The stand-ins the benchmark runs against: the Firestore emulator, the Alpaca simulator and the
Discord sink, and the environment a deployed reconciler would have pointed at them.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TextIO

from google.cloud import firestore

from benchmarks.reconcile.sim_process import SimulatorProcess
from benchmarks.reconcile.world import WorldSpec, seed_firestore
from crypto_signals.logging_setup import configure_logging
from crypto_signals.sandbox.alpaca_sim import AlpacaSimulator
from crypto_signals.sandbox.discord_sink import DiscordSink
from crypto_signals.sandbox.firestore_emulator import FirestoreEmulator

BENCH_KEY = "PKBENCHKEY0123456789"
BENCH_SECRET = "bench-secret-0123456789abcdefghij"
PROJECT = "demo-crypto-signals-bench"


@dataclass
class Stands:
    emulator: FirestoreEmulator
    # In a child process by default (sim_process.py): the real broker is not in the
    # reconciler's process either. In this process with --sim-in-process, as before 2026-12.
    sim: SimulatorProcess | AlpacaSimulator
    sink: DiscordSink
    db: firestore.Client

    @classmethod
    def start(cls, *, sim_in_process: bool = False) -> Stands:
        emulator = FirestoreEmulator(project=PROJECT).start()
        sim: SimulatorProcess | AlpacaSimulator
        if sim_in_process:
            sim = AlpacaSimulator(api_key=BENCH_KEY, secret_key=BENCH_SECRET).start()
        else:
            sim = SimulatorProcess.start(api_key=BENCH_KEY, secret_key=BENCH_SECRET)
        sink = DiscordSink().start()
        return cls(emulator, sim, sink, emulator.client())

    def stop(self) -> None:
        self.sink.stop()
        self.sim.stop()
        self.emulator.stop()

    def env(self) -> dict[str, str]:
        """What a deployed reconciler would have, pointed at the stand-ins (default tunables)."""
        return {
            "ENVIRONMENT": "DEV",
            "RECONCILER_ENABLED": "true",
            "GOOGLE_CLOUD_PROJECT": self.emulator.project,
            "FIRESTORE_EMULATOR_HOST": self.emulator.address,
            "ALPACA_API_KEY": BENCH_KEY,
            "ALPACA_SECRET_KEY": BENCH_SECRET,
            "ALPACA_BASE_URL": self.sim.base_url,
            "DISCORD_WEBHOOK_URL": self.sink.webhook_url,
        }

    def fresh_world(self, spec: WorldSpec) -> None:
        self.emulator.clear()
        seed_firestore(self.db, spec)
        self.sim.clear_requests()
        self.sink.reset()


_NULL_STREAM: TextIO | None = None


def quiet_logging() -> None:
    """Production logging (JSON lines, INFO), written to /dev/null: formatted, not shown."""
    global _NULL_STREAM
    if _NULL_STREAM is None:
        _NULL_STREAM = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - process-long
    with contextlib.redirect_stderr(_NULL_STREAM):
        configure_logging(json_format=True, level="INFO")
