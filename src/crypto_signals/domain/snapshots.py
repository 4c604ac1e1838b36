"""Snapshot types that cross the ports: plain, frozen, vendor-free.

Adapters turn alpaca-py models and Firestore snapshots into these; the planning core reads
only these. Quantities and prices are ``Decimal`` so that sums of crypto quantities compare
exactly and P&L does not pick up binary floating-point noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from crypto_signals.domain.schemas import Position
from crypto_signals.domain.symbols import display_symbol, symbol_key

OrderSide = Literal["buy", "sell"]
# How the closed-orders listing filters by symbol: crypto pairs as sent (BTC/USD), compact
# (BTCUSD), or not at all (filtered here). Used to re-list when a listing looks inconsistent.
SymbolForm = Literal["slash", "compact", "none"]

# Final statuses; with filled_qty == 0 they prove the order never filled. ("done_for_day" is
# not final: the order resumes next session.)
UNFILLED_END_STATUSES = frozenset({"canceled", "expired", "rejected"})


class IssueKind(StrEnum):
    MALFORMED_DOCUMENT = "malformed_document"
    MALFORMED_BROKER_DATA = "malformed_broker_data"
    BROKER_UNAVAILABLE = "broker_unavailable"
    STORE_UNAVAILABLE = "store_unavailable"
    INCOMPLETE_EVIDENCE = "incomplete_evidence"
    HEAL_WRITE_FAILED = "heal_write_failed"
    HEAL_CONFLICT = "heal_conflict"
    NOTIFICATION_FAILED = "notification_failed"
    ALERT_STATE_FAILED = "alert_state_failed"
    RUN_RECORD_FAILED = "run_record_failed"
    LEASE_FAILED = "lease_failed"
    CONFIGURATION = "configuration"
    INTERNAL_ERROR = "internal_error"
    RUN_DEADLINE = "run_deadline"


@dataclass(frozen=True)
class Issue:
    """A failure as a value: what kind, about what (position id or symbol), and the detail."""

    kind: IssueKind
    key: str
    detail: str

    def render(self) -> str:
        return (
            f"{self.kind.value}: {self.key}: {self.detail}"
            if self.key
            else (f"{self.kind.value}: {self.detail}")
        )


@dataclass(frozen=True)
class BrokerPosition:
    symbol: str  # as the broker reports it (BTCUSD)
    qty: Decimal  # signed: positive long, negative short
    market_value: Decimal | None  # absolute USD value; None when the broker did not say
    is_crypto: bool
    avg_entry_price: Decimal | None = None  # what an operator's adopt records as the entry

    @property
    def key(self) -> str:
        return symbol_key(self.symbol)

    @property
    def display(self) -> str:
        return display_symbol(self.symbol, is_crypto=self.is_crypto)

    @property
    def side(self) -> str:
        return "long" if self.qty >= 0 else "short"


@dataclass(frozen=True)
class BrokerOrder:
    id: str
    client_order_id: str | None
    symbol: str
    side: OrderSide
    status: str
    qty: Decimal | None
    filled_qty: Decimal | None  # None when the broker did not say: never read as 0
    filled_avg_price: Decimal | None
    submitted_at: datetime
    filled_at: datetime | None
    ended_at: datetime | None  # canceled / expired / failed / last update time
    # A bracket / OCO / OTO leg keeps its parent (the entry order it hangs under in a nested
    # listing): the leg belongs to the position whose entry that parent is, even when the
    # position document does not store the leg ids.
    parent_id: str | None = None
    parent_client_order_id: str | None = None

    @property
    def key(self) -> str:
        return symbol_key(self.symbol)

    @property
    def never_filled(self) -> bool:
        return self.status in UNFILLED_END_STATUSES and self.filled_qty == 0

    @property
    def filled(self) -> Decimal:
        return self.filled_qty or Decimal(0)

    @property
    def fill_time(self) -> datetime | None:
        """When the fill happened, as well as the broker says.

        ``filled_at`` when the broker gives it; for an order that filled in part and was then
        canceled or expired (no ``filled_at``), the time it ended: the fill happened no later.
        """
        return self.filled_at or (self.ended_at if self.filled > 0 else None)

    @property
    def is_fill(self) -> bool:
        """Usable as fill evidence: a positive filled quantity, an average price and a time."""
        return (
            self.filled > 0
            and self.filled_avg_price is not None
            and self.filled_avg_price > 0
            and self.fill_time is not None
        )


@dataclass(frozen=True)
class UnreadableItem:
    """One item of a broker listing the adapter could not parse (the rest of the listing was).

    It is named, and it blocks any decision it could change: heals on its symbol, or on the
    position whose entry order it may be (by id or client order id). An item with no symbol and
    no id could be anything, so it blocks every heal.
    """

    endpoint: str  # e.g. "GET /v2/orders?status=closed"
    item_id: str | None  # order id (or None when even that is unreadable)
    symbol: str | None  # as the broker sent it; None or "" when absent
    client_order_id: str | None
    detail: str  # what was wrong, never the raw payload

    @property
    def key(self) -> str | None:
        return symbol_key(self.symbol) if self.symbol else None


@dataclass(frozen=True)
class BrokerState:
    """What the broker says now: one call each for the account, positions and open orders."""

    account_id: str
    positions: tuple[BrokerPosition, ...]
    open_orders: tuple[BrokerOrder, ...]
    unreadable: tuple[UnreadableItem, ...] = ()


@dataclass(frozen=True)
class ClosedOrders:
    """Closed orders of the zombie candidates' symbols, from one paginated listing.

    ``complete`` is False when pagination stopped early (page cap, a stalled cursor). The core
    only ever heals on evidence it holds, so an incomplete listing can cost heals, never cause one.
    """

    orders: tuple[BrokerOrder, ...]
    complete: bool = True
    unreadable: tuple[UnreadableItem, ...] = ()
    # Positions whose own orders were looked up one by one: their evidence is complete.
    looked_up: frozenset[str] = frozenset()
    # Entry orders the listing should have held and did not, listed every way there is, though
    # the broker finds them by id: the listing is inconsistent and no heal may rest on it.
    missing: tuple[ExpectedEntry, ...] = ()
    # Entry orders the broker does not know at all (not listed, not found by id or client id):
    # the position's document names an order that does not exist; it alone is unverified.
    unknown_entries: tuple[ExpectedEntry, ...] = ()
    # Where the shared listing starts (None: no listing).
    listed_after: datetime | None = None


@dataclass(frozen=True)
class ExpectedEntry:
    """An entry order the listing must contain: a fresh candidate's (by id or client id)."""

    position_id: str
    order_ids: frozenset[str]
    symbol: str


