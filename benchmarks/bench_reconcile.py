"""Benchmark: the reconciler against a naive baseline on worlds of N positions.

Not a test. For each N it seeds a realistic book on the Firestore emulator and the Alpaca
simulator, times ``reconcile()`` several times (a fresh Firestore world for every run, since a
run heals), measures the peak RSS of one reconcile in a child process, times the naive
baseline (:mod:`benchmarks.naive_reconciler`) on the same world, then measures the HTTP
function's cold start (:mod:`benchmarks.cold_start`). It prints the tables, writes
``docs/perf-time-vs-n.png`` and the generated part of ``docs/performance.md``.

    .venv/bin/python benchmarks/bench_reconcile.py                # N = 10, 100, 1000, 10000
    .venv/bin/python benchmarks/bench_reconcile.py --quick        # N = 10, 100 (smoke run)
    .venv/bin/python benchmarks/bench_reconcile.py --sizes 10,1000 --repeat 3 --no-cold-start
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from google.cloud import firestore

from benchmarks.naive_reconciler import NaiveReconciler, NaiveStats
from crypto_signals.bootstrap import build_reconciler
from crypto_signals.config import load_settings
from crypto_signals.domain.schemas import Position, ReconciliationReport
from crypto_signals.engine.reconciler import StateReconciler
from crypto_signals.logging_setup import configure_logging
from crypto_signals.sandbox.alpaca_sim import AlpacaSimulator
from crypto_signals.sandbox.discord_sink import DiscordSink
from crypto_signals.sandbox.firestore_emulator import FirestoreEmulator
from crypto_signals.sandbox.scenarios import World, entry_order_id, position_doc

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
PLOT = ROOT / "docs" / "perf-time-vs-n.png"
COMMAND = ".venv/bin/python benchmarks/bench_reconcile.py"
COLLECTION = "test_positions"
BENCH_KEY = "PKBENCHKEY0123456789"
BENCH_SECRET = "bench-secret-0123456789abcdefghij"
HOUR = timedelta(hours=1)
MB = 1024 * 1024
# The fields ours reads (the projection of PositionRepository.get_open_positions).
POSITION_FIELDS = sorted(Position.model_fields)

# Naive runs longer than this (estimated from a measured subset) are extrapolated, not run.
NAIVE_FULL_RUN_BUDGET_S = 120.0

# The mix of a book of N positions (fractions of N); "matching" takes what is left.
MIX: tuple[tuple[str, float], ...] = (
    ("zombie_fill", 0.10),  # closed by a manual sell at the broker: healed from the fill
    ("zombie_unfilled", 0.05),  # entry order canceled before any fill: healed, P&L 0
    ("zombie_unverified", 0.05),  # gone at the broker, no evidence: kept OPEN, alerted
    ("young", 0.05),  # younger than the minimum age (half with a working entry order)
    ("theoretical", 0.05),  # THEORETICAL: never reached the broker, never touched
    ("drift", 0.05),  # half closed by hand at the broker: drift, explained by the fill
)
ORPHAN_SHARE = 0.05  # broker positions unknown to Firestore
DUST_SHARE = 0.01  # fee residue worth cents at the broker
# History: positions CLOSED in Firestore within the last 72 h (not counted in N), with their
# entry and take-profit fills at the broker. The reconciler reads their order ids (so their
# fills are not taken as evidence for another position) and lists their orders.
CLOSED_SHARE = 0.20
# Every matching position keeps a protective stop resting at the broker (crypto has no
# bracket orders at Alpaca, so the stop is a plain open order whose id is sl_order_id).
RESTING_STOP_SHARE = 1.0


# ----------------------------------------------------------------------------------------------
# The world


@dataclass
class WorldSpec:
    """One book of N positions: Firestore documents and broker state, built deterministically."""

    n: int
    now: datetime
    docs: list[dict[str, Any]] = field(default_factory=list)
    young_ids: set[str] = field(default_factory=set)
    positions: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def open_count(self) -> int:
        return sum(1 for d in self.docs if d.get("status") == "OPEN")

    @property
    def expected_heals(self) -> int:
        return self.counts["zombie_fill"] + self.counts["zombie_unfilled"]


def mix_counts(n: int) -> dict[str, int]:
    counts = {kind: max(1, round(share * n)) for kind, share in MIX}
    counts["matching"] = n - sum(counts.values())
    if counts["matching"] < 1:
        raise ValueError(f"N={n} is too small for the mix")
    counts["orphans"] = max(1, round(ORPHAN_SHARE * n))
    counts["dust"] = max(1, round(DUST_SHARE * n))
    counts["closed_history"] = max(1, round(CLOSED_SHARE * n))
    return counts


def build_world(n: int, now: datetime, account_id: str) -> WorldSpec:
    rng = random.Random(n)
    spec = WorldSpec(n=n, now=now, counts=mix_counts(n))
    next_symbol = iter(range(1_000_000))

    def symbol() -> str:
        return f"C{next(next_symbol):05d}/USD"

    def doc(pid: str, sym: str, qty: float, price: float, age: timedelta, **kw: Any) -> None:
        spec.docs.append(
            position_doc(pid, sym, qty, price, created_at=now - age, account_id=account_id, **kw)
        )

    def entry(
        pid: str, sym: str, qty: float, price: float, age: timedelta, status: str = "filled"
    ) -> None:
        filled = status == "filled"
        spec.orders.append(
            {
                "symbol": sym,
                "side": "buy",
                "qty": str(qty),
                "status": status,
                "id": entry_order_id(pid),
                "client_order_id": pid,
                "submitted_at": now - age,
                "filled_at": now - age if filled else None,
                "filled_avg_price": str(price) if filled else None,
                "order_type": "market" if filled else "limit",
                "limit_price": None if filled else str(price),
            }
        )

    def age() -> timedelta:
        return timedelta(minutes=rng.randint(30, 72 * 60))

    def price() -> float:
        return round(rng.uniform(1.0, 2000.0), 4)

    def qty() -> float:
        return round(rng.uniform(0.1, 50.0), 4)

    # Matching: open in both places; every fourth symbol carries two positions.
    made = 0
    while made < spec.counts["matching"]:
        sym = symbol()
        per_symbol = 2 if made % 4 == 0 and spec.counts["matching"] - made >= 2 else 1
        total = 0.0
        last_price = 0.0
        for _ in range(per_symbol):
            pid = f"sig-match-{made:06d}"
            q, p, a = qty(), price(), age()
            sl_id = None
            if rng.random() < RESTING_STOP_SHARE:
                sl_id = str(entry_order_id(pid + ":sl"))
                spec.orders.append(
                    {
                        "symbol": sym,
                        "side": "sell",
                        "qty": str(q),
                        "status": "new",
                        "id": sl_id,
                        "client_order_id": pid + ":sl",
                        "submitted_at": now - a + timedelta(seconds=5),
                        "order_type": "stop_limit",
                        "stop_price": str(round(p * 0.95, 4)),
                        "limit_price": str(round(p * 0.94, 4)),
                    }
                )
            doc(pid, sym, q, p, a, sl_order_id=sl_id)
            entry(pid, sym, q, p, a)
            total += q
            last_price = p
            made += 1
        spec.positions.append(
            {"symbol": sym, "qty": str(round(total, 4)), "avg_entry_price": str(last_price)}
        )

    for i in range(spec.counts["zombie_fill"]):
        pid, sym, q, p, a = f"sig-zfill-{i:06d}", symbol(), qty(), price(), age()
        doc(pid, sym, q, p, a)
        entry(pid, sym, q, p, a)
        closed_at = now - a * rng.uniform(0.05, 0.9)
        spec.orders.append(
            {
                "symbol": sym,
                "side": "sell",
                "qty": str(q),
                "status": "filled",
                "submitted_at": closed_at,
                "filled_at": closed_at,
                "filled_avg_price": str(round(p * rng.uniform(0.9, 1.1), 4)),
            }
        )

    for i in range(spec.counts["zombie_unfilled"]):
        pid, sym, q, p, a = f"sig-zunf-{i:06d}", symbol(), qty(), price(), age()
        doc(pid, sym, q, p, a, filled=False)
        entry(pid, sym, q, p, a, status="canceled")

    for i in range(spec.counts["zombie_unverified"]):
        pid, sym, q, p, a = f"sig-zunv-{i:06d}", symbol(), qty(), price(), age()
        doc(pid, sym, q, p, a)
        entry(pid, sym, q, p, a)

    for i in range(spec.counts["young"]):
        pid, sym, q, p = f"sig-young-{i:06d}", symbol(), qty(), price()
        a = timedelta(minutes=1)
        doc(pid, sym, q, p, a, filled=i % 2 == 1)
        spec.young_ids.add(pid)
        if i % 2 == 0:
            entry(pid, sym, q, p, a, status="new")  # still working: pending
        else:
            entry(pid, sym, q, p, a)
            spec.positions.append({"symbol": sym, "qty": str(q), "avg_entry_price": str(p)})

    for i in range(spec.counts["theoretical"]):
        pid, sym = f"sig-theo-{i:06d}", symbol()
        doc(pid, sym, qty(), price(), age(), trade_type="THEORETICAL")

    for i in range(spec.counts["drift"]):
        pid, sym, q, p, a = f"sig-drift-{i:06d}", symbol(), qty(), price(), age()
        doc(pid, sym, q, p, a)
        entry(pid, sym, q, p, a)
        half = round(q / 2, 4)
        sold_at = now - a * 0.5
        spec.orders.append(
            {
                "symbol": sym,
                "side": "sell",
                "qty": str(half),
                "status": "filled",
                "submitted_at": sold_at,
                "filled_at": sold_at,
                "filled_avg_price": str(p),
            }
        )
        spec.positions.append(
            {"symbol": sym, "qty": str(round(q - half, 4)), "avg_entry_price": str(p)}
        )

    for _ in range(spec.counts["orphans"]):
        sym, q, p, a = symbol(), qty(), price(), age()
        spec.positions.append({"symbol": sym, "qty": str(q), "avg_entry_price": str(p)})
        spec.orders.append(
            {
                "symbol": sym,
                "side": "buy",
                "qty": str(q),
                "status": "filled",
                "submitted_at": now - a,
                "filled_at": now - a,
                "filled_avg_price": str(p),
            }
        )

    for i in range(spec.counts["closed_history"]):
        pid, sym, q, p, a = f"sig-closed-{i:06d}", symbol(), qty(), price(), age()
        exit_at = now - a * rng.uniform(0.05, 0.9)
        exit_price = round(p * rng.uniform(1.01, 1.1), 4)
        tp_id = str(entry_order_id(pid + ":tp"))
        doc(
            pid,
            sym,
            q,
            p,
            a,
            status="CLOSED",
            tp_order_id=tp_id,
            exit_fill_price=exit_price,
            exit_time=exit_at,
            exit_reason="TP1",
            exit_order_id=tp_id,
            realized_pnl_usd=round((exit_price - p) * q, 2),
        )
        entry(pid, sym, q, p, a)
        spec.orders.append(
            {
                "symbol": sym,
                "side": "sell",
                "qty": str(q),
                "status": "filled",
                "id": tp_id,
                "client_order_id": pid + ":tp",
                "submitted_at": now - a + timedelta(seconds=5),
                "filled_at": exit_at,
                "filled_avg_price": str(exit_price),
                "order_type": "limit",
                "limit_price": str(exit_price),
            }
        )

    for _ in range(spec.counts["dust"]):
        spec.positions.append(
            {"symbol": symbol(), "qty": "0.0004", "avg_entry_price": "150", "current_price": "149"}
        )
    return spec


@contextlib.contextmanager
def _unique_ids_trusted(sim: AlpacaSimulator) -> Iterator[None]:
    """Skip the simulator's duplicate client_order_id check while seeding.

    ``AlpacaSimulator.add_order`` checks uniqueness with a linear scan over every order
    (``_find_by_client_id``), which makes seeding quadratic: 42 s for the 16,000 orders of
    N = 10,000. The spec's ids are unique by construction (checked below), so the scan is
    replaced for the duration of the seeding only.
    """
    original = sim.__dict__.get("_find_by_client_id")
    setattr(sim, "_find_by_client_id", lambda _cid: None)  # noqa: B010 - instance override
    try:
        yield
    finally:
        if original is None:
            del sim.__dict__["_find_by_client_id"]
        else:
            setattr(sim, "_find_by_client_id", original)  # noqa: B010


def seed_broker(sim: AlpacaSimulator, spec: WorldSpec) -> None:
    """The simulator is read-only to the reconciler: seeded once per N, reused by every run."""
    cids = [str(o["client_order_id"]) for o in spec.orders if o.get("client_order_id")]
    ids = [str(o["id"]) for o in spec.orders if o.get("id")]
    if len(set(cids)) != len(cids) or len(set(ids)) != len(ids):
        raise ValueError("the world spec has duplicate order ids")
    sim.reset()
    for position in spec.positions:
        sim.add_position(**position)
    with _unique_ids_trusted(sim):
        for order in spec.orders:
            sim.add_order(**order)


def seed_firestore(db: firestore.Client, sim: AlpacaSimulator, spec: WorldSpec) -> None:
    """A fresh Firestore world (a run heals, so every timed run needs its own)."""
    # Young positions are young relative to the run, not to when the spec was built.
    young_at = datetime.now(UTC) - timedelta(minutes=1)
    docs = [
        {**d, "created_at": young_at, "filled_at": young_at if d["filled_at"] else None}
        if d["position_id"] in spec.young_ids
        else d
        for d in spec.docs
    ]
    chunks = [docs[i : i + 400] for i in range(0, len(docs), 400)]
    # A few commits in flight at once: seeding is not timed, but it is most of the wall clock.
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda chunk: World(db, sim, COLLECTION).positions(chunk), chunks))


# ----------------------------------------------------------------------------------------------
# The stand-ins


@dataclass
class Stands:
    emulator: FirestoreEmulator
    sim: AlpacaSimulator
    sink: DiscordSink
    db: firestore.Client

    @classmethod
    def start(cls) -> Stands:
        emulator = FirestoreEmulator(project="demo-crypto-signals-bench").start()
        sim = AlpacaSimulator(api_key=BENCH_KEY, secret_key=BENCH_SECRET).start()
        sink = DiscordSink().start()
        return cls(emulator, sim, sink, emulator.client())

    def stop(self) -> None:
        self.sink.stop()
        self.sim.stop()
        self.emulator.stop()

    def env(self) -> dict[str, str]:
        """What a deployed reconciler would have, pointed at the stand-ins (default tunables)."""
        return {
            "ENVIRONMENT": "DEV",
            "RECONCILER_ENABLED": "true",
            "GOOGLE_CLOUD_PROJECT": self.emulator.project,
            "FIRESTORE_EMULATOR_HOST": self.emulator.address,
            "ALPACA_API_KEY": BENCH_KEY,
            "ALPACA_SECRET_KEY": BENCH_SECRET,
            "ALPACA_BASE_URL": self.sim.base_url,
            "DISCORD_WEBHOOK_URL": self.sink.webhook_url,
        }

    def reconciler(self) -> StateReconciler:
        return build_reconciler(load_settings(self.env()), client=self.db)

    def naive(self) -> NaiveReconciler:
        return NaiveReconciler(
            api_key=BENCH_KEY,
            secret_key=BENCH_SECRET,
            base_url=self.sim.base_url,
            db=self.db,
            collection=COLLECTION,
            webhook_url=self.sink.webhook_url,
        )

    def fresh_world(self, spec: WorldSpec) -> None:
        self.emulator.clear()
        seed_firestore(self.db, self.sim, spec)
        self.sim.clear_requests()
        self.sink.reset()


# ----------------------------------------------------------------------------------------------
# A network with latency (optional): a TCP proxy that delays every chunk by half the RTT


class DelayProxy:
    """Forwards TCP to ``upstream``, delaying each chunk by ``rtt / 2`` in each direction.

    Chunks are pipelined (a chunk is not held up by the one before it beyond its own delay),
    so a request/response exchange costs one RTT and a stream costs one RTT plus transfer:
    the shape of a real network path, which loopback does not have.
    """

    def __init__(self, upstream: tuple[str, int], rtt_seconds: float) -> None:
        import socket
        import threading

        self._upstream = upstream
        self._delay = rtt_seconds / 2
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stopping = threading.Event()
        threading.Thread(target=self._accept, name="delay-proxy", daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        import socket

        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=10)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._pipe(client, upstream)
            self._pipe(upstream, client)

    def _pipe(self, source: Any, dest: Any) -> None:
        import queue
        import socket
        import threading

        chunks: queue.Queue[tuple[float, bytes]] = queue.Queue()

        def read() -> None:
            while True:
                try:
                    data = source.recv(65536)
                except OSError:
                    data = b""
                chunks.put((time.monotonic() + self._delay, data))
                if not data:
                    return

        def write() -> None:
            while True:
                due, data = chunks.get()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    if not data:
                        dest.shutdown(socket.SHUT_WR)
                        return
                    dest.sendall(data)
                except OSError:
                    return

        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=write, daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


@dataclass(frozen=True)
class Rtt:
    """Modelled round-trip time to each service, in milliseconds."""

    firestore: float
    alpaca: float
    discord: float

    @classmethod
    def parse(cls, text: str) -> Rtt:
        """``20`` (every service) or ``firestore=10,alpaca=50,discord=80`` (unnamed: 0)."""
        try:
            if "=" not in text:
                each = float(text)
                return cls(each, each, each)
            parts = dict(item.split("=", 1) for item in text.split(",") if item.strip())
            unknown = set(parts) - {"firestore", "alpaca", "discord"}
            if unknown:
                raise ValueError(f"unknown service(s): {', '.join(sorted(unknown))}")
            ms = {"firestore": 0.0, "alpaca": 0.0, "discord": 0.0}
            ms.update((k, float(v)) for k, v in parts.items())
            return cls(**ms)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(
                f"--rtt-ms {text!r}: {exc}; use e.g. 20 or firestore=10,alpaca=50,discord=80"
            ) from None

    def __bool__(self) -> bool:
        return any((self.firestore, self.alpaca, self.discord))

    @property
    def label(self) -> str:
        if self.firestore == self.alpaca == self.discord:
            return f"{self.firestore:g} ms each"
        return f"Firestore {self.firestore:g}, Alpaca {self.alpaca:g}, Discord {self.discord:g} ms"


NO_RTT = Rtt(0.0, 0.0, 0.0)


@dataclass
class Network:
    """Where the reconcilers reach the stand-ins: directly, or through delay proxies."""

    rtt: Rtt
    firestore_host: str
    broker_url: str
    webhook_url: str
    proxies: list[DelayProxy] = field(default_factory=list)

    @classmethod
    def direct(cls, stands: Stands) -> Network:
        return cls(NO_RTT, stands.emulator.address, stands.sim.base_url, stands.sink.webhook_url)

    @classmethod
    def delayed(cls, stands: Stands, rtt: Rtt) -> Network:
        from urllib.parse import urlsplit

        fs = DelayProxy(_host_port(stands.emulator.address), rtt.firestore / 1000)
        sim = DelayProxy(_host_port(urlsplit(stands.sim.base_url).netloc), rtt.alpaca / 1000)
        sink_parts = urlsplit(stands.sink.webhook_url)
        sink = DelayProxy(_host_port(sink_parts.netloc), rtt.discord / 1000)
        return cls(
            rtt,
            fs.address,
            f"http://{sim.address}",
            sink_parts._replace(netloc=sink.address).geturl(),
            [fs, sim, sink],
        )

    def client(self, project: str) -> firestore.Client:
        previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = self.firestore_host
        try:
            return firestore.Client(project=project)
        finally:
            if previous is not None:
                os.environ["FIRESTORE_EMULATOR_HOST"] = previous

    def stop(self) -> None:
        for proxy in self.proxies:
            proxy.stop()


# ----------------------------------------------------------------------------------------------
# Measurements


@dataclass
class OursRun:
    seconds: float
    broker_calls: int
    sim_requests: int
    listings: int  # GET /v2/orders listings started (a page continuing one is not counted)
    firestore_reads: int
    firestore_writes: int
    firestore_round_trips: int
    discord_posts: int
    healed: int
    status: str
    errors: list[str]
    report_kb: float  # the report as JSON; RunLog stores it as one Firestore document (1 MiB max)


@dataclass
class ChildRss:
    peak_mb: float  # VmHWM of the child
    before_run_mb: float  # VmRSS after imports and building the reconciler
    seconds: float
    status: str
    ru_maxrss_mb: float  # inherits the parent's high-water mark: shown, not used


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


def _orders_listings(sim: AlpacaSimulator) -> tuple[int, int]:
    """(listings, extra pages): a request whose ``after`` continues the previous one is a page."""
    listings = pages = 0
    previous: str | None = None
    for request in sim.requests:
        if request.endpoint != "orders":
            continue
        status = (request.query.get("status") or ["open"])[-1]
        if status == previous:
            pages += 1
        else:
            listings += 1
        previous = status
    return listings, pages


def run_ours(stands: Stands, spec: WorldSpec, net: Network) -> OursRun:
    stands.fresh_world(spec)
    env = {
        **stands.env(),
        "FIRESTORE_EMULATOR_HOST": net.firestore_host,
        "ALPACA_BASE_URL": net.broker_url,
        "DISCORD_WEBHOOK_URL": net.webhook_url,
    }
    db = stands.db if not net.proxies else net.client(stands.emulator.project)
    reconciler = build_reconciler(load_settings(env), client=db)
    started = time.perf_counter()
    report = reconciler.reconcile(force=True)
    seconds = time.perf_counter() - started
    listings, _pages = _orders_listings(stands.sim)
    if db is not stands.db:
        db.close()  # type: ignore[no-untyped-call]
    return _ours_run(report, seconds, stands, listings)


def _ours_run(
    report: ReconciliationReport, seconds: float, stands: Stands, listings: int
) -> OursRun:
    return OursRun(
        seconds=seconds,
        broker_calls=report.stats.broker_calls,
        sim_requests=stands.sim.count(),
        listings=listings,
        firestore_reads=report.stats.firestore_reads,
        firestore_writes=report.stats.firestore_writes,
        firestore_round_trips=report.stats.firestore_round_trips,
        discord_posts=len(stands.sink.attempts),
        healed=report.reconciled_count,
        status=report.status.value,
        errors=list(report.errors),
        report_kb=len(report.model_dump_json()) / 1024,
    )


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


def run_naive(
    stands: Stands, spec: WorldSpec, net: Network, *, sample_every: int = 1
) -> tuple[float, NaiveStats]:
    stands.fresh_world(spec)
    db = stands.db if not net.proxies else net.client(stands.emulator.project)
    naive = NaiveReconciler(
        api_key=BENCH_KEY,
        secret_key=BENCH_SECRET,
        base_url=net.broker_url,
        db=db,
        collection=COLLECTION,
        webhook_url=net.webhook_url,
        sample_every=sample_every,
    )
    started = time.perf_counter()
    stats = naive.reconcile(datetime.now(UTC))
    seconds = time.perf_counter() - started
    naive.close()
    if db is not stands.db:
        db.close()  # type: ignore[no-untyped-call]
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


_NULL_STREAM: Any = None


def quiet_logging() -> None:
    """Production logging (JSON lines, INFO), written to /dev/null: formatted, not shown."""
    global _NULL_STREAM
    if _NULL_STREAM is None:
        _NULL_STREAM = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - process-long
    with contextlib.redirect_stderr(_NULL_STREAM):
        configure_logging(json_format=True, level="INFO")


# ----------------------------------------------------------------------------------------------
# Where the time goes: wall time spent inside the reconciler's collaborators, per phase

# (label, "module:Class.method" or "module:function" under crypto_signals)
PHASES: tuple[tuple[str, str], ...] = (
    ("Firestore: lease acquire", "repository.reconciler_state:RunLease.acquire"),
    ("Firestore: open positions ∥", "repository.firestore:PositionRepository.get_open_positions"),
    ("broker: account, positions, open orders ∥", "broker.alpaca:AlpacaBroker.fetch_state"),
    ("broker: closed orders (evidence) ∥", "broker.alpaca:AlpacaBroker.fetch_closed_orders"),
    ("plan: evidence_query()", "engine.reconciler:evidence_query"),
    (
        "Firestore: closed claims ∥",
        "repository.firestore:PositionRepository.get_closed_order_claims",
    ),
    ("plan: plan_reconciliation()", "engine.reconciler:plan_reconciliation"),
    ("Firestore: write heals", "repository.firestore:PositionRepository.apply_heals"),
    ("Firestore: outbox read ∥", "repository.firestore:PositionRepository.get_unannounced_heals"),
    ("Firestore: alert states load ∥", "repository.reconciler_state:AlertStateStore.load"),
    (
        "Firestore: alert states save (x2; the 2nd ∥)",
        "repository.reconciler_state:AlertStateStore.save",
    ),
    ("Discord: send", "notifications.discord:DiscordWebhookClient.send"),
    ("Firestore: mark heals announced ∥", "repository.firestore:PositionRepository.mark_announced"),
    ("Firestore: run log", "repository.reconciler_state:RunLog.record"),
    ("Firestore: lease release", "repository.reconciler_state:RunLease.release"),
)
OTHER_PHASE = "other (report, logging, alert decisions, rendering)"
WALL = "wall time of the run"


class PhaseTimer:
    """Wraps the collaborators' entry points while active and adds up the time spent in each.

    Diagnostics only: a name that no longer exists (the code moved) is skipped, not an error.
    """

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.intervals: list[tuple[float, float]] = []
        self._undo: list[Callable[[], None]] = []

    def __enter__(self) -> PhaseTimer:
        import importlib

        for label, where in PHASES:
            module_name, _, qualname = where.partition(":")
            owner: Any = importlib.import_module(f"crypto_signals.{module_name}")
            *path, attr = qualname.split(".")
            for name in path:
                owner = getattr(owner, name, None)
            original = getattr(owner, attr, None) if owner is not None else None
            if original is None:
                continue
            setattr(owner, attr, self._wrap(label, original))
            self._undo.append(functools.partial(setattr, owner, attr, original))
        return self

    def __exit__(self, *exc: object) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def _wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                ended = time.perf_counter()
                self.totals[label] = self.totals.get(label, 0.0) + ended - started
                self.intervals.append((started, ended))

        return timed

    def take(self, total: float) -> dict[str, float]:
        """Time per phase, plus 'other': the wall time during which no phase ran.

        Phases marked ∥ run at the same time as another, so the phases add up to more than
        the wall time; 'other' is computed from the union of the intervals, not the sum.
        """
        out = dict(self.totals)
        out[OTHER_PHASE] = max(0.0, total - _union_length(self.intervals))
        out[WALL] = total
        self.totals = {}
        self.intervals = []
        return out


def _union_length(intervals: Sequence[tuple[float, float]]) -> float:
    covered = 0.0
    end = -math.inf
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        covered += stop - max(start, end)
        end = stop
    return covered


# ----------------------------------------------------------------------------------------------
# The run


@dataclass
class SizeResult:
    n: int
    spec_counts: dict[str, int]
    ours: OursResult
    naive: NaiveResult
    phases: dict[str, float]
    floor: list[float]

    @property
    def floor_median(self) -> float:
        return statistics.median(self.floor)


@dataclass
class WanResult:
    rtt: Rtt
    n: int
    ours: list[float]
    naive: list[float]
    naive_stats: NaiveStats
    ours_run: OursRun
    floor: list[float]


def _median_index(values: Sequence[float]) -> int:
    target = statistics.median(values)
    return min(range(len(values)), key=lambda i: abs(values[i] - target))


def candidates_of(spec: WorldSpec) -> int:
    c = spec.counts
    return c["zombie_fill"] + c["zombie_unfilled"] + c["zombie_unverified"]


def measure_floor(stands: Stands, spec: WorldSpec, net: Network, repeat: int) -> list[float]:
    """The read every reconciler must make, and nothing else: the open book, streamed.

    The same query ours uses (status == OPEN, projected), documents counted but not parsed.
    No implementation of any design can finish faster than this on the same stand-in, so
    ``naive / floor`` is the largest speed-up the stand-in can show.
    """
    stands.fresh_world(spec)  # reading does not change it: one world serves every repetition
    db = stands.db if not net.proxies else net.client(stands.emulator.project)
    query = (
        db.collection(COLLECTION)
        .where(filter=firestore.FieldFilter("status", "==", "OPEN"))
        .select(POSITION_FIELDS)
    )
    seconds: list[float] = []
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            count = sum(1 for _ in query.stream())
            seconds.append(time.perf_counter() - started)
            if count != spec.open_count:
                raise RuntimeError(f"floor read {count} open documents, seeded {spec.open_count}")
    finally:
        if db is not stands.db:
            db.close()  # type: ignore[no-untyped-call]
    return seconds


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
    big = n >= 10_000
    ours_reps = min(repeat, 3) if big else repeat
    naive_reps = 1 if big else repeat

    runs: list[OursRun] = []
    phases: list[dict[str, float]] = []
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
    ours = OursResult(n, runs)
    if rss:
        ours.rss = run_child_rss(stands, spec)
        _progress(f"N={n}: child peak RSS {ours.rss.peak_mb:.0f} MB")

    sample_every = 1
    if previous is not None and not naive_full and previous.naive.stats.checked:
        per_candidate = previous.naive.stats.check_seconds / previous.naive.stats.zombie_candidates
        projected = per_candidate * candidates_of(spec)
        if projected > NAIVE_FULL_RUN_BUDGET_S:
            sample_every = math.ceil(projected / (NAIVE_FULL_RUN_BUDGET_S / 3))
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
    floor = measure_floor(stands, spec, net, ours_reps)
    _progress(f"N={n}: floor (stream the open book only) {statistics.median(floor):.2f}s")
    phase = phases[_median_index([r.seconds for r in runs])]
    return SizeResult(n, spec.counts, ours, naive, phase, floor)


def measure_wan(stands: Stands, n: int, rtt: Rtt, repeat: int) -> WanResult:
    spec = build_world(n, datetime.now(UTC).replace(microsecond=0), stands.sim.account_id)
    seed_broker(stands.sim, spec)
    net = Network.delayed(stands, rtt)
    try:
        ours_runs = [run_ours(stands, spec, net) for _ in range(repeat)]
        naive_runs = [run_naive(stands, spec, net) for _ in range(1)]
        floor = measure_floor(stands, spec, net, repeat)
    finally:
        net.stop()
    _progress(
        f"N={n}, RTT {rtt.label}: ours {statistics.median(r.seconds for r in ours_runs):.2f}s, "
        f"naive {naive_runs[0][0]:.2f}s"
    )
    return WanResult(
        rtt,
        n,
        [r.seconds for r in ours_runs],
        [s for s, _ in naive_runs],
        naive_runs[-1][1],
        ours_runs[-1],
        floor,
    )


def _progress(message: str) -> None:
    print(f"  .. {message}", flush=True)


# ----------------------------------------------------------------------------------------------
# Tables, targets, plot, document


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        rest = (c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))
        return "| " + " | ".join([row[0].ljust(widths[0]), *rest]) + " |"

    rule = "|:" + "-" * (widths[0] + 1) + "|" + "|".join("-" * (w + 1) + ":" for w in widths[1:])
    rule += "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _s(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"


def ours_table(results: Sequence[SizeResult]) -> str:
    rows = []
    for r in results:
        o, last = r.ours, r.ours.last
        times = [x.seconds for x in o.runs]
        rows.append(
            [
                f"{r.n:,}",
                len(o.runs),
                _s(o.median),
                f"{_s(min(times))}-{_s(max(times))}",
                last.broker_calls,
                last.sim_requests,
                f"{2 + last.listings} + {last.broker_calls - 2 - last.listings}",
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
                _s(nv.median),
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
                f"{r.ours.median / r.naive.median:.2f}",
                f"{r.naive.median / r.ours.median:.1f}x",
                f"{_s(r.floor_median)}",
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
            "time ours/naive",
            "speed-up",
            "floor (s)",
            "naive/floor: most any design can show",
            "broker calls ours/naive",
            "FS round trips ours/naive",
            "FS writes ours/naive",
            "Discord posts ours/naive",
        ],
        rows,
    )


def phase_table(results: Sequence[SizeResult]) -> str:
    labels = [label for label, _ in PHASES] + [OTHER_PHASE]
    rows = []
    for label in labels:
        cells: list[object] = [label]
        for r in results:
            seconds = r.phases.get(label, 0.0)
            total = r.phases.get(WALL, 0.0)
            cells.append(f"{seconds:.3f} ({seconds / total:.0%})" if total else "-")
        rows.append(cells)
    rows.append([WALL, *(f"{r.phases.get(WALL, 0.0):.3f}" for r in results)])
    return md_table(["phase (s, share)", *(f"N={r.n:,}" for r in results)], rows)


def wan_table(wan: Sequence[WanResult]) -> str:
    rows = []
    for w in wan:
        ours, naive = statistics.median(w.ours), statistics.median(w.naive)
        rows.append(
            [
                w.rtt.label,
                f"{w.n:,}",
                f"{_s(ours)} ({len(w.ours)} runs)",
                f"{_s(naive)} ({len(w.naive)} run)",
                f"{naive / ours:.1f}x",
                f"{_s(statistics.median(w.floor))}",
                f"{naive / statistics.median(w.floor):.1f}x",
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
            "naive (s)",
            "speed-up",
            "floor (s)",
            "naive/floor",
            "broker calls ours/naive",
            "FS round trips ours/naive",
            "Discord posts ours/naive",
        ],
        rows,
    )


def cold_table(cold: Any) -> str:
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


@dataclass
class Target:
    name: str
    figure: str
    met: bool | None


def evaluate_targets(
    results: Sequence[SizeResult], cold: Any, wan: Sequence[WanResult]
) -> list[Target]:
    by_n = {r.n: r for r in results}
    targets: list[Target] = []

    fixed = [2 + r.ours.last.listings for r in results]
    totals = ", ".join(f"{r.ours.last.broker_calls} at N={r.n:,}" for r in results)
    targets.append(
        Target(
            "broker calls per run bounded by a small constant (pagination aside)",
            f"{max(fixed)} calls (account, positions, 2 order listings) at every N; "
            f"with extra pages: {totals}",
            bool(results) and max(fixed) <= 4,
        )
    )

    if results:
        smallest = results[0].ours.last
        base = smallest.firestore_round_trips - math.ceil(smallest.firestore_writes / 200)
        ok = all(
            r.ours.last.firestore_round_trips
            <= base + math.ceil(r.ours.last.firestore_writes / 200)
            for r in results
        )
        figure = "; ".join(
            f"N={r.n:,}: {r.ours.last.firestore_round_trips} round trips for "
            f"{r.ours.last.firestore_writes:,} writes"
            for r in results
        )
        targets.append(
            Target(
                "Firestore round trips grow only with writes / batch size",
                f"{figure} (bound: {base} + ⌈writes/200⌉)",
                ok,
            )
        )

    if 1000 in by_n:
        r = by_n[1000]
        speedup = r.naive.median / r.ours.median
        figure = (
            f"{speedup:.1f}x on loopback ({_s(r.ours.median)} s vs {_s(r.naive.median)} s); "
            f"streaming the open book and nothing else takes {_s(r.floor_median)} s here, so "
            f"no design can show more than {r.naive.median / r.floor_median:.1f}x on this "
            "stand-in"
        )
        for w in wan:
            if w.n == 1000:
                ws = statistics.median(w.naive) / statistics.median(w.ours)
                cap = statistics.median(w.naive) / statistics.median(w.floor)
                figure += f"; with RTT {w.rtt.label}: {ws:.1f}x (most possible: {cap:.1f}x)"
        targets.append(Target("N = 1,000 at least 10x faster than naive", figure, speedup >= 10))
    else:
        targets.append(Target("N = 1,000 at least 10x faster than naive", "not run", None))

    big = by_n.get(10_000)
    if big is not None and big.ours.rss is not None:
        targets.append(
            Target(
                "peak RSS at N = 10,000 under 200 MB",
                f"{big.ours.rss.peak_mb:.0f} MB VmHWM (process before the run: "
                f"{big.ours.rss.before_run_mb:.0f} MB; its ru_maxrss, inherited from this "
                f"benchmark's process, says {big.ours.rss.ru_maxrss_mb:.0f} MB)",
                big.ours.rss.peak_mb < 200,
            )
        )
    else:
        targets.append(Target("peak RSS at N = 10,000 under 200 MB", "not run", None))

    if cold is not None:
        targets.append(
            Target(
                "HTTP function cold start within 20% of a bare process",
                f"{cold.ours_median * 1000:.0f} ms vs {cold.bare_median * 1000:.0f} ms "
                f"(ratio {cold.ratio:.2f}; {cold.overhead_ratio:.2f} against a bare process "
                "that also defers pandas)",
                cold.ratio <= 1.2,
            )
        )
    else:
        targets.append(Target("HTTP function cold start within 20% of bare", "not run", None))
    return targets


def targets_table(targets: Sequence[Target]) -> str:
    verdict = {True: "met", False: "**missed**", None: "not measured"}
    return md_table(
        ["target", "measured", "verdict"], [[t.name, t.figure, verdict[t.met]] for t in targets]
    )


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
            f"naive/ours {r.naive.median / r.ours.median:.1f}x",
            (r.n, r.ours.median),
            textcoords="offset points",
            xytext=(6, -14),
            fontsize=9,
        )
    for w in wan:
        ax1.plot(
            [w.n],
            [statistics.median(w.ours)],
            marker="^",
            color="tab:blue",
            linestyle="none",
            label=f"ours, RTT {w.rtt.label} (modelled)",
        )
        ax1.plot(
            [w.n],
            [statistics.median(w.naive)],
            marker="^",
            color="tab:red",
            linestyle="none",
            label=f"naive, RTT {w.rtt.label} (modelled)",
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


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def code_state() -> str:
    """The code under test: commit, and a digest of uncommitted changes in src/ and functions/."""
    import hashlib

    commit = _git("rev-parse", "--short", "HEAD") or "?"
    changes = _git("status", "--porcelain", "--", "src", "functions")
    if not changes:
        return f"commit {commit}"
    digest = hashlib.sha256((changes + _git("diff", "HEAD", "--", "src", "functions")).encode())
    return (
        f"commit {commit} plus uncommitted changes in src/ or functions/ ({digest.hexdigest()[:8]})"
    )


def machine_lines(code_at_start: str, code_at_end: str) -> list[str]:
    from importlib import metadata

    def first(path: str, prefix: str) -> str:
        try:
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith(prefix):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"

    mem_kb = first("/proc/meminfo", "MemTotal").split()[0]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = ", ".join(
        f"{pkg} {metadata.version(pkg)}"
        for pkg in ("alpaca-py", "google-cloud-firestore", "functions-framework", "grpcio")
    )

    code = code_at_start
    if code_at_end != code_at_start:
        code += f" **(changed during the run, now {code_at_end}: results may mix both)**"
    return [
        f"- code under test: {code}",
        f"- CPU: {first('/proc/cpuinfo', 'model name')}, `nproc` = {cores}",
        f"- memory: {int(mem_kb) / 1024 / 1024:.1f} GiB" if mem_kb.isdigit() else "- memory: ?",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()}; {versions}",
        "- Firestore: the Cloud SDK emulator (Java) on loopback; Alpaca: the in-process simulator "
        "(`crypto_signals.sandbox.alpaca_sim`); Discord: the in-process sink",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    ]


BEGIN = "<!-- BEGIN GENERATED by benchmarks/bench_reconcile.py: do not edit by hand -->"
END = "<!-- END GENERATED -->"


def generated_block(
    results: Sequence[SizeResult],
    wan: Sequence[WanResult],
    cold: Any,
    targets: Sequence[Target],
    args: argparse.Namespace,
    elapsed: float,
    code: tuple[str, str],
) -> str:
    counts = results[-1].spec_counts if results else mix_counts(1000)
    n = results[-1].n if results else 1000
    mix = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items())
    parts = [
        BEGIN,
        "",
        "## Machine",
        "",
        *machine_lines(*code),
        "",
        "## Command",
        "",
        "```sh",
        COMMAND + ("" if not args.argv else " " + " ".join(args.argv)),
        "```",
        "",
        f"The whole run took {elapsed / 60:.1f} minutes. `--quick` runs N = 10 and 100 only; "
        "`--sizes 10,1000 --repeat 3` picks sizes and repetitions; `--no-cold-start`, "
        "`--no-wan`, `--no-rss` skip those parts; `--rtt-ms` sets the latency run's RTT, "
        "for every service (`--rtt-ms 20`) or each (`--rtt-ms "
        "firestore=10,alpaca=50,discord=80`), so the comparison can be rerun with the "
        "latencies measured in production.",
        "",
        "## Method",
        "",
        f"- World of N open positions (N = {n:,}: {mix}). Orphans and dust are broker "
        "positions unknown to Firestore; the closed history is positions CLOSED in Firestore "
        "in the last 72 h (not counted in N) with their entry and take-profit fills at the "
        "broker. Every position has its entry order at the broker; every matching "
        "position has its stop resting at the broker as an open order (`sl_order_id`); symbols "
        "are distinct (`C00000/USD`, ...), every fourth matching symbol holds two positions.",
        "- Each timed run gets a fresh Firestore world (`emulator.clear()` and a batched re-seed); "
        "the simulator is seeded once per N (the reconciler never writes to the broker). Only "
        "`reconcile()` is timed; the reconciler is built (as `bootstrap.build_reconciler`, "
        "default tunables) before the clock starts.",
        "- Ours runs with `force=True`: the default heal limit (25 per run) would refuse most "
        "heals at N >= 1,000 and make the writes incomparable with the baseline, which heals "
        "them all.",
        f"- Repetitions: ours {args.repeat} runs per N (3 at N = 10,000), naive {args.repeat} "
        "(1 at N = 10,000); the median is reported. A warm-up run of each at N = 10 is "
        "discarded. Counts are those of the last run (they do not vary between runs).",
        "- Naive at N = 10,000: when the time projected from N = 1,000 exceeds "
        f"{NAIVE_FULL_RUN_BUDGET_S:.0f} s, only every k-th zombie candidate is checked and the "
        "per-candidate time and counts are scaled to all candidates (marked *extrapolated*).",
        "- Peak RSS: one reconcile in a child process per N that imports only the reconciler; "
        "the peak is the child's `VmHWM` (/proc/self/status), so it includes the interpreter "
        "and its imports; 'RSS before run' is its RSS after building the reconciler. Not "
        "`ru_maxrss`: Linux carries the parent's high-water mark across fork + exec into the "
        "child's `ru_maxrss` (a child of a 300 MB parent reports 310 MB; its `VmHWM` is 9 MB).",
        "- Broker calls are the reconciler's own count; 'sim requests' is the simulator's "
        "request log for the same run (a cross-check). 'calls + extra pages': calls that "
        "start something (account, positions, the open-orders and the closed-orders "
        "listing) + further pages of those listings (500 orders each).",
        "- 'report (KiB)': the report as JSON. `RunLog` stores it as one Firestore document, "
        "whose limit is 1 MiB.",
        "- Logging is the production configuration (JSON lines, INFO) written to /dev/null.",
        "- The simulator is seeded with its duplicate-id check bypassed (it is a linear scan "
        "per order, which made seeding N = 10,000 take 42 s); the ids are checked unique first.",
        "",
        "## Results (loopback)",
        "",
        "### Ours",
        "",
        ours_table(results),
        "",
        "### Naive baseline",
        "",
        naive_table(results),
        "",
        "### Ratios",
        "",
        ratio_table(results),
        "",
        "![time vs N](perf-time-vs-n.png)",
        "",
        "### Where ours spends its time (median run)",
        "",
        "Wall time inside each collaborator call, measured by wrapping them during the timed "
        "runs (`PhaseTimer`). Calls marked ∥ run at the same time as their pair (the reads "
        "of step 2, the evidence listing and the closed positions' order ids, the outbox and "
        "the alert states, clearing both after delivery), so the shares add up to more than "
        "100%; 'other' is the time during which no call ran.",
        "",
        phase_table(results),
        "",
    ]
    if wan:
        parts += [
            "## With network latency (modelled)",
            "",
            "Loopback has no latency, which hides what round trips cost. Here every connection "
            "to the emulator, the simulator and the sink goes through a TCP proxy that delays "
            "each chunk by half the RTT in each direction (`DelayProxy`); the rest is "
            "identical.",
            "",
            wan_table(wan),
            "",
        ]
    if cold is not None:
        parts += [
            "## Cold start of the HTTP function",
            "",
            "Process start (`Popen`) to the first HTTP 200, polling every 10 ms; alternated, "
            "after one discarded warm-up of each (`benchmarks/cold_start.py`).",
            "",
            cold_table(cold),
            "",
            f"Ratio ours/bare: **{cold.ratio:.2f}** (issue 5's measure). Ours is faster than the "
            "bare process because it imports alpaca-py without pandas "
            "(`crypto_signals/broker/deferred_pandas.py`). Against a bare process that does the "
            f"same, ours is **{cold.overhead_ratio:.2f}**: that is the reconciler's own cost "
            "(configuration, clients and the first dry run's I/O).",
            "",
        ]
    parts += ["## Targets", "", targets_table(targets), "", END]
    return "\n".join(parts)


DOC_HEAD = """# Performance

