"""Issue 9's cases end to end: the emulator, the simulator through alpaca-py, and the sink.

Each test seeds the world the case was seen in, runs the reconciler the way production builds
it, and checks the Firestore documents, the ledger and what reached Discord. Two-run tests run
again on the same broker history, the way the next scheduled run would.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from crypto_signals.domain.schemas import RunStatus
from crypto_signals.engine.reconciler import StateReconciler
from crypto_signals.repository.ledger import LEDGER_COLLECTION
from crypto_signals.sandbox.discord_sink import DiscordSink
from crypto_signals.sandbox.scenarios import World, entry_order_id, position_doc

Build = Callable[..., StateReconciler]
H = timedelta(hours=1)


def ledger(db: firestore.Client, order_id: str) -> dict[str, Any]:
    snap = db.collection(LEDGER_COLLECTION).document(f"test_positions:{order_id}").get()
    allocations: dict[str, Any] = (snap.to_dict() or {}).get("allocations", {})
    return allocations


def posted_qty(db: firestore.Client) -> dict[str, float]:
    """order id -> the quantity the ledger has allocated from it, over all positions."""
    out: dict[str, float] = {}
    for snap in db.collection(LEDGER_COLLECTION).stream():
        data = snap.to_dict() or {}
        out[data["order_id"]] = sum(float(a["qty"]) for a in data["allocations"].values())
    return out


def test_1_a_fill_is_used_once_across_runs(
    world: World, db: firestore.Client, make_reconciler: Build, now: datetime
) -> None:
    # p1 was closed by two sells; p2 entered after p1, before both sells, and has no close of
    # its own (FIFO gives both sells to p1, the older).
    world.position(position_doc("p1", "BTC/USD", 2.0, 60000.0, created_at=now - 5 * H))
    world.position(position_doc("p2", "BTC/USD", 0.5, 60000.0, created_at=now - 4 * H))
    s1 = world.sim.add_fill("BTC/USD", "sell", "0.5", price="61000", at=now - 3 * H)
    s2 = world.sim.add_fill("BTC/USD", "sell", "1.5", price="62000", at=now - 2 * H)

    first = make_reconciler().reconcile()
    second = make_reconciler().reconcile()

    assert [h.position_id for h in first.healed] == ["p1"]
    assert [(a.order_id, a.qty) for a in first.healed[0].allocation] == [
        (s1["id"], "0.5"),
        (s2["id"], "1.5"),
    ]
    assert first.unverified_zombies == ["p2"]
    assert second.healed == []
    assert second.unverified_zombies == ["p2"]
    assert world.read("p2")["status"] == "OPEN"
    p1 = world.read("p1")
    assert p1["exit_fill_price"] == pytest.approx((0.5 * 61000 + 1.5 * 62000) / 2)
    assert p1["reconciler"]["allocation"] == [
        {"order_id": s1["id"], "qty": "0.5"},
        {"order_id": s2["id"], "qty": "1.5"},
    ]
    assert posted_qty(db) == {s1["id"]: 0.5, s2["id"]: 1.5}


def bracket(
    world: World, pid: str, *, at: datetime, leg_fill: str, price: str, when: datetime
) -> dict[str, Any]:
    """A filled bracket entry whose take-profit or stop leg filled; the other leg canceled."""
    filled_leg = {
        "order_type": "limit" if leg_fill == "tp" else "stop",
        "status": "filled",
        "filled_at": when,
        "filled_avg_price": price,
    }
    other_leg = {"order_type": "stop" if leg_fill == "tp" else "limit", "status": "canceled"}
    return world.sim.add_order(
        symbol="BTC/USD",
        side="buy",
        qty="1",
        status="filled",
        submitted_at=at,
        filled_at=at,
        filled_avg_price="100",
        client_order_id=pid,
        order_class="bracket",
        legs=[filled_leg, other_leg] if leg_fill == "tp" else [other_leg, filled_leg],
    )


def test_3_bracket_legs_keep_their_parent_without_stored_leg_ids(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    a_entry = bracket(world, "a", at=now - 5 * H, leg_fill="sl", price="90", when=now - H)
    b_entry = bracket(world, "b", at=now - 4 * H, leg_fill="tp", price="150", when=now - 2 * H)
    for pid, entry in (("a", a_entry), ("b", b_entry)):
        doc = position_doc(
            pid, "BTC/USD", 1.0, 100.0, created_at=now - (5 if pid == "a" else 4) * H
        )
        doc.update(alpaca_order_id=entry["id"], entry_order_id=entry["id"])
        # tp_order_id / sl_order_id are null, as the contract allows; the entry is seeded above.
        world.position(doc, entry=False)

    report = make_reconciler().reconcile()

    healed = {h.position_id: h for h in report.healed}
    assert healed["a"].exit_fill_price == 90
    assert healed["a"].realized_pnl_usd == pytest.approx(-10)
    assert healed["b"].exit_fill_price == 150
    assert healed["b"].realized_pnl_usd == pytest.approx(50)
    assert {h.evidence for h in report.healed} == {"own_exit_leg"}


def test_4_one_sell_closes_two_positions_whose_fees_were_taken_in_the_asset(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    world.position(position_doc("f1", "ETH/USD", 0.5, 3000.0, created_at=now - 5 * H))
    world.position(position_doc("f2", "ETH/USD", 0.5, 3100.0, created_at=now - 4 * H))
    sell = world.sim.add_fill("ETH/USD", "sell", "0.9975", price="3200", at=now - H)

    report = make_reconciler().reconcile()

    assert sorted(h.position_id for h in report.healed) == ["f1", "f2"]
    assert report.unverified_zombies == []
    for h in report.healed:
        assert [(a.order_id, a.qty) for a in h.allocation] == [(sell["id"], "0.49875")]
    assert world.read("f2")["realized_pnl_usd"] == pytest.approx((3200 - 3100) * 0.5)


def test_5_the_rest_of_a_sell_heals_a_position_deferred_in_an_earlier_run(
    world: World, db: firestore.Client, make_reconciler: Build, now: datetime
) -> None:
    world.position(position_doc("old", "SOL/USD", 1.0, 100.0, created_at=now - 5 * H))
    # Its document is young (written late by the signal job), its fill is not.
    late = position_doc("late", "SOL/USD", 1.0, 110.0, created_at=now - timedelta(minutes=1))
    late["filled_at"] = now - 4 * H
    world.position(late)
    sell = world.sim.add_fill("SOL/USD", "sell", "2", price="120", at=now - H)

    first = make_reconciler().reconcile()
    assert [h.position_id for h in first.healed] == ["old"]
    assert first.pending == ["late"]

    db.collection("test_positions").document("late").update({"created_at": now - 4 * H})
    second = make_reconciler().reconcile()

    assert [h.position_id for h in second.healed] == ["late"]
    assert ledger(db, sell["id"]).keys() == {"old", "late"}
    assert posted_qty(db) == {sell["id"]: 2.0}


def test_6_a_position_closed_by_hand_heals_after_the_bot_re_entered_the_symbol(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    world.position(position_doc("old", "BTC/USD", 0.3, 60000.0, created_at=now - 6 * H))
    manual = world.sim.add_fill("BTC/USD", "sell", "0.3", price="63000", at=now - 4 * H)
    world.position(position_doc("new", "BTC/USD", 0.2, 64000.0, created_at=now - 2 * H))
    world.sim.add_position("BTC/USD", "0.2", avg_entry_price="64000", current_price="64000")

    report = make_reconciler().reconcile()

    assert [h.position_id for h in report.healed] == ["old"]
    assert report.healed[0].exit_order_id == manual["id"]
    assert report.zombies == ["BTC/USD"]
    assert report.drift == []
    assert report.orphans == []
    assert world.read("new")["status"] == "OPEN"
    assert make_reconciler().reconcile().status is RunStatus.OK


def test_7_a_sell_filled_in_part_then_canceled_is_evidence(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    world.position(position_doc("p", "AVAX/USD", 4.0, 30.0, created_at=now - 5 * H))
    order = world.sim.add_order(
        symbol="AVAX/USD",
        side="sell",
        qty="10",
        status="canceled",
        submitted_at=now - 2 * H,
        filled_qty="4",
        filled_avg_price="33",
        order_type="limit",
        limit_price="33",
    )

    report = make_reconciler().reconcile()

    [healed] = report.healed
    assert healed.exit_order_id == order["id"]
    assert healed.exit_fill_price == 33
    assert healed.realized_pnl_usd == pytest.approx(12)
    assert world.read("p")["exit_time"] is not None


def test_8_an_unverified_zombie_stays_unverified_when_the_symbol_is_re_entered(
    world: World, sink: DiscordSink, make_reconciler: Build, now: datetime
) -> None:
    world.position(position_doc("lost", "LINK/USD", 10.0, 15.0, created_at=now - 9 * H))
    first = make_reconciler().reconcile()
    assert first.unverified_zombies == ["lost"]
    announced = len(sink.messages)

    world.position(position_doc("again", "LINK/USD", 5.0, 16.0, created_at=now - H))
    world.sim.add_position("LINK/USD", "5", avg_entry_price="16", current_price="16")
    second = make_reconciler(RECONCILER_STRICT_STARTUP="true").reconcile()

    assert second.unverified_zombies == ["lost"]
    assert second.drift == []
    assert "LINK/USD" in second.zombies
    assert len(sink.messages) == announced  # nothing new, and no "resolved"
    assert "Resolved" not in str(sink.messages)
    assert world.read("lost")["status"] == "OPEN"


def test_9_a_boolean_quantity_is_malformed_and_left_untouched(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    doc = position_doc("bool-qty", "DOGE/USD", 1.0, 0.1, created_at=now - 5 * H)
    doc["qty"] = True
    world.position(doc)
    world.sim.add_fill("DOGE/USD", "sell", "1", price="0.2", at=now - H)

    report = make_reconciler().reconcile()

    assert report.healed == []
    assert any("bool-qty" in e and "qty" in e and "boolean" in e for e in report.errors)
    assert world.read("bool-qty")["status"] == "OPEN"
    assert world.read("bool-qty")["qty"] is True


def test_the_signal_jobs_own_close_is_posted_for_its_quantity(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    # The signal job closed "bot" with sell X of 2 (for 1); "manual" was closed by the rest.
    sell = world.sim.add_fill("XRP/USD", "sell", "2", price="0.6", at=now - H)
    closed = position_doc("bot", "XRP/USD", 1.0, 0.5, created_at=now - 6 * H, status="CLOSED")
    closed.update(exit_order_id=sell["id"], exit_time=now - H, exit_reason="TP1")
    world.position(closed)
    world.position(position_doc("manual", "XRP/USD", 1.0, 0.5, created_at=now - 5 * H))

    report = make_reconciler().reconcile()

    assert [(h.position_id, h.allocation[0].qty) for h in report.healed] == [("manual", "1")]


def test_heals_write_the_ledger_and_the_document_atomically_and_once(
    world: World, db: firestore.Client, make_reconciler: Build, now: datetime
) -> None:
    world.position(position_doc("z", "ADA/USD", 100.0, 0.4, created_at=now - 5 * H))
    sell = world.sim.add_fill("ADA/USD", "sell", "100", price="0.5", at=now - H)

    make_reconciler().reconcile()
    make_reconciler().reconcile()  # the same history again

    assert ledger(db, sell["id"]) == {
        "z": {
            "qty": "100",
            "source": "heal",
            "run_id": world.read("z")["reconciler"]["run_id"],
            "at": ledger(db, sell["id"])["z"]["at"],
        }
    }
    entry_fill = ledger(db, entry_order_id("z"))
    assert entry_fill == {}  # an entry is never a closing fill


def test_a_closed_position_without_exit_time_still_owns_its_exit_and_legs(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    # The signal job closed "bot" with sell S but wrote no exit_time (the contract allows it).
    sell = world.sim.add_fill("XRP/USD", "sell", "100", price="0.6", at=now - H)
    closed = position_doc("bot", "XRP/USD", 100.0, 0.5, created_at=now - 6 * H, status="CLOSED")
    closed.update(exit_order_id=sell["id"], exit_time=None, exit_reason="TP1")
    world.position(closed)
    world.position(position_doc("manual", "XRP/USD", 100.0, 0.5, created_at=now - 5 * H))

    report = make_reconciler().reconcile()

    assert report.healed == []
    assert report.unverified_zombies == ["manual"]


def test_an_entry_order_the_broker_does_not_know_leaves_the_other_heals_alone(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    world.position(position_doc("z", "ETH/USD", 1.0, 3000.0, created_at=now - 5 * H))
    world.sim.add_fill("ETH/USD", "sell", "1", price="3100", at=now - H)
    typo = position_doc("bad", "DOGE/USD", 100.0, 0.1, created_at=now - 5 * H)
    world.position(typo, entry=False)  # its alpaca_order_id names no order at the broker

    report = make_reconciler().reconcile()

    assert [h.position_id for h in report.healed] == ["z"]
    assert report.unverified_zombies == ["bad"]
    assert not any("inconsistent" in c for c in report.critical_issues)
    assert any("bad" in c and "entry order id" in c for c in report.critical_issues)


def test_a_sell_that_either_of_two_positions_could_have_made_heals_neither(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    world.position(position_doc("old", "BTC/USD", 0.1, 60000.0, created_at=now - 6 * H))
    world.position(position_doc("new", "BTC/USD", 0.1, 70000.0, created_at=now - 3 * H))
    world.sim.add_fill("BTC/USD", "sell", "0.1", price="68000", at=now - H)
    world.sim.add_position("BTC/USD", "0.1", avg_entry_price="65000", current_price="68000")

    report = make_reconciler().reconcile()

    assert report.healed == []
    [drift] = report.drift
    assert drift.kind == "ambiguous"
    assert sorted(drift.position_ids) == ["new", "old"]
    assert world.read("old")["status"] == world.read("new")["status"] == "OPEN"
