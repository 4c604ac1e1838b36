"""One run of each thing measured: ours, ours in a child process (peak RSS), the naive
baseline, and the floor (stream the open book, nothing else). Each gets a fresh Firestore world.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from google.cloud import firestore

from benchmarks.naive_reconciler import NaiveReconciler, NaiveStats
from benchmarks.reconcile.network import Network
from benchmarks.reconcile.sim_process import SimulatorProcess
from benchmarks.reconcile.stands import BENCH_KEY, BENCH_SECRET, Stands
from benchmarks.reconcile.world import COLLECTION, WorldSpec
from crypto_signals.bootstrap import build_reconciler
from crypto_signals.config import load_settings
from crypto_signals.domain.schemas import Position, ReconciliationReport
from crypto_signals.sandbox.alpaca_sim import AlpacaSimulator

# The fields the floor reads: the projection of PositionRepository.get_open_positions (which
# also projects "reconciler.held", absent from the benchmark's documents).
POSITION_FIELDS = sorted(Position.model_fields)


@dataclass
class OursRun:
    seconds: float
    broker_calls: int
    sim_requests: int
    calls_started: int  # requests that start something (a page continuing a listing does not)
    extra_pages: int  # further pages of the order listings
    firestore_reads: int
    firestore_writes: int
    firestore_round_trips: int
    discord_posts: int
    healed: int
    status: str
    errors: list[str]
    report_kb: float  # the report as JSON; RunLog stores it as one Firestore document (1 MiB max)
    # This process's CPU time during the run (time.process_time: every thread, the harness's
    # Discord sink and delay proxies included; the emulator and the simulator are elsewhere).
    cpu_seconds: float = 0.0


@dataclass
class ChildRss:
    peak_mb: float  # VmHWM of the child
    before_run_mb: float  # VmRSS after imports and building the reconciler
    seconds: float
    status: str
    ru_maxrss_mb: float  # inherits the parent's high-water mark: shown, not used


@contextlib.contextmanager
def harness_frozen() -> Iterator[None]:
    """Keep the harness's own objects out of the garbage collector while a run is timed.

    This process holds the benchmark's world (every document and order spec of N, the tables
    so far): a full collection during a timed run scanned all of it, about 0.1 s at
    N = 1,000, a cost a production process (which holds only the reconciler) does not have.
    ``gc.freeze()`` moves what exists before the run to a generation the collector skips;
    the run's own objects are collected as usual. Applied alike to ours, naive and the floor.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def calls_and_pages(sim: AlpacaSimulator | SimulatorProcess) -> tuple[int, int]:
    """(calls that start something, extra pages) in the simulator's request log.

    An orders request for the same status as the orders request before it continues that
    listing (its ``after`` is the previous page's last order): a page, not a new call.
    """
    calls = pages = 0
    previous: str | None = None
    for request in sim.requests:
        if request.endpoint != "orders":
            calls += 1
            continue
        status = (request.query.get("status") or ["open"])[-1]
        if status == previous:
            pages += 1
        else:
            calls += 1
        previous = status
    return calls, pages


def _client(stands: Stands, net: Network) -> firestore.Client:
    return stands.db if not net.proxies else net.client(stands.emulator.project)


def _close(stands: Stands, db: firestore.Client) -> None:
    if db is not stands.db:
        db.close()  # type: ignore[no-untyped-call]


def run_ours(stands: Stands, spec: WorldSpec, net: Network) -> OursRun:
    stands.fresh_world(spec)
    env = {
        **stands.env(),
        "FIRESTORE_EMULATOR_HOST": net.firestore_host,
        "ALPACA_BASE_URL": net.broker_url,
        "DISCORD_WEBHOOK_URL": net.webhook_url,
    }
    db = _client(stands, net)
    reconciler = build_reconciler(load_settings(env), client=db)
    with harness_frozen():
        cpu = time.process_time()
        started = time.perf_counter()
        report = reconciler.reconcile(force=True)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
    _close(stands, db)
    return _ours_run(report, seconds, stands, cpu)


def _ours_run(
    report: ReconciliationReport, seconds: float, stands: Stands, cpu: float = 0.0
) -> OursRun:
    calls, pages = calls_and_pages(stands.sim)
    return OursRun(
        seconds=seconds,
        broker_calls=report.stats.broker_calls,
        sim_requests=stands.sim.count(),
        calls_started=calls,
        extra_pages=pages,
        firestore_reads=report.stats.firestore_reads,
        firestore_writes=report.stats.firestore_writes,
        firestore_round_trips=report.stats.firestore_round_trips,
        discord_posts=len(stands.sink.attempts),
        healed=report.reconciled_count,
        status=report.status.value,
        errors=list(report.errors),
        report_kb=len(report.model_dump_json()) / 1024,
        cpu_seconds=cpu,
    )


