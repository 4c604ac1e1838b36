"""Property tests of the planning core's invariants over small random worlds.

Each test cites the invariant it checks by its number in ``crypto_signals.engine.plan``'s
docstring. The worlds are built from a handful of symbols, ids, quantities and times so that
positions, orders and broker holdings collide often: same symbol, same ids, fills before and
after entries, legs under their parent entry, fills in part then canceled, dust, foreign
accounts, THEORETICAL positions, ledger postings and closes by the signal job, a tripped
breaker, positions an operator holds.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from crypto_signals.domain.schemas import Position, TradeStatus, TradeType
from crypto_signals.domain.snapshots import (
    BreakerState,
    BrokerOrder,
    BrokerPosition,
    BrokerState,
    ClosedOrders,
    ClosedPosition,
    Ledger,
    OrderSide,
    Posting,
    StoreState,
    UnreadableItem,
)
from crypto_signals.domain.symbols import symbol_key
from crypto_signals.engine.plan import (
    Defer,
    Evidence,
    Heal,
    Plan,
    RefuseHeal,
    ReportDrift,
    Unverified,
    plan_reconciliation,
)
from crypto_signals.engine.plan.book import is_dust
from crypto_signals.engine.policy import Policy
from tests.core.builders import after_heals

T = TypeVar("T")
FAST = settings(max_examples=150, deadline=None)

ACCOUNT = "acct-main"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
# Firestore symbol -> the forms the broker may use for it (positions say BTCUSD, orders BTC/USD).
SYMBOLS = {
    "BTC/USD": ("BTCUSD", "BTC/USD"),
    "ETH/USD": ("ETHUSD", "ETH/USD"),
    "SOL/USDT": ("SOLUSDT", "SOL/USDT"),
    "AAPL": ("AAPL",),
}
POSITION_QTYS = ("0.5", "1", "1.5", "2", "3")
FILL_QTYS = ("0", "0.5", "0.998", "1", "1", "1.5", "2", "3")
CLOSED_STATUSES = ("filled", "filled", "filled", "canceled", "expired", "rejected", "done_for_day")
OPEN_STATUSES = ("new", "accepted", "partially_filled", "held")


@dataclass(frozen=True)
class World:
    store: StoreState
    broker: BrokerState
    closed: ClosedOrders
    policy: Policy
    now: datetime
    force: bool
    ledger: Ledger = field(default_factory=Ledger)
    breaker: BreakerState = field(default_factory=BreakerState)

    def plan(
        self,
        *,
        store: StoreState | None = None,
        closed: ClosedOrders | None = None,
        force: bool | None = None,
        ledger: Ledger | None = None,
        breaker: BreakerState | None = None,
    ) -> Plan:
        return plan_reconciliation(
            self.store if store is None else store,
            self.broker,
            self.closed if closed is None else closed,
            self.policy,
            self.now,
            ledger=self.ledger if ledger is None else ledger,
            breaker=self.breaker if breaker is None else breaker,
            force=self.force if force is None else force,
        )


MINUTE = st.integers(-60, 600)
NOW_MINUTE = st.one_of(st.integers(600, 900), st.integers(0, 600))
N_OPEN = st.sampled_from([0, 0, 0, 1, 2])
MAYBE_MINUTE = st.one_of(st.none(), MINUTE, MINUTE)
SYMBOL = st.sampled_from(sorted(SYMBOLS))
# Positions crowd onto BTC/USD so that several of them compete for the same fills.
POSITION_SYMBOL = st.sampled_from(["BTC/USD", "BTC/USD", "BTC/USD", *sorted(SYMBOLS)])
ACCOUNT_ID = st.sampled_from([ACCOUNT] * 12 + [None, None, "other"])
STATUS = st.sampled_from([TradeStatus.OPEN] * 4 + [TradeStatus.CLOSED])
BUY_SELL: tuple[OrderSide, ...] = ("buy", "sell")
POSITION_SIDE = st.sampled_from(("buy", "buy", "sell"))
ORDER_SIDE = st.sampled_from(BUY_SELL)
POSITION_QTY = st.sampled_from(POSITION_QTYS)
ENTRY_PRICE = st.sampled_from([90.0, 100.0, 110.0, 100.0, None])
TRADE_TYPE = st.sampled_from([TradeType.EXECUTED, TradeType.EXECUTED, TradeType.THEORETICAL, None])
FILL_QTY = st.sampled_from(FILL_QTYS)
FILL_SHARE = st.sampled_from(["1", "1", "1", "0.998", "0.5", "2", "0"])
FILL_PRICE = st.sampled_from(["95", "100", "105.5", "120"])
CLOSED_STATUS = st.sampled_from(CLOSED_STATUSES)
OPEN_STATUS = st.sampled_from(OPEN_STATUSES)
BROKER_QTY = st.sampled_from(["-2", "-1", "0.5", "1", "1.5", "2", "3", "0.0001"])
MARKET_VALUE = st.sampled_from([None, Decimal("0.4"), Decimal("150"), None])
HELD = st.lists(SYMBOL, unique=True, max_size=2)
# An index into a list of ids: 0-2 mean "no reference", the rest pick an id (or a stranger).
REF = st.integers(0, 12)
HEAL_LIMIT = st.sampled_from([0, 1, 1, 2, 3, 25])
MIN_AGE = st.sampled_from([5, 5, 5, 0, 120])


def at(minutes: int | None) -> datetime | None:
    return None if minutes is None else T0 + timedelta(minutes=minutes)


def opposite(side: str) -> OrderSide:
    return "sell" if side == "buy" else "buy"


def pick(index: int, ids: list[str]) -> str | None:
    if index < 3:
        return None
    choices = [*ids, "x-unknown"]
    return choices[(index - 3) % len(choices)]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    n_closed = draw(st.integers(0, 8))
    n_open = draw(N_OPEN)
    n_positions = draw(st.integers(0, 6))
    closed_ids = [f"o{i}" for i in range(n_closed)]
    open_ids = [f"w{i}" for i in range(n_open)]
    position_ids = [f"p{i}" for i in range(n_positions)]
    order_ids = closed_ids + open_ids

    positions = tuple(
        Position(
            position_id=pid,
            account_id=draw(ACCOUNT_ID),
            symbol=draw(POSITION_SYMBOL),
            status=draw(STATUS),
            side=draw(POSITION_SIDE),
            qty=draw(POSITION_QTY),
            entry_fill_price=draw(ENTRY_PRICE),
            alpaca_order_id=pick(draw(REF), order_ids),
            entry_order_id=pick(draw(REF), order_ids),
            tp_order_id=pick(draw(REF), order_ids),
            sl_order_id=pick(draw(REF), order_ids),
            trade_type=draw(TRADE_TYPE),
            created_at=at(draw(MAYBE_MINUTE)),
            filled_at=at(draw(MAYBE_MINUTE)),
        )
        for pid in position_ids
    )

    def order(oid: str, open_: bool) -> BrokerOrder:
        symbol = draw(SYMBOL)
        side = draw(ORDER_SIDE)
        filled_qty = Decimal("0") if open_ else Decimal(draw(FILL_QTY))
        filled_at = at(draw(MINUTE))
        target = draw(st.integers(0, len(positions) * 3 // 2)) if positions and not open_ else -1
        client_order_id = pick(draw(REF), position_ids)
        if 0 <= target < len(positions) and draw(st.integers(0, 3)) == 0:
            # Aim at a position's entry: its symbol and side, often never filled.
            p = positions[target]
            symbol, side, client_order_id = p.symbol, p.side, p.position_id
            filled_qty = Decimal(str(p.qty)) * Decimal(draw(st.sampled_from(["0", "0", "0.5"])))
        elif 0 <= target < len(positions):
            # Aim at a position's exit: its symbol, its closing side, often its quantity, after it.
            p = positions[target]
            symbol, side = p.symbol, opposite(p.side)
            filled_qty = Decimal(str(p.qty)) * Decimal(draw(FILL_SHARE))
            opened = p.filled_at or p.created_at
            if opened is not None and draw(st.integers(0, 3)) > 0:
                filled_at = opened + timedelta(minutes=draw(st.integers(1, 120)))
        forms = SYMBOLS[symbol]
        filled = filled_qty > 0
        status = draw(OPEN_STATUS if open_ else CLOSED_STATUS)
        # A fill in part, then canceled or expired: no filled_at, its end time instead.
        partial_end = filled and status in ("canceled", "expired") and draw(st.booleans())
        # Some orders are legs nested under another order (a bracket's entry).
        parent = pick(draw(REF), order_ids) if not open_ else None
        parent_client = pick(draw(REF), position_ids) if parent is None and not open_ else None
        return BrokerOrder(
            id=oid,
            client_order_id=client_order_id,
            symbol=forms[draw(st.integers(0, len(forms) - 1))],
            side=side,
            status=status,
            qty=max(filled_qty, Decimal("1")),
            filled_qty=filled_qty,
            filled_avg_price=Decimal(draw(FILL_PRICE)) if filled else None,
            submitted_at=T0 + timedelta(minutes=draw(MINUTE)),
            filled_at=filled_at if filled and not partial_end else None,
            ended_at=None if open_ else at(draw(MAYBE_MINUTE)),
            parent_id=parent if parent != oid else None,
            parent_client_order_id=parent_client,
        )

    closed = tuple(order(oid, False) for oid in closed_ids)
    open_orders = tuple(order(oid, True) for oid in open_ids)
    broker_positions = tuple(
        BrokerPosition(
            symbol=SYMBOLS[s][0],
            qty=Decimal(draw(BROKER_QTY)),
            market_value=draw(MARKET_VALUE),
            is_crypto="/" in s,
        )
        for s in draw(HELD)
    )
    # Earlier heals and closes: postings to some fills, positions the signal job closed.
    filled_ids = [o.id for o in closed if o.filled > 0]
    postings = tuple(
        Posting(draw(st.sampled_from(filled_ids)), f"h{i}", Decimal(draw(FILL_SHARE)))
        for i in range(draw(st.integers(0, 2)) if filled_ids else 0)
    )
    closed_positions = tuple(
        ClosedPosition(
            f"c{i}",
            draw(POSITION_SYMBOL),
            Decimal(draw(POSITION_QTY)),
            entry_order_ids=frozenset(x for x in [pick(draw(REF), order_ids)] if x),
            leg_order_ids=frozenset(x for x in [pick(draw(REF), order_ids)] if x),
            exit_order_id=pick(draw(REF), order_ids),
            posted=draw(st.booleans()),
        )
        for i in range(draw(st.integers(0, 2)))
    )
    held_ids = frozenset(pid for pid in position_ids if draw(st.integers(0, 9)) == 0)
    return World(
        store=StoreState(positions, held=held_ids),
        broker=BrokerState(ACCOUNT, broker_positions, open_orders),
        closed=ClosedOrders(closed, complete=draw(st.booleans())),
        policy=Policy(
            heal_limit=draw(HEAL_LIMIT),
            min_position_age=timedelta(minutes=draw(MIN_AGE)),
        ),
        now=T0 + timedelta(minutes=draw(NOW_MINUTE)),
        force=draw(st.booleans()),
        ledger=Ledger(postings, closed_positions),
        breaker=BreakerState(tripped=draw(st.integers(0, 5)) == 0),
    )


@st.composite
def crowded_worlds(draw: st.DrawFn) -> World:
    """Several old long BTC/USD zombies competing for a few sells: the allocation's hard case."""
    positions = tuple(
        Position(
            position_id=f"p{i}",
            symbol="BTC/USD",
            status=TradeStatus.OPEN,
            side="buy",
            qty=draw(POSITION_QTY),
            entry_fill_price=100.0,
            tp_order_id=pick(draw(REF), ["o0", "o1", "o2"]),
            created_at=at(draw(st.integers(-60, 120))),
        )
        for i in range(draw(st.integers(2, 5)))
    )
    sells = tuple(
        BrokerOrder(
            id=f"o{i}",
            client_order_id=None,
            symbol="BTC/USD",
            side="sell",
            status="filled",
            qty=None,
            filled_qty=Decimal(draw(FILL_QTY)),
            filled_avg_price=Decimal(draw(FILL_PRICE)),
            submitted_at=T0,
            filled_at=at(draw(st.integers(0, 300))),
            ended_at=None,
        )
        for i in range(draw(st.integers(1, 3)))
    )
    return World(
        store=StoreState(positions),
        broker=BrokerState(ACCOUNT, (), ()),
        closed=ClosedOrders(sells),
        policy=Policy(),
        now=T0 + timedelta(days=1),
        force=False,
    )


