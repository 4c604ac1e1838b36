"""In-memory stand-ins behind the shell's ports, and a clock a test moves by hand.

For shell behaviour that crosses no real boundary (when to re-alert, what a partial delivery
owes, what the breaker remembers), these are enough and take milliseconds; what crosses
Firestore, the broker or Discord is tested end to end on the emulator, simulator and sink.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from crypto_signals.domain.schemas import Position, TradeStatus
from crypto_signals.domain.snapshots import (
    BreakerState,
    BrokerState,
    ClosedOrders,
    ClosedPosition,
    EvidenceQuery,
    Posting,
    StoreState,
    SymbolForm,
)
from crypto_signals.engine.alerts import AlertState
from crypto_signals.engine.messages import AlertBatch, Delivery, DeliveryOutcome
from crypto_signals.engine.plan import Heal
from crypto_signals.engine.ports import (
    BrokerUnavailable,
    HealOutcome,
    HealResult,
    StoreCounters,
    StoreUnavailable,
)


class Clock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class FakeBroker:
    state: BrokerState
    closed: ClosedOrders = field(default_factory=lambda: ClosedOrders(()))
    fail: str | None = None
    call_count: int = 0

    def fetch_state(self, *, deadline: float | None = None) -> BrokerState:
        self.call_count += 1
        if self.fail:
            raise BrokerUnavailable(self.fail)
        return self.state

    def fetch_closed_orders(
        self,
        query: EvidenceQuery,
        *,
        deadline: float | None = None,
        symbol_form: SymbolForm = "slash",
    ) -> ClosedOrders:
        self.call_count += 1
        return self.closed

    def fetch_orders(
        self,
        order_ids: Sequence[str],
        client_order_ids: Sequence[str],
        *,
        deadline: float | None = None,
    ) -> ClosedOrders:
        self.call_count += 1
        wanted = set(order_ids)
        clients = set(client_order_ids)
        return ClosedOrders(
            tuple(o for o in self.closed.orders if o.id in wanted or o.client_order_id in clients)
        )


@dataclass
class MemoryStore:
    positions: dict[str, Position]
    alert_pending: set[str] = field(default_factory=set)
    writes: int = 0
    # How many reads of the outbox fail (StoreUnavailable) before they succeed again.
    outbox_failures: int = 0

    def get_open_positions(self) -> StoreState:
        return StoreState(tuple(p for p in self.positions.values() if p.status is TradeStatus.OPEN))

    def apply_heals(self, heals: Sequence[Heal], *, run_id: str, now: datetime) -> list[HealResult]:
        for heal in heals:
            self.positions[heal.position_id] = self.positions[heal.position_id].model_copy(
                update={"status": TradeStatus.CLOSED, "exit_time": heal.exit_time}
            )
            self.alert_pending.add(heal.position_id)
            self.writes += 1
        return [
            HealResult(h.position_id, HealOutcome.APPLIED, announcement=self._row(h.position_id))
            for h in heals
        ]

    def _row(self, pid: str) -> dict[str, Any]:
        return {"position_id": pid, "symbol": self.positions[pid].symbol, "exit_fill_price": 1}

    def counters(self) -> StoreCounters:
        return StoreCounters(0, self.writes, 0)

    def get_unannounced_heals(self) -> list[dict[str, Any]]:
        if self.outbox_failures:
            self.outbox_failures -= 1
            raise StoreUnavailable("outbox: deadline exceeded")
        return [self._row(pid) for pid in sorted(self.alert_pending)]

    def get_closed_positions(self, since: datetime) -> tuple[ClosedPosition, ...]:
        return tuple(
            ClosedPosition(p.position_id, p.symbol, p.qty, p.entry_order_ids, posted=True)
            for p in self.positions.values()
            if p.status is TradeStatus.CLOSED
        )

    def mark_announced(self, position_ids: Sequence[str]) -> None:
        self.alert_pending -= set(position_ids)


@dataclass
class MemoryAlerts:
    states: dict[str, AlertState] = field(default_factory=dict)
    round_trips: int = 0
    reads: int = 0
    writes: int = 0
    # The store whose outbox flags a delivery clears (AlertStore.save's ``announced``).
    store: MemoryStore | None = None

    def load(self) -> dict[str, AlertState]:
        return dict(self.states)

    def save(self, states: Iterable[AlertState], *, announced: Sequence[str] = ()) -> None:
        for state in states:
            self.states[state.finding_id] = state
        if announced:
            assert self.store is not None, "a delivery cleared heals of no store"
            self.store.mark_announced(announced)


@dataclass
class MemoryLedger:
    postings: list[Posting] = field(default_factory=list)
    round_trips: int = 0
    reads: int = 0
    writes: int = 0

    def postings_for(self, order_ids: Sequence[str]) -> tuple[Posting, ...]:
        return tuple(p for p in self.postings if p.order_id in set(order_ids))


@dataclass
class MemoryBreaker:
    state: BreakerState = field(default_factory=BreakerState)
    round_trips: int = 0
    reads: int = 0
    writes: int = 0

    def load(self) -> BreakerState:
        return self.state

    def trip(self, *, run_id: str, heals_due: int, limit: int, reason: str, now: datetime) -> None:
        self.state = BreakerState(True, now, reason, run_id, heals_due, limit)

    def reset(self, *, by: str, reason: str, now: datetime) -> None:
        self.state = replace(self.state, tripped=False)


@dataclass
class RecordingNotifier:
    """Delivers everything, or (``accept``) only the first N sections' lines."""

    batches: list[AlertBatch] = field(default_factory=list)
    accept: int | None = None

    def send(self, batch: AlertBatch) -> Delivery:
        self.batches.append(batch)
        if self.accept is None:
            return Delivery(DeliveryOutcome.DELIVERED, 1, batch.keys)
        kept = batch.sections[: self.accept]
        keys = frozenset(k for s in kept for k in s.keys)
        return Delivery(DeliveryOutcome.FAILED, len(kept), keys, "refused after the first")

    def lines(self) -> list[str]:
        return [line for b in self.batches for s in b.sections for line in s.lines]


def open_position(pid: str, symbol: str, *, qty: str = "1", at: datetime) -> Position:
    return Position(
        position_id=pid,
        symbol=symbol,
        status=TradeStatus.OPEN,
        side="buy",
        qty=Decimal(qty),
        entry_fill_price=Decimal(100),
        created_at=at,
        filled_at=at,
    )
