"""Which position a broker order belongs to, and what is left of each fill to explain a close.

An order belongs to a position when it is that position's entry (its ``alpaca_order_id`` or
``entry_order_id``, or its client order id is the position id), or one of its own exit legs
(its ``tp_order_id`` / ``sl_order_id``, or a leg whose parent is the position's entry order).
An entry is never evidence that anything closed; a leg is evidence for its owner only
(invariant 3). This holds for open positions and for positions already closed in Firestore.

What is left of a fill is its filled quantity minus what the ledger already posted to it: heals
and operator closes from the ledger collection, and the quantity of each position the signal
job closed with that order as its exit (invariant 2).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from itertools import chain

from crypto_signals.domain.schemas import Position
from crypto_signals.domain.snapshots import BrokerOrder, ClosedPosition, Ledger

ZERO = Decimal(0)


class Role(StrEnum):
    ENTRY = "entry"
    LEG = "leg"
    CONTESTED = "contested"  # claimed by two positions: evidence for neither


@dataclass(frozen=True)
class Owner:
    position_id: str
    role: Role


@dataclass(frozen=True)
class _Claims:
    position_id: str
    entry_ids: frozenset[str]
    leg_ids: frozenset[str]


def _claims_of_open(p: Position) -> _Claims:
    legs = frozenset(i for i in (p.tp_order_id, p.sl_order_id) if i)
    return _Claims(p.position_id, p.entry_order_ids, legs)


def _claims_of_closed(c: ClosedPosition) -> _Claims:
    return _Claims(c.position_id, c.entry_order_ids, c.leg_order_ids)


def _add_claimant(index: dict[str, tuple[str, ...]], order_id: str, position_id: str) -> None:
    claimants = index.get(order_id, ())
    if position_id not in claimants:
        index[order_id] = (*claimants, position_id)


class Owners:
    """Order id / client order id / parent -> the one position the order belongs to."""

    def __init__(self, open_positions: Iterable[Position], closed: Iterable[ClosedPosition]):
        # Order id -> the positions claiming it (almost always one): a tuple, not a set, costs
        # a quarter as much per order. The claims are read one at a time, never all kept.
        self._entry_ids: dict[str, tuple[str, ...]] = {}
        self._leg_ids: dict[str, tuple[str, ...]] = {}
        self._position_ids: set[str] = set()
        claims = chain(
            (_claims_of_open(p) for p in open_positions),
            (_claims_of_closed(c) for c in closed),
        )
        for c in claims:
            self._position_ids.add(c.position_id)
            for i in c.entry_ids:
                _add_claimant(self._entry_ids, i, c.position_id)
            for i in c.leg_ids:
                _add_claimant(self._leg_ids, i, c.position_id)

    def _entry_owners(self, order_id: str | None, client_order_id: str | None) -> set[str]:
        found = set(self._entry_ids.get(order_id or "", ()))
        if client_order_id and client_order_id in self._position_ids:
            found.add(client_order_id)
        return found

    def of(self, order: BrokerOrder) -> Owner | None:
        entry = self._entry_owners(order.id, order.client_order_id)
        leg = set(self._leg_ids.get(order.id, ()))
        if order.parent_id or order.parent_client_order_id:
            # A nested leg belongs to whoever its parent (an entry order) belongs to.
            leg |= self._entry_owners(order.parent_id, order.parent_client_order_id)
        if entry and not leg and len(entry) == 1:
            return Owner(next(iter(entry)), Role.ENTRY)
        if leg and not entry and len(leg) == 1:
            return Owner(next(iter(leg)), Role.LEG)
        if entry or leg:
            return Owner(min(entry | leg), Role.CONTESTED)
        return None


def _postings(ledger: Ledger) -> Iterator[tuple[str, str, Decimal | None]]:
    """(order id, position id, quantity) of every use of a fill the ledger knows: its postings,
    and the exit of each position the signal job closed (whose heal or operator close is not
    in the postings already). A quantity of None: the closed document's qty did not parse."""
    posted = {p.position_id for p in ledger.postings}
    for posting in ledger.postings:
        yield posting.order_id, posting.position_id, posting.qty
    for closed in ledger.closed:
        if closed.exit_order_id and not closed.posted and closed.position_id not in posted:
            yield closed.exit_order_id, closed.position_id, closed.qty


def used_quantities(ledger: Ledger) -> dict[str, Decimal]:
    """Quantity already posted to each order: ledger postings plus the signal job's closes."""
    used: dict[str, Decimal] = {}
    for order_id, _, qty in _postings(ledger):
        if qty is not None:
            used[order_id] = used.get(order_id, ZERO) + qty
    return used


def claimants(ledger: Ledger) -> dict[str, list[str]]:
    """Order id -> the positions the ledger (and the signal job's closes) say used it."""
    out: dict[str, list[str]] = {}
    for order_id, position_id, _ in _postings(ledger):
        out.setdefault(order_id, []).append(position_id)
    return out


def remaining(fills: Iterable[BrokerOrder], used: dict[str, Decimal]) -> dict[str, Decimal]:
    """What is left of each fill to allocate (never negative)."""
    return {o.id: max(ZERO, o.filled - used.get(o.id, ZERO)) for o in fills}
