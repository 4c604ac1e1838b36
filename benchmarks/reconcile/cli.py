"""Benchmark: the reconciler against the read-only floor and a naive baseline, on worlds of N.

Not a test. For each N it seeds a realistic book on the Firestore emulator and the Alpaca
simulator, times ``reconcile()`` several times (a fresh Firestore world for every run, since a
run heals), measures the peak RSS of one reconcile in a child process, times the naive
baseline (:mod:`benchmarks.naive_reconciler`) and the floor (stream the open book, nothing
else) on the same world, then runs N <= 1,000 through delay proxies and measures the HTTP
function's cold start (:mod:`benchmarks.cold_start`). It prints the tables, writes
``docs/perf-time-vs-n.png`` and the generated part of ``docs/performance.md``.

    .venv/bin/python benchmarks/bench_reconcile.py                # N = 10, 100, 1000, 10000
    .venv/bin/python benchmarks/bench_reconcile.py --quick        # N = 10, 100 (smoke run)
    .venv/bin/python benchmarks/bench_reconcile.py --sizes 10,1000 --repeat 3 --no-cold-start
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from benchmarks.reconcile.measure import SizeResult, WanResult, measure_size, measure_wan
from benchmarks.reconcile.network import PRODUCTION_RTT, Network, Rtt
from benchmarks.reconcile.phases import PhaseTimer
from benchmarks.reconcile.plot import write_plot
from benchmarks.reconcile.report import (
    DOC,
    PLOT,
    ROOT,
    code_state,
    generated_block,
    write_doc,
)
from benchmarks.reconcile.runs import run_naive, run_ours
from benchmarks.reconcile.stands import Stands, quiet_logging
from benchmarks.reconcile.tables import (
    cold_table,
    naive_table,
    ours_table,
    phase_table,
    ratio_table,
    wan_table,
)
from benchmarks.reconcile.targets import (
    evaluate_targets,
    headline,
    headline_table,
    targets_table,
)
from benchmarks.reconcile.world import build_world, seed_broker

if TYPE_CHECKING:
    from benchmarks.cold_start import ColdStartResult

QUICK_SIZES = (10, 100)
WAN_MAX_N = 1_000
WAN_MAX_REPEAT = 3
WARM_UP_N = 10


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10,100,1000,10000", help="comma-separated N")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per N (3 at 10,000)")
    parser.add_argument("--quick", action="store_true", help="N = 10, 100 only (smoke run)")
    parser.add_argument(
        "--rtt-ms",
        type=Rtt.parse,
        default=PRODUCTION_RTT,
        help="RTT of the latency run: 20 (each service) or firestore=10,alpaca=50,discord=80 "
        f"(default: {PRODUCTION_RTT.option}, production's)",
    )
    parser.add_argument("--no-wan", action="store_true", help="skip the latency run")
    parser.add_argument("--no-rss", action="store_true", help="skip the child RSS runs")
    parser.add_argument("--no-cold-start", action="store_true", help="skip the cold start")
    parser.add_argument("--naive-full", action="store_true", help="never extrapolate naive")
    parser.add_argument("--no-write", action="store_true", help="do not write docs/")
    parser.add_argument(
        "--sim-in-process",
        action="store_true",
        help="run the Alpaca simulator in this process (as before 2026-12) instead of its own",
    )
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    return args


def warm_up(stands: Stands, timer: PhaseTimer) -> None:
    """Discarded: first gRPC channel, first imports, JIT of the emulator.

    Also the check that every timed phase is still on the run's path: it fails here, in
    seconds, rather than as a row of zeros in the phase table after the whole run.
    """
    warm = build_world(WARM_UP_N, datetime.now(UTC).replace(microsecond=0), stands.sim.account_id)
    seed_broker(stands.sim, warm)
    run_ours(stands, warm, Network.direct(stands))
    timer.require_called(f"the warm-up run of ours (N = {WARM_UP_N})")
    run_naive(stands, warm, Network.direct(stands))
    timer.take(0.0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = (
        list(QUICK_SIZES) if args.quick else [int(x) for x in args.sizes.split(",") if x.strip()]
    )
    started = time.perf_counter()
    code_at_start = code_state()
    quiet_logging()

    print("Starting the Firestore emulator, the Alpaca simulator and the Discord sink ...")
    stands = Stands.start(sim_in_process=args.sim_in_process)
    results: list[SizeResult] = []
    wan: list[WanResult] = []
    cold: ColdStartResult | None = None
    try:
        with PhaseTimer() as timer:
            warm_up(stands, timer)
            for n in sizes:
                print(f"\n== N = {n:,} ==", flush=True)
                result = measure_size(
                    stands,
                    n,
                    repeat=args.repeat,
                    timer=timer,
                    previous=results[-1] if results else None,
                    naive_full=args.naive_full,
                    rss=not args.no_rss,
                )
                results.append(result)
                print(ours_table([result]))
                print(naive_table([result]))
                print(ratio_table([result]))

            wan_n = max((n for n in sizes if n <= WAN_MAX_N), default=None)
            if not args.no_wan and wan_n is not None and args.rtt_ms:
                print(f"\n== N = {wan_n:,} with RTT {args.rtt_ms.label} ==", flush=True)
                repeat = min(WAN_MAX_REPEAT, args.repeat)
                wan.append(measure_wan(stands, wan_n, args.rtt_ms, repeat=repeat))
                timer.take(0.0)

        if not args.no_cold_start:
            from benchmarks.cold_start import measure_cold_start

            print("\n== cold start of the HTTP function ==", flush=True)
            tiny = build_world(
                WARM_UP_N, datetime.now(UTC).replace(microsecond=0), stands.sim.account_id
            )
            seed_broker(stands.sim, tiny)
            stands.fresh_world(tiny)
            cold = measure_cold_start(stands.env(), repeats=5)
    finally:
        stands.stop()

    elapsed = time.perf_counter() - started
    code = (code_at_start, code_state())
    if code[0] != code[1]:
        print(f"WARNING: the code under test changed during the run: {code[0]} -> {code[1]}")
    targets = evaluate_targets(results, cold, wan)
    print("\n# Headline: ours / the read-only floor\n\n" + headline_table(headline(results, wan)))
    print("\n# Ours\n\n" + ours_table(results))
    print("\n# Naive baseline\n\n" + naive_table(results))
    print("\n# Ratios\n\n" + ratio_table(results))
    print("\n# Where ours spends its time (median run)\n\n" + phase_table(results))
    if wan:
        print("\n# With network latency (modelled)\n\n" + wan_table(wan))
    if cold is not None:
        print("\n# Cold start\n\n" + cold_table(cold) + f"\n\nratio ours/bare: {cold.ratio:.2f}")
    print("\n# Targets\n\n" + targets_table(targets))
    print(f"\nTotal {elapsed / 60:.1f} min.")
    if not args.no_write and results:
        write_plot(results, wan, PLOT)
        write_doc(generated_block(results, wan, cold, targets, args, elapsed, code), DOC)
        print(f"Wrote {PLOT.relative_to(ROOT)} and {DOC.relative_to(ROOT)}.")
    return 0
