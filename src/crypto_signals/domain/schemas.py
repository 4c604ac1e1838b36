"""Domain schemas shared by every layer: the position document, the enums, the report.

These are the module homes of the original design (contract section 7): the signal job imports
``ReconciliationReport``, ``TradeStatus`` and ``ExitReason`` from here.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TradeStatus(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class ExitReason(StrEnum):
    TP1 = "TP1"
    TP2 = "TP2"
    TP3 = "TP3"
    STOP_LOSS = "STOP_LOSS"
    COLOR_FLIP = "COLOR_FLIP"
    STRUCTURAL_INVALIDATION = "STRUCTURAL_INVALIDATION"
    EXPIRED = "EXPIRED"
    TP_HIT = "TP_HIT"
    NOTIFICATION_FAILED = "NOTIFICATION_FAILED"
    MANUAL_EXIT = "MANUAL_EXIT"
    CLOSED_EXTERNALLY = "CLOSED_EXTERNALLY"


class TradeType(StrEnum):
    EXECUTED = "EXECUTED"
    THEORETICAL = "THEORETICAL"


class RunStatus(StrEnum):
    OK = "ok"
    ISSUES = "issues"
    FAILED = "failed"
    SKIPPED = "skipped"


def _finite(value: float | None, name: str) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")
    return value


def decimal_text(value: Decimal) -> str:
    """A quantity as exact text without noise: ``Decimal("0.498750000000")`` -> ``"0.49875"``,
    ``Decimal("1.0")`` -> ``"1"``, never an exponent."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def strict_decimal(value: Any) -> Decimal | None:
    """A number the reconciler decides with, as ``Decimal``; anything else is an error.

    Firestore gives ``int`` or ``float``; a numeric string is accepted. A boolean (Python would
    read ``True`` as 1), a non-numeric string, NaN or an infinity raises ``ValueError``: such a
    document is malformed, never healed (contract section 1, "Numbers must be numbers").
    Floats go through ``str`` so that 0.1 stays 0.1, not its binary expansion.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int | float):
        number = Decimal(str(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError("must be a number, not a non-numeric string") from None
    else:
        raise ValueError(f"must be a number, not {type(value).__name__}")
    if not number.is_finite():
        raise ValueError("must be a finite number (not NaN or infinite)")
    return number


class Position(BaseModel):
    """A position document as the signal job writes it (contract section 1).

    Parsing is strict about the fields the reconciler decides on (a wrong ``qty`` must never
    turn into a close) and lenient about everything else: unknown fields are ignored here and
    survive in Firestore because heals are field-level updates.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    position_id: str = Field(min_length=1)
    signal_id: str | None = None
    account_id: str | None = None
    symbol: str = Field(min_length=1)
    asset_class: Literal["CRYPTO", "EQUITY"] | None = None
    status: TradeStatus
    side: Literal["buy", "sell"]
    # Decimal from the edge to the plan: the two numbers every heal decides with.
    qty: Decimal = Field(gt=0)
    entry_fill_price: Decimal | None = Field(default=None, ge=0)
    current_stop_loss: float | None = None
    commission: float | None = None
    alpaca_order_id: str | None = None
    entry_order_id: str | None = None
    tp_order_id: str | None = None
    sl_order_id: str | None = None
    trade_type: TradeType | None = None
    filled_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    exit_fill_price: float | None = None
    exit_time: datetime | None = None
    exit_reason: str | None = None
    exit_order_id: str | None = None
    realized_pnl_usd: float | None = None
    realized_pnl_pct: float | None = None
    trade_duration_seconds: int | None = None
    ds: str | None = None
    delete_at: datetime | None = None

    @field_validator("qty", "entry_fill_price", mode="before")
    @classmethod
    def _strict_number(cls, value: Any) -> Decimal | None:
        return strict_decimal(value)

    @field_validator("current_stop_loss", "commission")
    @classmethod
    def _reject_nan(cls, value: float | None, info: Any) -> float | None:
        return _finite(value, info.field_name)

    @field_validator("filled_at", "created_at", "updated_at", "exit_time", "delete_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # Firestore timestamps are always UTC-aware; a string without an offset is read as UTC
        # rather than stopping the run on a naive/aware comparison.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_validator("side", mode="before")
    @classmethod
    def _lower_side(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @property
    def entry_order_ids(self) -> frozenset[str]:
        """Broker ids that identify this position's entry order."""
        return frozenset(i for i in (self.alpaca_order_id, self.entry_order_id) if i)

    @property
    def opened_at(self) -> datetime | None:
        """When the position began to exist at the broker, as well as Firestore knows."""
        return self.filled_at or self.created_at


class FillShare(BaseModel):
    """``qty`` of broker order ``order_id``'s fill, used by one position."""

    order_id: str
    qty: str  # a decimal string: quantities are exact


class HealedPosition(BaseModel):
    position_id: str
    symbol: str
    exit_fill_price: float | None
    exit_time: datetime
    exit_order_id: str | None
    realized_pnl_usd: float
    realized_pnl_pct: float
    evidence: str
    allocation: list[FillShare] = Field(default_factory=list)


class DriftEntry(BaseModel):
    symbol: str
    db_qty: float
    broker_qty: float
    explained_by: str | None = None
    kind: str = "unexplained"
    # The positions and fills that would explain it.
    position_ids: list[str] = Field(default_factory=list)
    fills: list[FillShare] = Field(default_factory=list)


class RunStats(BaseModel):
    broker_calls: int = 0
    firestore_reads: int = 0
    firestore_writes: int = 0
    firestore_round_trips: int = 0
    notifications_sent: int = 0
    dust_positions: int = 0


class ReconciliationReport(BaseModel):
    """What a run did and found (contract section 5)."""

    # The original design's fields, same names and meaning.
    zombies: list[str] = Field(default_factory=list)
    orphans: list[str] = Field(default_factory=list)
    reconciled_count: int = 0
    timestamp: datetime
    duration_seconds: float = 0.0
    critical_issues: list[str] = Field(default_factory=list)
    # Added by this design.
    run_id: str
    status: RunStatus
    dry_run: bool = False
    environment: str
    healed: list[HealedPosition] = Field(default_factory=list)
    unverified_zombies: list[str] = Field(default_factory=list)
    pending: list[str] = Field(default_factory=list)
    drift: list[DriftEntry] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    heals_halted: bool = False  # the breaker is tripped: no heal until it is reset
    held: list[str] = Field(default_factory=list)  # positions an operator holds out
    skip_reason: str | None = None  # why a skipped run did nothing
    stats: RunStats = Field(default_factory=RunStats)

    @property
    def needs_attention(self) -> bool:
        """True when a person must look: the CLI's exit status 1."""
        # Errors too (an unreadable document, an undelivered alert), except heal conflicts:
        # those mean someone else closed the position first, which needs nobody.
        errors = [e for e in self.errors if not e.startswith("heal_conflict")]
        return bool(
            self.critical_issues or self.orphans or self.unverified_zombies or self.drift or errors
        )
