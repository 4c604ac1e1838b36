"""The world: a book of N positions, its Firestore documents and its broker state.

Built deterministically (the random generator is seeded with N), so every run of the benchmark
measures the same book. :func:`seed_broker` puts the broker side into the simulator through its
public API; :func:`seed_firestore` writes a fresh copy of the documents (a run heals, so every
timed run needs its own).
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import firestore

from benchmarks.reconcile.sim_process import SimulatorProcess
from crypto_signals.repository.firestore import collection_for
from crypto_signals.sandbox.alpaca_sim import AlpacaSimulator
from crypto_signals.sandbox.scenarios import entry_order_id, position_doc

# The positions collection of a DEV deployment (the stand-ins' environment is DEV).
COLLECTION = collection_for("DEV")

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
# entry and take-profit fills at the broker. The reconciler reads them (their orders belong to
# them, so their fills are not taken as evidence for another position) and lists their orders.
CLOSED_SHARE = 0.20
# Every matching position keeps a protective stop resting at the broker (crypto has no
# bracket orders at Alpaca, so the stop is a plain open order whose id is sl_order_id).
RESTING_STOP_SHARE = 1.0
# Documents per seeding task; a few tasks commit at once (seeding is not timed, but it is most
# of the benchmark's wall clock).
SEED_CHUNK = 400
SEED_WORKERS = 3


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

    @property
    def zombie_candidates(self) -> int:
        c = self.counts
        return c["zombie_fill"] + c["zombie_unfilled"] + c["zombie_unverified"]


def mix_counts(n: int) -> dict[str, int]:
    counts = {kind: max(1, round(share * n)) for kind, share in MIX}
    counts["matching"] = n - sum(counts.values())
    if counts["matching"] < 1:
        raise ValueError(f"N={n} is too small for the mix")
    counts["orphans"] = max(1, round(ORPHAN_SHARE * n))
    counts["dust"] = max(1, round(DUST_SHARE * n))
    counts["closed_history"] = max(1, round(CLOSED_SHARE * n))
    return counts


class _Builder:
    """Adds each kind of position to a spec; the order of the calls fixes the random draws."""

    def __init__(self, spec: WorldSpec, account_id: str) -> None:
        self.spec = spec
        self.now = spec.now
        self.account_id = account_id
        self.rng = random.Random(spec.n)
        self._next_symbol = iter(range(1_000_000))

    # -- draws --------------------------------------------------------------------------------

    def symbol(self) -> str:
        return f"C{next(self._next_symbol):05d}/USD"

    def age(self) -> timedelta:
        return timedelta(minutes=self.rng.randint(30, 72 * 60))

    def price(self) -> float:
        return round(self.rng.uniform(1.0, 2000.0), 4)

    def qty(self) -> float:
        return round(self.rng.uniform(0.1, 50.0), 4)

    # -- records ------------------------------------------------------------------------------

    def doc(self, pid: str, sym: str, qty: float, price: float, age: timedelta, **kw: Any) -> None:
        self.spec.docs.append(
            position_doc(
                pid, sym, qty, price, created_at=self.now - age, account_id=self.account_id, **kw
            )
        )

    def entry(
        self, pid: str, sym: str, qty: float, price: float, age: timedelta, status: str = "filled"
    ) -> None:
        filled = status == "filled"
        self.spec.orders.append(
            {
                "symbol": sym,
                "side": "buy",
                "qty": str(qty),
                "status": status,
                "id": entry_order_id(pid),
                "client_order_id": pid,
                "submitted_at": self.now - age,
                "filled_at": self.now - age if filled else None,
                "filled_avg_price": str(price) if filled else None,
                "order_type": "market" if filled else "limit",
                "limit_price": None if filled else str(price),
            }
        )

    def sell_fill(self, sym: str, qty: float, price: float, at: datetime) -> None:
        """A filled sell without our ids: a person's manual order in the Alpaca app."""
        self.spec.orders.append(
            {
                "symbol": sym,
                "side": "sell",
                "qty": str(qty),
                "status": "filled",
                "submitted_at": at,
                "filled_at": at,
                "filled_avg_price": str(price),
            }
        )

    def broker_position(self, sym: str, qty: float, price: float) -> None:
        self.spec.positions.append({"symbol": sym, "qty": str(qty), "avg_entry_price": str(price)})

    # -- kinds, in the order their random draws are made ---------------------------------------

    def matching(self, count: int) -> None:
        """Open in both places; every fourth symbol carries two positions."""
        made = 0
        while made < count:
            sym = self.symbol()
            per_symbol = 2 if made % 4 == 0 and count - made >= 2 else 1
            total = 0.0
            last_price = 0.0
            for _ in range(per_symbol):
                pid = f"sig-match-{made:06d}"
                q, p, a = self.qty(), self.price(), self.age()
                sl_id = None
                if self.rng.random() < RESTING_STOP_SHARE:
                    sl_id = self.resting_stop(pid, sym, q, p, a)
                self.doc(pid, sym, q, p, a, sl_order_id=sl_id)
                self.entry(pid, sym, q, p, a)
                total += q
                last_price = p
                made += 1
            self.broker_position(sym, round(total, 4), last_price)

    def resting_stop(self, pid: str, sym: str, qty: float, price: float, age: timedelta) -> str:
        sl_id = str(entry_order_id(pid + ":sl"))
        self.spec.orders.append(
            {
                "symbol": sym,
                "side": "sell",
                "qty": str(qty),
                "status": "new",
                "id": sl_id,
                "client_order_id": pid + ":sl",
                "submitted_at": self.now - age + timedelta(seconds=5),
                "order_type": "stop_limit",
                "stop_price": str(round(price * 0.95, 4)),
                "limit_price": str(round(price * 0.94, 4)),
            }
        )
        return sl_id

    def zombie_fill(self, count: int) -> None:
        for i in range(count):
            pid, sym, q, p, a = (
                f"sig-zfill-{i:06d}",
                self.symbol(),
                self.qty(),
                self.price(),
                self.age(),
            )
            self.doc(pid, sym, q, p, a)
            self.entry(pid, sym, q, p, a)
            closed_at = self.now - a * self.rng.uniform(0.05, 0.9)
            self.sell_fill(sym, q, round(p * self.rng.uniform(0.9, 1.1), 4), closed_at)

    def zombie_unfilled(self, count: int) -> None:
        for i in range(count):
            pid, sym, q, p, a = (
                f"sig-zunf-{i:06d}",
                self.symbol(),
                self.qty(),
                self.price(),
                self.age(),
            )
            self.doc(pid, sym, q, p, a, filled=False)
            self.entry(pid, sym, q, p, a, status="canceled")

    def zombie_unverified(self, count: int) -> None:
        for i in range(count):
            pid, sym, q, p, a = (
                f"sig-zunv-{i:06d}",
                self.symbol(),
                self.qty(),
                self.price(),
                self.age(),
            )
            self.doc(pid, sym, q, p, a)
            self.entry(pid, sym, q, p, a)

    def young(self, count: int) -> None:
        for i in range(count):
            pid, sym, q, p = f"sig-young-{i:06d}", self.symbol(), self.qty(), self.price()
            a = timedelta(minutes=1)
            self.doc(pid, sym, q, p, a, filled=i % 2 == 1)
            self.spec.young_ids.add(pid)
            if i % 2 == 0:
                self.entry(pid, sym, q, p, a, status="new")  # still working: pending
            else:
                self.entry(pid, sym, q, p, a)
                self.broker_position(sym, q, p)

    def theoretical(self, count: int) -> None:
        for i in range(count):
            pid, sym = f"sig-theo-{i:06d}", self.symbol()
            self.doc(pid, sym, self.qty(), self.price(), self.age(), trade_type="THEORETICAL")

    def drift(self, count: int) -> None:
        for i in range(count):
            pid, sym, q, p, a = (
                f"sig-drift-{i:06d}",
                self.symbol(),
                self.qty(),
                self.price(),
                self.age(),
            )
            self.doc(pid, sym, q, p, a)
            self.entry(pid, sym, q, p, a)
            half = round(q / 2, 4)
            self.sell_fill(sym, half, p, self.now - a * 0.5)
            self.broker_position(sym, round(q - half, 4), p)

    def orphans(self, count: int) -> None:
        for _ in range(count):
            sym, q, p, a = self.symbol(), self.qty(), self.price(), self.age()
            self.broker_position(sym, q, p)
            self.spec.orders.append(
                {
                    "symbol": sym,
                    "side": "buy",
                    "qty": str(q),
                    "status": "filled",
                    "submitted_at": self.now - a,
                    "filled_at": self.now - a,
                    "filled_avg_price": str(p),
                }
            )

    def closed_history(self, count: int) -> None:
        for i in range(count):
            pid, sym, q, p, a = (
                f"sig-closed-{i:06d}",
                self.symbol(),
                self.qty(),
                self.price(),
                self.age(),
            )
            exit_at = self.now - a * self.rng.uniform(0.05, 0.9)
            exit_price = round(p * self.rng.uniform(1.01, 1.1), 4)
            tp_id = str(entry_order_id(pid + ":tp"))
            self.doc(
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
            self.entry(pid, sym, q, p, a)
            self.spec.orders.append(
                {
                    "symbol": sym,
                    "side": "sell",
                    "qty": str(q),
                    "status": "filled",
                    "id": tp_id,
                    "client_order_id": pid + ":tp",
                    "submitted_at": self.now - a + timedelta(seconds=5),
                    "filled_at": exit_at,
                    "filled_avg_price": str(exit_price),
                    "order_type": "limit",
                    "limit_price": str(exit_price),
                }
            )

    def dust(self, count: int) -> None:
        for _ in range(count):
            self.spec.positions.append(
                {
                    "symbol": self.symbol(),
                    "qty": "0.0004",
                    "avg_entry_price": "150",
                    "current_price": "149",
                }
            )


def build_world(n: int, now: datetime, account_id: str) -> WorldSpec:
    spec = WorldSpec(n=n, now=now, counts=mix_counts(n))
    build = _Builder(spec, account_id)
    counts = spec.counts
    build.matching(counts["matching"])
    build.zombie_fill(counts["zombie_fill"])
    build.zombie_unfilled(counts["zombie_unfilled"])
    build.zombie_unverified(counts["zombie_unverified"])
    build.young(counts["young"])
    build.theoretical(counts["theoretical"])
    build.drift(counts["drift"])
    build.orphans(counts["orphans"])
    build.closed_history(counts["closed_history"])
    build.dust(counts["dust"])
    return spec


def seed_broker(sim: AlpacaSimulator | SimulatorProcess, spec: WorldSpec) -> None:
    """The simulator is read-only to the reconciler: seeded once per N, reused by every run.

    Only the simulator's public API: it refuses a duplicate order id or client order id itself
    (an index lookup, so seeding is linear in the orders).
    """
    if isinstance(sim, SimulatorProcess):
        sim.seed(spec.positions, spec.orders)  # the same calls, made in its process
        return
    sim.reset()
    for position in spec.positions:
        sim.add_position(**position)
    for order in spec.orders:
        sim.add_order(**order)


def seed_firestore(db: firestore.Client, spec: WorldSpec) -> None:
    """A fresh Firestore world (a run heals, so every timed run needs its own).

    Documents only: their entry orders are in ``spec.orders``, seeded once per N
    (:func:`seed_broker`).
    """
    # Young positions are young relative to the run, not to when the spec was built.
    young_at = datetime.now(UTC) - timedelta(minutes=1)
    docs = [
        {**d, "created_at": young_at, "filled_at": young_at if d["filled_at"] else None}
        if d["position_id"] in spec.young_ids
        else d
        for d in spec.docs
    ]
    chunks = [docs[i : i + SEED_CHUNK] for i in range(0, len(docs), SEED_CHUNK)]
    collection = db.collection(COLLECTION)

    def write(chunk: list[dict[str, Any]]) -> None:
        batch = db.batch()
        for doc in chunk:
            batch.set(collection.document(str(doc["position_id"])), doc)
        batch.commit()

    with ThreadPoolExecutor(max_workers=SEED_WORKERS) as pool:
        list(pool.map(write, chunks))
