"""From allocations and entry orders to heals: exit price, time, order and P&L (contract §1).

A heal rests on one of two kinds of evidence (invariant 1): closing fills covering the
position's quantity (from :mod:`allocation`), or every one of its entry orders ended without
a fill, seen in a complete listing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from crypto_signals.domain.schemas import Position
from crypto_signals.domain.snapshots import BrokerOrder
from crypto_signals.engine.plan.actions import (
    Allocation,
    Evidence,
    Heal,
    Unverified,
    UnverifiedReason,
)

ZERO = Decimal(0)
_HUNDRED = Decimal(100)


class OrderIndex:
    """Orders by id and by client order id: lookups instead of scans (linear planning)."""

    def __init__(self, orders: Iterable[BrokerOrder]) -> None:
        self.orders = sorted(orders, key=lambda o: o.id)
        self.by_id: dict[str, list[BrokerOrder]] = defaultdict(list)
        self.by_client: dict[str, list[BrokerOrder]] = defaultdict(list)
        for o in self.orders:
            self.by_id[o.id].append(o)
            if o.client_order_id:
                self.by_client[o.client_order_id].append(o)

    def entries_of(self, position: Position) -> list[BrokerOrder]:
        found = {o.id: o for i in position.entry_order_ids for o in self.by_id.get(i, ())}
        found.update({o.id: o for o in self.by_client.get(position.position_id, ())})
        return [found[k] for k in sorted(found)]


def never_filled(
    position: Position, orders: OrderIndex, *, listing_complete: bool
) -> Heal | Unverified | None:
    """Evidence that the entry never filled: every matching entry order ended with 0 filled.

    Only from a complete listing: a cut one may hide a retry of the entry that did fill. None
    when there is no such evidence; Unverified when Firestore says the entry filled.
    """
    entries = orders.entries_of(position)
    if not listing_complete or not entries or not all(o.never_filled for o in entries):
        return None
    if position.filled_at is not None:
        return Unverified(
            position.position_id, position.symbol, UnverifiedReason.ENTRY_UNFILLED_BUT_FILLED_AT
        )
    last = max(entries, key=lambda o: (o.ended_at or o.submitted_at, o.id))
    return Heal(
        position_id=position.position_id,
        symbol=position.symbol,
        exit_fill_price=None,
        exit_time=last.ended_at or last.submitted_at,
        exit_order_id=None,
        realized_pnl_usd=ZERO,
        realized_pnl_pct=ZERO,
        trade_duration_seconds=None,
        evidence=Evidence.ENTRY_NEVER_FILLED,
        evidence_order_ids=(last.id,),
    )


def duration(start: datetime | None, end: datetime) -> int | None:
    if start is None:
        return None
    return max(0, int((end - start).total_seconds()))


def heal_from_allocation(
    position: Position, allocation: Sequence[Allocation], own_leg_ids: set[str]
) -> Heal | Unverified:
    """The heal a covering allocation proves, or Unverified when P&L cannot be computed."""
    entry = position.entry_fill_price
    if entry is None or entry <= 0:
        return Unverified(
            position.position_id, position.symbol, UnverifiedReason.ENTRY_PRICE_MISSING
        )
    covered = sum((a.qty for a in allocation), ZERO)
    exit_price = sum((a.price * a.qty for a in allocation), ZERO) / covered
    last = max(allocation, key=lambda a: (a.at, a.order_id))
    qty = position.qty
    pnl = (exit_price - entry) * qty
    if position.side == "sell":
        pnl = -pnl
    basis = entry * qty
    own = all(a.order_id in own_leg_ids for a in allocation)
    return Heal(
        position_id=position.position_id,
        symbol=position.symbol,
        exit_fill_price=exit_price,
        exit_time=last.at,
        exit_order_id=last.order_id,
        realized_pnl_usd=pnl,
        realized_pnl_pct=pnl / basis * _HUNDRED if basis else ZERO,
        trade_duration_seconds=duration(position.opened_at, last.at),
        evidence=Evidence.OWN_EXIT_LEG if own else Evidence.CLOSING_FILL,
        allocation=tuple(allocation),
        evidence_order_ids=tuple(dict.fromkeys(a.order_id for a in allocation)),
    )


def unverified_reason(position: Position, covered: Decimal | None) -> UnverifiedReason:
    if position.opened_at is None:
        return UnverifiedReason.NO_ENTRY_TIME
    if covered is not None and covered > 0:
        return UnverifiedReason.COVERED_IN_PART
    return UnverifiedReason.NO_CLOSING_FILL
