"""Decisions for one symbol: zombies are positions, not symbols.

* The broker holds none of the symbol: every settled position there is a zombie; those with
  evidence are healed, the others are unverified.
* The broker holds less than Firestore (same side). First the exact evidence: an entry that
  never filled, a close by the position's own legs. If the positions left then account for the
  broker's quantity, those heal. Otherwise the oldest of the rest are the zombies (FIFO, the
  convention of the fills) and the newest are what the broker still holds. The zombies heal
  only when their closing fills cover them and no fill they use could as well be the close of
  a position the broker is taken to hold: then the evidence does not say which position closed,
  and the drift names both (invariant 7). A zombie without evidence stays unverified when the
  symbol is re-entered. Whatever cannot be made to add up is drift, with what would explain it.
* The broker holds more, or the other side: drift only (invariant 7).
* A fill younger than ``policy.min_fill_age`` may be the close the signal job is writing right
  now: positions it could explain wait a run (``Defer``), rather than be healed by the
  reconciler and then closed again by the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from crypto_signals.domain.schemas import Position
from crypto_signals.domain.snapshots import BrokerOrder
from crypto_signals.domain.symbols import symbol_key
from crypto_signals.engine.plan.actions import (
    Allocation,
    Defer,
    DeferReason,
    DriftKind,
    Heal,
    ReportDrift,
    Unverified,
    UnverifiedReason,
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
    deferred: list[Defer] = field(default_factory=list)


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
    now: datetime | None = None
    # Where the shared listing starts: a position that opened before it has a cut history, so
    # a fill in the listing may not be its close (the close may lie before the window): it takes
    # only its own legs (invariant 1: a cut listing can cost heals, never cause one).
    listed_after: datetime | None = None
    # Positions whose entry order the broker says does not exist.
    unknown_entries: frozenset[str] = frozenset()

    def complete_for(self, position: Position) -> bool:
        return self.listing_complete or position.position_id in self.looked_up

    def may_share(self, position: Position) -> bool:
        opened = position.opened_at
        return self.listed_after is None or (opened is not None and opened > self.listed_after)

    def settling(self, order: BrokerOrder) -> bool:
        when = order.fill_time
        return (
            self.now is not None
            and when is not None
            and (self.now - when < self.policy.min_fill_age)
        )

    def trial(self) -> Context:
        """The same context on a copy of what is left: for evidence that may not be used."""
        return replace(self, left=dict(self.left))


def _split(
    group: Sequence[Position], fills: Sequence[BrokerOrder], ctx: Context
) -> tuple[dict[str, list[BrokerOrder]], list[BrokerOrder]]:
    """A group's fills: each position's own legs, and those that belong to nobody."""
    ids = {p.position_id for p in group}
    own: dict[str, list[BrokerOrder]] = {}
    shared: list[BrokerOrder] = []
    for order in fills:
        owner = ctx.owners.of(order)
        if owner is None:
            shared.append(order)
        elif owner.role is Role.LEG and owner.position_id in ids:
            own.setdefault(owner.position_id, []).append(order)
        # Anyone's entry, another position's leg, a contested order: evidence for nobody.
    return own, shared


def settling_positions(positions: Sequence[Position], ctx: Context) -> list[Position]:
    """Positions a fill younger than ``min_fill_age`` could explain (their own leg, or a fill
    of their symbol and closing side after their entry)."""
    out = []
    for position in positions:
        fills = ctx.fills_by_group.get((symbol_key(position.symbol), closing_side(position)), [])
        own, shared = _split([position], fills, ctx)
        fresh = [o for o in own.get(position.position_id, []) if ctx.settling(o)] + [
            o for o in shared if ctx.settling(o) and qualifies(o, position)
        ]
        if fresh:
            out.append(position)
    return out


def gather_evidence(
    positions: Sequence[Position], ctx: Context, *, own_only: bool = False
) -> Evidence:
    """Never-filled entries first, then closing fills by the allocation convention
    (``own_only``: the exact evidence only, the positions' own legs)."""
    found = Evidence()
    rest: list[Position] = []
    for position in positions:
        if position.position_id in ctx.unknown_entries:
            found.unverified[position.position_id] = Unverified(
                position.position_id, position.symbol, UnverifiedReason.ENTRY_ORDER_UNKNOWN
            )
            continue
        decided = never_filled(position, ctx.orders, listing_complete=ctx.complete_for(position))
        if isinstance(decided, Heal):
            found.heals[position.position_id] = decided
        elif isinstance(decided, Unverified):
            found.unverified[position.position_id] = decided
        else:
            rest.append(position)
    for side in ("sell", "buy"):
        group = [p for p in rest if closing_side(p) == side]
        if not group:
            continue
        fills = ctx.fills_by_group.get((symbol_key(group[0].symbol), side), [])
        own, shared = _split(group, fills, ctx)
        result = allocate(
            group, own, [] if own_only else shared, ctx.left, ctx.policy, may_share=ctx.may_share
        )
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


def _settle(book: SymbolBook, ctx: Context) -> Decision | None:
    """The symbol waits a run when a fresh fill could explain one of its positions."""
    waiting = settling_positions(book.settled, ctx)
    if not waiting:
        return None
    return Decision(
        deferred=[Defer(p.position_id, p.symbol, DeferReason.FILL_SETTLING) for p in book.settled]
    )


def decide_not_held(book: SymbolBook, ctx: Context) -> Decision:
    settling = _settle(book, ctx)
    if settling is not None:
        return settling
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
    settling = _settle(book, ctx)
    if settling is not None:
        return settling
    held_qty = book.broker.qty
    # Evidence is gathered on a trial copy of what is left of the fills and committed only when
    # the symbol's books close (the heals are applied): a drift leaves the fills untouched.
    trial = ctx.trial()
    exact_ev = gather_evidence(book.settled, trial, own_only=True)
    exact = [p for p in book.settled if p.position_id in {*exact_ev.heals, *exact_ev.unverified}]
    rest = [p for p in book.settled if p not in exact]
    cut = _unseen_closes(rest, book.operator_held, held_qty, ctx.policy)
    if cut is None:
        # No split of the book matches the broker: name whatever evidence there is.
        named = gather_evidence(book.settled, ctx.trial())
        evidenced = [p for p in book.settled if p.position_id in {*named.heals, *named.unverified}]
        return Decision(drift=_drift(book, named, evidenced, ctx))
    closed, held = rest[:cut], rest[cut:]
    ev = gather_evidence(closed, trial)
    ambiguous = _ambiguous(closed, held, ev, ctx)
    zombies = [p.position_id for p in [*exact, *closed]]
    if ambiguous:
        return Decision(drift=_ambiguous_drift(book, closed, held, ambiguous), zombies=zombies)
    evidenced = [*exact, *(p for p in closed if p.position_id in {*ev.heals, *ev.unverified})]
    missing = [p for p in closed if p not in evidenced]
    if missing:
        # The zombies without evidence stay OPEN, so healing the others would leave the book
        # wrong (inv. 7): they heal once a person has resolved these.
        unseen = [_unverified(p, ev, ctx) for p in missing]
        if not [p for p in evidenced if p.position_id in {*exact_ev.heals, *ev.heals}]:
            return Decision(unverified=unseen, zombies=zombies)
        merged = _merge(exact_ev, ev)
        return Decision(
            unverified=unseen, drift=_drift(book, merged, evidenced, ctx), zombies=zombies
        )
    ctx.left.update(trial.left)
    out = Decision(zombies=zombies)
    merged = _merge(exact_ev, ev)
    for position in evidenced:
        pid = position.position_id
        if pid in merged.heals:
            out.heals.append(merged.heals[pid])
        else:
            out.unverified.append(merged.unverified[pid])
    return out


def _merge(a: Evidence, b: Evidence) -> Evidence:
    return Evidence(
        heals={**a.heals, **b.heals},
        unverified={**a.unverified, **b.unverified},
        partial={**a.partial, **b.partial},
        allocations={**a.allocations, **b.allocations},
    )


def _ambiguous(
    closed: Sequence[Position], held: Sequence[Position], ev: Evidence, ctx: Context
) -> list[tuple[str, Allocation]]:
    """Fills given to a zombie that could as well be the close of a position the broker is
    taken to hold: the evidence does not say which of them closed."""
    out = []
    for position in closed:
        fills = ctx.fills_by_group.get((symbol_key(position.symbol), closing_side(position)), [])
        by_id = {o.id: o for o in fills}
        own, _ = _split([position], fills, ctx)
        own_ids = {o.id for o in own.get(position.position_id, [])}
        for share in ev.allocations.get(position.position_id, ()):
            order = by_id.get(share.order_id)
            if order is None or share.order_id in own_ids:
                continue
            if any(qualifies(order, h) and ctx.may_share(h) for h in held):
                out.append((position.position_id, share))
    return out


def _ambiguous_drift(
    book: SymbolBook,
    closed: Sequence[Position],
    held: Sequence[Position],
    shares: Sequence[tuple[str, Allocation]],
) -> ReportDrift:
    assert book.broker is not None
    return ReportDrift(
        book.symbol,
        book.db_qty,
        book.broker.qty,
        DriftKind.AMBIGUOUS,
        tuple(sorted({p.position_id for p in [*closed, *held]})),
        tuple(shares),
    )


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