def decided_heals(plan: Plan) -> list[Heal]:
    """Every heal the core decided on, applied or refused."""
    return [*plan.heals, *(r.heal for r in plan.refused)]


def owned_elsewhere(order: BrokerOrder, position: Position, world: World) -> bool:
    """The order is some other position's entry or own leg (or this position's own entry)."""
    for other in world.store.positions:
        if other.trade_type is TradeType.THEORETICAL:
            continue  # never reached the broker: owns nothing (invariant 5)
        entry = order.id in other.entry_order_ids or order.client_order_id == other.position_id
        if entry:
            return True  # an entry never closes anything
        parent = order.parent_id in other.entry_order_ids or (
            order.parent_client_order_id == other.position_id
        )
        leg = order.id in {other.tp_order_id, other.sl_order_id} or parent
        if leg and other.position_id != position.position_id:
            return True
    for closed in world.ledger.closed:
        entry = order.id in closed.entry_order_ids or order.client_order_id == closed.position_id
        parent = order.parent_id in closed.entry_order_ids or (
            order.parent_client_order_id == closed.position_id
        )
        if entry or parent or order.id in closed.leg_order_ids:
            return True
    return False


def own_leg(order: BrokerOrder, p: Position) -> bool:
    return order.id in {p.tp_order_id, p.sl_order_id} or (
        order.parent_id in p.entry_order_ids or order.parent_client_order_id == p.position_id
    )


