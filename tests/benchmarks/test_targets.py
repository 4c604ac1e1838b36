"""The headline (ours / the read-only floor) and the other targets, on made-up results."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import pytest
from benchmarks.naive_reconciler import NaiveStats
from benchmarks.reconcile.measure import NaiveResult, OursResult, SizeResult, WanResult
from benchmarks.reconcile.network import PRODUCTION_RTT, Rtt
from benchmarks.reconcile.report import BEGIN, END, generated_block, write_doc
from benchmarks.reconcile.runs import OursRun
from benchmarks.reconcile.targets import (
    evaluate_targets,
    headline,
    headline_table,
    heal_batch_size,
)
from benchmarks.reconcile.world import mix_counts

from crypto_signals.repository.firestore import PositionRepository


def _run(seconds: float, writes: int, round_trips: int, calls: int = 4) -> OursRun:
    return OursRun(
        seconds=seconds,
        broker_calls=calls,
        sim_requests=calls,
        calls_started=4,
        extra_pages=calls - 4,
        firestore_reads=10,
        firestore_writes=writes,
        firestore_round_trips=round_trips,
        discord_posts=1,
        healed=2,
        status="issues",
        errors=[],
        report_kb=1.0,
    )


def _size(n: int, ours: float, floor: float, naive: float, writes: int, trips: int) -> SizeResult:
    return SizeResult(
        n=n,
        spec_counts=mix_counts(n),
        ours=OursResult(n, [_run(ours, writes, trips)]),
        naive=NaiveResult(n, [naive], NaiveStats(broker_calls=n, firestore_round_trips=n)),
        phases={},
        floor=[floor],
    )


def _wan(rtt: Rtt, ours: float, floor: float) -> WanResult:
    return WanResult(rtt, 1000, [ours], [10 * ours], NaiveStats(), _run(ours, 600, 11), [floor])


def test_the_heal_batch_size_is_the_repository_default() -> None:
    default = inspect.signature(PositionRepository).parameters["batch_size"].default
    assert heal_batch_size() == default


def test_headline_is_ours_over_the_floor_at_each_target_point() -> None:
    results = [
        _size(100, 0.3, 0.1, 0.5, 62, 11),
        _size(1000, 1.2, 1.0, 4.0, 602, 11),
        _size(10_000, 20.0, 10.0, 80.0, 6002, 41),
    ]
    wan = [_wan(PRODUCTION_RTT, 1.5, 1.0)]
    points = headline(results, wan)
    assert [(p.where, p.n) for p in points] == [
        ("loopback", 1000),
        ("loopback", 10_000),
        (f"RTT {PRODUCTION_RTT.label}", 1000),
    ]
    assert [p.ratio for p in points] == pytest.approx([1.2, 2.0, 1.5])
    assert [p.met for p in points] == [True, False, True]  # limits 1.5x, 1.5x, 2x
    table = headline_table(points)
    assert "**1.20x**" in table
    assert "**missed**" in table

    targets = {t.name: t for t in evaluate_targets(results, None, wan)}
    assert targets["ours / read-only floor, loopback, N = 10,000: at most 1.5x"].met is False
    trips = targets["Firestore round trips grow only with writes / batch size"]
    assert f"⌈writes/{heal_batch_size()}⌉" in trips.figure
    assert targets["broker calls per run bounded by a small constant (pagination aside)"].met
    assert targets["peak RSS at N = 10,000 under 200 MB"].met is None  # no child RSS run
    assert not any("naive" in name for name in targets)  # naive is a table, not a target


def test_the_headline_shows_the_cpu_of_ours_and_the_floor_when_measured() -> None:
    measured = _size(1000, 1.8, 0.6, 4.0, 602, 11)
    measured.ours.runs[0].cpu_seconds = 1.2
    measured.floor_cpu = [0.4]
    wan = _wan(PRODUCTION_RTT, 2.0, 0.5)
    wan.ours_cpu, wan.floor_cpu = [1.3], [0.45]
    unmeasured = _size(10_000, 20.0, 10.0, 80.0, 6002, 41)  # no CPU: older results

    points = headline([measured, unmeasured], [wan])

    assert [p.cpu for p in points] == [(1.2, 0.4), None, (1.3, 0.45)]
    rows = headline_table(points).splitlines()[2:]
    assert "1.20 / 0.40 (3.0x)" in rows[0]
    assert "1.30 / 0.45 (2.9x)" in rows[2]
    assert [cell.strip() for cell in rows[1].split("|")][-3] == "-"  # the CPU column


def test_headline_points_not_run_say_so() -> None:
    results = [_size(100, 0.3, 0.1, 0.5, 62, 11)]
    points = headline(results, [_wan(Rtt(20.0, 20.0, 20.0), 1.0, 0.5)])
    assert all(p.ratio is None and p.met is None for p in points)
    assert points[-1].note == "not run (the latency run was RTT 20 ms each at N = 1,000)"
    assert "not run" in headline_table(points)


def test_the_generated_block_replaces_only_itself(tmp_path: Path) -> None:
    results = [_size(1000, 1.2, 1.0, 4.0, 602, 11)]
    wan = [_wan(PRODUCTION_RTT, 1.5, 1.0)]
    args = argparse.Namespace(argv=["--quick"], repeat=5)
    block = generated_block(
        results, wan, None, evaluate_targets(results, None, wan), args, 60.0, ("a", "a")
    )
    assert block.startswith(BEGIN)
    assert block.endswith(END)
    assert "## Headline: ours / the read-only floor" in block
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Head\n\n{BEGIN}\nold\n{END}\n\n## Tail by hand\n", encoding="utf-8")
    write_doc(block, doc)
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Head\n\n" + BEGIN)
    assert text.endswith(END + "\n\n## Tail by hand\n")
    assert "\nold\n" not in text
