"""Whole runs through the production builder against the emulator, the simulator and the sink."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from crypto_signals.domain.schemas import RunStatus
from crypto_signals.engine.reconciler import StateReconciler
from crypto_signals.repository.reconciler_state import (
    ALERTS_COLLECTION,
    LEASES_COLLECTION,
    RUNS_COLLECTION,
)
from crypto_signals.sandbox.alpaca_sim import AlpacaSimulator
from crypto_signals.sandbox.discord_sink import DiscordSink
from crypto_signals.sandbox.scenarios import World, entry_order_id, position_doc, seed_demo

Build = Callable[..., StateReconciler]
H = timedelta(hours=1)


def dump(db: firestore.Client) -> dict[str, dict[str, Any]]:
    """Every document the reconciler could touch, with its update time."""
    out: dict[str, dict[str, Any]] = {}
    for coll in (
        "test_positions",
        "live_positions",
        ALERTS_COLLECTION,
        LEASES_COLLECTION,
        RUNS_COLLECTION,
    ):
        for snap in db.collection(coll).stream():
            out[f"{coll}/{snap.id}"] = {"data": snap.to_dict(), "updated": snap.update_time}
    return out


def zombie_with_sell(
    world: World,
    pid: str,
    symbol: str,
    now: datetime,
    *,
    qty: float = 2.0,
    entry: float = 100.0,
    exit_price: str = "110",
    side: str = "buy",
) -> None:
    world.position(position_doc(pid, symbol, qty, entry, created_at=now - 5 * H, side=side))
    world.sim.add_fill(
        symbol, "sell" if side == "buy" else "buy", str(qty), price=exit_price, at=now - H
    )


def test_demo_scenario(
    world: World, sink: DiscordSink, make_reconciler: Build, now: datetime
) -> None:
    seed_demo(world, now)
    report = make_reconciler().reconcile()

    assert report.status is RunStatus.ISSUES
    assert sorted(report.zombies) == ["AVAX/USD", "ETH/USD", "LTC/USD"]
    assert report.orphans == ["SOL/USD"]
    assert report.unverified_zombies == ["sig-avax-001"]
    assert report.pending == ["sig-link-001"]
    assert report.reconciled_count == 2
    healed = {h.position_id: h for h in report.healed}
    eth = healed["sig-eth-001"]
    assert eth.exit_fill_price == pytest.approx(3150.25)
    assert eth.realized_pnl_usd == pytest.approx(300.5)
    assert eth.realized_pnl_pct == pytest.approx(300.5 / 6000 * 100)
    assert healed["sig-ltc-001"].exit_fill_price is None
    assert healed["sig-ltc-001"].realized_pnl_usd == 0
    # account, positions, open orders (one empty page), closed orders (a page and the empty
    # page that proves the listing complete)
    assert report.stats.broker_calls == 5
    assert report.stats.dust_positions == 1
    assert report.stats.notifications_sent == 1

    eth_doc = world.read("sig-eth-001")
    assert eth_doc["status"] == "CLOSED"
    assert eth_doc["exit_reason"] == "CLOSED_EXTERNALLY"
    assert eth_doc["exit_time"] == now - H
    assert eth_doc["trade_duration_seconds"] == 4 * 3600
    assert eth_doc["strategy_meta"] == {"pattern": "BULL_FLAG", "confidence": 0.82}
    for untouched in ("sig-avax-001", "sig-btc-001", "sig-aapl-001", "sig-link-001"):
        assert world.read(untouched)["status"] == "OPEN", untouched
    assert world.read("sig-xrp-001")["status"] == "OPEN"
    assert "sig-xrp-001" not in str(report.model_dump())  # THEORETICAL: never reported

    [message] = sink.messages
    text = str(message)
    assert "SOL/USD long 40" in text
    assert "sig-avax-001" in text
    assert "sig-eth-001" in text
    assert "XRP" not in text


def test_second_run_rewrites_nothing(
    world: World, sink: DiscordSink, make_reconciler: Build, db: firestore.Client, now: datetime
) -> None:
    seed_demo(world, now)
    make_reconciler().reconcile()
    positions_before = {k: v for k, v in dump(db).items() if k.startswith("test_positions")}

    again = make_reconciler().reconcile()

    positions_after = {k: v for k, v in dump(db).items() if k.startswith("test_positions")}
    assert again.reconciled_count == 0
    assert again.healed == []
    assert positions_after == positions_before  # same data and same update times
    assert len(sink.messages) == 1


def test_dry_run_writes_nothing_and_sends_nothing(
    world: World, sink: DiscordSink, make_reconciler: Build, db: firestore.Client, now: datetime
) -> None:
    seed_demo(world, now)
    before = dump(db)

    report = make_reconciler().reconcile(dry_run=True)

    assert report.dry_run
    assert report.reconciled_count == 0
    assert sorted(h.position_id for h in report.healed) == ["sig-eth-001", "sig-ltc-001"]
    assert dump(db) == before
    assert sink.attempts == []


def test_skipped_outside_prod_unless_enabled(
    world: World,
    sim: AlpacaSimulator,
    sink: DiscordSink,
    env: dict[str, str],
    db: firestore.Client,
    now: datetime,
) -> None:
    from crypto_signals.bootstrap import build_reconciler
    from crypto_signals.config import load_settings

    seed_demo(world, now)
    sim.clear_requests()
    before = dump(db)
    settings = load_settings({k: v for k, v in env.items() if k != "RECONCILER_ENABLED"})

    report = build_reconciler(settings, client=db).reconcile()

    assert report.status is RunStatus.SKIPPED
    assert sim.requests == []
    assert dump(db) == before
    assert sink.attempts == []


def test_prod_reads_the_live_collection(
    db: firestore.Client, sim: AlpacaSimulator, make_reconciler: Build, now: datetime
) -> None:
    live = World(db, sim, "live_positions")
    zombie_with_sell(live, "live-1", "ETH/USD", now)
    test = World(db, sim, "test_positions")
    zombie_with_sell(test, "test-1", "BTC/USD", now)

    report = make_reconciler(ENVIRONMENT="PROD", RECONCILER_ENABLED="").reconcile()

    assert report.environment == "PROD"
    assert [h.position_id for h in report.healed] == ["live-1"]
    assert test.read("test-1")["status"] == "OPEN"


def test_malformed_document_is_named_and_the_run_goes_on(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    zombie_with_sell(world, "good-1", "ETH/USD", now)
    bad = position_doc("bad-1", "BTC/USD", 1.0, 100.0, created_at=now - 5 * H)
    bad["qty"] = "one"
    world.position(bad)

    report = make_reconciler().reconcile()

    assert [h.position_id for h in report.healed] == ["good-1"]
    assert any("bad-1" in e and "qty" in e for e in report.errors)
    assert world.read("bad-1")["qty"] == "one"  # left untouched
    assert report.status is RunStatus.ISSUES


def test_short_position_pnl(world: World, make_reconciler: Build, now: datetime) -> None:
    zombie_with_sell(
        world, "short-1", "TSLA", now, qty=10, entry=200.0, exit_price="180", side="sell"
    )
    [healed] = make_reconciler().reconcile().healed
    assert healed.realized_pnl_usd == pytest.approx(200.0)  # sold 200, bought back 180
    assert world.read("short-1")["exit_fill_price"] == 180


def test_more_heals_than_the_limit_trips_the_breaker_and_force_resets_it(
    world: World, db: Any, sink: DiscordSink, make_reconciler: Build, now: datetime
) -> None:
    for i in range(4):
        zombie_with_sell(world, f"z-{i}", f"C{i}/USD", now)

    limited = make_reconciler(RECONCILER_HEAL_LIMIT="2").reconcile()

    # A stop, not a rate limit: none of the four is applied.
    assert limited.reconciled_count == 0
    assert all(world.read(f"z-{i}")["status"] == "OPEN" for i in range(4))
    assert limited.heals_halted
    assert any("breaker tripped" in c for c in limited.critical_issues)
    assert limited.status is RunStatus.ISSUES
    breaker = db.collection("reconciler_breaker").document("test_positions").get().to_dict()
    assert breaker["tripped"] is True
    assert breaker["heals_due"] == 4
    assert "Heals halted" in str(sink.messages[-1])

    # The next scheduled run heals nothing, though one heal is now under the limit.
    db.collection("test_positions").document("z-3").delete()
    db.collection("test_positions").document("z-2").delete()
    db.collection("test_positions").document("z-1").delete()
    later = make_reconciler(RECONCILER_HEAL_LIMIT="2").reconcile()
    assert later.reconciled_count == 0
    assert later.heals_halted
    assert world.read("z-0")["status"] == "OPEN"

    forced = make_reconciler(RECONCILER_HEAL_LIMIT="2").reconcile(force=True)
    assert forced.reconciled_count == 1
    assert not forced.heals_halted
    assert world.read("z-0")["status"] == "CLOSED"
    breaker = db.collection("reconciler_breaker").document("test_positions").get().to_dict()
    assert breaker["tripped"] is False
    assert "reconcile --force" in breaker["reset_by"]


def test_foreign_account_refuses_every_heal(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    world.position(
        position_doc(
            "acct-1", "ETH/USD", 1.0, 100.0, created_at=now - 5 * H, account_id="some-other-account"
        )
    )
    world.sim.add_fill("ETH/USD", "sell", "1", price="110", at=now - H)

    report = make_reconciler().reconcile()

    assert report.reconciled_count == 0
    assert world.read("acct-1")["status"] == "OPEN"
    assert any("account id" in c for c in report.critical_issues)


def test_drift_is_reported_never_fixed(world: World, make_reconciler: Build, now: datetime) -> None:
    world.position(position_doc("d-1", "BTC/USD", 1.0, 60000.0, created_at=now - 5 * H))
    world.position(position_doc("d-2", "BTC/USD", 0.5, 60000.0, created_at=now - H / 2))
    world.sim.add_position("BTC/USD", "1.2", current_price="60000")
    # A person sold 0.3 of d-1 in the app (before d-2 existed, so only d-1 can explain it).
    world.sim.add_fill("BTC/USD", "sell", "0.3", price="61000", at=now - H)

    report = make_reconciler().reconcile()

    [drift] = report.drift
    assert (drift.symbol, drift.db_qty, drift.broker_qty) == ("BTC/USD", 1.5, 1.2)
    assert drift.explained_by is not None
    assert "d-1" in drift.explained_by
    assert report.reconciled_count == 0
    assert world.read("d-1")["status"] == "OPEN"


def test_entry_order_still_working_is_pending(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    world.position(position_doc("w-1", "ETH/USD", 1.0, 100.0, created_at=now - 5 * H, filled=False))
    world.sim.add_order(
        symbol="ETH/USD",
        side="buy",
        qty="1",
        status="new",
        id=entry_order_id("w-1"),
        client_order_id="w-1",
        submitted_at=now - 5 * H,
        order_type="limit",
        limit_price="90",
    )
    report = make_reconciler().reconcile()
    assert report.pending == ["w-1"]
    assert report.zombies == []
    assert report.status is RunStatus.OK


def test_runs_are_recorded_with_ttl_but_dry_runs_are_not(
    world: World, make_reconciler: Build, db: firestore.Client, now: datetime
) -> None:
    zombie_with_sell(world, "r-1", "ETH/USD", now)
    dry = make_reconciler().reconcile(dry_run=True)
    real = make_reconciler().reconcile()
    runs = {s.id: s.to_dict() or {} for s in db.collection(RUNS_COLLECTION).stream()}
    assert set(runs) == {real.run_id}
    assert dry.run_id not in runs
    record = runs[real.run_id]
    assert record["report"]["reconciled_count"] == 1
    assert record["expire_at"] > now + timedelta(days=29)


def test_unreadable_firestore_fails_the_run_and_touches_nothing(
    world: World,
    env: dict[str, str],
    sink: DiscordSink,
    now: datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from crypto_signals.bootstrap import build_reconciler
    from crypto_signals.config import load_settings
    from crypto_signals.sandbox.firestore_emulator import free_port

    world.sim.add_position("SOL/USD", "40", current_price="150")
    # A client whose Firestore is not there (nothing listens on that port).
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    dead = firestore.Client(project=env["GOOGLE_CLOUD_PROJECT"])
    settings = load_settings({**env, "FIRESTORE_TIMEOUT_SECONDS": "1"})

    report = build_reconciler(settings, client=dead).reconcile()

    assert report.status is RunStatus.FAILED
    assert any("store_unavailable" in e or "lease" in e for e in report.errors), report.errors
    assert report.healed == []
    assert report.orphans == []  # nothing is decided without Firestore
    assert world.sim.count("positions") == 0  # it stopped before asking the broker
    assert sink.attempts == []


def test_fills_of_positions_closed_in_firestore_are_not_evidence(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    # R was a long the bot closed with its own stop; then P1 was sold by hand.
    world.position(position_doc("p1", "BTC/USD", 1.0, 100.0, created_at=now - 6 * H))
    closed_r = position_doc(
        "r",
        "BTC/USD",
        1.0,
        95.0,
        created_at=now - 6 * H,
        status="CLOSED",
        exit_order_id="11111111-1111-4111-8111-111111111111",
        exit_time=now - 4 * H,
        exit_fill_price=90.0,
        exit_reason="STOP_LOSS",
    )
    world.position(closed_r)
    world.sim.add_fill(
        "BTC/USD",
        "sell",
        "1",
        price="90",
        at=now - 4 * H,
        id="11111111-1111-4111-8111-111111111111",
    )
    manual = world.sim.add_fill("BTC/USD", "sell", "1", price="150", at=now - H)

    [healed] = make_reconciler().reconcile().healed

    assert healed.exit_order_id == manual["id"]
    assert healed.realized_pnl_usd == pytest.approx(50.0)


def test_a_run_past_its_deadline_stops_before_writing(
    world: World, sink: DiscordSink, make_reconciler: Build, now: datetime
) -> None:
    from crypto_signals.sandbox.alpaca_sim import Fault

    zombie_with_sell(world, "slow-1", "ETH/USD", now)
    world.sim.inject_fault("orders", Fault(kind="delay", seconds=1.0))
    # Lease 2 s: the run may write for 1.6 s at most; the broker alone takes longer.
    report = make_reconciler(RECONCILER_LEASE_SECONDS="2").reconcile()

    assert report.status is RunStatus.FAILED
    assert any("run_deadline" in e for e in report.errors)
    assert world.read("slow-1")["status"] == "OPEN"


def test_unreadable_documents_are_alerted_once(
    world: World, sink: DiscordSink, make_reconciler: Build, now: datetime
) -> None:
    bad = position_doc("bad-2", "BTC/USD", 1.0, 100.0, created_at=now - 5 * H)
    bad["side"] = "maybe"
    world.position(bad)

    first = make_reconciler().reconcile()
    make_reconciler().reconcile()

    assert first.needs_attention
    assert len(sink.messages) == 1
    assert "bad-2" in str(sink.messages[0])
    assert "Unreadable position documents" in str(sink.messages[0])
