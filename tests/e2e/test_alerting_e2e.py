"""Alerts the team keeps reading: one message per run, deduplicated, resolved, within limits."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from crypto_signals.engine.reconciler import StateReconciler
from crypto_signals.sandbox.discord_limits import validate_payload
from crypto_signals.sandbox.discord_sink import DiscordSink, SinkFault
from crypto_signals.sandbox.scenarios import World, position_doc

Build = Callable[..., StateReconciler]
H = timedelta(hours=1)


def texts(sink: DiscordSink) -> list[str]:
    out = []
    for message in sink.messages:
        parts = [str(message.get("content", ""))]
        for embed in message.get("embeds", []):
            parts += [str(embed.get("title", "")), str(embed.get("description", ""))]
        out.append("\n".join(parts))
    return out


def test_orphan_lifecycle_new_quiet_changed_resolved(
    world: World, sink: DiscordSink, make_reconciler: Build
) -> None:
    world.sim.add_position("SOL/USD", "40", current_price="150")

    make_reconciler().reconcile()
    make_reconciler().reconcile()  # nothing new: no message
    assert len(sink.messages) == 1
    assert "SOL/USD long 40" in texts(sink)[0]

    world.sim.add_position("SOL/USD", "55", current_price="150")
    make_reconciler().reconcile()
    assert len(sink.messages) == 2
    assert "(changed) SOL/USD long 55" in texts(sink)[1]

    world.sim.remove_position("SOL/USD")
    make_reconciler().reconcile()
    assert len(sink.messages) == 3
    assert "Resolved" in texts(sink)[2]
    assert "SOL/USD" in texts(sink)[2]

    make_reconciler().reconcile()
    assert len(sink.messages) == 3


def test_many_findings_stay_within_discord_limits(
    world: World, sink: DiscordSink, make_reconciler: Build, now: datetime
) -> None:
    for i in range(300):
        world.sim.add_position(f"COIN{i:03d}/USD", "1000", current_price="5")
    docs = [
        position_doc(f"u-{i:03d}", f"GONE{i:03d}/USD", 1.0, 10.0, created_at=now - 5 * H)
        for i in range(200)
    ]
    world.positions(docs)

    report = make_reconciler().reconcile()

    assert len(report.orphans) == 300
    assert len(report.unverified_zombies) == 200
    # The sink answers 400 like Discord to any payload over the limits: none was refused.
    assert all(status in (200, 204) for status, _ in sink.attempts)
    assert 1 <= len(sink.messages) <= 5
    for payload in sink.messages:
        assert validate_payload(payload) == []
    assert "more lines not shown" in "\n".join(texts(sink))


def test_no_message_when_nothing_needs_saying(
    world: World, sink: DiscordSink, make_reconciler: Build, now: datetime
) -> None:
    world.position(position_doc("m-1", "BTC/USD", 0.5, 60000.0, created_at=now - 5 * H))
    world.sim.add_position("BTC/USD", "0.5", current_price="60000")
    report = make_reconciler().reconcile()
    assert report.status.value == "ok"
    assert sink.attempts == []


def test_without_a_webhook_alerts_are_logged(
    world: World, sink: DiscordSink, make_reconciler: Build, caplog: pytest.LogCaptureFixture
) -> None:
    world.sim.add_position("SOL/USD", "40", current_price="150")
    with caplog.at_level(logging.WARNING):
        make_reconciler(DISCORD_WEBHOOK_URL="").reconcile()
    assert any(
        "DISCORD_WEBHOOK_URL unset" in r.getMessage() and "SOL/USD" in r.getMessage()
        for r in caplog.records
    )
    assert sink.attempts == []


def test_a_partial_delivery_owes_only_what_discord_refused(
    world: World, sink: DiscordSink, make_reconciler: Build, now: datetime
) -> None:
    # Enough orphans for two messages; Discord accepts the first and refuses the second.
    for i in range(120):
        world.sim.add_position(f"COIN{i:03d}/USD", "1000", current_price="5")
    sink.inject_fault(SinkFault(kind="pass", times=1))
    sink.inject_fault(SinkFault(kind="status", status=500, times=None))

    first = make_reconciler().reconcile()
    assert len(sink.messages) == 1
    assert any("Discord delivery failed" in e for e in first.errors)
    shown_first = set(re.findall(r"COIN\d{3}/USD", texts(sink)[0]))
    assert shown_first
    assert len(shown_first) < 120

    sink.clear_faults()
    make_reconciler().reconcile()
    resent = set(re.findall(r"COIN\d{3}/USD", "\n".join(texts(sink)[1:])))

    assert resent
    assert not shown_first & resent  # message 1 is not sent again
    assert shown_first | resent == {f"COIN{i:03d}/USD" for i in range(120)}
    make_reconciler().reconcile()
    assert len(sink.messages) == 1 + len(texts(sink)[1:])  # a third run says nothing new


def _owed_heal_then_new_findings(
    world: World, sink: DiscordSink, make_reconciler: Build, now: datetime
) -> None:
    """z-old healed, its announcement refused (it stays in the outbox); then a new zombie and
    an orphan for the next run to announce with it."""
    world.position(position_doc("z-old", "ETH/USD", 2.0, 100.0, created_at=now - 5 * H))
    world.sim.add_fill("ETH/USD", "sell", "2", price="110", at=now - H)
    sink.inject_fault(SinkFault(kind="status", status=500, times=None))
    make_reconciler().reconcile()
    sink.clear_faults()
    world.position(position_doc("z-new", "LTC/USD", 1.0, 50.0, created_at=now - 5 * H))
    world.sim.add_fill("LTC/USD", "sell", "1", price="60", at=now - H)
    world.sim.add_position("SOL/USD", "40", current_price="150")


@pytest.mark.parametrize("deleted_before", ["apply_heals", "send"])
def test_an_owed_heal_deleted_during_a_run_does_not_resend_the_message(
    world: World,
    sink: DiscordSink,
    make_reconciler: Build,
    now: datetime,
    deleted_before: str,
) -> None:
    # The document of a heal still owed its announcement is deleted mid-run (its TTL on
    # delete_at, or by hand): the delivery's record must not fail for the flag that went with it.
    _owed_heal_then_new_findings(world, sink, make_reconciler, now)
    reconciler = make_reconciler()
    port = reconciler._notifier if deleted_before == "send" else reconciler._store
    call = getattr(port, deleted_before)

    def deleting(*args: object, **kwargs: object) -> object:
        world.db.collection("test_positions").document("z-old").delete()
        return call(*args, **kwargs)

    setattr(port, deleted_before, deleting)
    second = reconciler.reconcile()
    make_reconciler().reconcile()
    make_reconciler().reconcile()

    assert not [e for e in second.errors if "alert_state_failed" in e]
    everything = "\n".join(texts(sink))
    assert everything.count("SOL/USD long 40") == 1
    assert len(re.findall(r"position z-new: exit", everything)) == 1
    assert len(re.findall(r"position z-old: exit", everything)) == 1