# Invariant 1 ---------------------------------------------------------------------------------


@FAST
@given(worlds())
def test_1_never_heal_without_evidence(world: World) -> None:
    plan = world.plan()
    positions = {p.position_id: p for p in world.store.positions}
    orders = {o.id: o for o in world.closed.orders}
    heals = decided_heals(plan)
    assert len({h.position_id for h in heals}) == len(heals), "a position healed twice"
    for h in heals:
        p = positions[h.position_id]
        assert p.status is TradeStatus.OPEN
        assert h.evidence_order_ids, f"heal of {h.position_id} names no evidence"
        assert set(h.evidence_order_ids) <= set(orders), f"{h} cites unknown orders"
        if h.evidence is Evidence.ENTRY_NEVER_FILLED:
            (entry,) = (orders[i] for i in h.evidence_order_ids)
            assert world.closed.complete, "never-filled evidence from a cut listing"
            assert entry.id in p.entry_order_ids or entry.client_order_id == p.position_id
            assert entry.never_filled
            assert (h.exit_fill_price, h.realized_pnl_usd, h.allocation) == (None, Decimal(0), ())
            continue
        covered = sum((a.qty for a in h.allocation), Decimal(0))
        assert world.policy.qty_close(covered, p.qty), f"{h.position_id} not covered"
        assert covered <= p.qty
        opened = p.opened_at
        for a in h.allocation:
            o = orders[a.order_id]
            assert o.is_fill
            assert o.key == symbol_key(p.symbol), f"{o.id} is on another symbol than {p}"
            assert o.side == opposite(p.side), f"{o.id} is not on {p.position_id}'s closing side"
            assert (a.price, a.at) == (o.filled_avg_price, o.fill_time)
            if not own_leg(o, p):
                assert opened is not None
                assert o.fill_time is not None
                assert o.fill_time > opened, f"{o.id} filled before the entry of {p.position_id}"
                if o.filled_at is None:
                    assert o.submitted_at > opened
        prices = [a.price for a in h.allocation]
        assert h.exit_fill_price is not None
        assert min(prices) <= h.exit_fill_price <= max(prices)
        assert h.exit_time == max(a.at for a in h.allocation)
        # Contract section 1: P&L of a heal, gross, negated for a short.
        assert p.entry_fill_price is not None
        sign = 1 if p.side == "buy" else -1
        assert h.realized_pnl_usd == sign * (h.exit_fill_price - p.entry_fill_price) * p.qty
        if p.entry_fill_price:
            assert h.realized_pnl_pct == h.realized_pnl_usd / (p.entry_fill_price * p.qty) * 100


