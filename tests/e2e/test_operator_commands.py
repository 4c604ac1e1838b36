"""The operator commands end to end: a real CLI process against the emulator, the simulator
and the sink, as the person reading the Discord alert would run them (contract section 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from crypto_signals.engine.reconciler import StateReconciler
from crypto_signals.repository.ledger import LEDGER_COLLECTION
from crypto_signals.repository.operator_store import AUDIT_COLLECTION
from crypto_signals.sandbox.discord_sink import DiscordSink
from crypto_signals.sandbox.scenarios import World, position_doc

Build = Callable[..., StateReconciler]
H = timedelta(hours=1)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crypto_signals.cli", *args],
        env={**os.environ, **env, "RECONCILER_OPERATOR": "ops-alice"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def as_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    payload = json.loads(done.stdout)  # exactly one JSON object on stdout
    assert isinstance(payload, dict)
    return payload


def audits(db: firestore.Client) -> list[dict[str, Any]]:
    return sorted(
        (s.to_dict() or {} for s in db.collection(AUDIT_COLLECTION).stream()),
        key=lambda a: a["at"],
    )


def snapshot(db: firestore.Client) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in (
        "test_positions",
        AUDIT_COLLECTION,
        LEDGER_COLLECTION,
        "reconciler_alerts",
        "reconciler_breaker",
        "reconciler_leases",
    ):
        for snap in db.collection(name).stream():
            out[f"{name}/{snap.id}"] = (snap.to_dict(), snap.update_time)
    return out


# ---- findings and ack ----------------------------------------------------------------------


def test_findings_lists_what_was_alerted_and_ack_stops_reminders_until_it_changes(
    world: World,
    db: firestore.Client,
    sink: DiscordSink,
    env: dict[str, str],
    make_reconciler: Build,
) -> None:
    world.sim.add_position("SOL/USD", "40", current_price="150")
    make_reconciler().reconcile()
    [orphan] = as_json(run(env, "findings", "--json"))["findings"]
    assert orphan["id"] == "orphan:SOLUSD"
    assert orphan["kind"] == "orphan"
    assert orphan["subject"] == "SOL/USD"
    assert "crypto-signals adopt SOL/USD" in orphan["detail"]
    assert orphan["acknowledged_by"] is None

    done = run(env, "ack", "orphan:SOLUSD", "--reason", "held in the long-term wallet", "--json")
    assert done.returncode == 0, done.stderr
    assert as_json(done)["after"]["by"] == "ops-alice"
    [listed] = as_json(run(env, "findings", "--json"))["findings"]
    assert listed["acknowledged_by"] == "ops-alice"
    [audit] = audits(db)
    assert (audit["action"], audit["target"], audit["actor"]) == (
        "ack",
        "orphan:SOLUSD",
        "ops-alice",
    )
    assert audit["reason"] == "held in the long-term wallet"

    # Past the re-alert interval: no reminder for an acknowledged finding...
    sent = len(sink.messages)
    make_reconciler(RECONCILER_REALERT_HOURS=str(1 / 3600 / 1000)).reconcile()
    assert len(sink.messages) == sent
    # ...but a change (the quantity) is announced again, and clears the acknowledgement.
    world.sim.add_position("SOL/USD", "55", current_price="150")
    make_reconciler().reconcile()
    assert len(sink.messages) == sent + 1
    assert "(changed) SOL/USD long 55" in json.dumps(sink.messages[-1])
    assert as_json(run(env, "findings", "--json"))["findings"][0]["acknowledged_by"] is None


def test_ack_for_a_duration_expires(
    world: World, env: dict[str, str], make_reconciler: Build
) -> None:
    world.sim.add_position("SOL/USD", "40", current_price="150")
    make_reconciler().reconcile()
    done = run(env, "ack", "orphan:SOLUSD", "--reason", "checking", "--for", "90m", "--json")
    until = datetime.fromisoformat(as_json(done)["after"]["until"])
    assert timedelta(minutes=89) < until - datetime.now(until.tzinfo) <= timedelta(minutes=90)
    assert as_json(run(env, "findings", "--json"))["findings"][0]["acknowledged_until"]


def test_ack_of_an_unknown_finding_is_refused(env: dict[str, str], db: firestore.Client) -> None:
    done = run(env, "ack", "orphan:NOPE", "--reason", "x")
    assert done.returncode == 2
    assert "no open finding" in done.stderr
    assert audits(db) == []
    bad = run(env, "ack", "orphan:NOPE", "--reason", "x", "--for", "soon", "--json")
    assert bad.returncode == 2
    assert "90m" in as_json(bad)["error"]


# ---- adopt ---------------------------------------------------------------------------------


def test_adopt_writes_one_open_position_and_the_next_run_has_no_orphan(
    world: World, db: firestore.Client, env: dict[str, str], make_reconciler: Build
) -> None:
    world.sim.add_position("SOL/USD", "40", avg_entry_price="150", current_price="152")
    assert make_reconciler().reconcile().orphans == ["SOL/USD"]

    dry = run(env, "adopt", "SOL/USD", "--reason", "bought by hand", "--dry-run", "--json")
    assert dry.returncode == 0
    assert as_json(dry)["dry_run"] is True
    assert list(db.collection("test_positions").stream()) == []

    done = run(env, "adopt", "SOL/USD", "--reason", "bought by hand", "--json")
    assert done.returncode == 0, done.stderr
    pid = as_json(done)["target"]
    doc = world.read(pid)
    assert doc["status"] == "OPEN"
    assert (doc["symbol"], doc["side"], doc["qty"], doc["entry_fill_price"]) == (
        "SOL/USD",
        "buy",
        40.0,
        150.0,
    )
    assert doc["account_id"] == world.sim.account_id
    assert doc["trade_type"] == "EXECUTED"

    again = run(env, "adopt", "SOL/USD", "--reason", "twice", "--json")
    assert again.returncode == 2
    assert "not an orphan now" in as_json(again)["error"]
    assert len(list(db.collection("test_positions").stream())) == 1
    assert as_json(dry)["target"] == pid  # deterministic id

    report = make_reconciler().reconcile()
    assert report.orphans == []
    assert [a["action"] for a in audits(db)] == ["adopt"]


def test_adopt_is_refused_when_the_broker_holds_none(env: dict[str, str]) -> None:
    done = run(env, "adopt", "ETH/USD", "--reason", "x")
    assert done.returncode == 2
    assert "broker holds none" in done.stderr


# ---- close ---------------------------------------------------------------------------------


def test_close_an_unverified_zombie_with_its_exit(
    world: World,
    db: firestore.Client,
    env: dict[str, str],
    make_reconciler: Build,
    now: datetime,
) -> None:
    world.position(position_doc("lost", "AVAX/USD", 10.0, 30.0, created_at=now - 9 * H))
    assert make_reconciler().reconcile().unverified_zombies == ["lost"]
    # The person finds the sell in the Alpaca app (here: it appears at the broker only now).
    order_id = world.sim.add_fill("AVAX/USD", "sell", "10", price="33.5", at=now - 8 * H)["id"]

    done = run(
        env,
        "close",
        "lost",
        "--reason",
        "sold in the app on the 3rd",
        "--exit-price",
        "33.5",
        "--exit-time",
        "2026-11-03T10:00:00Z",
        "--exit-order-id",
        order_id,
        "--json",
    )
    assert done.returncode == 0, done.stderr
    doc = world.read("lost")
    assert doc["status"] == "CLOSED"
    assert doc["exit_reason"] == "MANUAL_EXIT"
    assert doc["exit_fill_price"] == 33.5
    assert doc["realized_pnl_usd"] == pytest.approx(35.0)
    assert doc["realized_pnl_pct"] == pytest.approx(35.0 / 300 * 100)
    assert doc["exit_order_id"] == order_id
    assert doc["strategy_meta"]  # fields it did not touch survive
    ledger = db.collection(LEDGER_COLLECTION).document(f"test_positions:{order_id}").get().to_dict()
    assert ledger is not None
    assert ledger["allocations"]["lost"]["qty"] == "10"
    assert make_reconciler().reconcile().unverified_zombies == []

    refused = run(env, "close", "lost", "--reason", "again", "--never-filled")
    assert refused.returncode == 2
    assert "not OPEN" in refused.stderr


def test_close_never_filled_has_zero_pnl(world: World, env: dict[str, str], now: datetime) -> None:
    world.position(position_doc("nf", "LTC/USD", 3.0, 80.0, created_at=now - 9 * H))
    done = run(env, "close", "nf", "--reason", "entry canceled", "--never-filled")
    assert done.returncode == 0, done.stderr
    doc = world.read("nf")
    assert (doc["status"], doc["realized_pnl_usd"], doc["exit_fill_price"]) == ("CLOSED", 0, None)


def test_close_is_refused_while_the_broker_still_holds_the_position(
    world: World, db: firestore.Client, env: dict[str, str], now: datetime
) -> None:
    world.position(position_doc("held", "BTC/USD", 0.5, 60000.0, created_at=now - 9 * H))
    world.sim.add_position("BTC/USD", "0.5", current_price="61000")
    before = snapshot(db)
    done = run(env, "close", "held", "--reason", "x", "--exit-price", "61000")
    assert done.returncode == 2
    assert "still holds 0.5 BTC/USD" in done.stderr
    assert snapshot(db) == before


def test_a_dry_run_close_writes_nothing(
    world: World, db: firestore.Client, env: dict[str, str], now: datetime
) -> None:
    world.position(position_doc("lost", "AVAX/USD", 10.0, 30.0, created_at=now - 9 * H))
    before = snapshot(db)
    done = run(env, "close", "lost", "--reason", "x", "--exit-price", "31", "--dry-run", "--json")
    assert done.returncode == 0
    assert as_json(done)["after"]["status"] == "CLOSED"
    assert snapshot(db) == before


def test_an_operator_close_while_a_run_holds_the_lease_is_refused(
    world: World, db: firestore.Client, env: dict[str, str], now: datetime
) -> None:
    world.position(position_doc("lost", "AVAX/USD", 10.0, 30.0, created_at=now - 9 * H))
    db.collection("reconciler_leases").document("test_positions").set(
        {"holder": "run-123", "acquired_at": now, "expires_at": now + H}
    )
    done = run(env, "close", "lost", "--reason", "x", "--exit-price", "31")
    assert done.returncode == 2
    assert "in progress" in done.stderr
    assert world.read("lost")["status"] == "OPEN"


# ---- undo and release ----------------------------------------------------------------------


def test_undo_restores_the_replaced_fields_releases_the_fills_and_holds_the_position(
    world: World,
    db: firestore.Client,
    env: dict[str, str],
    make_reconciler: Build,
    now: datetime,
) -> None:
    doc = position_doc("z", "ETH/USD", 2.0, 3000.0, created_at=now - 5 * H)
    doc["exit_reason"] = "TP1"  # a stale value the heal replaces
    world.position(doc)
    sell = world.sim.add_fill("ETH/USD", "sell", "2", price="3150", at=now - H)
    [healed] = make_reconciler().reconcile().healed
    assert world.read("z")["status"] == "CLOSED"

    done = run(env, "undo", "z", "--reason", "that sell was another account's", "--json")
    assert done.returncode == 0, done.stderr
    restored = world.read("z")
    for field in (
        "status",
        "exit_reason",
        "exit_fill_price",
        "exit_time",
        "exit_order_id",
        "realized_pnl_usd",
        "trade_duration_seconds",
    ):
        assert restored[field] == doc[field], field
    assert restored["strategy_meta"] == doc["strategy_meta"]
    assert restored["reconciler"]["held"] is True
    ledger = db.collection(LEDGER_COLLECTION).document(f"test_positions:{sell['id']}").get()
    assert (ledger.to_dict() or {}).get("allocations") == {}

    report = make_reconciler().reconcile()
    assert report.held == ["z"]
    assert report.healed == []
    assert world.read("z")["status"] == "OPEN"

    assert run(env, "undo", "z", "--reason", "twice").returncode == 2
    released = run(env, "release", "z", "--reason", "checked: it was ours after all")
    assert released.returncode == 0, released.stderr
    after = make_reconciler().reconcile()
    assert [h.position_id for h in after.healed] == ["z"]  # the fill is free for it again
    assert [a["action"] for a in audits(db)] == ["undo", "release"]
    assert healed.exit_order_id == sell["id"]


def test_undo_of_a_position_the_reconciler_did_not_heal_is_refused(
    world: World, env: dict[str, str], now: datetime
) -> None:
    closed = position_doc("c", "ETH/USD", 1.0, 3000.0, created_at=now - 5 * H, status="CLOSED")
    world.position(closed)
    done = run(env, "undo", "c", "--reason", "x")
    assert done.returncode == 2
    assert "not a closed position the reconciler healed" in done.stderr
    assert run(env, "release", "c", "--reason", "x").returncode == 2


# ---- breaker and runs ----------------------------------------------------------------------


def test_breaker_shows_and_resets_and_the_next_run_heals(
    world: World,
    db: firestore.Client,
    env: dict[str, str],
    make_reconciler: Build,
    now: datetime,
) -> None:
    for i in range(3):
        world.position(position_doc(f"z{i}", f"C{i}/USD", 1.0, 10.0, created_at=now - 5 * H))
        world.sim.add_fill(f"C{i}/USD", "sell", "1", price="11", at=now - H)
    tripped = make_reconciler(RECONCILER_HEAL_LIMIT="2").reconcile()
    assert tripped.heals_halted

    shown = as_json(run(env, "breaker", "--json"))
    assert shown["heals_halted"] is True
    assert (shown["heals_due"], shown["limit"]) == (3, 2)
    text = run(env, "breaker").stdout
    assert "HALTED" in text
    assert "breaker reset" in text

    assert run(env, "breaker", "reset", "--reason", "x", "--dry-run").returncode == 0
    assert as_json(run(env, "breaker", "--json"))["heals_halted"] is True
    done = run(env, "breaker", "reset", "--reason", "checked: three manual sells", "--json")
    assert done.returncode == 0, done.stderr
    assert as_json(run(env, "breaker", "--json"))["heals_halted"] is False
    assert run(env, "breaker", "reset", "--reason", "again").returncode == 2

    after = make_reconciler(RECONCILER_HEAL_LIMIT="5").reconcile()
    assert after.reconciled_count == 3
    assert [a["action"] for a in audits(db)] == ["breaker_reset"]


def test_runs_lists_the_most_recent_runs_newest_first(
    world: World, env: dict[str, str], make_reconciler: Build
) -> None:
    world.sim.add_position("SOL/USD", "40", current_price="150")
    ids = [make_reconciler().reconcile().run_id for _ in range(3)]
    runs = as_json(run(env, "runs", "--last", "2", "--json"))["runs"]
    assert [r["run_id"] for r in runs] == ids[::-1][:2]
    assert {"run_id", "started", "status", "healed", "findings", "duration"} <= set(runs[0])
    assert runs[0]["status"] == "issues"
    assert runs[0]["findings"] >= 1


def test_json_on_an_invalid_configuration_is_one_object_naming_the_variable(
    env: dict[str, str],
) -> None:
    broken = {**env, "ALPACA_TIMEOUT_SECONDS": "forever"}
    for args in (("reconcile", "--json"), ("findings", "--json"), ("breaker", "--json")):
        done = run(broken, *args)
        assert done.returncode == 2
        assert "ALPACA_TIMEOUT_SECONDS" in as_json(done)["error"]


def test_every_changing_command_with_dry_run_writes_nothing(
    world: World,
    db: firestore.Client,
    env: dict[str, str],
    make_reconciler: Build,
    now: datetime,
) -> None:
    world.sim.add_position("SOL/USD", "40", current_price="150")
    world.position(position_doc("z", "ETH/USD", 1.0, 3000.0, created_at=now - 5 * H))
    world.sim.add_fill("ETH/USD", "sell", "1", price="3100", at=now - H)
    make_reconciler().reconcile()  # heals z, alerts the orphan
    assert run(env, "undo", "z", "--reason", "test").returncode == 0
    before = snapshot(db)
    for args in (
        ("ack", "orphan:SOLUSD"),
        ("adopt", "SOL/USD"),
        ("release", "z"),
    ):
        done = run(env, *args, "--reason", "dry", "--dry-run", "--json")
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert as_json(done)["dry_run"] is True
        assert as_json(done)["audit_id"] is None
    assert snapshot(db) == before


def test_close_checks_the_exit_order_it_is_given(
    world: World, env: dict[str, str], make_reconciler: Build, now: datetime
) -> None:
    world.position(position_doc("h1", "LINK/USD", 10.0, 15.0, created_at=now - 9 * H))
    world.position(position_doc("h2", "LINK/USD", 10.0, 15.0, created_at=now - 8 * H))
    sell = world.sim.add_fill("LINK/USD", "sell", "10", price="16", at=now - 7 * H)
    buy = world.sim.add_fill("LINK/USD", "buy", "10", price="14", at=now - 6 * H)
    report = make_reconciler().reconcile()
    assert [h.position_id for h in report.healed] == ["h1"]  # FIFO: the sell closed h1

    used = run(
        env, "close", "h2", "--reason", "x", "--exit-price", "16", "--exit-order-id", sell["id"]
    )
    assert used.returncode == 2
    assert "already closed other positions" in used.stderr
    wrong_side = run(
        env, "close", "h2", "--reason", "x", "--exit-price", "14", "--exit-order-id", buy["id"]
    )
    assert wrong_side.returncode == 2
    assert "not a close of this" in wrong_side.stderr
    unknown = run(
        env,
        "close",
        "h2",
        "--reason",
        "x",
        "--exit-price",
        "14",
        "--exit-order-id",
        "11111111-2222-4333-8444-555555555555",
    )
    assert unknown.returncode == 2
    assert "no filled order" in unknown.stderr
    assert world.read("h2")["status"] == "OPEN"


def test_undo_refuses_to_erase_a_close_written_after_the_heal(
    world: World,
    db: firestore.Client,
    env: dict[str, str],
    make_reconciler: Build,
    now: datetime,
) -> None:
    world.position(position_doc("p", "ETH/USD", 1.0, 3000.0, created_at=now - 5 * H))
    world.sim.add_fill("ETH/USD", "sell", "1", price="3300", at=now - H)
    make_reconciler().reconcile()
    # The signal job writes its own close over the heal.
    db.collection("test_positions").document("p").update(
        {"exit_reason": "TP1", "realized_pnl_usd": 300.0, "updated_at": now}
    )
    done = run(env, "undo", "p", "--reason", "x")
    assert done.returncode == 2
    assert "written after the reconciler healed it" in done.stderr
    assert world.read("p")["exit_reason"] == "TP1"


def test_a_holding_adopted_closed_and_bought_again_is_adopted_anew(
    world: World,
    db: firestore.Client,
    env: dict[str, str],
    make_reconciler: Build,
    now: datetime,
) -> None:
    world.sim.add_position("SOL/USD", "40", avg_entry_price="150", current_price="152")
    first = as_json(run(env, "adopt", "SOL/USD", "--reason", "by hand", "--json"))["target"]
    db.collection("test_positions").document(first).update({"status": "CLOSED"})
    again = run(env, "adopt", "SOL/USD", "--reason", "bought again", "--json")
    assert again.returncode == 0, again.stderr
    second = as_json(again)["target"]
    assert second != first
    assert world.read(second)["status"] == "OPEN"