How the reconciler scales with the size of the book, against a naive baseline written the
way the original design did it, and how fast the HTTP function starts.
"""

DOC_TAIL = """
## What the benchmark revealed

(Written by hand after reading the figures above; kept when the benchmark regenerates the
generated part.)
"""


def write_doc(block: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            path.write_text(head + block + tail, encoding="utf-8")
            return
    path.write_text(DOC_HEAD + "\n" + block + "\n" + DOC_TAIL, encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10,100,1000,10000", help="comma-separated N")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per N (3 at 10,000)")
    parser.add_argument("--quick", action="store_true", help="N = 10, 100 only (smoke run)")
    parser.add_argument(
        "--rtt-ms",
        type=Rtt.parse,
        default=Rtt(20.0, 20.0, 20.0),
        help="RTT of the latency run: 20 (each service) or firestore=10,alpaca=50,discord=80",
    )
    parser.add_argument("--no-wan", action="store_true", help="skip the latency run")
    parser.add_argument("--no-rss", action="store_true", help="skip the child RSS runs")
    parser.add_argument("--no-cold-start", action="store_true", help="skip the cold start")
    parser.add_argument("--naive-full", action="store_true", help="never extrapolate naive")
    parser.add_argument("--no-write", action="store_true", help="do not write docs/")
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [10, 100] if args.quick else [int(x) for x in args.sizes.split(",") if x.strip()]
    started = time.perf_counter()
    code_at_start = code_state()
    quiet_logging()

    print("Starting the Firestore emulator, the Alpaca simulator and the Discord sink ...")
    stands = Stands.start()
    results: list[SizeResult] = []
    wan: list[WanResult] = []
    cold = None
    try:
        with PhaseTimer() as timer:
            # Warm-up (discarded): first gRPC channel, first imports, JIT of the emulator.
            warm = build_world(10, datetime.now(UTC).replace(microsecond=0), stands.sim.account_id)
            seed_broker(stands.sim, warm)
            run_ours(stands, warm, Network.direct(stands))
            run_naive(stands, warm, Network.direct(stands))
            timer.take(0.0)

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

            wan_n = max((n for n in sizes if n <= 1000), default=None)
            if not args.no_wan and wan_n is not None and args.rtt_ms:
                print(f"\n== N = {wan_n:,} with RTT {args.rtt_ms.label} ==", flush=True)
                wan.append(measure_wan(stands, wan_n, args.rtt_ms, repeat=min(3, args.repeat)))
                timer.take(0.0)

        if not args.no_cold_start:
            from benchmarks.cold_start import measure_cold_start

            print("\n== cold start of the HTTP function ==", flush=True)
            tiny = build_world(10, datetime.now(UTC).replace(microsecond=0), stands.sim.account_id)
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


if __name__ == "__main__":
    sys.exit(main())