@FAST
@given(worlds())
def test_1_no_closed_orders_no_heal(world: World) -> None:
    plan = world.plan(closed=ClosedOrders(()))
    assert decided_heals(plan) == []


# Invariant 2 ---------------------------------------------------------------------------------


def posted(ledger: Ledger) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(Decimal)
    for posting in ledger.postings:
        out[posting.order_id] += posting.qty
    return out


def used_before(ledger: Ledger) -> dict[str, Decimal]:
    used = posted(ledger)
    for closed in ledger.closed:
        if not closed.posted and closed.exit_order_id and closed.qty:
            used[closed.exit_order_id] += closed.qty
    return used


def added_by(plan: Plan) -> dict[str, Decimal]:
    added: dict[str, Decimal] = defaultdict(Decimal)
    for h in decided_heals(plan):
        for a in h.allocation:
            added[a.order_id] += a.qty
    return added


@FAST
@given(st.one_of(worlds(), crowded_worlds()))
def test_2_a_plan_never_allocates_more_of_a_fill_than_is_left(world: World) -> None:
    orders = {o.id: o for o in world.closed.orders}
    before = used_before(world.ledger)
    for order_id, qty in added_by(world.plan()).items():
        assert before[order_id] + qty <= orders[order_id].filled, (
            f"{order_id}: {before[order_id]} posted before, {qty} now, of {orders[order_id].filled}"
        )


