"""What each operator command writes, computed without I/O: data in, fields out.

Refusals are values too: :class:`Refused` carries the sentence a person reads.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from crypto_signals.domain.schemas import ExitReason, Position, TradeStatus, decimal_text
from crypto_signals.domain.snapshots import BrokerPosition
from crypto_signals.domain.symbols import symbol_key

_HUNDRED = Decimal(100)
_DURATION = re.compile(r"^\s*(\d+)\s*([mhd])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
# A stable namespace for adopted positions' ids (uuid5 of the orphan's identity).
_ADOPT_NAMESPACE = uuid.UUID("6c1f3f0e-5a8b-4e4c-9d2a-2f7c1b9e8a11")


class Refused(Exception):
    """The command is refused; the message says why and what to do instead (exit 2)."""


def parse_duration(text: str) -> timedelta:
    """``90m``, ``12h``, ``7d`` (contract section 3)."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise Refused(f"--for {text!r}: give a duration like 90m, 12h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def parse_time(text: str) -> datetime:
    """An ISO-8601 time; without an offset it is UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Refused(
            f"--exit-time {text!r}: give an ISO-8601 time like 2026-12-01T14:05:00Z"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_price(text: str) -> Decimal:
    try:
        price = Decimal(text.strip().lstrip("$").replace(",", ""))
    except ArithmeticError:
        raise Refused(f"--exit-price {text!r}: give a positive number like 64250.5") from None
    if not price.is_finite() or price <= 0:
        raise Refused(f"--exit-price {text!r}: give a positive number like 64250.5")
    return price


def _number(value: Decimal) -> float:
    return float(value)


def close_fields(
    position: Position,
    *,
    exit_price: Decimal | None,
    exit_time: datetime,
    exit_order_id: str | None,
    never_filled: bool,
    now: datetime,
) -> dict[str, Any]:
    """The section 1 fields of an operator's close (``exit_reason=MANUAL_EXIT``)."""
    if never_filled:
        pnl, pct, price = Decimal(0), Decimal(0), None
    else:
        entry = position.entry_fill_price
        if exit_price is None:
            raise Refused("give --exit-price PRICE, or --never-filled if the entry never filled")
        if entry is None or entry <= 0:
            raise Refused(
                f"position {position.position_id} has no entry_fill_price: its P&L cannot be "
                "computed; fix the document, or close it with --never-filled"
            )
        pnl = (exit_price - entry) * position.qty
        if position.side == "sell":
            pnl = -pnl
        pct = pnl / (entry * position.qty) * _HUNDRED
        price = exit_price
    opened = position.opened_at
    duration = max(0, int((exit_time - opened).total_seconds())) if opened else None
    return {
        "status": TradeStatus.CLOSED.value,
        "exit_reason": ExitReason.MANUAL_EXIT.value,
        "exit_fill_price": _number(price) if price is not None else None,
        "exit_time": exit_time,
        "exit_order_id": exit_order_id,
        "realized_pnl_usd": round(_number(pnl), 8),
        "realized_pnl_pct": round(_number(pct), 6),
        "trade_duration_seconds": None if never_filled else duration,
        "updated_at": now,
    }


@dataclass(frozen=True)
class Undo:
    updates: dict[str, Any]  # field -> restored value (or the delete sentinel's stand-in)
    deletes: tuple[str, ...]  # fields the heal added, removed again
    released_orders: tuple[str, ...]  # ledger documents whose posting to it is removed


def undo_of(position_id: str, data: Mapping[str, Any]) -> Undo:
    """What reverts a reconciler heal: the replaced fields restored, the added ones removed."""
    audit = data.get("reconciler")
    if data.get("status") != TradeStatus.CLOSED.value or not isinstance(audit, Mapping):
        raise Refused(f"position {position_id} is not a closed position the reconciler healed")
    if audit.get("action") != "heal" or not isinstance(audit.get("replaced"), Mapping):
        what = audit.get("action") or "closed by someone else"
        raise Refused(
            f"position {position_id} was not healed by the reconciler ({what}): there is no "
            "heal to undo"
        )
    if data.get("exit_reason") != "CLOSED_EXTERNALLY" or (
        audit.get("healed_at") is not None and data.get("updated_at") != audit.get("healed_at")
    ):
        raise Refused(
            f"position {position_id} was written after the reconciler healed it (exit_reason "
            f"{data.get('exit_reason')!r}): undoing the heal would erase that close; fix the "
            "document by hand if it is wrong"
        )
    replaced = dict(audit["replaced"])
    absent = tuple(str(f) for f in audit.get("absent") or ())
    orders = tuple(
        sorted({str(a["order_id"]) for a in audit.get("allocation") or () if "order_id" in a})
    )
    return Undo(replaced, absent, orders)


def adopted_id(scope: str, account_id: str, holding: BrokerPosition, generation: int = 1) -> str:
    """Deterministic: adopting the same orphan twice (the same holding) names one document.

    ``generation`` counts adoptions of the same holding after earlier ones closed (the same
    quantity bought again by hand later): 1 for the first, then 2, 3...
    """
    identity = "|".join([scope, account_id, symbol_key(holding.symbol), decimal_text(holding.qty)])
    base = f"adopted-{uuid.uuid5(_ADOPT_NAMESPACE, identity)}"
    return base if generation == 1 else f"{base}-{generation}"


def adopted_document(
    position_id: str,
    holding: BrokerPosition,
    *,
    account_id: str,
    avg_entry_price: Decimal | None,
    now: datetime,
    actor: str,
    reason: str,
) -> dict[str, Any]:
    """An OPEN position of section 1 for a holding the bot did not open."""
    qty = abs(holding.qty)
    return {
        "position_id": position_id,
        "signal_id": position_id,
        "account_id": account_id,
        "symbol": holding.display,
        "asset_class": "CRYPTO" if holding.is_crypto else "EQUITY",
        "status": TradeStatus.OPEN.value,
        "side": "buy" if holding.qty > 0 else "sell",
        "qty": float(qty),
        "entry_fill_price": float(avg_entry_price) if avg_entry_price is not None else None,
        "current_stop_loss": None,
        "commission": 0.0,
        "alpaca_order_id": None,
        "entry_order_id": None,
        "tp_order_id": None,
        "sl_order_id": None,
        "trade_type": "EXECUTED",
        "filled_at": None,
        "created_at": now,
        "updated_at": now,
        "exit_fill_price": None,
        "exit_time": None,
        "exit_reason": None,
        "exit_order_id": None,
        "realized_pnl_usd": 0.0,
        "realized_pnl_pct": 0.0,
        "trade_duration_seconds": None,
        "ds": now.strftime("%Y-%m-%d"),
        "delete_at": None,
        "reconciler": {"action": "adopt", "by": actor, "reason": reason, "at": now},
    }
