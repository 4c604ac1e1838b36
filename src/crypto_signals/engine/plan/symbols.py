"""Decisions for one symbol: zombies are positions, not symbols.

* The broker holds none of the symbol: every settled position there is a zombie; those with
  evidence are healed, the others are unverified.
* The broker holds less than Firestore (same side): the positions whose close is fully
  evidenced are healed when the open positions left afterwards account for the broker's
  quantity (invariant 7). When the positions without evidence hold too much, and the newest of
  them account for the broker's quantity, the oldest are zombies whose closes the broker does
  not show: unverified (FIFO, the convention of the fills), and an unverified zombie stays
  unverified when the symbol is re-entered. Otherwise nothing changes, and the drift names the
  positions and fills that would explain it.
* The broker holds more, or the other side: drift only (invariant 7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

from crypto_signals.domain.schemas import Position
from crypto_signals.domain.snapshots import BrokerOrder
from crypto_signals.domain.symbols import symbol_key
from crypto_signals.engine.plan.actions import (
    Allocation,
    DriftKind,
    Heal,
    ReportDrift,
    Unverified,
)
from crypto_signals.engine.plan.allocation import allocate, closing_side, qualifies, share_of
from crypto_signals.engine.plan.book import ZERO, SymbolBook, signed_qty
from crypto_signals.engine.plan.evidence import (
    OrderIndex,
    heal_from_allocation,
    never_filled,
    unverified_reason,
)
from crypto_signals.engine.plan.ownership import Owners, Role
from crypto_signals.engine.policy import Policy


@dataclass
class Evidence:
    """What the broker's closed orders say about the positions of one symbol."""

    heals: dict[str, Heal] = field(default_factory=dict)
    unverified: dict[str, Unverified] = field(default_factory=dict)
    partial: dict[str, Decimal] = field(default_factory=dict)
    allocations: dict[str, tuple[Allocation, ...]] = field(default_factory=dict)


@dataclass
class Decision:
    heals: list[Heal] = field(default_factory=list)
    unverified: list[Unverified] = field(default_factory=list)
    drift: ReportDrift | None = None
    zombies: list[str] = field(default_factory=list)  # position ids judged closed at the broker


@dataclass(frozen=True)
class Context:
    orders: OrderIndex
    fills_by_group: dict[tuple[str, str], list[BrokerOrder]]  # (symbol key, side) -> fills
    owners: Owners
    # What is left of every fill. A symbol's decision takes from it only what its heals use.
    left: dict[str, Decimal]
    policy: Policy
    listing_complete: bool
    # Positions whose own orders were looked up one by one (complete for them).
    looked_up: frozenset[str] = frozenset()

    def complete_for(self, position: Position) -> bool:
        return self.listing_complete or position.position_id in self.looked_up

    def trial(self) -> Context:
        """The same context on a copy of what is left: for evidence that may not be used."""
        return replace(self, left=dict(self.left))


def gather_evidence(positions: Sequence[Position], ctx: Context) -> Evidence:
    """Never-filled entries first, then closing fills by the allocation convention."""
    found = Evidence()
    rest: list[Position] = []
    for position in positions:
        decided = never_filled(position, ctx.orders, listing_complete=ctx.complete_for(position))
        if isinstance(decided, Heal):
            found.heals[position.position_id] = decided
        elif isinstance(decided, Unverified):
            found.unverified[position.position_id] = decided
        else:
            rest.append(position)
    ids = {p.position_id for p in rest}
    for side in ("sell", "buy"):
        group = [p for p in rest if closing_side(p) == side]
        if not group:
            continue
        fills = ctx.fills_by_group.get((symbol_key(group[0].symbol), side), [])
        own: dict[str, list[BrokerOrder]] = {}
        shared: list[BrokerOrder] = []
        for order in fills:
            owner = ctx.owners.of(order)
            if owner is None:
                shared.append(order)
            elif owner.role is Role.LEG and owner.position_id in ids:
                own.setdefault(owner.position_id, []).append(order)
            # Anyone's entry, another position's leg, a contested order: evidence for nobody.
        result = allocate(group, own, shared, ctx.left, ctx.policy)
        for position in group:
            pid = position.position_id
            if pid in result.covered:
                legs = {o.id for o in own.get(pid, [])}
                found.allocations[pid] = result.covered[pid]
                decided = heal_from_allocation(position, result.covered[pid], legs)
                if isinstance(decided, Heal):
                    found.heals[pid] = decided
                else:
                    found.unverified[pid] = decided
            else:
                found.partial[pid] = result.partial.get(pid, ZERO)
        # The fills taken here are gone for every later decision of this plan (invariant 2).
        ctx.left.update(result.left)
    return found


