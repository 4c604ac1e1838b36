"""The planning core: broker and Firestore snapshots in, a plan of typed actions out.

Pure: no I/O, no clock, no environment. ``now`` and the :class:`Policy` are passed in, so the
same input always gives the same plan, and every rule below is a table-driven test.

Invariants (numbered so tests and reviews can cite them):

1. No heal without broker evidence. A position is healed only when the broker shows either
   filled closing orders (opposite side, filled after the position's entry) covering its whole
   quantity, or its entry order ended (canceled / expired / rejected) without any fill.
2. A symbol is never both a zombie and an orphan: zombies come from symbols the broker does not
   hold (or holds only as dust), orphans from symbols it holds above the dust threshold.
3. THEORETICAL positions never reached the broker: never healed, deferred or reported.
4. Positions younger than the minimum age, or whose entry order is still working, are pending:
   never zombies, and their symbol is not checked for drift while they settle.
5. Drift is reported, never "fixed": no close happens because quantities disagree.
6. A fill is allocated to at most its filled quantity across all positions it heals.
7. Heals are refused, with a reason, when positions belong to another broker account, and
   beyond the heal limit unless the run is forced.
8. The plan is deterministic: actions come out in a stable order whatever the input order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from crypto_signals.domain.schemas import Position, TradeStatus, TradeType
from crypto_signals.domain.snapshots import (
    BrokerOrder,
    BrokerPosition,
    BrokerState,
    ClosedOrders,
    EvidenceQuery,
    StoreState,
)
from crypto_signals.domain.symbols import symbol_key
from crypto_signals.engine.policy import Policy

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)


class Evidence(StrEnum):
    CLOSING_FILL = "closing_fill"
    OWN_EXIT_LEG = "own_exit_leg"
    ENTRY_NEVER_FILLED = "entry_never_filled"


class DeferReason(StrEnum):
    TOO_YOUNG = "too_young"
    ENTRY_ORDER_WORKING = "entry_order_working"


class RefusalReason(StrEnum):
    HEAL_LIMIT = "heal_limit"
    ACCOUNT_MISMATCH = "account_mismatch"


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
    evidence_order_ids: tuple[str, ...]


@dataclass(frozen=True)
class Unverified:
    position_id: str
    symbol: str
    reason: str


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
    explained_by: str | None = None


@dataclass(frozen=True)
class RefuseHeal:
    heal: Heal
    reason: RefusalReason
    detail: str


Action = Heal | Unverified | Defer | AlertOrphan | IgnoreDust | ReportDrift | RefuseHeal


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    # Symbols (display form) of positions open in Firestore whose symbol the broker does not hold.
    zombie_symbols: tuple[str, ...] = ()

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


# --------------------------------------------------------------------------------------------
# Classification shared by both phases (which orders to fetch, then what to do).


@dataclass
class _Classified:
    deferred: list[Defer] = field(default_factory=list)
    # Open positions on symbols the broker does not hold (or holds only as dust).
    zombie_candidates: list[Position] = field(default_factory=list)
    # Open positions on held symbols whose Firestore total exceeds the broker's quantity: their
    # entry may never have filled, or part of them was closed outside the bot.
    drift_candidates: list[Position] = field(default_factory=list)
    settled_by_key: dict[str, list[Position]] = field(default_factory=dict)
    pending_keys: set[str] = field(default_factory=set)
    # Open, non-THEORETICAL positions, sorted: filtered once, used by every later step.
    reconcilable: list[Position] = field(default_factory=list)
    live_positions: dict[str, BrokerPosition] = field(default_factory=dict)
    dust_positions: dict[str, BrokerPosition] = field(default_factory=dict)


def _is_dust(position: BrokerPosition, policy: Policy) -> bool:
    return position.market_value is not None and position.market_value < policy.dust_threshold_usd


def _signed_qty(position: Position) -> Decimal:
    qty = Decimal(str(position.qty))
    return qty if position.side == "buy" else -qty


class _OrderIndex:
    """Orders by id, by client order id and by (symbol key, side): lookups instead of scans,
    so planning stays linear in the book (it was quadratic at 10,000 positions)."""

    def __init__(self, orders: Iterable[BrokerOrder]) -> None:
        self.orders = sorted(orders, key=lambda o: o.id)
        self.by_id: dict[str, list[BrokerOrder]] = defaultdict(list)
        self.by_client: dict[str, list[BrokerOrder]] = defaultdict(list)
        self.by_key_side: dict[tuple[str, str], list[BrokerOrder]] = defaultdict(list)
        for o in self.orders:
            self.by_id[o.id].append(o)
            if o.client_order_id:
                self.by_client[o.client_order_id].append(o)
            self.by_key_side[(o.key, o.side)].append(o)

    def entries_of(self, position: Position) -> list[BrokerOrder]:
        found = {o.id: o for i in position.entry_order_ids for o in self.by_id.get(i, ())}
        found.update({o.id: o for o in self.by_client.get(position.position_id, ())})
        return [found[k] for k in sorted(found)]

    def on(self, key: str, side: str) -> list[BrokerOrder]:
        return self.by_key_side.get((key, side), [])


def _entry_order_working(position: Position, open_orders: _OrderIndex) -> bool:
    return bool(open_orders.entries_of(position))


def _reconcilable(store: StoreState) -> list[Position]:
    # Invariant 3: THEORETICAL positions never reached the broker.
    return sorted(
        (
            p
            for p in store.positions
            if p.status is TradeStatus.OPEN and p.trade_type is not TradeType.THEORETICAL
        ),
        key=lambda p: p.position_id,
    )


def _classify(store: StoreState, broker: BrokerState, policy: Policy, now: datetime) -> _Classified:
    out = _Classified()
    open_orders = _OrderIndex(broker.open_orders)
    for bp in broker.positions:
        if _is_dust(bp, policy):
            out.dust_positions[bp.key] = bp
        else:
            out.live_positions[bp.key] = bp

    out.reconcilable = _reconcilable(store)
    for position in out.reconcilable:
        key = symbol_key(position.symbol)
        if _entry_order_working(position, open_orders):
            out.deferred.append(
                Defer(position.position_id, position.symbol, DeferReason.ENTRY_ORDER_WORKING)
            )
            out.pending_keys.add(key)
            continue
        born = position.created_at or position.filled_at
        if born is not None and now - born < policy.min_position_age:
            out.deferred.append(Defer(position.position_id, position.symbol, DeferReason.TOO_YOUNG))
            out.pending_keys.add(key)
            continue
        if key in out.live_positions:
            out.settled_by_key.setdefault(key, []).append(position)
        else:
            out.zombie_candidates.append(position)

    for key, positions in out.settled_by_key.items():
        if key in out.pending_keys:
            continue
        db_total = sum((_signed_qty(p) for p in positions), _ZERO)
        broker_qty = out.live_positions[key].qty
        if abs(db_total) > abs(broker_qty) and not policy.qty_close(db_total, broker_qty):
            out.drift_candidates.extend(positions)
    return out


def evidence_query(
    store: StoreState, broker: BrokerState, policy: Policy, now: datetime
) -> EvidenceQuery | None:
    """The closed-orders listing the plan needs, or None when no position needs evidence."""
    classified = _classify(store, broker, policy, now)
    candidates = classified.zombie_candidates + classified.drift_candidates
    if not candidates:
        return None
    symbols = tuple(sorted({p.symbol for p in candidates}))
    known = [t for p in candidates for t in (p.created_at, p.filled_at) if t is not None]
    after = min(known) - policy.order_lookback if known else now - policy.max_order_history
    return EvidenceQuery(symbols=symbols, after=after)


# --------------------------------------------------------------------------------------------
# Evidence.


def _never_filled(position: Position, orders: _OrderIndex) -> Heal | Unverified | None:
    """Evidence that the entry never filled: every matching entry order ended with 0 filled.

    None when there is no such evidence (the position then needs closing fills). When the
    broker and Firestore contradict each other (Firestore says the entry filled), a person
    decides.
    """
    entries = orders.entries_of(position)
    if not entries or not all(o.never_filled for o in entries):
        return None
    if position.filled_at is not None:
        return Unverified(
            position.position_id,
            position.symbol,
            "the broker shows the entry order ended unfilled, but Firestore has filled_at",
        )
    last = max(entries, key=lambda o: (o.ended_at or o.submitted_at, o.id))
    return _never_filled_heal(position, last)


def _closing_side(position: Position) -> str:
    return "sell" if position.side == "buy" else "buy"


@dataclass
class _FillPool:
    """Closing fills of one symbol and side, with what is left of each to allocate."""

    orders: list[BrokerOrder]
    remaining: dict[str, Decimal]

    @classmethod
    def build(cls, orders: Iterable[BrokerOrder]) -> _FillPool:
        fills = sorted(
            (o for o in orders if o.filled > 0 and o.filled_at and o.filled_avg_price),
            key=lambda o: (o.filled_at, o.id),
        )
        return cls(fills, {o.id: o.filled for o in fills})


def _own_legs(position: Position) -> set[str]:
    return {i for i in (position.tp_order_id, position.sl_order_id) if i}


def _allocate(
    position: Position, pool: _FillPool, policy: Policy, claimed: set[str]
) -> tuple[list[tuple[BrokerOrder, Decimal]], Decimal] | None:
    """Take fills covering the position's quantity from the pool; None leaves the pool intact.

    The position's own exit legs (its TP / SL order ids) are used first: they are exact
    evidence. Other fills count only when they filled after the position's entry and are not
    claimed by another position (``claimed``: entry orders and own exit legs of all).
    """
    need = Decimal(str(position.qty))
    opened = position.filled_at or position.created_at
    own = _own_legs(position)

    def eligible(order: BrokerOrder) -> bool:
        if order.id in own:
            return True
        if order.id in claimed:
            return False  # someone else's entry or exit leg (own legs returned True above)
        return opened is not None and order.filled_at is not None and order.filled_at > opened

    ordered = [o for o in pool.orders if o.id in own] + [o for o in pool.orders if o.id not in own]
    taken: list[tuple[BrokerOrder, Decimal]] = []
    covered = _ZERO
    for order in ordered:
        if covered >= need:
            break
        left = pool.remaining[order.id]
        if left <= 0 or not eligible(order):
            continue
        take = min(left, need - covered)
        taken.append((order, take))
        covered += take
    if not taken or not policy.qty_close(covered, need):
        return None
    for order, take in taken:
        pool.remaining[order.id] -= take
    return taken, covered


def _heal_from_fills(
    position: Position, taken: list[tuple[BrokerOrder, Decimal]], covered: Decimal
) -> Heal | Unverified:
    if position.entry_fill_price is None or position.entry_fill_price <= 0:
        return Unverified(
            position.position_id,
            position.symbol,
            "closing fill found but entry_fill_price is missing or not positive: "
            "P&L cannot be computed",
        )
    notional = sum((order.filled_avg_price or _ZERO) * qty for order, qty in taken)
    exit_price = notional / covered
    last = max(taken, key=lambda t: (t[0].filled_at, t[0].id))[0]
    assert last.filled_at is not None  # _FillPool keeps filled orders only
    entry = Decimal(str(position.entry_fill_price))
    qty = Decimal(str(position.qty))
    pnl = (exit_price - entry) * qty
    if position.side == "sell":
        pnl = -pnl
    basis = entry * qty
    pct = pnl / basis * _HUNDRED if basis else _ZERO
    opened = position.filled_at or position.created_at
    own = {position.tp_order_id, position.sl_order_id}
    return Heal(
        position_id=position.position_id,
        symbol=position.symbol,
        exit_fill_price=exit_price,
        exit_time=last.filled_at,
        exit_order_id=last.id,
        realized_pnl_usd=pnl,
        realized_pnl_pct=pct,
        trade_duration_seconds=_duration(opened, last.filled_at),
        evidence=Evidence.OWN_EXIT_LEG
        if all(o.id in own for o, _ in taken)
        else Evidence.CLOSING_FILL,
        evidence_order_ids=tuple(o.id for o, _ in taken),
    )


def _duration(start: datetime | None, end: datetime) -> int | None:
    if start is None:
        return None
    return max(0, int((end - start).total_seconds()))


def _never_filled_heal(position: Position, entry: BrokerOrder) -> Heal:
    ended = entry.ended_at or entry.submitted_at
    return Heal(
        position_id=position.position_id,
        symbol=position.symbol,
        exit_fill_price=None,
        exit_time=ended,
        exit_order_id=None,
        realized_pnl_usd=_ZERO,
        realized_pnl_pct=_ZERO,
        trade_duration_seconds=None,
        evidence=Evidence.ENTRY_NEVER_FILLED,
        evidence_order_ids=(entry.id,),
    )


def _claimed_orders(positions: Iterable[Position], orders: Iterable[BrokerOrder]) -> set[str]:
    """Orders that belong to some open position: its entry order and its own exit legs.

    Such an order is evidence only for its owner: a short's entry sell is not a long's exit,
    and a young position's take-profit is not an older position's manual close.
    """
    positions = list(positions)
    claimed = {leg for p in positions for leg in _own_legs(p)}
    claimed |= {i for p in positions for i in p.entry_order_ids}
    position_ids = {p.position_id for p in positions}
    claimed |= {o.id for o in orders if o.client_order_id in position_ids}
    return claimed


def _claimed_by_closed(closed: ClosedOrders) -> set[str]:
    ids = closed.claimed_by_closed_positions
    return {o.id for o in closed.orders if o.id in ids or o.client_order_id in ids}


def _decide_zombies(
    candidates: Sequence[Position],
    orders: _OrderIndex,
    policy: Policy,
    now: datetime,
    evidence_complete: bool,
    claimed: set[str],
) -> list[Heal | Unverified]:
    decided: list[Heal | Unverified] = []
    by_group: dict[tuple[str, str], list[Position]] = defaultdict(list)
    for position in candidates:
        never = _never_filled(position, orders)
        if never is not None:
            decided.append(never)
        else:
            by_group[(symbol_key(position.symbol), _closing_side(position))].append(position)

    for (key, side), positions in sorted(by_group.items()):
        pool = _FillPool.build(orders.on(key, side))
        filled = {o.id for o in pool.orders}
        # Positions whose own exit leg filled go first (exact evidence); then oldest first: a
        # fill after two entries is the earlier position's exit first.
        positions.sort(
            key=lambda p: (
                not (_own_legs(p) & filled),
                (p.filled_at or p.created_at or now),
                p.position_id,
            )
        )
        for position in positions:
            allocation = _allocate(position, pool, policy, claimed)
            if allocation is not None:
                decided.append(_heal_from_fills(position, *allocation))
            else:
                reason = "no filled closing order at the broker after the entry"
                if (position.filled_at or position.created_at) is None:
                    reason = (
                        "no entry time to match closing fills against, and no own exit leg filled"
                    )
                if not evidence_complete:
                    reason += " (order history listing was incomplete)"
                decided.append(Unverified(position.position_id, position.symbol, reason))
    return decided


def _explain_partial_close(
    positions: Sequence[Position], orders: _OrderIndex, gap: Decimal, policy: Policy
) -> str | None:
    """Name the one position and fill that account exactly for a shortfall, if there is one."""
    matches: list[str] = []
    for position in positions:
        opened = position.filled_at or position.created_at
        for order in orders.on(symbol_key(position.symbol), _closing_side(position)):
            if (
                order.filled > 0
                and order.filled_at is not None
                and opened is not None
                and order.filled_at > opened
                and order.filled < Decimal(str(position.qty))
                and policy.qty_close(order.filled, gap)
            ):
                matches.append(
                    f"partial external close of {position.position_id}: order {order.id} "
                    f"filled {order.filled_qty} @ {order.filled_avg_price}"
                )
    return matches[0] if len(matches) == 1 else None


def plan_reconciliation(
    store: StoreState,
    broker: BrokerState,
    closed: ClosedOrders,
    policy: Policy,
    now: datetime,
    *,
    force: bool = False,
) -> Plan:
    """Decide what to do. ``closed`` holds the orders of :func:`evidence_query`'s listing."""
    c = _classify(store, broker, policy, now)
    actions: list[Action] = [*sorted(c.deferred, key=lambda d: d.position_id)]
    orders = _OrderIndex(closed.orders)

    claimed = _claimed_orders(c.reconcilable, orders.orders) | _claimed_by_closed(closed)
    zombie_decisions = _decide_zombies(
        c.zombie_candidates, orders, policy, now, closed.complete, claimed
    )

    # Drift candidates: an entry that never filled is exact evidence even on a held symbol.
    drift_heals: list[Heal] = []
    drift_unverified: list[Unverified] = []
    still_open: dict[str, list[Position]] = defaultdict(list)
    for position in c.drift_candidates:
        never = _never_filled(position, orders)
        if isinstance(never, Heal):
            drift_heals.append(never)
        elif isinstance(never, Unverified):
            drift_unverified.append(never)
    healed_ids = {h.position_id for h in drift_heals}
    for key, positions in c.settled_by_key.items():
        still_open[key] = [p for p in positions if p.position_id not in healed_ids]

    drift: list[ReportDrift] = []
    for key, positions in sorted(still_open.items()):
        if key in c.pending_keys:
            continue
        db_total = sum((_signed_qty(p) for p in positions), _ZERO)
        broker_position = c.live_positions[key]
        if policy.qty_close(db_total, broker_position.qty):
            continue
        gap = abs(db_total) - abs(broker_position.qty)
        explained = (
            _explain_partial_close(positions, orders, gap, policy)
            if gap > 0 and positions
            else None
        )
        symbol = positions[0].symbol if positions else broker_position.display
        drift.append(ReportDrift(symbol, db_total, broker_position.qty, explained))

    heals = sorted(
        [d for d in zombie_decisions if isinstance(d, Heal)] + drift_heals,
        key=lambda h: (h.exit_time, h.position_id),
    )
    unverified = sorted(
        [d for d in zombie_decisions if isinstance(d, Unverified)] + drift_unverified,
        key=lambda u: u.position_id,
    )

    accepted, refused = _apply_limits(heals, c.reconcilable, broker, policy, force)
    actions.extend(accepted)
    actions.extend(refused)
    actions.extend(unverified)
    actions.extend(drift)

    db_keys = {symbol_key(p.symbol) for p in c.reconcilable}
    for key, bp in sorted(c.live_positions.items()):
        if key not in db_keys:
            actions.append(AlertOrphan(bp.display, bp.side, abs(bp.qty), bp.market_value))
    for _key, bp in sorted(c.dust_positions.items()):
        assert bp.market_value is not None
        actions.append(IgnoreDust(bp.display, bp.market_value))

    zombie_symbols = tuple(sorted({p.symbol for p in c.zombie_candidates}))
    return Plan(actions=tuple(actions), zombie_symbols=zombie_symbols)


def _apply_limits(
    heals: list[Heal],
    positions: Sequence[Position],
    broker: BrokerState,
    policy: Policy,
    force: bool,
) -> tuple[list[Heal], list[RefuseHeal]]:
    foreign = sorted(
        {
            p.account_id
            for p in positions
            if p.account_id and broker.account_id and p.account_id != broker.account_id
        }
    )
    if foreign:
        detail = (
            f"{len(foreign)} account id(s) on open positions differ from the broker account: "
            "check the Alpaca keys and ENVIRONMENT"
        )
        return [], [RefuseHeal(h, RefusalReason.ACCOUNT_MISMATCH, detail) for h in heals]
    if force or len(heals) <= policy.heal_limit:
        return heals, []
    detail = (
        f"{len(heals)} heals exceed the limit of {policy.heal_limit} per run; "
        "rerun with --force if this is expected"
    )
    kept = heals[: policy.heal_limit]
    return kept, [
        RefuseHeal(h, RefusalReason.HEAL_LIMIT, detail) for h in heals[policy.heal_limit :]
    ]
