"""docs/perf-time-vs-n.png: wall time against N (ours, naive, the floor), and round trips."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from benchmarks.reconcile.measure import SizeResult, WanResult


def write_plot(results: Sequence[SizeResult], wan: Sequence[WanResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r.n for r in results]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))

    ours = [r.ours.median for r in results]
    low = [r.ours.median - min(x.seconds for x in r.ours.runs) for r in results]
    high = [max(x.seconds for x in r.ours.runs) - r.ours.median for r in results]
    ax1.errorbar(
        ns,
        ours,
        yerr=[low, high],
        marker="o",
        capsize=4,
        color="tab:blue",
        label="ours (median, min-max)",
    )
    naive = [r.naive.median for r in results]
    ax1.plot(ns, naive, marker="s", linestyle="--", color="tab:red", label="naive baseline")
    ax1.plot(
        ns,
        [r.floor_median for r in results],
        marker=".",
        linestyle=":",
        color="tab:gray",
        label="floor: stream the open book, nothing else",
    )
    extrapolated = [r for r in results if r.naive.extrapolated_from is not None]
    if extrapolated:
        ax1.plot(
            [r.n for r in extrapolated],
            [r.naive.median for r in extrapolated],
            marker="s",
            linestyle="none",
            markersize=11,
            markerfacecolor="white",
            color="tab:red",
            label="naive, extrapolated from a sample",
        )
    for r in results:
        ax1.annotate(
            f"ours/floor {r.ours_over_floor:.1f}x\n"
            f"naive/ours {r.naive.median / r.ours.median:.1f}x",
            (r.n, r.ours.median),
            textcoords="offset points",
            xytext=(6, -22),
            fontsize=8,
        )
    for w in wan:
        ax1.plot(
            [w.n],
            [w.ours_median],
            marker="^",
            color="tab:blue",
            linestyle="none",
            label=f"ours, RTT {w.rtt.label} (modelled)",
        )
        ax1.plot(
            [w.n],
            [w.naive_median],
            marker="^",
            color="tab:red",
            linestyle="none",
            label=f"naive, RTT {w.rtt.label} (modelled)",
        )
        ax1.plot(
            [w.n],
            [w.floor_median],
            marker="^",
            color="tab:gray",
            linestyle="none",
            label=f"floor, RTT {w.rtt.label} (modelled)",
        )
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("N (open positions in Firestore)")
    ax1.set_ylabel("wall time of one run (s)")
    ax1.set_title("Reconcile wall time vs N (loopback stand-ins)")
    ax1.grid(True, which="both", alpha=0.3)
    handles, labels = ax1.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: (not labels[i].startswith("ours"), i))
    ax1.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=8)

    ax2.plot(
        ns, [r.ours.last.broker_calls for r in results], marker="o", label="ours: broker calls"
    )
    ax2.plot(
        ns,
        [r.ours.last.firestore_round_trips for r in results],
        marker="o",
        label="ours: Firestore round trips",
    )
    ax2.plot(
        ns,
        [r.naive.stats.broker_calls for r in results],
        marker="s",
        linestyle="--",
        label="naive: broker calls",
    )
    ax2.plot(
        ns,
        [r.naive.stats.firestore_round_trips for r in results],
        marker="s",
        linestyle="--",
        label="naive: Firestore round trips",
    )
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("N (open positions in Firestore)")
    ax2.set_ylabel("calls per run")
    ax2.set_title("Network round trips per run vs N")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=8)

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