@settings(max_examples=80, deadline=None)
@given(st.one_of(worlds(), crowded_worlds()), st.integers(2, 4))
def test_2_a_fill_is_never_overallocated_over_any_sequence_of_runs(world: World, runs: int) -> None:
    """Apply each run's heals as the repository persists them and plan again, with the same
    broker history: the postings to a fill never exceed its filled quantity."""
    store, ledger = world.store, world.ledger
    orders = {o.id: o for o in world.closed.orders}
    before = used_before(world.ledger)
    for _ in range(runs):
        plan = world.plan(store=store, ledger=ledger, force=True)
        store, ledger = after_heals(store, ledger, plan)
    added = posted(Ledger(ledger.postings[len(world.ledger.postings) :]))
    for order_id, qty in added.items():
        assert before[order_id] + qty <= orders[order_id].filled
    healed = [c.position_id for c in ledger.closed if c.posted]
    assert len(healed) == len(set(healed)), "a position healed in two runs"


# Invariant 3 ---------------------------------------------------------------------------------


@FAST
@given(worlds())
def test_3_an_order_that_belongs_to_a_position_is_evidence_for_it_only(world: World) -> None:
    positions = {p.position_id: p for p in world.store.positions}
    orders = {o.id: o for o in world.closed.orders}
    for h in decided_heals(world.plan()):
        for a in h.allocation:
            order = orders[a.order_id]
            assert not owned_elsewhere(order, positions[h.position_id], world), (
                f"{order.id} belongs to another position (or is an entry) but closed "
                f"{h.position_id}"
            )


# Invariant 4 ---------------------------------------------------------------------------------


@FAST
@given(worlds())
def test_4_never_both_zombie_and_orphan(world: World) -> None:
    plan = world.plan()
    zombies = {symbol_key(s) for s in plan.zombie_symbols}
    orphans = {symbol_key(o.symbol) for o in plan.orphans}
    assert not zombies & orphans
    # Nor is a symbol with an open (non-THEORETICAL) Firestore position ever an orphan.
    tracked = {
        symbol_key(p.symbol)
        for p in world.store.positions
        if p.status is TradeStatus.OPEN and p.trade_type is not TradeType.THEORETICAL
    }
    assert not tracked & orphans


