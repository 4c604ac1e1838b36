"""Table-driven tests of the planning core: literal snapshots in, expected actions out.

No mocks, no I/O: every row is a small world of Firestore positions, broker positions and
broker orders, and the exact actions (in order) the core must decide for it. Rendering details
(counts behind a refusal's words, allocations) are blanked in the table and checked by the
dedicated tests further down and by test_ledger_cases.py.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from _pytest.mark import ParameterSet
from pydantic import ValidationError

from crypto_signals.domain.schemas import Position, TradeStatus, TradeType
from crypto_signals.domain.snapshots import (
    BrokerOrder,
    BrokerPosition,
    BrokerState,
    ClosedOrders,
    ClosedPosition,
    EvidenceQuery,
    ExpectedEntry,
    Ledger,
    StoreState,
)
from crypto_signals.engine import findings as words
from crypto_signals.engine.plan import (
    Action,
    AlertOrphan,
    Defer,
    DeferReason,
    DriftKind,
    Evidence,
    IgnoreDust,
    Plan,
    RefusalReason,
    ReportDrift,
    TripBreaker,
    UnverifiedReason,
    evidence_query,
    plan_reconciliation,
)
from crypto_signals.engine.policy import Policy
from tests.core.builders import (
    ACCOUNT,
    NOW,
    POLICY,
    T0,
    at,
    bpos,
    d,
    ended,
    fill,
    healed,
    never_filled,
    pos,
    refused,
    shape,
    unverified,
    working,
)

# --------------------------------------------------------------------------------------------
# The table.


@dataclass(frozen=True)
class Case:
    positions: tuple[Position, ...]
    broker: tuple[BrokerPosition, ...] = ()
    orders: tuple[BrokerOrder, ...] = ()
    expected: tuple[Action, ...] = ()
    zombies: tuple[str, ...] = ()
    open_orders: tuple[BrokerOrder, ...] = ()
    policy: Policy = POLICY
    now: datetime = NOW
    force: bool = False
    complete: bool = True
    account: str = ACCOUNT


def run(case: Case) -> Plan:
    return plan_reconciliation(
        StoreState(case.positions),
        BrokerState(case.account, case.broker, case.open_orders),
        ClosedOrders(case.orders, complete=case.complete),
        case.policy,
        case.now,
        force=case.force,
    )


def row(
    description: str,
    positions: tuple[Position, ...],
    expected: tuple[Action, ...] = (),
    *,
    zombies: tuple[str, ...] = (),
    broker: tuple[BrokerPosition, ...] = (),
    orders: tuple[BrokerOrder, ...] = (),
    open_orders: tuple[BrokerOrder, ...] = (),
    policy: Policy = POLICY,
    force: bool = False,
) -> ParameterSet:
    case = Case(positions, broker, orders, expected, zombies, open_orders, policy, force=force)
    return pytest.param(case, id=description)


BTC = ("BTC/USD",)
SELL_1_AT_110 = fill("s1", "sell", "1", "110", at(60))
HEAL_P1 = healed("p1", "s1", "110", 60, pnl="10", pct="10", duration=3600)
YOUNG = NOW - timedelta(minutes=2)
THREE_ZOMBIES = (pos("p1", "BTC/USD"), pos("p2", "ETH/USD"), pos("p3", "SOL/USD"))
THREE_SELLS = (
    fill("s3", "sell", "1", "110", at(80), symbol="SOL/USD"),
    fill("s2", "sell", "1", "110", at(70), symbol="ETH/USD"),
    SELL_1_AT_110,
)
HEAL_P2 = healed("p2", "s2", "110", 70, pnl="10", pct="10", duration=4200, symbol="ETH/USD")
HEAL_P3 = healed("p3", "s3", "110", 80, pnl="10", pct="10", duration=4800, symbol="SOL/USD")

CASES = [
    # ---- matching ----------------------------------------------------------------------------
    row(
        "matching long crypto: nothing to do",
        (pos("p1", qty=0.5),),
        broker=(bpos("BTCUSD", "0.5"),),
    ),
    row(
        "crypto ETH/USD in Firestore vs broker ETHUSD: a match, not zombie + orphan",
        (pos("p1", "ETH/USD", qty=2.0),),
        broker=(bpos("ETHUSD", "2", "6000"),),
        orders=(fill("s1", "sell", "2", "3100", at(60), symbol="ETH/USD"),),
    ),
    row(
        "equity symbol compared as-is",
        (pos("p1", "AAPL", qty=10.0),),
        broker=(bpos("AAPL", "10", "1900", crypto=False),),
    ),
    row(
        "matching short equity (side=sell vs broker qty -3): nothing to do",
        (pos("p1", "MSFT", qty=3.0, side="sell"),),
        broker=(bpos("MSFT", "-3", "1200", crypto=False),),
    ),
    row(
        "two Firestore positions on one symbol summing to the broker qty: nothing",
        (pos("p1", qty=0.3), pos("p2", qty=0.2)),
        broker=(bpos("BTCUSD", "0.5"),),
    ),
    row(
        "CLOSED Firestore position is not reconciled",
        (pos("p1", status=TradeStatus.CLOSED),),
        orders=(SELL_1_AT_110,),
    ),
    # ---- zombies healed from closing fills ---------------------------------------------------
    row(
        "zombie healed from a filled closing sell after the entry",
        (pos("p1"),),
        (HEAL_P1,),
        zombies=BTC,
        orders=(SELL_1_AT_110,),
    ),
    row(
        "zombie healed: fractional qty and price (order symbol BTCUSD), duration from filled_at",
        (pos("p1", qty=0.4, entry=100.5, filled=at(2)),),
        # (110.25 - 100.5) * 0.4 = 3.9 and 3.9 / (100.5 * 0.4) * 100
        (healed("p1", "s1", "110.25", 92, "3.9", Decimal("3.9") / Decimal("40.2") * 100, 5400),),
        zombies=BTC,
        orders=(fill("s1", "sell", "0.4", "110.25", at(92), symbol="BTCUSD"),),
    ),
    row(
        "short zombie closed by a buy lower: P&L negated (a gain)",
        (pos("p1", "TSLA", qty=3.0, side="sell", entry=50.0),),
        (healed("p1", "b1", "40", 60, "30", "20", 3600, "TSLA"),),
        zombies=("TSLA",),
        orders=(fill("b1", "buy", "3", "40", at(60), symbol="TSLA"),),
    ),
    row(
        "short zombie closed by a buy higher: a loss",
        (pos("p1", "TSLA", qty=3.0, side="sell", entry=50.0),),
        (healed("p1", "b1", "60", 60, "-30", "-20", 3600, "TSLA"),),
        zombies=("TSLA",),
        orders=(fill("b1", "buy", "3", "60", at(60), symbol="TSLA"),),
    ),
    row(
        "short zombie: a sell is not its closing side",
        (pos("p1", "TSLA", qty=3.0, side="sell", entry=50.0),),
        (unverified("p1", "TSLA"),),
        zombies=("TSLA",),
        orders=(fill("s9", "sell", "3", "40", at(60), symbol="TSLA"),),
    ),
    row(
        "long zombie: a buy is not its closing side",
        (pos("p1"),),
        (unverified("p1"),),
        zombies=BTC,
        orders=(fill("b9", "buy", "1", "110", at(60)),),
    ),
    row(
        "closing fill on another symbol is no evidence",
        (pos("p1"),),
        (unverified("p1"),),
        zombies=BTC,
        orders=(fill("s1", "sell", "1", "110", at(60), symbol="ETH/USD"),),
    ),
    row(
        "closing fill BEFORE the entry: Unverified",
        (pos("p1"),),
        (unverified("p1"),),
        zombies=BTC,
        orders=(fill("s1", "sell", "1", "110", at(-10)),),
    ),
    row("zombie with no orders at all: Unverified", (pos("p1"),), (unverified("p1"),), zombies=BTC),
    row(
        "closing fill covering half the quantity: Unverified (covered in part)",
        (pos("p1", qty=2.0),),
        (unverified("p1", reason=UnverifiedReason.COVERED_IN_PART),),
        zombies=BTC,
        orders=(SELL_1_AT_110,),
    ),
    row(
        "closing fill short by a crypto fee (0.2%) still covers the position",
        (pos("p1"),),
        (HEAL_P1,),
        zombies=BTC,
        orders=(fill("s1", "sell", "0.998", "110", at(60)),),
    ),
    row(
        "closing fill but entry_fill_price missing: Unverified",
        (pos("p1", entry=None),),
        (unverified("p1", reason=UnverifiedReason.ENTRY_PRICE_MISSING),),
        zombies=BTC,
        orders=(SELL_1_AT_110,),
    ),
    row(
        "exit price weighted across two partial fills (0.5@110 + 1.5@130 = 125); exit = last",
        (pos("p1", qty=2.0),),
        (healed("p1", "s2", "125", 60, "50", "25", 3600, ids=("s1", "s2")),),
        zombies=BTC,
        orders=(
            fill("s1", "sell", "0.5", "110", at(30)),
            fill("s2", "sell", "1.5", "130", at(60)),
        ),
    ),
    # ---- several positions on one symbol -----------------------------------------------------
    row(
        "two zombies on one symbol covered by one sell of the total: both healed at its price",
        (pos("p1", qty=1.0), pos("p2", qty=2.0, filled=at(10), created=at(10))),
        (
            healed("p1", "s1", "120", 60, "20", "20", 3600),
            healed("p2", "s1", "120", 60, "40", "20", 3000),
        ),
        zombies=BTC,
        orders=(fill("s1", "sell", "3", "120", at(60)),),
    ),
    row(
        "one sell covering only one of two zombies: the older is healed, not the lower id",
        (pos("a-young", created=at(10), filled=at(10)), pos("b-old")),
        (healed("b-old", "s1", "110", 60, "10", "10", 3600), unverified("a-young")),
        zombies=BTC,
        orders=(SELL_1_AT_110,),
    ),
    row(
        "the position's own tp leg is preferred over an earlier foreign sell",
        (pos("p1", tp="tp1"),),
        (healed("p1", "tp1", "130", 60, "30", "30", 3600, evidence=Evidence.OWN_EXIT_LEG),),
        zombies=BTC,
        orders=(
            fill("x0", "sell", "1", "105", at(30)),
            fill("tp1", "sell", "1", "130", at(60)),
        ),
    ),
    row(
        "no entry time: only the own sl leg is evidence; duration unknown",
        (pos("p1", created=None, filled=None, sl="sl1"),),
        (healed("p1", "sl1", "90", 60, "-10", "-10", None, evidence=Evidence.OWN_EXIT_LEG),),
        zombies=BTC,
        orders=(fill("sl1", "sell", "1", "90", at(60)),),
    ),
    row(
        "no entry time and no own leg: a foreign sell is no evidence",
        (pos("p1", created=None, filled=None),),
        (unverified("p1", reason=UnverifiedReason.NO_ENTRY_TIME),),
        zombies=BTC,
        orders=(SELL_1_AT_110,),
    ),
    row(
        "one position's own exit leg is never used to heal another (older) position",
        (pos("a-old"), pos("b-new", created=at(10), filled=at(10), tp="tpB")),
        (
            healed("b-new", "tpB", "150", 30, "50", "50", 1200, evidence=Evidence.OWN_EXIT_LEG),
            unverified("a-old"),
        ),
        zombies=BTC,
        orders=(fill("tpB", "sell", "1", "150", at(30)),),
    ),
    row(
        "own leg to its owner, the foreign sell to the older position",
        (pos("a-old"), pos("b-new", created=at(10), filled=at(10), tp="tpB")),
        (
            healed("b-new", "tpB", "150", 30, "50", "50", 1200, evidence=Evidence.OWN_EXIT_LEG),
            healed("a-old", "x9", "90", 60, "-10", "-10", 3600),
        ),
        zombies=BTC,
        orders=(fill("x9", "sell", "1", "90", at(60)), fill("tpB", "sell", "1", "150", at(30))),
    ),
    row(
        "the own exit leg of a young (deferred) position is not evidence for an older zombie",
        (pos("a-old"), pos("b-young", created=YOUNG, filled=YOUNG, tp="tpB")),
        (Defer("b-young", "BTC/USD", DeferReason.TOO_YOUNG), unverified("a-old")),
        zombies=BTC,
        orders=(fill("tpB", "sell", "1", "150", NOW - timedelta(minutes=1)),),
    ),
    # ---- entry orders ------------------------------------------------------------------------
    row(
        "entry canceled after a partial fill is not 'never filled'",
        (pos("p1", alpaca_order_id="e1"),),
        (unverified("p1"),),
        zombies=BTC,
        orders=(ended("e1", "canceled", filled_qty="0.5", ended_at=at(30)),),
    ),
    row(
        "entry filled, no closing fill: Unverified",
        (pos("p1", alpaca_order_id="e1"),),
        (unverified("p1"),),
        zombies=BTC,
        orders=(ended("e1", "filled", filled_qty="1"),),
    ),
    row(
        "entry-never-filled position on a drifted held symbol: healed, and no drift left",
        (pos("p1", alpaca_order_id="e1"), pos("p2", alpaca_order_id="e2", filled=None)),
        (never_filled("p2", "BTC/USD", at(20), "e2"),),
        zombies=BTC,
        broker=(bpos("BTCUSD", "1"),),
        orders=(ended("e1", "filled", filled_qty="1"), ended("e2", "canceled", ended_at=at(20))),
    ),
    # ---- pending -----------------------------------------------------------------------------
    row(
        "young position: Defer TOO_YOUNG, not a zombie",
        (pos("p1", created=YOUNG, filled=None),),
        (Defer("p1", "BTC/USD", DeferReason.TOO_YOUNG),),
        orders=(SELL_1_AT_110,),
    ),
    row(
        "young by filled_at when created_at is missing",
        (pos("p1", created=None, filled=YOUNG),),
        (Defer("p1", "BTC/USD", DeferReason.TOO_YOUNG),),
    ),
    row(
        "exactly the minimum age is old enough",
        (pos("p1", created=NOW - POLICY.min_position_age),),
        (unverified("p1"),),
        zombies=BTC,
    ),
    row(
        "young position on a held symbol: no drift reported while it settles",
        (pos("p1"), pos("p2", created=YOUNG)),
        (Defer("p2", "BTC/USD", DeferReason.TOO_YOUNG),),
        broker=(bpos("BTCUSD", "1"),),
    ),
    row(
        "entry order still open (by alpaca_order_id): Defer ENTRY_ORDER_WORKING",
        (pos("p1", alpaca_order_id="e1"),),
        (Defer("p1", "BTC/USD", DeferReason.ENTRY_ORDER_WORKING),),
        orders=(SELL_1_AT_110,),
        open_orders=(working("e1"),),
    ),
    row(
        "entry order still open (by entry_order_id): Defer ENTRY_ORDER_WORKING",
        (pos("p1", entry_order_id="e1"),),
        (Defer("p1", "BTC/USD", DeferReason.ENTRY_ORDER_WORKING),),
        open_orders=(working("e1", status="partially_filled"),),
    ),
    row(
        "entry order still open (client_order_id == position_id): Defer ENTRY_ORDER_WORKING",
        (pos("p1"),),
        (Defer("p1", "BTC/USD", DeferReason.ENTRY_ORDER_WORKING),),
        open_orders=(working("zz", status="accepted", client_order_id="p1"),),
    ),
    row(
        "an open tp leg is not a working entry: still a zombie candidate",
        (pos("p1", tp="tp1"),),
        (unverified("p1"),),
        zombies=BTC,
        open_orders=(working("tp1", side="sell"),),
    ),
    # ---- THEORETICAL -------------------------------------------------------------------------
    row(
        "THEORETICAL position with a closing fill and a canceled entry: no action at all",
        (pos("p1", trade_type=TradeType.THEORETICAL, alpaca_order_id="e1"),),
        orders=(SELL_1_AT_110, ended("e1", "canceled")),
    ),
    row(
        "THEORETICAL position does not suppress an orphan on its symbol",
        (pos("p1", trade_type=TradeType.THEORETICAL),),
        (AlertOrphan("BTC/USD", "long", d(1), d(60000)),),
        broker=(bpos("BTCUSD", "1", "60000"),),
    ),
    row(
        "trade_type missing is treated as executed",
        (pos("p1", trade_type=None),),
        (HEAL_P1,),
        zombies=BTC,
        orders=(SELL_1_AT_110,),
    ),
    # ---- orphans and dust --------------------------------------------------------------------
    row(
        "orphan crypto long: display symbol, side, qty, market value",
        (),
        (AlertOrphan("ETH/USD", "long", d(10), d(25000)),),
        broker=(bpos("ETHUSD", "10", "25000"),),
    ),
    row(
        "orphan short equity: qty as an absolute value",
        (pos("p1", "AAPL"),),
        (AlertOrphan("TSLA", "short", d(5), d(1000)),),
        broker=(bpos("AAPL", "1", "190", crypto=False), bpos("TSLA", "-5", "1000", crypto=False)),
    ),
    row(
        "orphan with unknown market value is not dust",
        (),
        (AlertOrphan("SOL/USD", "long", d(3), None),),
        broker=(bpos("SOLUSD", "3", None),),
    ),
    row(
        "broker dust below $1: IgnoreDust, not orphan",
        (),
        (IgnoreDust("BTC/USD", d("0.60")),),
        broker=(bpos("BTCUSD", "0.00001", "0.60"),),
    ),
    row(
        "broker position worth exactly the dust threshold is an orphan",
        (),
        (AlertOrphan("BTC/USD", "long", d("0.0001"), d("1.00")),),
        broker=(bpos("BTCUSD", "0.0001", "1.00"),),
    ),
    row(
        "dust at broker + Firestore position: zombie candidate still needing evidence",
        (pos("p1"),),
        (unverified("p1"), IgnoreDust("BTC/USD", d("0.60"))),
        zombies=BTC,
        broker=(bpos("BTCUSD", "0.00001", "0.60"),),
    ),
    row(
        "dust at broker + Firestore position + closing fill: healed",
        (pos("p1"),),
        (HEAL_P1, IgnoreDust("BTC/USD", d("0.60"))),
        zombies=BTC,
        broker=(bpos("BTCUSD", "0.00001", "0.60"),),
        orders=(SELL_1_AT_110,),
    ),
    # ---- drift -------------------------------------------------------------------------------
    row(
        "drift: Firestore more than broker, beyond tolerance",
        (pos("p1"),),
        (ReportDrift("BTC/USD", d(1), d("0.5")),),
        broker=(bpos("BTCUSD", "0.5", "30000"),),
    ),
    row(
        "drift: broker more than Firestore",
        (pos("p1", qty=0.5),),
        (ReportDrift("BTC/USD", d("0.5"), d(1), DriftKind.BROKER_HOLDS_MORE),),
        broker=(bpos("BTCUSD", "1", "60000"),),
    ),
    row(
        "drift on a short: signed quantities",
        (pos("p1", "MSFT", qty=2.0, side="sell"),),
        (ReportDrift("MSFT", d(-2), d(-1)),),
        broker=(bpos("MSFT", "-1", "400", crypto=False),),
    ),
    row(
        "drift: Firestore long vs broker short of the same size",
        (pos("p1", "MSFT", qty=2.0),),
        (ReportDrift("MSFT", d(2), d(-2), DriftKind.BROKER_HOLDS_MORE),),
        broker=(bpos("MSFT", "-2", "800", crypto=False),),
    ),
    row(
        "difference within the relative tolerance (crypto fee): nothing",
        (pos("p1"),),
        broker=(bpos("BTCUSD", "0.9975", "60000"),),
    ),
    # ---- limits and refusals -----------------------------------------------------------------
    row(
        "heal limit 2 with 3 heals due: none applied, all refused, the breaker trips",
        THREE_ZOMBIES,
        (
            refused(HEAL_P1, RefusalReason.HEAL_LIMIT),
            refused(HEAL_P2, RefusalReason.HEAL_LIMIT),
            refused(HEAL_P3, RefusalReason.HEAL_LIMIT),
            TripBreaker(3, 2),
        ),
        zombies=("BTC/USD", "ETH/USD", "SOL/USD"),
        orders=THREE_SELLS,
        policy=Policy(heal_limit=2),
    ),
    row(
        "force=True lifts the heal limit",
        THREE_ZOMBIES,
        (HEAL_P1, HEAL_P2, HEAL_P3),
        zombies=("BTC/USD", "ETH/USD", "SOL/USD"),
        orders=THREE_SELLS,
        policy=Policy(heal_limit=2),
        force=True,
    ),
    row(
        "heal limit 0: any heal due trips the breaker",
        (pos("p1"),),
        (refused(HEAL_P1, RefusalReason.HEAL_LIMIT), TripBreaker(1, 0)),
        zombies=BTC,
        orders=(SELL_1_AT_110,),
        policy=Policy(heal_limit=0),
    ),
    row(
        "an account_id differing from the broker account: every heal refused",
        (
            pos("p1", account="acct-other"),
            pos("p2", "ETH/USD", alpaca_order_id="e2", filled=None),
        ),
        (
            refused(HEAL_P1, RefusalReason.ACCOUNT_MISMATCH),
            refused(never_filled("p2", "ETH/USD", at(90), "e2"), RefusalReason.ACCOUNT_MISMATCH),
        ),
        zombies=("BTC/USD", "ETH/USD"),
        orders=(SELL_1_AT_110, ended("e2", "expired", symbol="ETH/USD", ended_at=at(90))),
    ),
    row(
        "position without account_id is not an account mismatch",
        (pos("p1", account=None),),
        (HEAL_P1,),
        zombies=BTC,
        orders=(SELL_1_AT_110,),
    ),
    row(
        "a THEORETICAL position of another account does not block heals",
        (pos("p1"), pos("p9", "DOGE/USD", account="x", trade_type=TradeType.THEORETICAL)),
        (HEAL_P1,),
        zombies=BTC,
        orders=(SELL_1_AT_110,),
    ),
    # ---- everything at once: the stable order of actions -------------------------------------
    row(
        "mixed world: defer, heal, unverified, drift, orphan, dust in that order",
        (
            pos("p1"),
            pos("p2", "ETH/USD"),
            pos("p3", "AAPL", qty=4.0),
            pos("p4", "SOL/USD", created=YOUNG),
        ),
        (
            Defer("p4", "SOL/USD", DeferReason.TOO_YOUNG),
            HEAL_P1,
            unverified("p2", "ETH/USD"),
            ReportDrift("AAPL", d(4), d(2)),
            AlertOrphan("DOGE/USD", "long", d(100), d(15)),
            IgnoreDust("XRP/USD", d("0.05")),
        ),
        zombies=("BTC/USD", "ETH/USD"),
        broker=(
            bpos("AAPL", "2", "380", crypto=False),
            bpos("DOGEUSD", "100", "15"),
            bpos("XRPUSD", "0.1", "0.05"),
        ),
        orders=(SELL_1_AT_110,),
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_plan(case: Case) -> None:
    plan = run(case)
    assert tuple(shape(a) for a in plan.actions) == case.expected
    assert plan.zombie_symbols == case.zombies


# --------------------------------------------------------------------------------------------
# Entry orders that ended without a fill, matched three ways.


@pytest.mark.parametrize("status", ["canceled", "expired", "rejected"])
@pytest.mark.parametrize(
    ("link", "order_id", "client_order_id"),
    [
        pytest.param({"alpaca_order_id": "e1"}, "e1", None, id="by alpaca_order_id"),
        pytest.param({"entry_order_id": "e1"}, "e1", None, id="by entry_order_id"),
        pytest.param({}, "e1", "p1", id="by client_order_id == position_id"),
    ],
)
def test_entry_never_filled_heals_with_zero_pnl(
    status: str, link: dict[str, str], order_id: str, client_order_id: str | None
) -> None:
    position = pos(
        "p1",
        alpaca_order_id=link.get("alpaca_order_id"),
        entry_order_id=link.get("entry_order_id"),
        filled=None,
    )
    entry = ended(order_id, status, ended_at=at(45), client_order_id=client_order_id)
    plan = run(Case(positions=(position,), orders=(entry,)))
    assert plan.actions == (never_filled("p1", "BTC/USD", at(45), "e1"),)
    assert plan.zombie_symbols == ("BTC/USD",)


def test_entry_never_filled_without_end_time_uses_submission_time() -> None:
    entry = ended("e1", "rejected", submitted=at(-1), ended_at=None)
    plan = run(Case(positions=(pos("p1", alpaca_order_id="e1", filled=None),), orders=(entry,)))
    assert plan.heals == (never_filled("p1", "BTC/USD", at(-1), "e1"),)


def test_entry_never_filled_but_firestore_says_filled_asks_a_person() -> None:
    entry = ended("e1", "canceled", ended_at=at(5))
    plan = run(Case(positions=(pos("p1", alpaca_order_id="e1"),), orders=(entry,)))
    assert plan.heals == ()
    [unverified] = plan.unverified
    assert "filled_at" in unverified.reason


def test_entry_never_filled_needs_every_matching_entry_order_unfilled() -> None:
    canceled = ended("e1", "canceled", ended_at=at(5))
    filled = ended("e1-retry", "filled", filled_qty="1", client_order_id="p1")
    plan = run(
        Case(positions=(pos("p1", alpaca_order_id="e1", filled=None),), orders=(canceled, filled))
    )
    assert plan.heals == ()
    assert [u.position_id for u in plan.unverified] == ["p1"]


@pytest.mark.parametrize("status", ["done_for_day", "canceled"])
def test_missing_or_non_final_entry_data_is_not_never_filled(status: str) -> None:
    # done_for_day resumes next session; a canceled order with no filled_qty says nothing.
    entry = ended("e1", status, ended_at=at(5))
    entry = replace(entry, filled_qty=None) if status == "canceled" else entry
    plan = run(Case(positions=(pos("p1", alpaca_order_id="e1", filled=None),), orders=(entry,)))
    assert plan.heals == ()


def test_entry_price_zero_is_not_a_pnl() -> None:
    plan = run(Case(positions=(pos("p1", entry=0.0),), orders=(SELL_1_AT_110,)))
    assert plan.heals == ()
    assert plan.unverified[0].reason is UnverifiedReason.ENTRY_PRICE_MISSING
    assert "not positive" in words.unverified_words(plan.unverified[0])


def test_fills_of_positions_closed_in_firestore_are_not_evidence() -> None:
    # R (closed by the bot with its own stop order "sr") sold before P1's manual close "m".
    stop = fill("sr", "sell", "1", "90", at(120))
    manual = fill("m", "sell", "1", "150", at(300))
    closed_r = ClosedPosition("r", "BTC/USD", Decimal(1), exit_order_id="sr")
    plan = plan_reconciliation(
        StoreState((pos("p1"),)),
        BrokerState(ACCOUNT, (), ()),
        ClosedOrders((stop, manual)),
        Policy(),
        NOW,
        ledger=Ledger(closed=(closed_r,)),
    )
    [heal] = plan.heals
    assert heal.exit_order_id == "m"
    assert heal.exit_fill_price == Decimal("150")


def test_unrelated_canceled_order_is_not_the_entry() -> None:
    other = ended("e9", "canceled", client_order_id="p2", ended_at=at(5))
    plan = run(Case(positions=(pos("p1", alpaca_order_id="e1"),), orders=(other,)))
    assert plan.heals == ()
    assert [u.position_id for u in plan.unverified] == ["p1"]


# --------------------------------------------------------------------------------------------
# The words a person reads are made from the decision's data: they must say why.


def test_incomplete_order_listing_is_mentioned_in_the_reason() -> None:
    plan = run(Case(positions=(pos("p1"),), complete=False))
    (u,) = plan.unverified
    assert u.position_id == "p1"
    assert u.listing_incomplete
    assert "incomplete" in words.unverified_words(u)


def test_complete_order_listing_is_not_called_incomplete() -> None:
    plan = run(Case(positions=(pos("p1"),)))
    (u,) = plan.unverified
    assert "incomplete" not in words.unverified_words(u)
    assert "closing" in words.unverified_words(u)


def test_incomplete_listing_never_prevents_a_heal_on_evidence_held() -> None:
    plan = run(Case(positions=(pos("p1"),), orders=(SELL_1_AT_110,), complete=False))
    assert tuple(shape(a) for a in plan.actions) == (HEAL_P1,)


def test_missing_entry_price_reason_names_the_field() -> None:
    plan = run(Case(positions=(pos("p1", entry=None),), orders=(SELL_1_AT_110,)))
    (u,) = plan.unverified
    assert "entry_fill_price" in words.unverified_words(u)


def test_refusal_details_say_what_was_due_and_why() -> None:
    limited = run(
        Case(
            positions=(pos("p1"), pos("p2", "ETH/USD")),
            orders=(SELL_1_AT_110, fill("s2", "sell", "1", "110", at(61), symbol="ETH/USD")),
            policy=Policy(heal_limit=1),
        )
    )
    assert [r.heal.position_id for r in limited.refused] == ["p1", "p2"]
    text = words.refusal_words(limited.refused[0])
    assert "2 heals due" in text
    assert "limit of 1" in text
    assert "breaker" in text

    foreign = run(Case(positions=(pos("p1", account="acct-x"),), orders=(SELL_1_AT_110,)))
    (m,) = foreign.refused
    assert m.reason is RefusalReason.ACCOUNT_MISMATCH
    assert "account" in words.refusal_words(m)


def test_partial_external_close_is_explained_by_position_and_order() -> None:
    plan = run(
        Case(
            positions=(pos("p1", qty=1.0),),
            broker=(bpos("BTCUSD", "0.6", "36000"),),
            orders=(fill("s1", "sell", "0.4", "110", at(60)),),
        )
    )
    (drift,) = plan.actions
    assert isinstance(drift, ReportDrift)
    assert (drift.symbol, drift.db_qty, drift.broker_qty) == ("BTC/USD", d(1), d("0.6"))
    assert drift.kind is DriftKind.PARTIAL_CLOSE
    assert drift.position_ids == ("p1",)
    assert [a.order_id for _, a in drift.allocations] == ["s1"]
    text = words.drift_explanation(drift)
    assert text is not None
    assert "p1" in text
    assert "s1" in text
    assert plan.heals == ()


def test_partial_close_of_the_wrong_size_is_not_an_explanation() -> None:
    plan = run(
        Case(
            positions=(pos("p1", qty=1.0),),
            broker=(bpos("BTCUSD", "0.6", "36000"),),
            orders=(fill("s1", "sell", "0.2", "110", at(60)),),
        )
    )
    assert plan.actions == (ReportDrift("BTC/USD", d(1), d("0.6")),)


# --------------------------------------------------------------------------------------------
# evidence_query: which closed orders the plan needs, and since when.


def qrow(
    description: str,
    positions: tuple[Position, ...],
    expected: EvidenceQuery | None = None,
    *,
    broker: tuple[BrokerPosition, ...] = (),
    open_orders: tuple[BrokerOrder, ...] = (),
    policy: Policy = POLICY,
) -> ParameterSet:
    return pytest.param(positions, broker, open_orders, policy, expected, id=description)


QUERY_CASES = [
    qrow("no positions: None", ()),
    qrow("matching position: None", (pos("p1"),), broker=(bpos("BTCUSD", "1"),)),
    qrow("young position only: None", (pos("p1", created=YOUNG),)),
    qrow(
        "entry order working: None",
        (pos("p1", alpaca_order_id="e1"),),
        open_orders=(working("e1"),),
    ),
    qrow("THEORETICAL only: None", (pos("p1", trade_type=TradeType.THEORETICAL),)),
    qrow("CLOSED only: None", (pos("p1", status=TradeStatus.CLOSED),)),
    qrow("orphan only: None", (), broker=(bpos("BTCUSD", "1"),)),
    qrow("within tolerance: None", (pos("p1"),), broker=(bpos("BTCUSD", "0.9975"),)),
    qrow(
        "broker holds more than Firestore: no evidence can explain it, None",
        (pos("p1", qty=0.5),),
        broker=(bpos("BTCUSD", "1"),),
    ),
    qrow(
        "zombies: sorted unique DB symbols, after = oldest entry - 1h",
        (
            pos("p2", "AAPL", created=at(30), filled=at(31)),
            pos("p1", "BTC/USD", created=at(0), filled=at(1)),
            pos("p3", "BTC/USD", created=at(50), filled=at(50)),
        ),
        EvidenceQuery(symbols=("AAPL", "BTC/USD"), after=at(-60)),
    ),
    qrow(
        "filled_at earlier than created_at counts",
        (pos("p1", "ETH/USD", created=at(10), filled=at(-20)),),
        EvidenceQuery(symbols=("ETH/USD",), after=at(-80)),
    ),
    qrow(
        "policy.order_lookback is used",
        (pos("p1"),),
        EvidenceQuery(symbols=("BTC/USD",), after=at(-180)),
        policy=Policy(order_lookback=timedelta(hours=3)),
    ),
    qrow(
        "drift candidate (Firestore above broker) needs evidence",
        (pos("p1", created=at(20), filled=at(20)),),
        EvidenceQuery(symbols=("BTC/USD",), after=at(-40)),
        broker=(bpos("BTCUSD", "0.5"),),
    ),
    qrow(
        "symbol held only as dust: the position needs evidence",
        (pos("p1"),),
        EvidenceQuery(symbols=("BTC/USD",), after=at(-60)),
        broker=(bpos("BTCUSD", "0.00001", "0.5"),),
    ),
    qrow(
        "no timestamps at all: no listing, a look-up of its own orders",
        (pos("p1", created=None, filled=None, alpaca_order_id="e1", sl="sl1"),),
        EvidenceQuery(
            symbols=(),
            after=NOW - timedelta(days=7),
            lookup_positions=("p1",),
            lookup_order_ids=("e1", "sl1"),
        ),
    ),
    qrow(
        "positions without timestamps do not pull `after` back",
        (pos("p1", created=None, filled=None), pos("p2", "ETH/USD", created=at(120), filled=None)),
        EvidenceQuery(symbols=("ETH/USD",), after=at(60), lookup_positions=("p1",)),
    ),
    qrow(
        "a zombie from 40 days ago does not drag the listing back: it is looked up",
        (
            pos("old", created=NOW - timedelta(days=40), filled=None, alpaca_order_id="e-old"),
            pos("new", "ETH/USD", created=at(120), filled=None, alpaca_order_id="e-new"),
        ),
        EvidenceQuery(
            symbols=("ETH/USD",),
            after=at(60),
            expected=(ExpectedEntry("new", frozenset({"e-new"}), "ETH/USD"),),
            lookup_positions=("old",),
            lookup_order_ids=("e-old",),
        ),
    ),
    qrow(
        "the listing must contain the fresh candidates' entry orders (the self-check)",
        (pos("p1", alpaca_order_id="e1", entry_order_id="e1b"),),
        EvidenceQuery(
            symbols=("BTC/USD",),
            after=at(-60),
            expected=(ExpectedEntry("p1", frozenset({"e1", "e1b"}), "BTC/USD"),),
        ),
    ),
    qrow(
        "young and THEORETICAL positions are not candidates",
        (
            pos("p1", created=at(-600)),
            pos("p2", "ETH/USD", created=YOUNG),
            pos("p3", "SOL/USD", created=at(-900), trade_type=TradeType.THEORETICAL),
        ),
        EvidenceQuery(symbols=("BTC/USD",), after=at(-660)),
    ),
]


@pytest.mark.parametrize(("positions", "broker", "open_orders", "policy", "expected"), QUERY_CASES)
def test_evidence_query(
    positions: tuple[Position, ...],
    broker: tuple[BrokerPosition, ...],
    open_orders: tuple[BrokerOrder, ...],
    policy: Policy,
    expected: EvidenceQuery | None,
) -> None:
    state = BrokerState(ACCOUNT, broker, open_orders)
    assert evidence_query(StoreState(positions), state, policy, NOW) == expected


def test_old_candidates_are_looked_up_a_few_per_run_in_turn() -> None:
    """Old zombies are rechecked by look-ups, at most ``old_lookups_per_run`` per run, the next
    ones in the next schedule period, so each is rechecked every few runs."""
    old = tuple(pos(f"o{i}", created=NOW - timedelta(days=60), filled=None) for i in range(7))
    policy = Policy(old_lookups_per_run=3)
    state = BrokerState(ACCOUNT, (), ())
    seen: list[tuple[str, ...]] = []
    for run_index in range(3):
        when = NOW + run_index * policy.rotation_period
        query = evidence_query(StoreState(old), state, policy, when)
        assert query is not None
        assert query.symbols == ()
        assert len(query.lookup_positions) == 3
        seen.append(query.lookup_positions)
    assert {p for batch in seen for p in batch} == {f"o{i}" for i in range(7)}
    assert seen[0] != seen[1]


def test_evidence_query_covers_what_the_plan_heals_with() -> None:
    """Orders selected by the query's symbols and `after` are enough to heal the zombie."""
    positions = (pos("p1", created=at(5), filled=at(5), alpaca_order_id="e1"),)
    state = BrokerState(ACCOUNT, (), ())
    query = evidence_query(StoreState(positions), state, POLICY, NOW)
    assert query is not None
    entry = ended("e1", "filled", filled_qty="1", submitted=at(4))
    candidates = [entry, SELL_1_AT_110, fill("old", "sell", "1", "90", at(-120))]
    selected = tuple(
        o for o in candidates if o.symbol in query.symbols and o.submitted_at >= query.after
    )
    assert {o.id for o in selected} == {"e1", "s1"}
    plan = plan_reconciliation(StoreState(positions), state, ClosedOrders(selected), POLICY, NOW)
    assert [h.exit_order_id for h in plan.heals] == ["s1"]


