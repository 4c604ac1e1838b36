"""The benchmark's own arithmetic and wiring (the benchmark itself is a script, not a test)."""

from __future__ import annotations

import argparse
import importlib
import re
from typing import Any

import pytest
from benchmarks.bench_reconcile import PHASES, PhaseTimer, Rtt, _union_length


def test_union_of_overlapping_intervals_counts_shared_time_once() -> None:
    assert _union_length([]) == 0.0
    assert _union_length([(0.0, 1.0), (2.0, 3.0)]) == pytest.approx(2.0)
    assert _union_length([(0.0, 2.0), (1.0, 3.0)]) == pytest.approx(3.0)  # overlap
    assert _union_length([(1.0, 3.0), (0.0, 4.0), (3.5, 5.0)]) == pytest.approx(5.0)  # nested


def test_phase_timer_other_is_wall_time_outside_every_phase() -> None:
    timer = PhaseTimer()
    timer.totals = {"a": 2.0, "b": 2.0}
    timer.intervals = [(0.0, 2.0), (0.5, 2.5)]  # two overlapping phases: 2.5 s covered
    phases = timer.take(3.0)
    assert phases["other (report, logging, alert decisions, rendering)"] == pytest.approx(0.5)
    assert phases["wall time of the run"] == 3.0
    assert timer.totals == {}
    assert timer.intervals == []


def test_every_timed_phase_still_names_real_code() -> None:
    # PhaseTimer skips names that no longer exist, so a moved method would silently vanish
    # from the phase table: catch that here instead.
    for label, where in PHASES:
        module_name, _, qualname = where.partition(":")
        owner: Any = importlib.import_module(f"crypto_signals.{module_name}")
        for part in qualname.split("."):
            assert hasattr(owner, part), f"{label}: {where} does not exist"
            owner = getattr(owner, part)
        assert callable(owner), f"{label}: {where} is not callable"


def test_rtt_takes_one_value_or_one_per_service() -> None:
    assert Rtt.parse("20") == Rtt(20.0, 20.0, 20.0)
    assert Rtt.parse("20").label == "20 ms each"
    both = Rtt.parse("alpaca=50,firestore=10")
    assert both == Rtt(firestore=10.0, alpaca=50.0, discord=0.0)
    assert both.label == "Firestore 10, Alpaca 50, Discord 0 ms"
    assert not Rtt.parse("0")


@pytest.mark.parametrize(
    ("text", "says"),
    [("fast", "could not convert"), ("slack=3", "unknown service(s): slack")],
)
def test_rtt_refuses_what_it_cannot_read(text: str, says: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(says)):
        Rtt.parse(text)
