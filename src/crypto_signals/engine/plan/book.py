"""The open book, symbol by symbol: what Firestore says is open against what the broker holds.

Classification only, no evidence: which positions are pending, which symbols the broker no
longer holds (every settled position there is a zombie), which held symbols carry more in
Firestore than at the broker (some positions there may have been closed outside the bot), and
which held symbols the broker holds more of than Firestore knows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from crypto_signals.domain.schemas import Position, TradeStatus, TradeType
from crypto_signals.domain.snapshots import BrokerOrder, BrokerPosition, BrokerState, StoreState
from crypto_signals.domain.symbols import symbol_key
from crypto_signals.engine.plan.actions import Defer, DeferReason
from crypto_signals.engine.policy import Policy

ZERO = Decimal(0)


class Holding(StrEnum):
    NOT_HELD = "not_held"  # the broker holds none of it (or only dust): all are zombies
    MATCHES = "matches"  # Firestore and the broker agree within tolerance
    EXCESS = "excess"  # Firestore holds more than the broker, same side: closes to find
    BROKER_MORE = "broker_more"  # the broker holds more, or the other side: drift only
    PENDING = "pending"  # held, with a pending position: not checked while it settles


def signed_qty(position: Position) -> Decimal:
    return position.qty if position.side == "buy" else -position.qty


def fifo(positions: Iterable[Position]) -> list[Position]:
    """Oldest entry first; positions without an entry time last (they cannot be matched)."""
    return sorted(
        positions,
        key=lambda p: (p.opened_at is None, p.opened_at or datetime.min, p.position_id),
    )


@dataclass
class SymbolBook:
    key: str
    symbol: str  # Firestore form (BTC/USD)
    settled: list[Position] = field(default_factory=list)  # decided on, oldest first
    operator_held: list[Position] = field(default_factory=list)  # counted, never decided on
    pending: bool = False
    broker: BrokerPosition | None = None  # a live (non-dust) broker position
    holding: Holding = Holding.NOT_HELD

    @property
    def db_qty(self) -> Decimal:
        return sum((signed_qty(p) for p in self.settled + self.operator_held), ZERO)


@dataclass
class Book:
    reconcilable: list[Position]  # open and not THEORETICAL, by id
    deferred: list[Defer]
    symbols: dict[str, SymbolBook]
    live: dict[str, BrokerPosition]
    dust: dict[str, BrokerPosition]
    held_ids: tuple[str, ...]

    def with_holding(self, *kinds: Holding) -> list[SymbolBook]:
        return [b for _, b in sorted(self.symbols.items()) if b.holding in kinds]


def is_dust(position: BrokerPosition, policy: Policy) -> bool:
    return position.market_value is not None and position.market_value < policy.dust_threshold_usd


def reconcilable(positions: Sequence[Position]) -> list[Position]:
    # Invariant 5: THEORETICAL positions never reached the broker.
    return sorted(
        (
            p
            for p in positions
            if p.status is TradeStatus.OPEN and p.trade_type is not TradeType.THEORETICAL
        ),
        key=lambda p: p.position_id,
    )


def _entry_working(position: Position, open_orders: dict[str, list[BrokerOrder]]) -> bool:
    ids = (*sorted(position.entry_order_ids), position.position_id)
    return any(open_orders.get(i) for i in ids)


def classify(store: StoreState, broker: BrokerState, policy: Policy, now: datetime) -> Book:
    live: dict[str, BrokerPosition] = {}
    dust: dict[str, BrokerPosition] = {}
    for bp in broker.positions:
        (dust if is_dust(bp, policy) else live)[bp.key] = bp

    # Open orders by id and by client order id: an entry still working makes its position
    # pending (invariant 6), found by a lookup rather than a scan.
    working: dict[str, list[BrokerOrder]] = {}
    for order in broker.open_orders:
        working.setdefault(order.id, []).append(order)
        if order.client_order_id:
            working.setdefault(order.client_order_id, []).append(order)

    book = Book(reconcilable(store.positions), [], {}, live, dust, ())
    held: list[str] = []
    for position in book.reconcilable:
        key = symbol_key(position.symbol)
        entry = book.symbols.setdefault(key, SymbolBook(key, position.symbol))
        if position.position_id in store.held:
            entry.operator_held.append(position)
            held.append(position.position_id)
            continue
        reason: DeferReason | None = None
        if _entry_working(position, working):
            reason = DeferReason.ENTRY_ORDER_WORKING
        elif position.created_at or position.filled_at:
            born = position.created_at or position.filled_at
            assert born is not None
            if now - born < policy.min_position_age:
                reason = DeferReason.TOO_YOUNG
        if reason is not None:
            book.deferred.append(Defer(position.position_id, position.symbol, reason))
            entry.pending = True
            continue
        entry.settled.append(position)
    book.held_ids = tuple(sorted(held))

    for key, entry in book.symbols.items():
        entry.settled = fifo(entry.settled)
        entry.broker = live.get(key)
        entry.holding = _holding(entry, policy)
    return book


def _holding(entry: SymbolBook, policy: Policy) -> Holding:
    if entry.broker is None:
        return Holding.NOT_HELD
    if entry.pending:
        return Holding.PENDING
    db, held = entry.db_qty, entry.broker.qty
    if policy.qty_close(db, held):
        return Holding.MATCHES
    same_side = (db > 0) == (held > 0)
    if same_side and abs(db) > abs(held):
        return Holding.EXCESS
    return Holding.BROKER_MORE
