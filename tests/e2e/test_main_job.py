"""The signal job's entry point (``python -m crypto_signals.main``) and its start-up gate.

The job reconciles first, then runs the signal step named by CRYPTO_SIGNALS_SIGNAL_STEP (here
:mod:`tests.e2e.signal_step_fixture`, which leaves a marker file). Advisory mode goes on after a
failed run; strict mode stops before trading when the run failed or left unverified zombies.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crypto_signals.config import load_settings
from crypto_signals.domain.schemas import RunStatus
from crypto_signals.sandbox.alpaca_sim import Fault
from crypto_signals.sandbox.scenarios import World, position_doc
from crypto_signals.startup import reconcile_at_startup
from tests.e2e.signal_step_fixture import MARKER_ENV, SPEC

ROOT = Path(__file__).resolve().parents[2]
HOURS = timedelta(hours=6)
Seed = Callable[[World, datetime], None]


def broker_down(world: World, now: datetime) -> None:
    world.position(position_doc("sig-btc-001", "BTC/USD", 0.5, 61000.0, created_at=now - HOURS))
    world.sim.inject_fault("positions", Fault(kind="status", status=500))


def unverified_zombie(world: World, now: datetime) -> None:
    # Open in Firestore for hours, gone at the broker, and no order says why.
    world.position(position_doc("sig-avax-001", "AVAX/USD", 100.0, 35.0, created_at=now - HOURS))


def clean_book(world: World, now: datetime) -> None:
    world.position(position_doc("sig-btc-001", "BTC/USD", 0.5, 61000.0, created_at=now - HOURS))
    world.sim.add_position("BTC/USD", "0.5", avg_entry_price="61000", current_price="62500")


@dataclass(frozen=True)
class Case:
    seed: Seed
    strict: bool
    trades: bool  # the signal step ran and the job exited 0
    logged: str  # what the job's log must say


JOB_CASES = {
    "advisory, broker failing: logs it and trades": Case(
        broker_down, False, True, "advisory startup reconciliation: reconciliation failed"
    ),
    "strict, broker failing: stops": Case(
        broker_down, True, False, "signal job stopped before trading: reconciliation failed"
    ),
    "strict, unverified zombie: stops": Case(
        unverified_zombie, True, False, "1 unverified zombie(s) kept OPEN"
    ),
    "strict, clean book: trades": Case(clean_book, True, True, "reconciliation finished: ok"),
}


@pytest.mark.parametrize("case", JOB_CASES.values(), ids=JOB_CASES.keys())
def test_main_job_gates_the_signal_step(
    case: Case, env: dict[str, str], world: World, now: datetime, tmp_path: Path
) -> None:
    case.seed(world, now)
    marker = tmp_path / "signal-step-ran"
    job_env = {
        **os.environ,
        **env,
        "RECONCILER_STRICT_STARTUP": str(case.strict).lower(),
        "CRYPTO_SIGNALS_SIGNAL_STEP": SPEC,
        MARKER_ENV: str(marker),
    }
    # cwd is the repository root, so the job can import tests.e2e.signal_step_fixture.
    result = subprocess.run(
        [sys.executable, "-m", "crypto_signals.main"],
        cwd=ROOT,
        env=job_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode == 0) is case.trades, result.stderr
    assert marker.exists() is case.trades, result.stderr
    assert case.logged in result.stderr


STARTUP_CASES = {
    "advisory, broker failing: proceeds": (broker_down, False, True, RunStatus.FAILED),
    "strict, broker failing: stops": (broker_down, True, False, RunStatus.FAILED),
    "advisory, unverified zombie: proceeds": (unverified_zombie, False, True, RunStatus.ISSUES),
    "strict, unverified zombie: stops": (unverified_zombie, True, False, RunStatus.ISSUES),
    "strict, clean book: proceeds": (clean_book, True, True, RunStatus.OK),
}


@pytest.mark.parametrize(
    ("seed", "strict", "proceed", "status"), STARTUP_CASES.values(), ids=STARTUP_CASES.keys()
)
def test_reconcile_at_startup(
    seed: Seed,
    strict: bool,
    proceed: bool,
    status: RunStatus,
    env: dict[str, str],
    make_reconciler: Any,
    world: World,
    now: datetime,
) -> None:
    seed(world, now)
    decision = reconcile_at_startup(
        load_settings(env), strict=strict, build=lambda _: make_reconciler()
    )
    assert decision.proceed is proceed
    assert decision.report is not None
    assert decision.report.status is status
    assert decision.report.dry_run is False


def test_strict_mode_comes_from_the_settings_when_not_given(
    env: dict[str, str], make_reconciler: Any, world: World, now: datetime
) -> None:
    unverified_zombie(world, now)
    settings = load_settings({**env, "RECONCILER_STRICT_STARTUP": "true"})
    decision = reconcile_at_startup(settings, build=lambda _: make_reconciler())
    assert decision.proceed is False
    assert "unverified" in decision.reason


@pytest.mark.parametrize(("strict", "proceed"), [(True, False), (False, True)])
def test_lease_held_elsewhere_stops_only_a_strict_start(
    strict: bool,
    proceed: bool,
    env: dict[str, str],
    make_reconciler: Any,
    world: World,
    now: datetime,
) -> None:
    from datetime import timedelta

    from crypto_signals.repository.reconciler_state import RunLease

    clean_book(world, now)
    # The scheduled function is mid-run: it holds the lease.
    RunLease(world.db, "test_positions", timedelta(minutes=10)).acquire("scheduled-run", now)
    decision = reconcile_at_startup(
        load_settings(env), strict=strict, build=lambda _: make_reconciler()
    )
    assert decision.proceed is proceed
    assert "lease" in decision.reason


def test_strict_start_stops_when_the_configuration_is_invalid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ALPACA_API_KEY", raising=False)
    monkeypatch.setenv("RECONCILER_STRICT_STARTUP", "true")
    decision = reconcile_at_startup()
    assert decision.proceed is False
    assert "configuration invalid" in decision.reason
