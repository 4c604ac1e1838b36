"""The markdown tables of the results, as printed on stdout and written to docs/performance.md."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

from benchmarks.reconcile.measure import SizeResult, WanResult
from benchmarks.reconcile.phases import OTHER_PHASE, PHASES, WALL

if TYPE_CHECKING:
    from benchmarks.cold_start import ColdStartResult


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        rest = (c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))
        return "| " + " | ".join([row[0].ljust(widths[0]), *rest]) + " |"

    rule = "|:" + "-" * (widths[0] + 1) + "|" + "|".join("-" * (w + 1) + ":" for w in widths[1:])
    rule += "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def seconds(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def ours_table(results: Sequence[SizeResult]) -> str:
    rows = []
    for r in results:
        o, last = r.ours, r.ours.last
        times = [x.seconds for x in o.runs]
        rows.append(
            [
                f"{r.n:,}",
                len(o.runs),
                seconds(o.median),
                f"{seconds(min(times))}-{seconds(max(times))}",
                last.broker_calls,
                last.sim_requests,
                f"{last.calls_started} + {last.extra_pages}",
                f"{last.firestore_reads:,}",
                f"{last.firestore_writes:,}",
                last.firestore_round_trips,
                last.discord_posts,
                f"{last.healed:,}",
                f"{last.report_kb:,.0f}",
                f"{o.rss.peak_mb:.0f}" if o.rss else "-",
                f"{o.rss.before_run_mb:.0f}" if o.rss else "-",
            ]
        )
    return md_table(
        [
            "N",
            "runs",
            "wall median (s)",
            "min-max (s)",
            "broker calls",
            "sim requests",
            "calls + extra pages",
            "FS reads",
            "FS writes",
            "FS round trips",
            "Discord posts",
            "healed",
            "report (KiB)",
            "peak RSS (MB)",
            "RSS before run (MB)",
        ],
        rows,
    )


def naive_table(results: Sequence[SizeResult]) -> str:
    rows = []
    for r in results:
        nv = r.naive
        note = (
            f"extrapolated: {nv.extrapolated_from} of {nv.stats.zombie_candidates} "
            "candidates checked, scaled"
            if nv.extrapolated_from is not None
            else "measured"
        )
        rows.append(
            [
                f"{r.n:,}",
                len(nv.seconds),
                seconds(nv.median),
                f"{nv.stats.broker_calls:,}",
                f"{nv.stats.firestore_reads:,}",
                f"{nv.stats.firestore_writes:,}",
                f"{nv.stats.firestore_round_trips:,}",
                nv.stats.discord_posts,
                f"{nv.stats.heals:,}",
                note,
            ]
        )
    return md_table(
        [
            "N",
            "runs",
            "wall median (s)",
            "broker calls",
            "FS reads",
            "FS writes",
            "FS round trips",
            "Discord posts",
            "healed",
            "",
        ],
        rows,
    )


def ratio_table(results: Sequence[SizeResult]) -> str:
    rows = []
    for r in results:
        o, nv = r.ours.last, r.naive.stats
        rows.append(
            [
                f"{r.n:,}",
                seconds(r.floor_median),
                f"{r.ours_over_floor:.2f}x",
                f"{r.ours.median / r.naive.median:.2f}",
                f"{r.naive.median / r.ours.median:.1f}x",
                f"{r.naive.median / r.floor_median:.1f}x",
                f"{o.broker_calls / max(1, nv.broker_calls):.3f}",
                f"{o.firestore_round_trips / max(1, nv.firestore_round_trips):.3f}",
                f"{o.firestore_writes / max(1, nv.firestore_writes):.2f}",
                f"{o.discord_posts / max(1, nv.discord_posts):.2f}",
            ]
        )
    return md_table(
        [
            "N",
            "floor (s)",
            "ours/floor",
            "time ours/naive",
            "speed-up",
            "naive/floor: most any design can show",
            "broker calls ours/naive",
            "FS round trips ours/naive",
            "FS writes ours/naive",
            "Discord posts ours/naive",
        ],
        rows,
    )


def phase_table(results: Sequence[SizeResult]) -> str:
    labels = [phase.label for phase in PHASES] + [OTHER_PHASE]
    rows = []
    for label in labels:
        cells: list[object] = [label]
        for r in results:
            spent = r.phases.get(label, 0.0)
            total = r.phases.get(WALL, 0.0)
            cells.append(f"{spent:.3f} ({spent / total:.0%})" if total else "-")
        rows.append(cells)
    rows.append([WALL, *(f"{r.phases.get(WALL, 0.0):.3f}" for r in results)])
    return md_table(["phase (s, share)", *(f"N={r.n:,}" for r in results)], rows)


def wan_table(wan: Sequence[WanResult]) -> str:
    rows = []
    for w in wan:
        rows.append(
            [
                w.rtt.label,
                f"{w.n:,}",
                f"{seconds(w.ours_median)} ({len(w.ours)} runs)",
                f"{seconds(w.floor_median)}",
                f"{w.ours_over_floor:.2f}x",
                f"{seconds(w.naive_median)} ({len(w.naive)} run)",
                f"{w.naive_median / w.ours_median:.1f}x",
                f"{w.naive_median / w.floor_median:.1f}x",
                f"{w.ours_run.broker_calls} / {w.naive_stats.broker_calls}",
                f"{w.ours_run.firestore_round_trips} / {w.naive_stats.firestore_round_trips}",
                f"{w.ours_run.discord_posts} / {w.naive_stats.discord_posts}",
            ]
        )
    return md_table(
        [
            "RTT",
            "N",
            "ours median (s)",
            "floor (s)",
            "ours/floor",
            "naive (s)",
            "speed-up",
            "naive/floor",
            "broker calls ours/naive",
            "FS round trips ours/naive",
            "Discord posts ours/naive",
        ],
        rows,
    )


def cold_table(cold: ColdStartResult) -> str:
    rows = []
    for name, values in (
        ("ours: reconcile_http, first POST {dry_run: true}", cold.ours),
        ("bare: imports firestore + alpaca-py + functions-framework", cold.bare),
        ("bare, alpaca-py imported with pandas deferred (as ours does)", cold.bare_deferred),
    ):
        rows.append(
            [
                name,
                len(values),
                f"{statistics.median(values) * 1000:.0f}",
                f"{min(values) * 1000:.0f}-{max(values) * 1000:.0f}",
            ]
        )
    return md_table(["process", "runs", "median (ms)", "min-max (ms)"], rows)