@dataclass(frozen=True)
class EvidenceQuery:
    """The evidence the core needs: one closed-orders listing (which symbols, since when) for
    the fresh candidates, and targeted look-ups of a few old candidates' own orders.

    ``symbols`` empty means no listing (only look-ups). ``expected`` are the entry orders the
    listing must contain (the self-check); ``lookup_positions`` the old candidates whose orders
    are looked up one by one (``lookup_order_ids`` by id, their ids as client order ids).
    """

    symbols: tuple[str, ...]
    after: datetime
    expected: tuple[ExpectedEntry, ...] = ()
    lookup_positions: tuple[str, ...] = ()
    lookup_order_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoreState:
    """The open positions as read from Firestore, plus documents that did not parse.

    ``held``: ids of open positions an operator holds out of reconciliation (after an undo).
    """

    positions: tuple[Position, ...]
    malformed: tuple[Issue, ...] = ()
    held: frozenset[str] = frozenset()


class PostingSource(StrEnum):
    HEAL = "heal"  # the reconciler healed the position on this fill
    OPERATOR_CLOSE = "operator_close"  # crypto-signals close --exit-order-id
    SIGNAL_JOB = "signal_job"  # derived each run from a position the signal job closed


@dataclass(frozen=True)
class Posting:
    """``qty`` of broker order ``order_id``'s fill is used by position ``position_id``."""

    order_id: str
    position_id: str
    qty: Decimal
    source: PostingSource = PostingSource.HEAL


@dataclass(frozen=True)
class ClosedPosition:
    """A position already CLOSED in Firestore, as far as evidence is concerned: the orders
    that belong to it, and the exit order whose quantity it used."""

    position_id: str
    symbol: str
    qty: Decimal | None
    entry_order_ids: frozenset[str] = frozenset()
    leg_order_ids: frozenset[str] = frozenset()
    exit_order_id: str | None = None
    # Its postings are in the ledger already (a reconciler heal or an operator close).
    posted: bool = False


@dataclass(frozen=True)
class Ledger:
    """What earlier heals, operator closes and the signal job's closes took from broker fills.

    ``postings`` come from the ledger collection (heals, operator closes); ``closed`` are the
    positions closed since the evidence window began, whose entries and legs belong to them and
    whose exit order (when the signal job closed them) is posted for their quantity.
    """

    postings: tuple[Posting, ...] = ()
    closed: tuple[ClosedPosition, ...] = ()


@dataclass(frozen=True)
class BreakerState:
    """The heal breaker (contract section 1): tripped means no heal until an operator resets
    it or a run is forced."""

    tripped: bool = False
    tripped_at: datetime | None = None
    reason: str | None = None
    run_id: str | None = None
    heals_due: int | None = None
    limit: int | None = None
