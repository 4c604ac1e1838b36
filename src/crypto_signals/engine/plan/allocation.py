"""Allocating closing fills to positions: the ledger's convention, in one place.

The convention, and why:

1. **Own legs first.** A position's own exit legs (its ``tp_order_id`` / ``sl_order_id``, or a
   leg whose parent is its entry order) are exact evidence: they are allocated to it first, and
   never to anyone else. This keeps two bracket positions on one symbol from taking each
   other's exits even when the documents do not store their leg ids.
2. **Then first-in, first-out by entry time.** The other closing fills of a symbol and side (a
   manual sell in the Alpaca app, a stop placed by hand) go to the oldest open position whose
   entry came before the fill. FIFO is what brokers and tax lots use, it is deterministic, and
   it never lets a fill close a position that did not exist yet.
3. **A fill is split** across the positions it covers, and a position's close can span
   several fills; each position takes at most its quantity, each fill gives at most what is
   left of it after the ledger's earlier postings.
4. **All or nothing per position.** A position is covered when its allocation reaches its
   quantity within the policy's tolerance; otherwise it takes nothing, and what it would have
   taken stays for the positions after it.
5. **Fees in the asset.** Alpaca takes its crypto fee from the asset received, so two 0.5
   buys leave 0.9975 and one sell of 0.9975 closes both. When the plain FIFO pass leaves a
   position uncovered and the group's fills add up to its quantities within tolerance, the
   quantities are scaled down by that common ratio, so each position is covered within
   tolerance instead of the first taking a full 0.5 and the second falling short. The scaled
   pass is used only when it covers more positions.

Fills that qualify for a position other than through its own legs: opposite side, same symbol,
a positive filled quantity with a price, filled after the position's entry; a fill without
``filled_at`` (filled in part, then canceled or expired) must also have been submitted after the
entry, and counts at its filled quantity and average price.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, Decimal, localcontext

from crypto_signals.domain.schemas import Position
from crypto_signals.domain.snapshots import BrokerOrder
from crypto_signals.engine.plan.actions import Allocation
from crypto_signals.engine.policy import Policy

ZERO = Decimal(0)
_QUANTUM = Decimal("1e-12")


def closing_side(position: Position) -> str:
    return "sell" if position.side == "buy" else "buy"


def qualifies(order: BrokerOrder, position: Position) -> bool:
    """A fill that is not the position's own leg may close it only if it came after the entry."""
    opened = position.opened_at
    when = order.fill_time
    if opened is None or when is None or when <= opened:
        return False
    return order.filled_at is not None or order.submitted_at > opened


@dataclass
class GroupResult:
    covered: dict[str, tuple[Allocation, ...]] = field(default_factory=dict)
    partial: dict[str, Decimal] = field(default_factory=dict)  # position id -> what fills reached
    left: dict[str, Decimal] = field(default_factory=dict)  # what is left of each fill after


def share_of(order: BrokerOrder, qty: Decimal) -> Allocation:
    """``qty`` of a fill (``order.is_fill`` holds for every fill the core allocates)."""
    assert order.filled_avg_price is not None
    assert order.fill_time is not None
    return Allocation(order.id, qty, order.filled_avg_price, order.fill_time)


def _by_time(orders: Sequence[BrokerOrder]) -> list[BrokerOrder]:
    return sorted(orders, key=lambda o: (o.fill_time or datetime.min, o.id))


def _scaled(qty: Decimal, scale: Decimal) -> Decimal:
    """``qty * scale``, cut (never rounded up) to 12 places; exact when ``scale`` is 1. Wide
    enough for any quantity a document can hold (a qty of 1e16 has more digits than the
    default context keeps at 12 places)."""
    if scale == 1:
        return qty
    with localcontext() as wide:
        wide.prec = 80
        return (qty * scale).quantize(_QUANTUM, rounding=ROUND_DOWN)


def _pass(
    positions: Sequence[Position],
    own: dict[str, list[BrokerOrder]],
    shared: list[BrokerOrder],
    left: dict[str, Decimal],
    policy: Policy,
    scale: Decimal,
    may_share: Callable[[Position], bool],
) -> GroupResult:
    result = GroupResult(left=dict(left))
    pool = result.left
    for position in positions:
        need = _scaled(position.qty, scale)
        candidates = own.get(position.position_id, []) + (
            [o for o in shared if qualifies(o, position)] if may_share(position) else []
        )
        takes: list[tuple[BrokerOrder, Decimal]] = []
        covered = ZERO
        for order in candidates:
            if covered >= need:
                break
            available = pool.get(order.id, ZERO)
            if available <= 0:
                continue
            take = min(available, need - covered)
            takes.append((order, take))
            covered += take
        if takes and policy.qty_close(covered, position.qty):
            for order, take in takes:
                pool[order.id] -= take
            result.covered[position.position_id] = tuple(share_of(o, q) for o, q in takes)
        else:
            result.partial[position.position_id] = covered
    return result


def _anyone(position: Position) -> bool:
    return True


def allocate(
    positions: Sequence[Position],
    own: dict[str, list[BrokerOrder]],
    shared: Sequence[BrokerOrder],
    left: dict[str, Decimal],
    policy: Policy,
    *,
    may_share: Callable[[Position], bool] = _anyone,
) -> GroupResult:
    """Allocate one symbol-and-side group. ``positions`` oldest first; ``own`` maps a position
    id to its own filled legs; ``shared`` are the group's other fills; ``left`` what is left of
    every fill. Pure: ``left`` is not modified, the result carries what remains."""
    own = {pid: _by_time(orders) for pid, orders in own.items()}
    shared_sorted = _by_time(shared)
    plain = _pass(positions, own, shared_sorted, left, policy, Decimal(1), may_share)
    if not plain.partial:
        return plain
    # Fees in the asset (convention 5): scale by the ratio of what the fills give to what the
    # positions that could use them need, when that ratio is within tolerance.
    usable = [
        p
        for p in positions
        if own.get(p.position_id) or (may_share(p) and any(qualifies(o, p) for o in shared_sorted))
    ]
    fill_ids = {o.id for p in usable for o in own.get(p.position_id, [])}
    fill_ids |= {
        o.id for o in shared_sorted if any(qualifies(o, p) and may_share(p) for p in usable)
    }
    need = sum((p.qty for p in usable), ZERO)
    have = sum((left.get(i, ZERO) for i in fill_ids), ZERO)
    if not usable or have >= need or not policy.qty_close(have, need):
        return plain
    with localcontext() as wide:
        wide.prec = 80
        ratio = have / need
    scaled = _pass(positions, own, shared_sorted, left, policy, ratio, may_share)
    return scaled if len(scaled.covered) > len(plain.covered) else plain
