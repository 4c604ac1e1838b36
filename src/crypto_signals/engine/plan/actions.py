"""The closed set of decisions the core can make, and the plan that carries them.

Every reason is an enum: a decision's identity is data (kind, subject, reason), and the words a
person reads are produced from it at the very end (``engine/findings.py``), so rewording a
message never changes what a decision *is*.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from crypto_signals.domain.snapshots import ExpectedEntry, UnreadableItem


class Evidence(StrEnum):
    CLOSING_FILL = "closing_fill"
    OWN_EXIT_LEG = "own_exit_leg"
    ENTRY_NEVER_FILLED = "entry_never_filled"


class DeferReason(StrEnum):
    TOO_YOUNG = "too_young"
    ENTRY_ORDER_WORKING = "entry_order_working"
    FILL_SETTLING = "fill_settling"  # a fill so fresh the signal job may be writing its close


class RefusalReason(StrEnum):
    HEAL_LIMIT = "heal_limit"  # this run's heals tripped the breaker
    BREAKER_TRIPPED = "breaker_tripped"  # an earlier run tripped it; nobody reset it
    ACCOUNT_MISMATCH = "account_mismatch"


class UnverifiedReason(StrEnum):
    NO_CLOSING_FILL = "no_closing_fill"
    COVERED_IN_PART = "covered_in_part"
    NO_ENTRY_TIME = "no_entry_time"
    ENTRY_PRICE_MISSING = "entry_price_missing"
    ENTRY_UNFILLED_BUT_FILLED_AT = "entry_unfilled_but_filled_at"
    ENTRY_ORDER_UNKNOWN = "entry_order_unknown"  # the broker has no order with its entry id


class DriftKind(StrEnum):
    # Evidence closes some positions, but the rest still do not match the broker.
    EVIDENCE_DOES_NOT_ADD_UP = "evidence_does_not_add_up"
    # One fill accounts exactly for the shortfall: a partial close outside the bot.
    PARTIAL_CLOSE = "partial_close"
    # The broker holds more than Firestore, or the other side.
    BROKER_HOLDS_MORE = "broker_holds_more"
    # A fill closes one of several positions, and the broker holds the others: which one?
    AMBIGUOUS = "ambiguous"
    UNEXPLAINED = "unexplained"


@dataclass(frozen=True)
class Allocation:
    """``qty`` of broker order ``order_id`` (filled at ``price``, at ``at``) closes a position."""

    order_id: str
    qty: Decimal
    price: Decimal
    at: datetime


@dataclass(frozen=True)
class Heal:
    position_id: str
    symbol: str
    exit_fill_price: Decimal | None
    exit_time: datetime
    exit_order_id: str | None
    realized_pnl_usd: Decimal
    realized_pnl_pct: Decimal
    trade_duration_seconds: int | None
    evidence: Evidence
    # The closing fills this heal uses, and how much of each (empty for a never-filled entry).
    allocation: tuple[Allocation, ...] = ()
    # The broker order that proves it: the fills above, or the entry that never filled.
    evidence_order_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unverified:
    position_id: str
    symbol: str
    reason: UnverifiedReason
    # Rendering details, not identity: how much the fills did cover, whether the listing was cut.
    covered_qty: Decimal | None = None
    listing_incomplete: bool = False


@dataclass(frozen=True)
class Defer:
    position_id: str
    symbol: str
    reason: DeferReason


@dataclass(frozen=True)
class AlertOrphan:
    symbol: str
    side: str
    qty: Decimal
    market_value: Decimal | None


@dataclass(frozen=True)
class IgnoreDust:
    symbol: str
    market_value: Decimal


@dataclass(frozen=True)
class ReportDrift:
    symbol: str
    db_qty: Decimal
    broker_qty: Decimal
    kind: DriftKind = DriftKind.UNEXPLAINED
    # The positions and fills that would explain it (a person decides).
    position_ids: tuple[str, ...] = ()
    allocations: tuple[tuple[str, Allocation], ...] = ()  # (position id, fill share)


@dataclass(frozen=True)
class RefuseHeal:
    heal: Heal
    reason: RefusalReason
    # For HEAL_LIMIT / BREAKER_TRIPPED: how many heals were due, and the limit.
    heals_due: int = 0
    limit: int = 0
    foreign_accounts: int = 0


class BlockReason(StrEnum):
    UNREADABLE_ITEM = "unreadable_item"  # a broker item that could change it did not parse
    LISTING_INCONSISTENT = "listing_inconsistent"  # known entry orders missing from the listing


@dataclass(frozen=True)
class BlockSymbol:
    """No decision on this symbol this run (``"*"``: on any symbol).

    UNREADABLE_ITEM: a broker item that could change the decision was unreadable (``items``).
    LISTING_INCONSISTENT: the closed-orders listing lacked entry orders the reconciler knows are
    in its window (``missing``), listed with every symbol form: no heal rests on it.
    """

    symbol: str
    items: tuple[UnreadableItem, ...]
    position_ids: tuple[str, ...]
    reason: BlockReason = BlockReason.UNREADABLE_ITEM
    missing: tuple[ExpectedEntry, ...] = ()


@dataclass(frozen=True)
class OverAllocated:
    """The ledger holds more of a fill than it filled: one of the closes resting on it is
    wrong (invariant 2 guards the reconciler's own heals; this catches everyone else's)."""

    order_id: str
    symbol: str
    filled: Decimal
    used: Decimal
    position_ids: tuple[str, ...]


@dataclass(frozen=True)
class TripBreaker:
    """More heals were due than the limit: none is applied, and heals halt until reset."""

    heals_due: int
    limit: int


@dataclass(frozen=True)
class ResetBreaker:
    """A forced run applies its heals and resets a tripped breaker."""


@dataclass(frozen=True)
class Halted:
    """After this run, heals are halted (the breaker is tripped): this run's trip, or an
    earlier one nobody reset."""

    heals_due: int | None
    limit: int | None
    since: datetime | None
    tripped_now: bool


Action = (
    Heal
    | Unverified
    | Defer
    | AlertOrphan
    | IgnoreDust
    | ReportDrift
    | RefuseHeal
    | BlockSymbol
    | OverAllocated
    | TripBreaker
    | ResetBreaker
)


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    # Symbols (Firestore form) of zombie positions: open in Firestore, closed at the broker.
    zombie_symbols: tuple[str, ...] = ()
    # Open positions an operator holds out of reconciliation (never decided on).
    held: tuple[str, ...] = ()
    halted: Halted | None = None

    @property
    def heals(self) -> tuple[Heal, ...]:
        return tuple(a for a in self.actions if isinstance(a, Heal))

    @property
    def unverified(self) -> tuple[Unverified, ...]:
        return tuple(a for a in self.actions if isinstance(a, Unverified))

    @property
    def deferred(self) -> tuple[Defer, ...]:
        return tuple(a for a in self.actions if isinstance(a, Defer))

    @property
    def orphans(self) -> tuple[AlertOrphan, ...]:
        return tuple(a for a in self.actions if isinstance(a, AlertOrphan))

    @property
    def dust(self) -> tuple[IgnoreDust, ...]:
        return tuple(a for a in self.actions if isinstance(a, IgnoreDust))

    @property
    def drift(self) -> tuple[ReportDrift, ...]:
        return tuple(a for a in self.actions if isinstance(a, ReportDrift))

    @property
    def refused(self) -> tuple[RefuseHeal, ...]:
        return tuple(a for a in self.actions if isinstance(a, RefuseHeal))

    @property
    def blocked(self) -> tuple[BlockSymbol, ...]:
        return tuple(a for a in self.actions if isinstance(a, BlockSymbol))

    @property
    def overallocated(self) -> tuple[OverAllocated, ...]:
        return tuple(a for a in self.actions if isinstance(a, OverAllocated))

    @property
    def trip(self) -> TripBreaker | None:
        return next((a for a in self.actions if isinstance(a, TripBreaker)), None)

    @property
    def resets_breaker(self) -> bool:
        return any(isinstance(a, ResetBreaker) for a in self.actions)
