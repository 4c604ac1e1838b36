"""Property tests of the planning core's invariants over small random worlds.

The worlds are built from a handful of symbols, ids, quantities and times so that positions,
orders and broker holdings collide often: same symbol, same ids, fills before and after
entries, dust, foreign accounts, THEORETICAL positions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from crypto_signals.domain.schemas import Position, TradeStatus, TradeType
from crypto_signals.domain.snapshots import (
    BrokerOrder,
    BrokerPosition,
    BrokerState,
    ClosedOrders,
    OrderSide,
    StoreState,
)
from crypto_signals.domain.symbols import symbol_key
from crypto_signals.engine.plan import (
    AlertOrphan,
    Defer,
    Evidence,
    Heal,
    IgnoreDust,
    Plan,
    RefuseHeal,
    ReportDrift,
    Unverified,
    plan_reconciliation,
)
from crypto_signals.engine.policy import Policy

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

    def plan(
        self,
        *,
        store: StoreState | None = None,
        closed: ClosedOrders | None = None,
        force: bool | None = None,
    ) -> Plan:
        return plan_reconciliation(
            self.store if store is None else store,
            self.broker,
            self.closed if closed is None else closed,
            self.policy,
            self.now,
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
            qty=float(draw(POSITION_QTY)),
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
        return BrokerOrder(
            id=oid,
            client_order_id=client_order_id,
            symbol=forms[draw(st.integers(0, len(forms) - 1))],
            side=side,
            status=draw(OPEN_STATUS if open_ else CLOSED_STATUS),
            qty=max(filled_qty, Decimal("1")),
            filled_qty=filled_qty,
            filled_avg_price=Decimal(draw(FILL_PRICE)) if filled else None,
            submitted_at=T0 + timedelta(minutes=draw(MINUTE)),
            filled_at=filled_at if filled else None,
            ended_at=None if open_ else at(draw(MAYBE_MINUTE)),
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
    return World(
        store=StoreState(positions),
        broker=BrokerState(ACCOUNT, broker_positions, open_orders),
        closed=ClosedOrders(closed, complete=draw(st.booleans())),
        policy=Policy(
            heal_limit=draw(HEAL_LIMIT),
            min_position_age=timedelta(minutes=draw(MIN_AGE)),
        ),
        now=T0 + timedelta(minutes=draw(NOW_MINUTE)),
        force=draw(st.booleans()),
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
            qty=float(draw(POSITION_QTY)),
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


# (1) ------------------------------------------------------------------------------------------


@FAST
@given(worlds())
def test_never_heal_without_evidence(world: World) -> None:
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
        evidence = [orders[i] for i in h.evidence_order_ids]
        own = {p.tp_order_id, p.sl_order_id} - {None}
        if h.evidence is Evidence.ENTRY_NEVER_FILLED:
            (entry,) = evidence
            assert entry.id in p.entry_order_ids or entry.client_order_id == p.position_id
            assert entry.never_filled
            assert entry.filled_qty == 0
            assert (h.exit_fill_price, h.realized_pnl_usd) == (None, Decimal(0))
            continue
        opened = p.filled_at or p.created_at
        for o in evidence:
            assert o.key == symbol_key(p.symbol), f"{o.id} is on another symbol than {p}"
            assert o.side == opposite(p.side), f"{o.id} is not on {p.position_id}'s closing side"
            assert o.filled > 0
            assert o.filled_at is not None
            assert o.id in own or (opened is not None and o.filled_at > opened), (
                f"{o.id} filled before the entry of {p.position_id}"
            )
        if h.evidence is Evidence.OWN_EXIT_LEG:
            assert set(h.evidence_order_ids) <= own
        prices = [o.filled_avg_price for o in evidence if o.filled_avg_price is not None]
        assert h.exit_fill_price is not None
        assert min(prices) <= h.exit_fill_price <= max(prices)
        assert h.exit_order_id in h.evidence_order_ids
        assert h.exit_time == max(o.filled_at for o in evidence if o.filled_at is not None)
        # Contract section 1: P&L of a heal, gross, negated for a short.
        assert p.entry_fill_price is not None
        entry_price, qty = Decimal(str(p.entry_fill_price)), Decimal(str(p.qty))
        sign = 1 if p.side == "buy" else -1
        assert h.realized_pnl_usd == sign * (h.exit_fill_price - entry_price) * qty
        if entry_price:
            assert h.realized_pnl_pct == h.realized_pnl_usd / (entry_price * qty) * 100


@FAST
@given(worlds())
def test_no_closed_orders_no_heal(world: World) -> None:
    plan = world.plan(closed=ClosedOrders(()))
    assert decided_heals(plan) == []


# (2) ------------------------------------------------------------------------------------------


@FAST
@given(worlds())
def test_never_both_zombie_and_orphan(world: World) -> None:
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


# (3) ------------------------------------------------------------------------------------------


@FAST
@given(worlds(), st.data())
def test_same_input_in_any_order_gives_the_same_plan(world: World, data: st.DataObject) -> None:
    def shuffled(items: tuple[T, ...]) -> tuple[T, ...]:
        return tuple(data.draw(st.permutations(items)))

    shuffled_world = replace(
        world,
        store=StoreState(shuffled(world.store.positions)),
        broker=BrokerState(
            world.broker.account_id,
            shuffled(world.broker.positions),
            shuffled(world.broker.open_orders),
        ),
        closed=ClosedOrders(shuffled(world.closed.orders), world.closed.complete),
    )
    assert shuffled_world.plan() == world.plan()


# (4) ------------------------------------------------------------------------------------------


@FAST
@given(st.one_of(worlds(), crowded_worlds()))
def test_fills_are_never_overallocated(world: World) -> None:
    plan = world.plan()
    positions = {p.position_id: p for p in world.store.positions}
    orders = {o.id: o for o in world.closed.orders}
    healed_qty: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    slack: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    used: dict[tuple[str, str], set[str]] = defaultdict(set)
    for h in decided_heals(plan):
        if h.evidence is Evidence.ENTRY_NEVER_FILLED:
            continue
        p = positions[h.position_id]
        group: tuple[str, str] = (symbol_key(p.symbol), opposite(p.side))
        qty = Decimal(str(p.qty))
        healed_qty[group] += qty
        # A heal may be short of the position's quantity by the policy's tolerance (fees).
        slack[group] += max(world.policy.qty_abs_tolerance, world.policy.qty_rel_tolerance * qty)
        used[group].update(h.evidence_order_ids)
    for group, qty in healed_qty.items():
        filled = sum((orders[i].filled for i in used[group]), Decimal(0))
        assert qty <= filled + slack[group], f"{group}: healed {qty} with fills of {filled}"


# (5) ------------------------------------------------------------------------------------------


@FAST
@given(worlds())
def test_theoretical_positions_never_appear_and_change_nothing(world: World) -> None:
    plan = world.plan()
    theoretical = {
        p.position_id for p in world.store.positions if p.trade_type is TradeType.THEORETICAL
    }
    mentioned: set[str] = set()
    for a in plan.actions:
        if isinstance(a, Heal | Unverified | Defer):
            mentioned.add(a.position_id)
        elif isinstance(a, RefuseHeal):
            mentioned.add(a.heal.position_id)
        else:
            assert isinstance(a, AlertOrphan | IgnoreDust | ReportDrift)
    assert not mentioned & theoretical
    without = StoreState(
        tuple(p for p in world.store.positions if p.trade_type is not TradeType.THEORETICAL)
    )
    assert world.plan(store=without) == plan


# (6) ------------------------------------------------------------------------------------------


@FAST
@given(worlds())
def test_heal_limit_caps_accepted_heals_unless_forced(world: World) -> None:
    plan = world.plan(force=False)
    forced = world.plan(force=True)
    assert len(plan.heals) <= world.policy.heal_limit
    decided = sorted(h.position_id for h in decided_heals(plan))
    assert decided == sorted(h.position_id for h in decided_heals(forced))
    if not forced.refused:  # no account mismatch: forcing accepts every heal
        assert len(plan.heals) == min(len(forced.heals), world.policy.heal_limit)
        assert len(plan.heals) + len(plan.refused) == len(forced.heals)


# (7) ------------------------------------------------------------------------------------------


@FAST
@given(worlds())
def test_every_zombie_candidate_gets_exactly_one_decision(world: World) -> None:
    plan = world.plan()
    deferred = {d.position_id for d in plan.deferred}
    decided = [h.position_id for h in decided_heals(plan)] + [
        u.position_id for u in plan.unverified
    ]
    assert len(decided) == len(set(decided)), "a position decided twice"
    threshold = world.policy.dust_threshold_usd
    held = {
        bp.key
        for bp in world.broker.positions
        if bp.market_value is None or bp.market_value >= threshold
    }
    candidates = [
        p
        for p in world.store.positions
        if p.status is TradeStatus.OPEN
        and p.trade_type is not TradeType.THEORETICAL
        and p.position_id not in deferred
        and symbol_key(p.symbol) not in held
    ]
    assert plan.zombie_symbols == tuple(sorted({p.symbol for p in candidates}))
    for p in candidates:
        assert p.position_id in decided, f"zombie candidate {p.position_id} left undecided"