# Invariant 5 ---------------------------------------------------------------------------------


def mentioned(plan: Plan) -> set[str]:
    ids: set[str] = set()
    for a in plan.actions:
        if isinstance(a, Heal | Unverified | Defer):
            ids.add(a.position_id)
        elif isinstance(a, RefuseHeal):
            ids.add(a.heal.position_id)
        elif isinstance(a, ReportDrift):
            ids.update(a.position_ids)
    return ids


@FAST
@given(worlds())
def test_5_theoretical_positions_never_appear_and_change_nothing(world: World) -> None:
    plan = world.plan()
    theoretical = {
        p.position_id for p in world.store.positions if p.trade_type is TradeType.THEORETICAL
    }
    assert not mentioned(plan) & theoretical
    without = StoreState(
        tuple(p for p in world.store.positions if p.trade_type is not TradeType.THEORETICAL),
        held=world.store.held,
    )
    assert world.plan(store=without) == plan


@FAST
@given(worlds())
def test_5_positions_an_operator_holds_are_never_decided_on(world: World) -> None:
    plan = world.plan()
    open_ids = {
        p.position_id
        for p in world.store.positions
        if p.status is TradeStatus.OPEN and p.trade_type is not TradeType.THEORETICAL
    }
    assert not mentioned(plan) & world.store.held
    assert set(plan.held) == world.store.held & open_ids


# Invariant 6 ---------------------------------------------------------------------------------


@FAST
@given(worlds())
def test_6_pending_positions_are_never_zombies(world: World) -> None:
    plan = world.plan()
    deferred = {d.position_id for d in plan.deferred}
    decided = {h.position_id for h in decided_heals(plan)} | {
        u.position_id for u in plan.unverified
    }
    assert not deferred & decided
    pending_keys = {symbol_key(d.symbol) for d in plan.deferred}
    held = {bp.key for bp in world.broker.positions if not is_dust(bp, world.policy)}
    for h in decided_heals(plan):
        key = symbol_key(h.symbol)
        assert not (key in pending_keys and key in held), f"heal on a settling held {key}"
    for d in plan.drift:
        assert symbol_key(d.symbol) not in pending_keys


# Invariant 7 ---------------------------------------------------------------------------------


@FAST
@given(worlds())
def test_7_heals_on_a_held_symbol_leave_the_open_book_consistent_with_the_broker(
    world: World,
) -> None:
    plan = world.plan(force=True)  # the gate is invariant 9's business
    healed = {h.position_id for h in decided_heals(plan)}
    held = {bp.key: bp for bp in world.broker.positions if not is_dust(bp, world.policy)}
    for key in {symbol_key(h.symbol) for h in decided_heals(plan)} & set(held):
        left_open = sum(
            (
                p.qty if p.side == "buy" else -p.qty
                for p in world.store.positions
                if symbol_key(p.symbol) == key
                and p.status is TradeStatus.OPEN
                and p.trade_type is not TradeType.THEORETICAL
                and p.position_id not in healed
            ),
            Decimal(0),
        )
        assert world.policy.qty_close(left_open, held[key].qty), (
            f"{key}: {left_open} left open against the broker's {held[key].qty}"
        )


@FAST
@given(worlds())
def test_7_drift_is_never_fixed(world: World) -> None:
    plan = world.plan()
    drifted = {symbol_key(d.symbol) for d in plan.drift}
    assert not drifted & {symbol_key(h.symbol) for h in decided_heals(plan)}


# Invariant 8 ---------------------------------------------------------------------------------


