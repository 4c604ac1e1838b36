"""The measurements of one size N (ours, its peak RSS, naive, the floor) and of the latency run.

Ours, naive and the floor run on the same world in the same process, one after the other, so
their ratios compare like with like.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from benchmarks.naive_reconciler import NaiveStats
from benchmarks.reconcile.network import Network, Rtt
from benchmarks.reconcile.phases import PhaseTimer
from benchmarks.reconcile.runs import (
    ChildRss,
    OursRun,
    measure_floor,
    run_child_rss,
    run_naive,
    run_ours,
)
from benchmarks.reconcile.stands import Stands
from benchmarks.reconcile.world import build_world, seed_broker

# Naive runs longer than this (estimated from a measured subset) are extrapolated, not run.
NAIVE_FULL_RUN_BUDGET_S = 120.0
# From this N on, ours runs at most 3 times and naive once.
BIG_N = 10_000
BIG_OURS_REPEAT = 3


@dataclass
class OursResult:
    n: int
    runs: list[OursRun]
    rss: ChildRss | None = None

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def last(self) -> OursRun:
        return self.runs[-1]


@dataclass
class NaiveResult:
    n: int
    seconds: list[float]
    stats: NaiveStats
    # Set when the full run was too long: time measured on this many zombie candidates, scaled.
    extrapolated_from: int | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@dataclass
class SizeResult:
    n: int
    spec_counts: dict[str, int]
    ours: OursResult
    naive: NaiveResult
    phases: dict[str, float]
    floor: list[float]
    floor_cpu: list[float] = field(default_factory=list)  # this process's CPU per floor read

    @property
    def floor_median(self) -> float:
        return statistics.median(self.floor)

    @property
    def ours_over_floor(self) -> float:
        return self.ours.median / self.floor_median

    @property
    def cpu(self) -> tuple[float, float] | None:
        """Medians of this process's CPU time: ours, the floor (None if not measured)."""
        ours = [r.cpu_seconds for r in self.ours.runs if r.cpu_seconds]
        if not ours or not self.floor_cpu:
            return None
        return statistics.median(ours), statistics.median(self.floor_cpu)


@dataclass
class WanResult:
    rtt: Rtt
    n: int
    ours: list[float]
    naive: list[float]
    naive_stats: NaiveStats
    ours_run: OursRun
    floor: list[float]
    ours_cpu: list[float] = field(default_factory=list)
    floor_cpu: list[float] = field(default_factory=list)

    @property
    def cpu(self) -> tuple[float, float] | None:
        if not self.ours_cpu or not self.floor_cpu:
            return None
        return statistics.median(self.ours_cpu), statistics.median(self.floor_cpu)

    @property
    def ours_median(self) -> float:
        return statistics.median(self.ours)

    @property
    def naive_median(self) -> float:
        return statistics.median(self.naive)

    @property
    def floor_median(self) -> float:
        return statistics.median(self.floor)

    @property
    def ours_over_floor(self) -> float:
        return self.ours_median / self.floor_median


def _median_index(values: Sequence[float]) -> int:
    target = statistics.median(values)
    return min(range(len(values)), key=lambda i: abs(values[i] - target))


def _progress(message: str) -> None:
    print(f"  .. {message}", flush=True)


def naive_sample_every(previous: SizeResult | None, candidates: int, naive_full: bool) -> int:
    """Check every k-th zombie candidate when the time projected from ``previous`` is too long."""
    if previous is None or naive_full or not previous.naive.stats.checked:
        return 1
    stats = previous.naive.stats
    projected = stats.check_seconds / stats.zombie_candidates * candidates
    if projected <= NAIVE_FULL_RUN_BUDGET_S:
        return 1
    return math.ceil(projected / (NAIVE_FULL_RUN_BUDGET_S / 3))