# Runs in the child: imports only the reconciler (not this harness, not the stand-ins), so the
# peak is the reconciler's own: interpreter + libraries + one run.
#
# The peak is VmHWM, not getrusage().ru_maxrss: Linux carries the parent's high-water mark
# across fork + exec into the child's ru_maxrss (signal->maxrss), so a child of this
# benchmark (which holds the simulator's world) reports the parent's RSS. Measured here: a
# child of a 300 MB parent reports ru_maxrss 310 MB and VmHWM 9 MB.
CHILD_RSS_SCRIPT = """
import contextlib, json, os, resource, time
from crypto_signals.bootstrap import build_reconciler
from crypto_signals.config import load_settings
from crypto_signals.logging_setup import configure_logging

def status(key):
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith(key + ":")) / 1024

with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
    configure_logging(json_format=True, level="INFO")
    reconciler = build_reconciler(load_settings())
    before = status("VmRSS")
    started = time.perf_counter()
    report = reconciler.reconcile(force=True)
    seconds = time.perf_counter() - started
print(json.dumps({"peak_mb": status("VmHWM"), "before_run_mb": before, "seconds": seconds,
                  "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "status": report.status.value}))
"""


def run_child_rss(stands: Stands, spec: WorldSpec) -> ChildRss:
    """One reconcile in a fresh process; its peak RSS (VmHWM) includes its imports."""
    stands.fresh_world(spec)
    env = {**os.environ, **stands.env()}
    out = subprocess.run(
        [sys.executable, "-c", CHILD_RSS_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return ChildRss(
        peak_mb=float(data["peak_mb"]),
        before_run_mb=float(data["before_run_mb"]),
        seconds=float(data["seconds"]),
        status=str(data["status"]),
        ru_maxrss_mb=float(data["ru_maxrss_mb"]),
    )


def run_naive(
    stands: Stands, spec: WorldSpec, net: Network, *, sample_every: int = 1
) -> tuple[float, NaiveStats]:
    """One naive run; with ``sample_every`` > 1 its per-candidate part is scaled to all."""
    stands.fresh_world(spec)
    db = _client(stands, net)
    naive = NaiveReconciler(
        api_key=BENCH_KEY,
        secret_key=BENCH_SECRET,
        base_url=net.broker_url,
        db=db,
        collection=COLLECTION,
        webhook_url=net.webhook_url,
        sample_every=sample_every,
    )
    with harness_frozen():
        started = time.perf_counter()
        stats = naive.reconcile(datetime.now(UTC))
        seconds = time.perf_counter() - started
    naive.close()
    _close(stands, db)
    if sample_every > 1:
        # Scale the per-candidate part to all candidates; the rest was done in full.
        scale = stats.zombie_candidates / max(1, stats.checked)
        seconds += stats.check_seconds * (scale - 1)
        heals = round(stats.heals * scale)
        stats = NaiveStats(
            broker_calls=1 + stats.zombie_candidates,
            firestore_reads=stats.firestore_reads - stats.checked + stats.zombie_candidates,
            firestore_writes=heals,
            firestore_round_trips=1 + stats.zombie_candidates + heals,
            discord_posts=stats.discord_posts,
            heals=heals,
            zombie_candidates=stats.zombie_candidates,
            orphans=stats.orphans,
            checked=stats.checked,
            check_seconds=stats.check_seconds * scale,
        )
    return seconds, stats


def measure_floor(
    stands: Stands, spec: WorldSpec, net: Network, repeat: int
) -> tuple[list[float], list[float]]:
    """The read every reconciler must make, and nothing else: the open book, streamed.

    The same query ours uses (status == OPEN, projected), documents counted but not parsed.
    No implementation of any design can finish faster than this on the same stand-in, so
    ``ours / floor`` is how far ours is from the best any design could do here. Returns the
    wall time and this process's CPU time of each read.
    """
    stands.fresh_world(spec)  # reading does not change it: one world serves every repetition
    db = _client(stands, net)
    query = (
        db.collection(COLLECTION)
        .where(filter=firestore.FieldFilter("status", "==", "OPEN"))
        .select(POSITION_FIELDS)
    )
    seconds: list[float] = []
    cpu: list[float] = []
    try:
        for _ in range(repeat):
            with harness_frozen():
                cpu_started = time.process_time()
                started = time.perf_counter()
                count = sum(1 for _ in query.stream())
                seconds.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_started)
            if count != spec.open_count:
                raise RuntimeError(f"floor read {count} open documents, seeded {spec.open_count}")
    finally:
        _close(stands, db)
    return seconds, cpu
