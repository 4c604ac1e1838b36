"""The ledger's cases (issue 9), as tables: snapshots in, heals and their allocations out.

Each row is one of the realistic ways the reconciler broke its first rule of money, written as
the literal world that showed it, with what the core must decide now. Two-run rows apply the
first plan's heals the way the repository persists them (``after_heals``) and plan again with
the same broker history.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from _pytest.mark import ParameterSet

from crypto_signals.domain.schemas import Position
from crypto_signals.domain.snapshots import (
    BreakerState,
    BrokerOrder,
    BrokerPosition,
    BrokerState,
    ClosedOrders,
    ClosedPosition,
    ExpectedEntry,
    Ledger,
    Posting,
    StoreState,
)
from crypto_signals.engine.alerts import decide_alerts, delivered
from crypto_signals.engine.findings import blocked_line, critical_issues_of, findings_of
from crypto_signals.engine.plan import (
    BlockReason,
    DeferReason,
    DriftKind,
    Evidence,
    Plan,
    RefusalReason,
    UnverifiedReason,
    plan_reconciliation,
)
from crypto_signals.engine.policy import Policy
from tests.core.builders import (
    ACCOUNT,
    NOW,
    after_heals,
    at,
    bpos,
    canceled_after_partial,
    ended,
    fill,
    leg,
    pos,
)

Shares = tuple[tuple[str, str], ...]  # ((order id, qty), ...)


@dataclass(frozen=True)
class World:
    positions: tuple[Position, ...]
    orders: tuple[BrokerOrder, ...] = ()
    broker: tuple[BrokerPosition, ...] = ()
    ledger: Ledger = field(default_factory=Ledger)
    breaker: BreakerState = field(default_factory=BreakerState)
    policy: Policy = field(default_factory=Policy)
    complete: bool = True
    force: bool = False

    def plan(self, store: StoreState | None = None, ledger: Ledger | None = None) -> Plan:
        return plan_reconciliation(
            store or StoreState(self.positions),
            BrokerState(ACCOUNT, self.broker, ()),
            ClosedOrders(self.orders, complete=self.complete),
            self.policy,
            NOW,
            ledger=self.ledger if ledger is None else ledger,
            breaker=self.breaker,
            force=self.force,
        )


@dataclass(frozen=True)
class Expect:
    heals: dict[str, Shares] = field(default_factory=dict)  # position id -> allocation
    unverified: dict[str, UnverifiedReason] = field(default_factory=dict)
    zombies: tuple[str, ...] = ()
    drift: tuple[str, ...] = ()  # symbols


def allocation_of(plan: Plan) -> dict[str, Shares]:
    return {
        h.position_id: tuple((a.order_id, str(a.qty.normalize())) for a in h.allocation)
        for h in plan.heals
    }


def check(plan: Plan, expect: Expect) -> None:
    assert allocation_of(plan) == expect.heals
    assert {u.position_id: u.reason for u in plan.unverified} == expect.unverified
    assert plan.zombie_symbols == expect.zombies
    assert tuple(d.symbol for d in plan.drift) == expect.drift


def row(description: str, world: World, expect: Expect) -> ParameterSet:
    return pytest.param(world, expect, id=description)


BTC = ("BTC/USD",)
NONE = UnverifiedReason.NO_CLOSING_FILL

ONE_RUN = [
    # ---- 3. legs keep their parent ------------------------------------------------------------
    row(
        "3: two brackets on one symbol, leg ids not stored: each leg goes to its parent's "
        "position (found by the entry order id), not oldest-first",
        World(
            (
                pos("a", alpaca_order_id="eA"),
                pos("b", created=at(10), filled=at(10), alpaca_order_id="eB"),
            ),
            orders=(
                leg("tpB", "eB", "sell", "1", "150", at(30)),
                leg("slA", "eA", "sell", "1", "90", at(60)),
            ),
        ),
        Expect(heals={"a": (("slA", "1"),), "b": (("tpB", "1"),)}, zombies=BTC),
    ),
    row(
        "3: the same, the parent found by its client order id (= the position id)",
        World(
            (pos("a"), pos("b", created=at(10), filled=at(10))),
            orders=(
                leg("tpB", "xB", "sell", "1", "150", at(30), parent_client_order_id="b"),
                leg("slA", "xA", "sell", "1", "90", at(60), parent_client_order_id="a"),
            ),
        ),
        Expect(heals={"a": (("slA", "1"),), "b": (("tpB", "1"),)}, zombies=BTC),
    ),
    row(
        "3: a leg of a position closed earlier by the signal job is evidence for nobody",
        World(
            (pos("a"),),
            orders=(leg("tpC", "eC", "sell", "1", "150", at(30)),),
            ledger=Ledger(closed=(ClosedPosition("c", "BTC/USD", Decimal(1), frozenset({"eC"})),)),
        ),
        Expect(unverified={"a": NONE}, zombies=BTC),
    ),
    # ---- 4. fees in the asset -------------------------------------------------------------------
    row(
        "4: two 0.5 buys leave 0.9975 (fee in the asset); one sell of 0.9975 closes both",
        World(
            (pos("p1", qty=0.5), pos("p2", qty=0.5, created=at(5), filled=at(5))),
            orders=(fill("s", "sell", "0.9975", "120", at(60)),),
        ),
        Expect(heals={"p1": (("s", "0.49875"),), "p2": (("s", "0.49875"),)}, zombies=BTC),
    ),
    row(
        "4: three positions, one sell short by the fee of each: all three healed",
        World(
            (
                pos("p1", qty=1.0),
                pos("p2", qty=2.0, created=at(1), filled=at(1)),
                pos("p3", qty=1.0, created=at(2), filled=at(2)),
            ),
            orders=(fill("s", "sell", "3.99", "120", at(60)),),
        ),
        Expect(
            heals={"p1": (("s", "0.9975"),), "p2": (("s", "1.995"),), "p3": (("s", "0.9975"),)},
            zombies=BTC,
        ),
    ),
    row(
        "4: fees are not a licence: one sell of 0.9 for two 0.5 positions covers only the first",
        World(
            (pos("p1", qty=0.5), pos("p2", qty=0.5, created=at(5), filled=at(5))),
            orders=(fill("s", "sell", "0.9", "120", at(60)),),
        ),
        Expect(
            heals={"p1": (("s", "0.5"),)},
            unverified={"p2": UnverifiedReason.COVERED_IN_PART},
            zombies=BTC,
        ),
    ),
    # ---- 5. a closing order is split, never claimed whole -----------------------------------
    row(
        "5: one sell of 2 closes two positions of 1 in the same run",
        World(
            (pos("p1"), pos("p2", created=at(5), filled=at(5))),
            orders=(fill("s", "sell", "2", "120", at(60)),),
        ),
        Expect(heals={"p1": (("s", "1"),), "p2": (("s", "1"),)}, zombies=BTC),
    ),
    row(
        "5: the rest of a sell an earlier heal used in part still heals another position",
        World(
            (pos("p2", created=at(5), filled=at(5)),),
            orders=(fill("s", "sell", "2", "120", at(60)),),
            ledger=Ledger(postings=(Posting("s", "p1", Decimal(1)),)),
        ),
        Expect(heals={"p2": (("s", "1"),)}, zombies=BTC),
    ),
    row(
        "5: a position's close spans two sells",
        World(
            (pos("p1", qty=2.0),),
            orders=(
                fill("s1", "sell", "0.5", "110", at(30)),
                fill("s2", "sell", "1.5", "130", at(60)),
            ),
        ),
        Expect(heals={"p1": (("s1", "0.5"), ("s2", "1.5"))}, zombies=BTC),
    ),
    # ---- 6. a zombie on a symbol the bot re-entered ------------------------------------------
    row(
        "6: closed by hand, then the bot re-entered: the old position heals on the held symbol",
        World(
            (pos("old"), pos("new", created=at(90), filled=at(90))),
            orders=(fill("m", "sell", "1", "120", at(60)), fill("e", "buy", "1", "125", at(90))),
            broker=(bpos("BTCUSD", "1"),),
        ),
        Expect(heals={"old": (("m", "1"),)}, zombies=BTC),
    ),
    row(
        "6: a sell after the re-entry could close either position, and the broker holds the "
        "other: the evidence does not say which, so nothing heals (ambiguous drift)",
        World(
            (pos("old"), pos("new", created=at(30), filled=at(30))),
            orders=(fill("m", "sell", "1", "120", at(60)),),
            broker=(bpos("BTCUSD", "1"),),
        ),
        Expect(zombies=BTC, drift=BTC),
    ),
    row(
        "6: evidence that would leave the book below the broker's quantity heals nothing (drift)",
        World(
            (pos("old"), pos("new", created=at(90), filled=at(90))),
            orders=(fill("m", "sell", "1", "120", at(60)),),
            broker=(bpos("BTCUSD", "1.5"),),
        ),
        Expect(drift=BTC),
    ),
    row(
        "6: a held symbol whose book already matches the broker is not searched for closes",
        World(
            (pos("old"), pos("new", created=at(90), filled=at(90))),
            orders=(fill("m", "sell", "1", "120", at(60)),),
            broker=(bpos("BTCUSD", "2"),),
        ),
        Expect(),
    ),
    # ---- 7. partly filled, then canceled ------------------------------------------------------
    row(
        "7: a sell filled in part then canceled (no filled_at) closes a position of that size",
        World(
            (pos("p1", qty=0.4),),
            orders=(
                canceled_after_partial(
                    "c", "sell", "0.4", "105", submitted=at(50), ended=at(60), qty="1"
                ),
            ),
        ),
        Expect(heals={"p1": (("c", "0.4"),)}, zombies=BTC),
    ),
    row(
        "7: the same, expired instead of canceled",
        World(
            (pos("p1", qty=0.4),),
            orders=(
                canceled_after_partial(
                    "c", "sell", "0.4", "105", submitted=at(50), ended=at(60), status="expired"
                ),
            ),
        ),
        Expect(heals={"p1": (("c", "0.4"),)}, zombies=BTC),
    ),
    row(
        "7: a partial fill submitted before the entry is not its close",
        World(
            (pos("p1", qty=0.4, created=at(55), filled=at(55)),),
            orders=(
                canceled_after_partial("c", "sell", "0.4", "105", submitted=at(50), ended=at(60)),
            ),
        ),
        Expect(unverified={"p1": NONE}, zombies=BTC),
    ),
    row(
        "7: a partial fill and a later sell together cover the position",
        World(
            (pos("p1"),),
            orders=(
                canceled_after_partial("c", "sell", "0.4", "105", submitted=at(50), ended=at(60)),
                fill("s", "sell", "0.6", "110", at(90)),
            ),
        ),
        Expect(heals={"p1": (("c", "0.4"), ("s", "0.6"))}, zombies=BTC),
    ),
    # ---- 8. unverified stays unverified on a re-entry ----------------------------------------
    row(
        "8: no evidence for the old position, the bot re-entered: the old one stays unverified",
        World(
            (pos("old"), pos("new", created=at(90), filled=at(90))),
            broker=(bpos("BTCUSD", "1"),),
        ),
        Expect(unverified={"old": NONE}, zombies=BTC),
    ),
    row(
        "8: with an evidenced and an unevidenced old position, nothing heals until a person "
        "resolves the unverified one (the book would not match)",
        World(
            (
                pos("a"),
                pos("b", created=at(10), filled=at(10)),
                pos("new", created=at(90), filled=at(90)),
            ),
            orders=(fill("m", "sell", "1", "120", at(5)),),
            broker=(bpos("BTCUSD", "1"),),
        ),
        Expect(unverified={"b": NONE}, zombies=BTC, drift=BTC),
    ),
]


@pytest.mark.parametrize(("world", "expect"), ONE_RUN)
def test_ledger_case(world: World, expect: Expect) -> None:
    check(world.plan(), expect)


def test_case_3_pnl_follows_the_right_leg() -> None:
    world = ONE_RUN[0].values[0]
    assert isinstance(world, World)
    heals = {h.position_id: h for h in world.plan().heals}
    assert heals["a"].exit_fill_price == Decimal(90)
    assert heals["a"].realized_pnl_usd == Decimal(-10)
    assert heals["b"].exit_fill_price == Decimal(150)
    assert heals["b"].realized_pnl_usd == Decimal(50)
    assert heals["a"].evidence is heals["b"].evidence is Evidence.OWN_EXIT_LEG


def test_case_7_exit_time_is_when_the_order_ended() -> None:
    world = World(
        (pos("p1", qty=0.4),),
        orders=(canceled_after_partial("c", "sell", "0.4", "105", submitted=at(50), ended=at(60)),),
    )
    (heal,) = world.plan().heals
    assert heal.exit_time == at(60)
    assert heal.exit_order_id == "c"
    assert heal.exit_fill_price == Decimal(105)


# ---- 1 and 5: two runs with the same broker history -----------------------------------------


def two_runs(world: World) -> tuple[Plan, Plan]:
    store = StoreState(world.positions)
    first = world.plan(store)
    store, ledger = after_heals(store, world.ledger, first)
    return first, world.plan(store, ledger)


def test_case_1_a_fill_is_never_used_twice_across_runs() -> None:
    # p1 (2) is closed by two sells, 0.5 then 1.5. p2 entered before both and has no close of
    # its own. Before the ledger, the second run freed the 0.5 sell and "closed" p2 with it.
    world = World(
        (pos("p1", qty=2.0), pos("p2", qty=0.5, created=at(20), filled=at(20))),
        orders=(fill("s1", "sell", "0.5", "110", at(30)), fill("s2", "sell", "1.5", "130", at(60))),
    )
    first, second = two_runs(world)
    assert allocation_of(first) == {"p1": (("s1", "0.5"), ("s2", "1.5"))}
    assert [u.position_id for u in first.unverified] == ["p2"]
    assert second.heals == ()
    assert [u.position_id for u in second.unverified] == ["p2"]


def test_case_5_a_deferred_position_heals_later_from_the_rest_of_the_sell() -> None:
    # Run 1: p2 is young (pending), p1 heals from half of one sell of 2. Run 2, the same history:
    # p2 has aged and takes the other half; p1's half is not given out again.
    young = NOW - Policy().min_position_age / 2
    world = World(
        (pos("p1"), pos("p2", created=young, filled=at(5))),
        orders=(fill("s", "sell", "2", "120", at(60)),),
    )
    store = StoreState(world.positions)
    first = world.plan(store)
    assert allocation_of(first) == {"p1": (("s", "1"),)}
    store, ledger = after_heals(store, world.ledger, first)
    aged = World(
        tuple(p.model_copy(update={"created_at": at(5)}) for p in store.positions),
        orders=world.orders,
    )
    second = aged.plan(StoreState(aged.positions), ledger)
    assert allocation_of(second) == {"p2": (("s", "1"),)}


def test_the_signal_jobs_close_uses_its_exit_order_for_its_quantity() -> None:
    # The signal job closed c (1) with sell s (2): the other 1 is still evidence for p1.
    world = World(
        (pos("p1"),),
        orders=(fill("s", "sell", "2", "120", at(60)),),
        ledger=Ledger(closed=(ClosedPosition("c", "BTC/USD", Decimal(1), exit_order_id="s"),)),
    )
    assert allocation_of(world.plan()) == {"p1": (("s", "1"),)}
    used_up = World(
        world.positions,
        orders=world.orders,
        ledger=Ledger(closed=(ClosedPosition("c", "BTC/USD", Decimal(2), exit_order_id="s"),)),
    )
    assert used_up.plan().heals == ()


# ---- 2. the breaker is a stop, not a rate limit ------------------------------------------------

FOUR = tuple(pos(f"p{i}", f"C{i}/USD") for i in range(4))
FOUR_SELLS = tuple(
    fill(f"s{i}", "sell", "1", "110", at(60 + i), symbol=f"C{i}/USD") for i in range(4)
)


def test_case_2_more_heals_than_the_limit_applies_none_and_trips() -> None:
    plan = World(FOUR, orders=FOUR_SELLS, policy=Policy(heal_limit=2)).plan()
    assert plan.heals == ()
    assert {r.reason for r in plan.refused} == {RefusalReason.HEAL_LIMIT}
    assert len(plan.refused) == 4
    assert plan.trip is not None
    assert (plan.trip.heals_due, plan.trip.limit) == (4, 2)
    assert plan.halted is not None
    assert plan.halted.tripped_now


def test_case_2_a_tripped_breaker_heals_nothing_in_later_runs_even_under_the_limit() -> None:
    tripped = BreakerState(tripped=True, heals_due=4, limit=2)
    plan = World(
        FOUR[:1], orders=FOUR_SELLS[:1], breaker=tripped, policy=Policy(heal_limit=2)
    ).plan()
    assert plan.heals == ()
    assert [r.reason for r in plan.refused] == [RefusalReason.BREAKER_TRIPPED]
    assert plan.trip is None
    assert plan.halted is not None
    assert not plan.halted.tripped_now
    assert not plan.resets_breaker


def test_case_2_force_applies_the_runs_heals_and_resets() -> None:
    tripped = BreakerState(tripped=True, heals_due=4, limit=2)
    plan = World(
        FOUR, orders=FOUR_SELLS, breaker=tripped, policy=Policy(heal_limit=2), force=True
    ).plan()
    assert len(plan.heals) == 4
    assert plan.refused == ()
    assert plan.resets_breaker
    assert plan.halted is None


def test_case_2_a_tripped_breaker_stays_halted_with_nothing_due() -> None:
    plan = World((), breaker=BreakerState(tripped=True)).plan()
    assert plan.halted is not None
    assert [f.kind.value for f in findings_of(plan)] == ["breaker"]


# ---- 10. alert identity is data -------------------------------------------------------------


def test_case_10_an_incomplete_listing_does_not_change_an_unverified_zombies_identity() -> None:
    complete = World((pos("p1"),)).plan()
    cut = World((pos("p1"),), complete=False).plan()
    assert findings_of(complete)[0].line != findings_of(cut)[0].line  # the words differ
    first = decide_alerts(findings_of(complete), {}, NOW, realert_after=NOW - NOW)
    states = {s.finding_id: delivered(s, NOW) for s in first.writes}
    again = decide_alerts(findings_of(cut), states, NOW, realert_after=NOW - at(0))
    assert again.owed == ()
    assert again.writes == ()


def test_drift_names_the_positions_and_fills_that_would_explain_it() -> None:
    plan = World(
        (pos("old"), pos("new", created=at(90), filled=at(90))),
        orders=(fill("m", "sell", "1", "120", at(60)),),
        broker=(bpos("BTCUSD", "1.5"),),
    ).plan()
    (drift,) = plan.drift
    assert drift.kind is DriftKind.EVIDENCE_DOES_NOT_ADD_UP
    assert drift.position_ids == ("old",)
    assert [(pid, a.order_id, a.qty) for pid, a in drift.allocations] == [("old", "m", Decimal(1))]


# ---- issue 10: a listing that lacks known entry orders; old candidates looked up ----------


def test_a_listing_that_lacks_a_known_entry_order_heals_nothing() -> None:
    world = World((pos("p1"),), orders=(fill("s", "sell", "1", "120", at(60)),))
    missing = (ExpectedEntry("p1", frozenset({"e1"}), "BTC/USD"),)
    plan = plan_reconciliation(
        StoreState(world.positions),
        BrokerState(ACCOUNT, (), ()),
        ClosedOrders(world.orders, missing=missing),
        Policy(),
        NOW,
    )
    assert plan.heals == ()
    [block] = plan.blocked
    assert block.reason is BlockReason.LISTING_INCONSISTENT
    assert block.position_ids == ("p1",)
    assert "inconsistent" in blocked_line(block)


def test_a_looked_up_entry_that_never_filled_heals_even_when_the_listing_was_cut() -> None:
    entry = ended("e1", "canceled", ended_at=at(30), client_order_id="p1")
    cut = ClosedOrders((entry,), complete=False)
    store = StoreState((pos("p1", alpaca_order_id="e1", filled=None),))
    broker = BrokerState(ACCOUNT, (), ())
    assert plan_reconciliation(store, broker, cut, Policy(), NOW).heals == ()
    looked = replace(cut, looked_up=frozenset({"p1"}))
    [heal] = plan_reconciliation(store, broker, looked, Policy(), NOW).heals
    assert heal.evidence is Evidence.ENTRY_NEVER_FILLED


# ---- the adversarial review's cases -----------------------------------------------------------


def plan_of(world: World, closed: ClosedOrders, now: datetime = NOW) -> Plan:
    return plan_reconciliation(
        StoreState(world.positions),
        BrokerState(ACCOUNT, world.broker, ()),
        closed,
        world.policy,
        now,
        ledger=world.ledger,
    )


def test_review_1_a_sell_either_position_could_have_made_heals_neither() -> None:
    # old and new hold 0.1 each; the broker holds 0.1; one sell of 0.1 after both entries.
    world = World(
        (
            pos("old", qty=0.1, entry=60000.0),
            pos("new", qty=0.1, entry=70000.0, created=at(180), filled=at(180)),
        ),
        orders=(fill("s", "sell", "0.1", "68000", at(300)),),
        broker=(bpos("BTCUSD", "0.1", "6800"),),
    )
    plan = world.plan()
    assert plan.heals == ()
    (drift,) = plan.drift
    assert drift.kind is DriftKind.AMBIGUOUS
    assert drift.position_ids == ("new", "old")


def test_review_1_a_fill_the_signal_job_may_be_writing_waits_a_run() -> None:
    world = World(
        (pos("p1"),), orders=(fill("s", "sell", "1", "120", NOW - timedelta(seconds=40)),)
    )
    plan = world.plan()
    assert plan.heals == ()
    assert plan.unverified == ()
    assert [(d.position_id, d.reason) for d in plan.deferred] == [("p1", DeferReason.FILL_SETTLING)]
    later = plan_of(world, ClosedOrders(world.orders), NOW + timedelta(minutes=3))
    assert [h.position_id for h in later.heals] == ["p1"]


def test_review_3_a_position_older_than_the_listing_never_takes_a_fill_from_it() -> None:
    # old opened before the listing's start (its own close lies before the window); fresh was
    # sold an hour ago. The sell is fresh's, never old's.
    world = World(
        (
            pos(
                "old",
                "ETH/USD",
                entry=2000.0,
                created=NOW - timedelta(days=10),
                filled=NOW - timedelta(days=10),
            ),
            pos(
                "fresh",
                "ETH/USD",
                entry=3000.0,
                created=NOW - timedelta(days=1),
                filled=NOW - timedelta(days=1),
            ),
        ),
        orders=(fill("s1", "sell", "1", "3300", NOW - timedelta(hours=1), symbol="ETH/USD"),),
    )
    listed = ClosedOrders(world.orders, listed_after=NOW - timedelta(days=1, hours=1))
    plan = plan_of(world, listed)
    assert [(h.position_id, h.exit_order_id) for h in plan.heals] == [("fresh", "s1")]
    assert [u.position_id for u in plan.unverified] == ["old"]


def test_review_4_a_huge_quantity_does_not_stop_the_run() -> None:
    world = World(
        (pos("huge", "SHIB/USD", qty=1e17, entry=0.00001), pos("z", "ETH/USD")),
        orders=(
            fill("s", "sell", "1", "120", at(60), symbol="ETH/USD"),
            fill("h", "sell", "99700000000000000", "0.00002", at(60), symbol="SHIB/USD"),
        ),
    )
    plan = world.plan()
    assert sorted(h.position_id for h in plan.heals) == ["huge", "z"]


def test_review_5_an_entry_the_broker_does_not_know_is_that_positions_problem_only() -> None:
    world = World(
        (pos("bad", "DOGE/USD", alpaca_order_id="typo"), pos("z", "ETH/USD")),
        orders=(fill("s", "sell", "1", "120", at(60), symbol="ETH/USD"),),
    )
    unknown = (ExpectedEntry("bad", frozenset({"typo"}), "DOGE/USD"),)
    plan = plan_of(world, ClosedOrders(world.orders, unknown_entries=unknown))
    assert [h.position_id for h in plan.heals] == ["z"]
    [u] = plan.unverified
    assert (u.position_id, u.reason) == ("bad", UnverifiedReason.ENTRY_ORDER_UNKNOWN)
    assert plan.blocked == ()


def test_a_fill_recorded_as_more_closes_than_it_filled_is_alerted() -> None:
    world = World(
        (pos("p", "XRP/USD"),),
        orders=(fill("s", "sell", "1", "0.6", at(60), symbol="XRP/USD"),),
        ledger=Ledger(
            postings=(Posting("s", "healed-1", Decimal(1)),),
            closed=(ClosedPosition("job-1", "XRP/USD", Decimal(1), exit_order_id="s"),),
        ),
    )
    plan = world.plan()
    [over] = plan.overallocated
    assert (over.order_id, over.filled, over.used) == ("s", Decimal(1), Decimal(2))
    assert over.position_ids == ("healed-1", "job-1")
    assert plan.heals == ()
    assert "recorded as the close of healed-1, job-1" in " ".join(critical_issues_of(plan))