# --------------------------------------------------------------------------------------------
# zombie_symbols.


def test_zombie_symbols_are_the_db_symbols_the_broker_does_not_hold() -> None:
    plan = run(
        Case(
            positions=(
                pos("p1", "BTC/USD"),
                pos("p2", "ETH/USD"),
                pos("p3", "ETH/USD", created=at(3)),
                pos("p4", "AAPL"),
                pos("p5", "SOL/USD", created=YOUNG),
                pos("p6", "DOGE/USD", trade_type=TradeType.THEORETICAL),
                pos("p7", "XRP/USD"),
            ),
            broker=(bpos("AAPL", "1", "190", crypto=False), bpos("XRPUSD", "1", "0.5")),
            orders=(SELL_1_AT_110,),
        )
    )
    assert plan.zombie_symbols == ("BTC/USD", "ETH/USD", "XRP/USD")
    assert [h.position_id for h in plan.heals] == ["p1"]
    assert sorted(u.position_id for u in plan.unverified) == ["p2", "p3", "p7"]
    assert plan.orphans == ()


# --------------------------------------------------------------------------------------------
# Input robustness: a document that parses must be plannable.


@pytest.mark.parametrize("field", ["created_at", "filled_at"])
def test_a_position_timestamp_without_timezone_never_reaches_the_plan_naive(field: str) -> None:
    """A timestamp stored without a zone is rejected at parse time or read as UTC.

    A naive datetime that slips through makes plan_reconciliation raise TypeError against the
    aware ``now``: one document would stop the whole run (contract section 1 says it must not).
    """
    document = {
        "position_id": "p1",
        "symbol": "BTC/USD",
        "status": "OPEN",
        "side": "buy",
        "qty": 1.0,
        field: "2024-05-01T12:00:00",
    }
    with contextlib.suppress(ValidationError):
        position = Position.model_validate(document)
        parsed = getattr(position, field)
        assert parsed.tzinfo is not None, f"{field} parsed as a naive datetime"
        assert parsed == T0
        plan = run(Case(positions=(position,)))
        assert [u.position_id for u in plan.unverified] == ["p1"]