@FAST
@given(worlds(), st.data())
def test_8_an_unreadable_item_on_a_symbol_blocks_every_heal_there(
    world: World, data: st.DataObject
) -> None:
    symbol = data.draw(SYMBOL)
    form = data.draw(st.sampled_from(SYMBOLS[symbol]))
    item = UnreadableItem("GET /v2/orders?status=closed", "bad-1", form, None, "no side")
    blocked = world.plan(closed=replace(world.closed, unreadable=(item,)))
    assert symbol_key(symbol) not in {symbol_key(h.symbol) for h in decided_heals(blocked)}
    anything = UnreadableItem("GET /v2/positions", None, None, None, "not an object")
    assert decided_heals(world.plan(closed=replace(world.closed, unreadable=(anything,)))) == []


# Invariant 9 ---------------------------------------------------------------------------------


@FAST
@given(worlds())
def test_9_no_heal_while_the_breaker_is_tripped_unless_forced(world: World) -> None:
    tripped = BreakerState(tripped=True, heals_due=9, limit=1)
    plan = world.plan(force=False, breaker=tripped)
    assert plan.heals == ()
    assert plan.halted is not None
    forced = world.plan(force=True, breaker=tripped)
    foreign = any(
        p.account_id not in (None, ACCOUNT)
        for p in world.store.positions
        if p.status is TradeStatus.OPEN and p.trade_type is not TradeType.THEORETICAL
    )
    # Forcing resets the breaker, except when positions of another account refuse every heal.
    assert (forced.halted is None) is not foreign
    assert {h.position_id for h in decided_heals(forced)} == {
        h.position_id for h in decided_heals(plan)
    }


@FAST
@given(worlds())
def test_9_more_heals_than_the_limit_applies_none(world: World) -> None:
    plan = world.plan(force=False, breaker=BreakerState())
    forced = world.plan(force=True, breaker=BreakerState())
    due = decided_heals(forced)
    assert [h.position_id for h in decided_heals(plan)] == [h.position_id for h in due]
    if forced.refused:  # an account mismatch refuses everything, forced or not
        assert plan.heals == ()
    elif len(due) > world.policy.heal_limit:
        assert plan.heals == ()
        assert plan.trip is not None
        assert plan.trip.heals_due == len(due)
    else:
        assert len(plan.heals) == len(due)
        assert plan.trip is None


# Invariant 10 --------------------------------------------------------------------------------


@FAST
@given(worlds(), st.data())
def test_10_same_input_in_any_order_gives_the_same_plan(world: World, data: st.DataObject) -> None:
    def shuffled(items: tuple[T, ...]) -> tuple[T, ...]:
        return tuple(data.draw(st.permutations(items)))

    shuffled_world = replace(
        world,
        store=StoreState(shuffled(world.store.positions), held=world.store.held),
        broker=BrokerState(
            world.broker.account_id,
            shuffled(world.broker.positions),
            shuffled(world.broker.open_orders),
        ),
        closed=ClosedOrders(shuffled(world.closed.orders), world.closed.complete),
        ledger=Ledger(shuffled(world.ledger.postings), shuffled(world.ledger.closed)),
    )
    assert shuffled_world.plan() == world.plan()


# Every zombie gets a decision ------------------------------------------------------------------


@FAST
@given(worlds())
def test_every_position_on_a_symbol_the_broker_does_not_hold_gets_exactly_one_decision(
    world: World,
) -> None:
    plan = world.plan()
    deferred = {d.position_id for d in plan.deferred}
    decided = [h.position_id for h in decided_heals(plan)] + [
        u.position_id for u in plan.unverified
    ]
    assert len(decided) == len(set(decided)), "a position decided twice"
    held = {bp.key for bp in world.broker.positions if not is_dust(bp, world.policy)}
    candidates = [
        p
        for p in world.store.positions
        if p.status is TradeStatus.OPEN
        and p.trade_type is not TradeType.THEORETICAL
        and p.position_id not in deferred
        and p.position_id not in world.store.held
        and symbol_key(p.symbol) not in held
    ]
    assert {symbol_key(p.symbol) for p in candidates} <= {
        symbol_key(s) for s in plan.zombie_symbols
    }
    for p in candidates:
        assert p.position_id in decided, f"zombie candidate {p.position_id} left undecided"
