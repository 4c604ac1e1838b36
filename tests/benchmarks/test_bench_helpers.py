"""The benchmark's own arithmetic and wiring (the benchmark itself is a script, not a test)."""

from __future__ import annotations

import argparse
import importlib
import re

import pytest
from benchmarks.reconcile.network import PRODUCTION_RTT, Rtt
from benchmarks.reconcile.phases import (
    OTHER_PHASE,
    PHASES,
    WALL,
    Phase,
    PhaseMissing,
    PhaseTimer,
    resolve,
    union_length,
)

import crypto_signals.repository.firestore as firestore_repo
from crypto_signals.engine import reconciler
from crypto_signals.engine.plan import planner, query


def test_union_of_overlapping_intervals_counts_shared_time_once() -> None:
    assert union_length([]) == 0.0
    assert union_length([(0.0, 1.0), (2.0, 3.0)]) == pytest.approx(2.0)
    assert union_length([(0.0, 2.0), (1.0, 3.0)]) == pytest.approx(3.0)  # overlap
    assert union_length([(1.0, 3.0), (0.0, 4.0), (3.5, 5.0)]) == pytest.approx(5.0)  # nested
    assert union_length([(2.0, 3.0), (0.0, 1.0), (0.5, 1.5)]) == pytest.approx(2.5)  # unsorted


def test_phase_timer_other_is_wall_time_outside_every_phase() -> None:
    timer = PhaseTimer()
    timer.totals = {"a": 2.0, "b": 2.0}
    timer.intervals = [(0.0, 2.0), (0.5, 2.5)]  # two overlapping phases: 2.5 s covered
    phases = timer.take(3.0)
    assert phases[OTHER_PHASE] == pytest.approx(0.5)
    assert phases[WALL] == 3.0
    assert timer.totals == {}
    assert timer.intervals == []


def test_every_timed_phase_names_real_code() -> None:
    labels = [p.label for p in PHASES]
    assert len(set(labels)) == len(labels)
    for phase in PHASES:
        owner, attr, target = resolve(phase)  # raises PhaseMissing, naming the phase
        assert getattr(owner, attr) is target
        assert callable(target), phase


def test_the_planning_core_is_timed_where_the_reconciler_calls_it() -> None:
    # The reconciler binds the planning functions by name; PHASES wraps those bindings, which
    # must be the planning core's own functions (not a stale copy or a shim).
    by_where = {p.where: p for p in PHASES}
    assert "engine.reconciler:plan_reconciliation" in by_where
    assert "engine.reconciler:evidence_query" in by_where
    assert vars(reconciler)["plan_reconciliation"] is planner.plan_reconciliation
    assert vars(reconciler)["evidence_query"] is query.evidence_query


def test_entering_the_timer_wraps_every_phase_and_leaving_restores_it() -> None:
    originals = [resolve(p)[2] for p in PHASES]
    with PhaseTimer():
        wrapped = [resolve(p)[2] for p in PHASES]
        assert all(w is not o for w, o in zip(wrapped, originals, strict=True))
    assert [resolve(p)[2] for p in PHASES] == originals


@pytest.mark.parametrize(
    ("where", "says"),
    [
        (
            "repository.firestore:PositionRepository.get_closed_order_claims",
            "repository.firestore.PositionRepository has no 'get_closed_order_claims'",
        ),
        ("repository.firestore:NoSuchClass.load", "repository.firestore has no 'NoSuchClass'"),
        ("engine.no_such_module:run", "cannot be imported"),
        ("repository.firestore:HEAL_REPLACES", "is not callable"),
        ("repository.firestore", "is not of the form 'module:qualname'"),
    ],
)
def test_phase_timer_raises_naming_the_phase_and_the_missing_target(where: str, says: str) -> None:
    moved = Phase("Firestore: closed claims", where)
    good = PHASES[0]
    original = resolve(good)[2]
    timer = PhaseTimer([good, moved])
    with pytest.raises(PhaseMissing, match=re.escape(says)) as caught:
        timer.__enter__()
    message = str(caught.value)
    assert "'Firestore: closed claims'" in message
    assert f"crypto_signals.{where}" in message
    assert caught.value.phase == moved
    # Nothing was wrapped: the good phase before it is untouched.
    assert resolve(good)[2] is original


def test_phase_timer_times_calls_and_names_phases_never_called() -> None:
    called = Phase("collection name", "repository.firestore:collection_for")
    idle = Phase("heal fields", "repository.firestore:heal_fields")
    with PhaseTimer([called, idle]) as timer:
        assert firestore_repo.collection_for("DEV") == "test_positions"
        assert called.label in timer.totals
        with pytest.raises(RuntimeError, match=re.escape("'heal fields'")) as caught:
            timer.require_called("the test run")
        assert "crypto_signals.repository.firestore:heal_fields" in str(caught.value)
        assert "'collection name'" not in str(caught.value)
        timer.take(1.0)
        assert timer.called == set()


def test_rtt_takes_one_value_or_one_per_service() -> None:
    assert Rtt.parse("20") == Rtt(20.0, 20.0, 20.0)
    assert Rtt.parse("20").label == "20 ms each"
    both = Rtt.parse("alpaca=50,firestore=10")
    assert both == Rtt(firestore=10.0, alpaca=50.0, discord=0.0)
    assert both.label == "Firestore 10, Alpaca 50, Discord 0 ms"
    assert not Rtt.parse("0")


def test_the_default_rtt_is_production_and_reads_back_from_its_option() -> None:
    assert Rtt(firestore=10.0, alpaca=40.0, discord=80.0) == PRODUCTION_RTT
    assert Rtt.parse(PRODUCTION_RTT.option) == PRODUCTION_RTT
    cli = importlib.import_module("benchmarks.reconcile.cli")
    assert cli.parse_args([]).rtt_ms == PRODUCTION_RTT
    assert cli.parse_args(["--rtt-ms", "20"]).rtt_ms == Rtt(20.0, 20.0, 20.0)


@pytest.mark.parametrize(
    ("text", "says"),
    [("fast", "could not convert"), ("slack=3", "unknown service(s): slack")],
)
def test_rtt_refuses_what_it_cannot_read(text: str, says: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(says)):
        Rtt.parse(text)
