"""The shell's own decisions over in-memory ports and a hand-moved clock (no stand-ins)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from crypto_signals.domain.schemas import RunStatus
from crypto_signals.domain.snapshots import (
    BreakerState,
    BrokerOrder,
    BrokerPosition,
    BrokerState,
    ClosedOrders,
)
from crypto_signals.engine.policy import Policy
from crypto_signals.engine.reconciler import StateReconciler
from tests.engine.fakes import (
    Clock,
    FakeBroker,
    MemoryAlerts,
    MemoryBreaker,
    MemoryLedger,
    MemoryStore,
    RecordingNotifier,
    open_position,
)

ACCOUNT = "acct"


def orphan_world() -> BrokerState:
    return BrokerState(
        ACCOUNT, (BrokerPosition("SOLUSD", Decimal(40), Decimal(6000), is_crypto=True),), ()
    )


def build(
    clock: Clock,
    broker: FakeBroker,
    store: MemoryStore | None = None,
    notifier: RecordingNotifier | None = None,
    alerts: MemoryAlerts | None = None,
    breaker: MemoryBreaker | None = None,
    *,
    heal_limit: int = 25,
    realert_hours: float = 24,
) -> StateReconciler:
    store = store or MemoryStore({})
    alerts = alerts or MemoryAlerts()
    alerts.store = store
    return StateReconciler(
        broker=broker,
        store=store,
        notifier=notifier or RecordingNotifier(),
        alert_store=alerts,
        ledger=MemoryLedger(),
        breaker=breaker or MemoryBreaker(),
        policy=Policy(heal_limit=heal_limit),
        realert_after=timedelta(hours=realert_hours),
        clock=clock,
    )


def test_an_unchanged_finding_is_repeated_only_after_the_interval() -> None:
    clock, notifier, alerts = Clock(), RecordingNotifier(), MemoryAlerts()
    broker = FakeBroker(orphan_world())

    def run() -> None:
        build(clock, broker, notifier=notifier, alerts=alerts, realert_hours=24).reconcile()

    run()
    clock.advance(hours=23, minutes=59)
    run()
    assert len(notifier.batches) == 1
    clock.advance(minutes=1)
    run()
    assert len(notifier.batches) == 2
    assert notifier.batches[1].sections[0].title.startswith("Still unresolved")


def test_a_refused_section_is_owed_and_an_accepted_one_is_not_sent_again() -> None:
    clock, alerts = Clock(), MemoryAlerts()
    t0 = clock.now - timedelta(hours=5)
    store = MemoryStore({"gone": open_position("gone", "AVAX/USD", at=t0)})
    broker = FakeBroker(orphan_world())
    partial = RecordingNotifier(accept=1)  # orphans accepted, the unverified zombie refused

    build(clock, broker, store, partial, alerts).reconcile()
    assert [s.title.split(" ")[0] for s in partial.batches[0].sections] == ["Orphan", "Unverified"]

    after = RecordingNotifier()
    build(clock, broker, store, after, alerts).reconcile()
    [batch] = after.batches
    assert [s.title.split(" ")[0] for s in batch.sections] == ["Unverified"]
    build(clock, broker, store, after, alerts).reconcile()
    assert len(after.batches) == 1


def test_a_tripped_breaker_is_remembered_and_announced_once() -> None:
    clock, notifier, alerts, breaker = Clock(), RecordingNotifier(), MemoryAlerts(), MemoryBreaker()
    t0 = clock.now - timedelta(hours=5)
    store = MemoryStore({f"z{i}": open_position(f"z{i}", f"C{i}/USD", at=t0) for i in range(3)})
    sells = tuple(
        BrokerOrder(
            f"s{i}",
            None,
            f"C{i}/USD",
            "sell",
            "filled",
            Decimal(1),
            Decimal(1),
            Decimal(110),
            t0 + timedelta(hours=1),
            t0 + timedelta(hours=1),
            None,
        )
        for i in range(3)
    )
    broker = FakeBroker(BrokerState(ACCOUNT, (), ()), ClosedOrders(sells))

    first = build(clock, broker, store, notifier, alerts, breaker, heal_limit=2).reconcile()
    clock.advance(hours=1)
    second = build(clock, broker, store, notifier, alerts, breaker, heal_limit=5).reconcile()

    assert (first.reconciled_count, second.reconciled_count) == (0, 0)
    assert first.heals_halted
    assert second.heals_halted
    assert breaker.state == BreakerState(
        True, first.timestamp, breaker.state.reason, first.run_id, 3, 2
    )
    breaker_lines = [line for line in notifier.lines() if "until the breaker is reset" in line]
    assert len(breaker_lines) == 1
    forced = build(clock, broker, store, notifier, alerts, breaker).reconcile(force=True)
    assert forced.reconciled_count == 3
    assert not breaker.state.tripped
    assert any("Resolved" in s.title for s in notifier.batches[-1].sections)


def test_a_dry_run_writes_nothing_anywhere() -> None:
    clock, notifier, alerts, breaker = Clock(), RecordingNotifier(), MemoryAlerts(), MemoryBreaker()
    t0 = clock.now - timedelta(hours=5)
    store = MemoryStore({f"z{i}": open_position(f"z{i}", "BTC/USD", at=t0) for i in range(2)})
    broker = FakeBroker(orphan_world())

    report = build(clock, broker, store, notifier, alerts, breaker, heal_limit=0).reconcile(
        dry_run=True
    )

    assert report.dry_run
    assert report.heals_halted is False  # nothing due: two unverified zombies, no fills
    assert notifier.batches == []
    assert alerts.states == {}
    assert store.writes == 0
    assert not breaker.state.tripped


def test_a_failed_broker_read_changes_nothing() -> None:
    clock, notifier, alerts = Clock(), RecordingNotifier(), MemoryAlerts()
    store = MemoryStore({"p": open_position("p", "BTC/USD", at=clock.now - timedelta(hours=5))})
    report = build(clock, FakeBroker(orphan_world(), fail="HTTP 500"), store, notifier, alerts)
    result = report.reconcile()
    assert result.status is RunStatus.FAILED
    assert store.writes == 0
    assert result.zombies == []


def _sell(oid: str, symbol: str, at: datetime) -> BrokerOrder:
    return BrokerOrder(
        oid, None, symbol, "sell", "filled", Decimal(1), Decimal(1), Decimal(110), at, at, None
    )


def test_an_undelivered_heal_is_announced_with_the_next_runs_heals_once() -> None:
    clock, alerts = Clock(), MemoryAlerts()
    t0 = clock.now - timedelta(hours=5)
    store = MemoryStore({"z1": open_position("z1", "C1/USD", at=t0)})
    broker = FakeBroker(
        BrokerState(ACCOUNT, (), ()),
        ClosedOrders((_sell("s1", "C1/USD", t0 + timedelta(hours=1)),)),
    )
    refused = RecordingNotifier(accept=0)
    assert build(clock, broker, store, refused, alerts).reconcile().reconciled_count == 1
    assert store.alert_pending == {"z1"}  # healed, its announcement still owed

    # A new zombie; the next run announces its heal and the one owed, in one section.
    clock.advance(hours=1)
    store.positions["z2"] = open_position("z2", "C2/USD", at=t0)
    broker.closed = ClosedOrders(
        (*broker.closed.orders, _sell("s2", "C2/USD", t0 + timedelta(hours=2)))
    )
    notifier = RecordingNotifier()
    assert build(clock, broker, store, notifier, alerts).reconcile().reconciled_count == 1
    [healed] = [s for s in notifier.batches[0].sections if s.title.startswith("Healed")]
    assert [line.split(" ")[2].rstrip(":") for line in healed.lines] == ["z1", "z2"]
    assert store.alert_pending == set()

    build(clock, broker, store, notifier, alerts).reconcile()
    assert len(notifier.batches) == 1  # nothing is said twice


def test_a_failed_outbox_read_keeps_the_heals_and_owes_their_announcement() -> None:
    clock, notifier, alerts = Clock(), RecordingNotifier(), MemoryAlerts()
    t0 = clock.now - timedelta(hours=5)
    store = MemoryStore({"z1": open_position("z1", "C1/USD", at=t0)}, outbox_failures=1)
    broker = FakeBroker(
        BrokerState(ACCOUNT, (), ()),
        ClosedOrders((_sell("s1", "C1/USD", t0 + timedelta(hours=1)),)),
    )

    first = build(clock, broker, store, notifier, alerts).reconcile()
    assert first.reconciled_count == 1
    assert any(e.startswith("alert_state_failed") for e in first.errors)
    assert notifier.batches == []  # without the outbox nothing is sent (it would be partial)

    build(clock, broker, store, notifier, alerts).reconcile()
    [batch] = notifier.batches
    assert any(s.title.startswith("Healed") for s in batch.sections)
