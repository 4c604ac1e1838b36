"""``plan_reconciliation``: the book, the evidence and the gates, in that order."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from crypto_signals.domain.schemas import TradeType
from crypto_signals.domain.snapshots import (
    BreakerState,
    BrokerOrder,
    BrokerState,
    ClosedOrders,
    Ledger,
    StoreState,
)
from crypto_signals.domain.symbols import symbol_key
from crypto_signals.engine.plan.actions import (
    Action,
    AlertOrphan,
    Halted,
    IgnoreDust,
    OverAllocated,
    Plan,
)
from crypto_signals.engine.plan.blocking import ANY_SYMBOL, blocked_symbols, inconsistent_listing
from crypto_signals.engine.plan.book import Book, Holding, classify
from crypto_signals.engine.plan.evidence import OrderIndex
from crypto_signals.engine.plan.limits import gate_heals
from crypto_signals.engine.plan.ownership import Owners, claimants, remaining, used_quantities
from crypto_signals.engine.plan.symbols import (
    Context,
    Decision,
    decide_broker_more,
    decide_excess,
    decide_not_held,
)
from crypto_signals.engine.policy import Policy


def plan_reconciliation(
    store: StoreState,
    broker: BrokerState,
    closed: ClosedOrders,
    policy: Policy,
    now: datetime,
    *,
    ledger: Ledger | None = None,
    breaker: BreakerState | None = None,
    force: bool = False,
    book: Book | None = None,
) -> Plan:
    """Decide what to do. ``closed`` holds the orders of :func:`evidence_query`'s listing;
    ``ledger`` what earlier heals and closes took from those fills; ``breaker`` its state;
    ``book`` is ``classify(store, broker, policy, now)`` when the caller has it already."""
    ledger = ledger or Ledger()
    breaker = breaker or BreakerState()
    if book is None:
        book = classify(store, broker, policy, now)
    blocks = blocked_symbols((*broker.unreadable, *closed.unreadable), book.reconcilable)
    blocks.update(inconsistent_listing(closed.missing, book.reconcilable))

    orders = OrderIndex(closed.orders)
    fills = [o for o in orders.orders if o.is_fill]
    used = used_quantities(ledger)
    groups: dict[tuple[str, str], list[BrokerOrder]] = defaultdict(list)
    for order in fills:
        groups[(order.key, order.side)].append(order)
    ctx = Context(
        orders=orders,
        fills_by_group=dict(groups),
        # Every position the store returned owns its orders, whatever its status, except
        # THEORETICAL ones, which never reached the broker (invariant 5).
        owners=Owners(
            [p for p in store.positions if p.trade_type is not TradeType.THEORETICAL],
            ledger.closed,
        ),
        left=remaining(fills, used),
        policy=policy,
        listing_complete=closed.complete,
        looked_up=closed.looked_up,
        now=now,
        listed_after=closed.listed_after,
        unknown_entries=frozenset(e.position_id for e in closed.unknown_entries),
    )

    decisions: list[Decision] = []
    for sb in book.symbols.values():
        if ANY_SYMBOL in blocks or sb.key in blocks:
            continue
        if sb.holding is Holding.NOT_HELD and sb.settled:
            decisions.append(decide_not_held(sb, ctx))
        elif sb.holding is Holding.EXCESS:
            decisions.append(decide_excess(sb, ctx))
        elif sb.holding is Holding.BROKER_MORE:
            decisions.append(decide_broker_more(sb))

    heals = sorted(
        (h for d in decisions for h in d.heals), key=lambda h: (h.exit_time, h.position_id)
    )
    unverified = sorted((u for d in decisions for u in d.unverified), key=lambda u: u.position_id)
    drift = sorted(
        (d.drift for d in decisions if d.drift is not None), key=lambda r: symbol_key(r.symbol)
    )
    gate = gate_heals(heals, book.reconcilable, broker.account_id, breaker, policy, force=force)

    deferred = [*book.deferred, *(d for decision in decisions for d in decision.deferred)]
    actions: list[Action] = [*sorted(deferred, key=lambda d: d.position_id)]
    actions += gate.accepted
    actions += gate.refused
    actions += unverified
    actions += drift
    actions += [blocks[k] for k in sorted(blocks)]
    actions += _over_allocated(fills, used, ledger, policy)
    if gate.trip is not None:
        actions.append(gate.trip)
    if gate.reset is not None:
        actions.append(gate.reset)
    db_keys = {symbol_key(p.symbol) for p in book.reconcilable}
    actions += [
        AlertOrphan(bp.display, bp.side, abs(bp.qty), bp.market_value)
        for key, bp in sorted(book.live.items())
        if key not in db_keys
    ]
    actions += [
        IgnoreDust(bp.display, bp.market_value)
        for _, bp in sorted(book.dust.items())
        if bp.market_value is not None
    ]

    halted: Halted | None = None
    if gate.trip is not None:
        halted = Halted(gate.trip.heals_due, gate.trip.limit, None, tripped_now=True)
    elif breaker.tripped and gate.reset is None:
        halted = Halted(breaker.heals_due, breaker.limit, breaker.tripped_at, tripped_now=False)

    by_id = {p.position_id: p for p in book.reconcilable}
    zombies = sorted({by_id[pid].symbol for d in decisions for pid in d.zombies})
    return Plan(
        actions=tuple(actions), zombie_symbols=tuple(zombies), held=book.held_ids, halted=halted
    )


def _over_allocated(
    fills: list[BrokerOrder], used: dict[str, Decimal], ledger: Ledger, policy: Policy
) -> list[OverAllocated]:
    """Listed fills the ledger holds more of than they filled (beyond tolerance)."""
    users = claimants(ledger)
    out = []
    for order in fills:
        taken = used.get(order.id, Decimal(0))
        if taken > order.filled and not policy.qty_close(taken, order.filled):
            out.append(
                OverAllocated(
                    order.id,
                    order.symbol,
                    order.filled,
                    taken,
                    tuple(sorted(users.get(order.id, []))),
                )
            )
    return sorted(out, key=lambda o: o.order_id)
