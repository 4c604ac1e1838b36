"""The targets (issue 12) and whether a run met them.

The headline is ours against the read-only floor (stream the open book, nothing else: what any
design must at least do), measured in the same run on the same world: at most 1.5x on loopback
at N = 1,000 and 10,000, at most 2x at production latencies at N = 1,000. The other targets:
broker calls bounded by a constant, Firestore round trips by a constant plus writes / batch
size, peak RSS at N = 10,000, and the HTTP function's cold start.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from benchmarks.reconcile.measure import SizeResult, WanResult
from benchmarks.reconcile.network import PRODUCTION_RTT
from benchmarks.reconcile.tables import md_table, seconds
from crypto_signals.repository.firestore import PositionRepository

if TYPE_CHECKING:
    from benchmarks.cold_start import ColdStartResult

LOOPBACK_FLOOR_LIMIT = 1.5
LOOPBACK_FLOOR_NS = (1_000, 10_000)
PRODUCTION_FLOOR_LIMIT = 2.0
PRODUCTION_FLOOR_N = 1_000
# Account, positions, the open-orders listing and the closed-orders listing.
BROKER_CALLS_BOUND = 4
RSS_N = 10_000
RSS_LIMIT_MB = 200.0
COLD_START_LIMIT = 1.2


def heal_batch_size() -> int:
    """Documents per Firestore batch in PositionRepository as bootstrap builds it (its default)."""
    default = inspect.signature(PositionRepository).parameters["batch_size"].default
    if not isinstance(default, int):
        raise TypeError(f"PositionRepository's batch_size default is {default!r}, not an int")
    return default


@dataclass(frozen=True)
class FloorRatio:
    """One point of the headline: ours / floor at one N and latency, against its limit."""

    where: str  # "loopback" or the RTT's label
    n: int
    limit: float
    ours: float | None = None  # medians in seconds; None: not run
    floor: float | None = None
    naive: float | None = None
    note: str = ""
    cpu: tuple[float, float] | None = None  # this process's CPU time: ours, the floor

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.floor:
            return None
        return self.ours / self.floor

    @property
    def name(self) -> str:
        return f"ours / read-only floor, {self.where}, N = {self.n:,}: at most {self.limit:g}x"

    @property
    def met(self) -> bool | None:
        return None if self.ratio is None else self.ratio <= self.limit


def headline(results: Sequence[SizeResult], wan: Sequence[WanResult]) -> list[FloorRatio]:
    by_n = {r.n: r for r in results}
    points: list[FloorRatio] = []
    for n in LOOPBACK_FLOOR_NS:
        r = by_n.get(n)
        if r is None:
            points.append(FloorRatio("loopback", n, LOOPBACK_FLOOR_LIMIT, note="not run"))
        else:
            points.append(
                FloorRatio(
                    "loopback",
                    n,
                    LOOPBACK_FLOOR_LIMIT,
                    r.ours.median,
                    r.floor_median,
                    r.naive.median,
                    note="naive extrapolated" if r.naive.extrapolated_from is not None else "",
                    cpu=r.cpu,
                )
            )
    where = f"RTT {PRODUCTION_RTT.label}"
    match = [w for w in wan if w.n == PRODUCTION_FLOOR_N and w.rtt == PRODUCTION_RTT]
    if match:
        w = match[-1]
        points.append(
            FloorRatio(
                where,
                w.n,
                PRODUCTION_FLOOR_LIMIT,
                w.ours_median,
                w.floor_median,
                w.naive_median,
                cpu=w.cpu,
            )
        )
    else:
        ran = ", ".join(f"RTT {w.rtt.label} at N = {w.n:,}" for w in wan)
        note = f"not run (the latency run was {ran})" if ran else "not run"
        points.append(FloorRatio(where, PRODUCTION_FLOOR_N, PRODUCTION_FLOOR_LIMIT, note=note))
    return points


VERDICT = {True: "met", False: "**missed**", None: "not measured"}


def _cpu_cell(cpu: tuple[float, float] | None) -> str:
    if cpu is None or not cpu[1]:
        return "-"
    ours, floor = cpu
    return f"{ours:.2f} / {floor:.2f} ({ours / floor:.1f}x)"


def headline_table(points: Sequence[FloorRatio]) -> str:
    rows = []
    for p in points:
        if p.ratio is None or p.ours is None or p.floor is None:
            rows.append([p.where, f"{p.n:,}", "-", "-", "-", f"≤ {p.limit:g}x", "-", "-", "-", "-"])
        else:
            rows.append(
                [
                    p.where,
                    f"{p.n:,}",
                    seconds(p.ours),
                    seconds(p.floor),
                    f"**{p.ratio:.2f}x**",
                    f"≤ {p.limit:g}x",
                    VERDICT[p.met],
                    "-" if p.naive is None else seconds(p.naive),
                    "-" if p.naive is None else f"{p.naive / p.ours:.1f}x",
                    _cpu_cell(p.cpu),
                ]
            )
        rows[-1].append(p.note)
    return md_table(
        [
            "network",
            "N",
            "ours (s)",
            "floor (s)",
            "ours/floor",
            "target",
            "verdict",
            "naive (s)",
            "naive/ours",
            "CPU ours / floor (s)",
            "",
        ],
        rows,
    )


@dataclass
class Target:
    name: str
    figure: str
    met: bool | None


def evaluate_targets(
    results: Sequence[SizeResult], cold: ColdStartResult | None, wan: Sequence[WanResult]
) -> list[Target]:
    targets = [Target(p.name, _floor_figure(p), p.met) for p in headline(results, wan)]
    targets.append(_broker_calls(results))
    targets.append(_round_trips(results))
    targets.append(_rss(results))
    targets.append(_cold_start(cold))
    return targets


def _floor_figure(p: FloorRatio) -> str:
    if p.ratio is None or p.ours is None or p.floor is None:
        return p.note
    return f"{p.ratio:.2f}x ({seconds(p.ours)} s against {seconds(p.floor)} s)"


def _broker_calls(results: Sequence[SizeResult]) -> Target:
    name = "broker calls per run bounded by a small constant (pagination aside)"
    if not results:
        return Target(name, "not run", None)
    fixed = [r.ours.last.calls_started for r in results]
    totals = ", ".join(f"{r.ours.last.broker_calls} at N={r.n:,}" for r in results)
    return Target(
        name,
        f"{max(fixed)} calls (account, positions, 2 order listings) at every N; "
        f"with extra pages: {totals}",
        max(fixed) <= BROKER_CALLS_BOUND,
    )


def _round_trips(results: Sequence[SizeResult]) -> Target:
    name = "Firestore round trips grow only with writes / batch size"
    if not results:
        return Target(name, "not run", None)
    batch = heal_batch_size()
    smallest = results[0].ours.last
    base = smallest.firestore_round_trips - math.ceil(smallest.firestore_writes / batch)
    ok = all(
        r.ours.last.firestore_round_trips <= base + math.ceil(r.ours.last.firestore_writes / batch)
        for r in results
    )
    figure = "; ".join(
        f"N={r.n:,}: {r.ours.last.firestore_round_trips} round trips for "
        f"{r.ours.last.firestore_writes:,} writes"
        for r in results
    )
    return Target(name, f"{figure} (bound: {base} + ⌈writes/{batch}⌉)", ok)


def _rss(results: Sequence[SizeResult]) -> Target:
    name = f"peak RSS at N = {RSS_N:,} under {RSS_LIMIT_MB:.0f} MB"
    big = next((r for r in results if r.n == RSS_N), None)
    if big is None or big.ours.rss is None:
        return Target(name, "not run", None)
    rss = big.ours.rss
    return Target(
        name,
        f"{rss.peak_mb:.0f} MB VmHWM (process before the run: {rss.before_run_mb:.0f} MB; its "
        f"ru_maxrss, inherited from this benchmark's process, says {rss.ru_maxrss_mb:.0f} MB)",
        rss.peak_mb < RSS_LIMIT_MB,
    )


def _cold_start(cold: ColdStartResult | None) -> Target:
    name = f"HTTP function cold start within {COLD_START_LIMIT - 1:.0%} of a bare process"
    if cold is None:
        return Target(name, "not run", None)
    return Target(
        name,
        f"{cold.ours_median * 1000:.0f} ms vs {cold.bare_median * 1000:.0f} ms "
        f"(ratio {cold.ratio:.2f}; {cold.overhead_ratio:.2f} against a bare process "
        "that also defers pandas)",
        cold.ratio <= COLD_START_LIMIT,
    )


def targets_table(targets: Sequence[Target]) -> str:
    return md_table(
        ["target", "measured", "verdict"], [[t.name, t.figure, VERDICT[t.met]] for t in targets]
    )