def measure_size(
    stands: Stands,
    n: int,
    *,
    repeat: int,
    timer: PhaseTimer,
    previous: SizeResult | None,
    naive_full: bool,
    rss: bool,
) -> SizeResult:
    now = datetime.now(UTC).replace(microsecond=0)
    spec = build_world(n, now, stands.sim.account_id)
    seed_broker(stands.sim, spec)
    net = Network.direct(stands)
    big = n >= BIG_N
    ours_reps = min(repeat, BIG_OURS_REPEAT) if big else repeat
    naive_reps = 1 if big else repeat

    runs: list[OursRun] = []
    phases: list[dict[str, float]] = []
    floor: list[float] = []
    floor_cpu: list[float] = []
    for i in range(ours_reps):
        run = run_ours(stands, spec, net)
        phases.append(timer.take(run.seconds))
        runs.append(run)
        _progress(f"N={n}: ours run {i + 1}/{ours_reps}: {run.seconds:.2f}s")
        if run.healed != spec.expected_heals or run.status != "issues":
            raise RuntimeError(
                f"N={n}: ours healed {run.healed} (expected {spec.expected_heals}), "
                f"status {run.status}, errors {run.errors[:3]}"
            )
        # One floor read after each run of ours, so that both see the machine as it is then
        # (on this shared machine the floor alone moved by half between minutes).
        read, read_cpu = measure_floor(stands, spec, net, 1)
        floor += read
        floor_cpu += read_cpu
    ours = OursResult(n, runs)
    if rss:
        ours.rss = run_child_rss(stands, spec)
        _progress(f"N={n}: child peak RSS {ours.rss.peak_mb:.0f} MB")

    sample_every = naive_sample_every(previous, spec.zombie_candidates, naive_full)
    naive_seconds: list[float] = []
    naive_stats = NaiveStats()
    for i in range(naive_reps):
        seconds, naive_stats = run_naive(stands, spec, net, sample_every=sample_every)
        naive_seconds.append(seconds)
        label = f" (1 in {sample_every} candidates, extrapolated)" if sample_every > 1 else ""
        _progress(f"N={n}: naive run {i + 1}/{naive_reps}: {seconds:.2f}s{label}")
    naive = NaiveResult(
        n,
        naive_seconds,
        naive_stats,
        extrapolated_from=naive_stats.checked if sample_every > 1 else None,
    )
    result = SizeResult(
        n,
        spec.counts,
        ours,
        naive,
        phases[_median_index([r.seconds for r in runs])],
        floor,
        floor_cpu,
    )
    _progress(
        f"N={n}: floor (stream the open book only) {result.floor_median:.2f}s; "
        f"ours/floor {result.ours_over_floor:.1f}x"
    )
    return result


def measure_wan(stands: Stands, n: int, rtt: Rtt, repeat: int) -> WanResult:
    spec = build_world(n, datetime.now(UTC).replace(microsecond=0), stands.sim.account_id)
    seed_broker(stands.sim, spec)
    net = Network.delayed(stands, rtt)
    try:
        ours_runs: list[OursRun] = []
        floor: list[float] = []
        floor_cpu: list[float] = []
        for _ in range(repeat):  # alternated, as in measure_size
            ours_runs.append(run_ours(stands, spec, net))
            read, read_cpu = measure_floor(stands, spec, net, 1)
            floor += read
            floor_cpu += read_cpu
        naive_runs = [run_naive(stands, spec, net) for _ in range(1)]
    finally:
        net.stop()
    result = WanResult(
        rtt,
        n,
        [r.seconds for r in ours_runs],
        [s for s, _ in naive_runs],
        naive_runs[-1][1],
        ours_runs[-1],
        floor,
        [r.cpu_seconds for r in ours_runs],
        floor_cpu,
    )
    _progress(
        f"N={n}, RTT {rtt.label}: ours {result.ours_median:.2f}s, naive "
        f"{result.naive_median:.2f}s, floor {result.floor_median:.2f}s; "
        f"ours/floor {result.ours_over_floor:.1f}x"
    )
    return result