def _unverified(position: Position, ev: Evidence, ctx: Context) -> Unverified:
    covered = ev.partial.get(position.position_id)
    return Unverified(
        position.position_id,
        position.symbol,
        unverified_reason(position, covered),
        covered_qty=covered if covered else None,
        listing_incomplete=not ctx.complete_for(position),
    )


def decide_not_held(book: SymbolBook, ctx: Context) -> Decision:
    ev = gather_evidence(book.settled, ctx)
    out = Decision(zombies=[p.position_id for p in book.settled])
    for position in book.settled:
        pid = position.position_id
        if pid in ev.heals:
            out.heals.append(ev.heals[pid])
        elif pid in ev.unverified:
            out.unverified.append(ev.unverified[pid])
        else:
            out.unverified.append(_unverified(position, ev, ctx))
    return out


def _total(positions: Sequence[Position]) -> Decimal:
    return sum((signed_qty(p) for p in positions), ZERO)


def _unseen_closes(
    rest: Sequence[Position], kept: Sequence[Position], held: Decimal, policy: Policy
) -> int | None:
    """How many of the oldest remaining positions must be closed, without evidence, for the
    rest to account for the broker's quantity; None when no such cut exists (drift)."""
    for cut in range(len(rest) + 1):
        left_open = _total([*rest[cut:], *kept])
        if policy.qty_close(left_open, held):
            return cut
        if abs(left_open) < abs(held):
            return None
    return None


def decide_excess(book: SymbolBook, ctx: Context) -> Decision:
    assert book.broker is not None
    # Evidence is gathered on a trial copy of what is left of the fills and committed only when
    # the symbol's books close (the heals are applied): a drift leaves the fills untouched.
    trial = ctx.trial()
    ev = gather_evidence(book.settled, trial)
    decided = set(ev.heals) | set(ev.unverified)
    closed = [p for p in book.settled if p.position_id in decided]
    rest = [p for p in book.settled if p.position_id not in decided]
    cut = _unseen_closes(rest, book.operator_held, book.broker.qty, ctx.policy)
    if cut is None:
        return Decision(drift=_drift(book, ev, closed, ctx))
    unseen = [_unverified(p, ev, ctx) for p in rest[:cut]]
    zombies = [p.position_id for p in [*closed, *rest[:cut]]]
    if cut > 0 and closed:
        # The evidenced closes alone do not bring the book to the broker's quantity: the
        # unverified ones stay OPEN, so healing the others would leave the book wrong (inv. 7).
        # They heal once a person has resolved the unverified ones.
        return Decision(unverified=unseen, drift=_drift(book, ev, closed, ctx), zombies=zombies)
    ctx.left.update(trial.left)
    out = Decision(zombies=zombies, unverified=unseen)
    for position in closed:
        pid = position.position_id
        if pid in ev.heals:
            out.heals.append(ev.heals[pid])
        else:
            out.unverified.append(ev.unverified[pid])
    return out


def _drift(book: SymbolBook, ev: Evidence, closed: Sequence[Position], ctx: Context) -> ReportDrift:
    assert book.broker is not None
    db, held = book.db_qty, book.broker.qty
    if closed:
        shares = tuple(
            (p.position_id, a) for p in closed for a in ev.allocations.get(p.position_id, ())
        )
        return ReportDrift(
            book.symbol,
            db,
            held,
            DriftKind.EVIDENCE_DOES_NOT_ADD_UP,
            tuple(p.position_id for p in closed),
            shares,
        )
    partial = _partial_close(book, ctx, abs(db) - abs(held))
    if partial is not None:
        position, share = partial
        return ReportDrift(
            book.symbol, db, held, DriftKind.PARTIAL_CLOSE, (position,), ((position, share),)
        )
    return ReportDrift(book.symbol, db, held, DriftKind.UNEXPLAINED)


def _partial_close(book: SymbolBook, ctx: Context, gap: Decimal) -> tuple[str, Allocation] | None:
    """The one position and fill that account exactly for a shortfall, if there is one."""
    if gap <= 0:
        return None
    matches: list[tuple[str, Allocation]] = []
    for position in book.settled:
        for order in ctx.fills_by_group.get((book.key, closing_side(position)), []):
            left = ctx.left.get(order.id, ZERO)
            if (
                ctx.owners.of(order) is None
                and qualifies(order, position)
                and ZERO < left < position.qty
                and ctx.policy.qty_close(left, gap)
            ):
                matches.append((position.position_id, share_of(order, left)))
    return matches[0] if len(matches) == 1 else None


def decide_broker_more(book: SymbolBook) -> Decision:
    assert book.broker is not None
    return Decision(
        drift=ReportDrift(book.symbol, book.db_qty, book.broker.qty, DriftKind.BROKER_HOLDS_MORE)
    )
