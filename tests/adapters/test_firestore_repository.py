"""The Firestore adapters against the real Firestore emulator."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from google.cloud import firestore

from crypto_signals.domain.schemas import TradeStatus
from crypto_signals.domain.snapshots import Issue
from crypto_signals.engine.alerts import AlertState, FindingKind, Notice
from crypto_signals.engine.plan import Allocation, Evidence, Heal
from crypto_signals.engine.ports import HealOutcome
from crypto_signals.repository import firestore as firestore_module
from crypto_signals.repository.firestore import PositionRepository
from crypto_signals.repository.firestore_common import fields_of
from crypto_signals.repository.ledger import LedgerStore
from crypto_signals.repository.reconciler_state import (
    RUNS_COLLECTION,
    AlertStateStore,
    BreakerStore,
    RunLease,
    RunLog,
)
from crypto_signals.sandbox.scenarios import position_doc

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
COLL = "test_positions"


def seed(db: firestore.Client, *docs: dict[str, object]) -> None:
    for doc in docs:
        db.collection(COLL).document(str(doc["position_id"])).set(doc)


def heal_for(pid: str, symbol: str = "ETH/USD") -> Heal:
    return Heal(
        position_id=pid,
        symbol=symbol,
        exit_fill_price=Decimal("3150.25"),
        exit_time=T0 + timedelta(hours=2),
        exit_order_id="order-123",
        realized_pnl_usd=Decimal("300.5"),
        realized_pnl_pct=Decimal("5.008333333"),
        trade_duration_seconds=7200,
        evidence=Evidence.CLOSING_FILL,
        evidence_order_ids=("order-123",),
    )


def test_reads_only_open_positions_in_one_query(db: firestore.Client) -> None:
    seed(
        db,
        position_doc("p-open", "BTC/USD", 0.5, 60000, created_at=T0),
        position_doc("p-closed", "ETH/USD", 1, 3000, created_at=T0, status="CLOSED"),
    )
    db.collection("live_positions").document("p-prod").set(
        position_doc("p-prod", "SOL/USD", 1, 100, created_at=T0)
    )
    repo = PositionRepository(db, COLL)
    state = repo.get_open_positions()
    assert [p.position_id for p in state.positions] == ["p-open"]
    assert state.positions[0].created_at == T0
    assert state.malformed == ()
    assert repo.counters().round_trips == 1


def test_a_malformed_document_is_named_and_the_rest_is_read(db: firestore.Client) -> None:
    good = position_doc("p-good", "BTC/USD", 0.5, 60000, created_at=T0)
    bad_qty = {**position_doc("p-bad-qty", "BTC/USD", 0.5, 60000, created_at=T0), "qty": "lots"}
    bad_side = position_doc("p-bad-side", "BTC/USD", 0.5, 60000, created_at=T0, side="hold")
    no_symbol = position_doc("p-no-symbol", "BTC/USD", 0.5, 60000, created_at=T0)
    del no_symbol["symbol"]
    seed(db, good, bad_qty, bad_side, no_symbol)

    state = PositionRepository(db, COLL).get_open_positions()

    assert [p.position_id for p in state.positions] == ["p-good"]
    named = {i.key: i.detail for i in state.malformed}
    assert set(named) == {"p-bad-qty", "p-bad-side", "p-no-symbol"}
    assert "qty" in named["p-bad-qty"]
    assert "side" in named["p-bad-side"]
    assert "symbol" in named["p-no-symbol"]
    assert "lots" not in named["p-bad-qty"]  # values are not echoed


def test_heal_is_field_level_and_unknown_fields_survive(db: firestore.Client) -> None:
    seed(db, position_doc("p-eth", "ETH/USD", 2.0, 3000, created_at=T0, custom_flag="keep-me"))
    repo = PositionRepository(db, COLL)
    repo.get_open_positions()

    results = repo.apply_heals([heal_for("p-eth")], run_id="run-1", now=T0 + timedelta(hours=3))

    assert [r.outcome for r in results] == [HealOutcome.APPLIED]
    doc = db.collection(COLL).document("p-eth").get().to_dict() or {}
    assert doc["status"] == TradeStatus.CLOSED.value
    assert doc["exit_reason"] == "CLOSED_EXTERNALLY"
    assert doc["exit_fill_price"] == 3150.25
    assert doc["exit_order_id"] == "order-123"
    assert doc["realized_pnl_usd"] == 300.5
    assert doc["trade_duration_seconds"] == 7200
    assert doc["exit_time"] == T0 + timedelta(hours=2)
    assert doc["reconciler"]["run_id"] == "run-1"
    assert doc["reconciler"]["alert_pending"] is True
    # Untouched: fields the reconciler does not own.
    assert doc["custom_flag"] == "keep-me"
    assert doc["strategy_meta"] == {"pattern": "BULL_FLAG", "confidence": 0.82}
    assert doc["entry_fill_price"] == 3000
    assert doc["created_at"] == T0


def test_a_document_changed_after_the_read_is_not_overwritten(db: firestore.Client) -> None:
    seed(
        db,
        position_doc("p-a", "ETH/USD", 1, 3000, created_at=T0),
        position_doc("p-b", "ETH/USD", 1, 3000, created_at=T0),
        position_doc("p-c", "ETH/USD", 1, 3000, created_at=T0),
    )
    repo = PositionRepository(db, COLL)
    repo.get_open_positions()
    # The signal job closes p-b itself between our read and our write.
    db.collection(COLL).document("p-b").update({"status": "CLOSED", "exit_reason": "TP1"})

    results = {
        r.position_id: r.outcome
        for r in repo.apply_heals(
            [heal_for("p-a"), heal_for("p-b"), heal_for("p-c")], run_id="run-1", now=T0
        )
    }

    assert results == {
        "p-a": HealOutcome.APPLIED,
        "p-b": HealOutcome.CONFLICT,
        "p-c": HealOutcome.APPLIED,
    }
    assert db.collection(COLL).document("p-b").get().to_dict()["exit_reason"] == "TP1"  # type: ignore[index]


def test_heals_are_batched(db: firestore.Client) -> None:
    docs = [position_doc(f"p-{i:03d}", "ETH/USD", 1, 3000, created_at=T0) for i in range(450)]
    batch = db.batch()
    for d in docs[:400]:
        batch.set(db.collection(COLL).document(str(d["position_id"])), d)
    batch.commit()
    seed(db, *docs[400:])
    repo = PositionRepository(db, COLL, batch_size=200)
    repo.get_open_positions()
    before = repo.counters().round_trips

    results = repo.apply_heals([heal_for(str(d["position_id"])) for d in docs], run_id="r", now=T0)

    assert all(r.outcome is HealOutcome.APPLIED for r in results)
    assert repo.counters().round_trips - before == 3  # ceil(450 / 200)


def test_unannounced_heals_outbox(db: firestore.Client) -> None:
    seed(db, position_doc("p-eth", "ETH/USD", 2.0, 3000, created_at=T0))
    repo = PositionRepository(db, COLL)
    repo.get_open_positions()
    results = repo.apply_heals([heal_for("p-eth")], run_id="run-1", now=T0)

    pending = repo.get_unannounced_heals()
    assert [p["position_id"] for p in pending] == ["p-eth"]
    # What the heal hands back to announce is what a read of the outbox finds, field for field
    # (the run announces from it instead of reading back what it wrote).
    shown = {k: v for k, v in pending[0].items() if k != "reconciler"}
    assert results[0].announcement == shown
    assert shown["exit_fill_price"] == 3150.25
    assert shown["exit_order_id"] == "order-123"
    repo.mark_announced(["p-eth"])
    assert repo.get_unannounced_heals() == []


def healed(db: firestore.Client, *position_ids: str) -> PositionRepository:
    """Positions seeded, read and healed by run-1 (each now owed its announcement)."""
    seed(db, *(position_doc(p, "ETH/USD", 1.0, 3000, created_at=T0) for p in position_ids))
    repo = PositionRepository(db, COLL)
    repo.get_open_positions()
    repo.apply_heals([heal_for(p) for p in position_ids], run_id="run-1", now=T0)
    return repo


def test_clearing_the_outbox_skips_a_position_deleted_since(db: firestore.Client) -> None:
    repo = healed(db, "p-eth", "p-sol", "p-btc")
    db.collection(COLL).document("p-eth").delete()  # its TTL, or by hand
    alerts = AlertStateStore(db, COLL, None)

    alerts.save([orphan_state("BTCUSD", last_alerted_at=T0)], announced=["p-eth", "p-sol"])
    repo.mark_announced(["p-eth", "p-btc"])  # the same without alert states

    assert repo.get_unannounced_heals() == []
    assert "orphan:BTCUSD" in alerts.load()
    assert not db.collection(COLL).document("p-eth").get().exists  # not recreated


def orphan_state(
    key: str, *, last_alerted_at: datetime | None = None, pending: Notice | None = None
) -> AlertState:
    return AlertState(
        finding_id=f"orphan:{key}",
        kind=FindingKind.ORPHAN,
        key=key,
        fingerprint="long:40",
        line=f"{key} long 40",
        active=True,
        first_seen_at=T0,
        last_alerted_at=last_alerted_at,
        pending=pending,
    )


def test_a_delivery_clears_notices_and_heal_flags_in_one_write(db: firestore.Client) -> None:
    repo = healed(db, "p-eth", "p-sol")
    alerts = AlertStateStore(db, COLL, None)
    state = orphan_state("BTCUSD", last_alerted_at=T0)

    alerts.save([state], announced=["p-eth"])

    assert (alerts.round_trips, alerts.writes) == (1, 2)
    assert [p["position_id"] for p in repo.get_unannounced_heals()] == ["p-sol"]
    assert alerts.load()["orphan:BTCUSD"] == state
    doc = db.collection(COLL).document("p-eth").get().to_dict() or {}
    assert doc["status"] == "CLOSED"  # only the flag changed
    assert doc["reconciler"]["run_id"] == "run-1"


def test_alert_states_round_trip_per_scope(db: firestore.Client) -> None:
    state = orphan_state("SOLUSD", pending=Notice.NEW)
    AlertStateStore(db, COLL, None).save([state])
    assert AlertStateStore(db, COLL, None).load() == {"orphan:SOLUSD": state}
    assert AlertStateStore(db, "live_positions", None).load() == {}


def test_fields_of_a_snapshot_are_what_to_dict_gives(db: firestore.Client) -> None:
    # fields_of skips to_dict()'s deep copy; it must read exactly the same fields.
    doc = {
        **position_doc("p-1", "BTC/USD", 0.5, 60000, created_at=T0),
        "reconciler": {"held": True, "replaced": {"exit_time": T0, "tags": ["a", "b"]}},
    }
    seed(db, doc)
    [streamed] = db.collection(COLL).stream()
    fetched = db.collection(COLL).document("p-1").get()
    missing = db.collection(COLL).document("p-none").get()
    assert fields_of(streamed) == streamed.to_dict()
    assert fields_of(fetched) == fetched.to_dict()
    assert fields_of(missing) == {}

    class Opaque:  # a library version that no longer keeps the data as _data
        exists = True

        def to_dict(self) -> dict[str, object]:
            return {"qty": 1}

    assert fields_of(Opaque()) == {"qty": 1}


def test_lease_is_taken_in_one_round_trip_when_free(db: firestore.Client) -> None:
    lease = RunLease(db, COLL, timedelta(minutes=10))
    grant = lease.acquire("run-1", T0)
    assert grant.acquired
    assert (lease.round_trips, lease.reads, lease.writes) == (1, 0, 1)
    # Held: one failed create and one read, and the holder is named.
    refused = lease.acquire("run-2", T0 + timedelta(minutes=1))
    assert (refused.acquired, refused.holder) == (False, "run-1")
    assert (lease.round_trips, lease.reads, lease.writes) == (3, 1, 1)


def test_lease_is_exclusive_and_expires(db: firestore.Client) -> None:
    lease = RunLease(db, COLL, timedelta(minutes=10))
    first = lease.acquire("run-1", T0)
    second = lease.acquire("run-2", T0 + timedelta(minutes=1))
    assert first.acquired
    assert not second.acquired
    assert second.holder == "run-1"
    # The holder crashed: after expiry the next run takes over.
    third = lease.acquire("run-3", T0 + timedelta(minutes=11))
    assert third.acquired
    # The crashed holder's release must not free the new holder's lease.
    lease.release(first)
    assert not lease.acquire("run-4", T0 + timedelta(minutes=12)).acquired
    lease.release(third)
    assert lease.acquire("run-5", T0 + timedelta(minutes=12)).acquired


def test_run_log_stores_report_with_ttl_field(db: firestore.Client) -> None:
    RunLog(db, COLL, timedelta(days=30)).record("run-9", {"status": "ok", "zombies": []}, T0)
    doc = db.collection(RUNS_COLLECTION).document("run-9").get().to_dict() or {}
    assert doc["report"] == {"status": "ok", "zombies": []}
    assert doc["expire_at"] == T0 + timedelta(days=30)
    assert doc["scope"] == COLL


def test_run_record_and_lease_release_are_one_write(db: firestore.Client) -> None:
    lease = RunLease(db, COLL, timedelta(minutes=10))
    log = RunLog(db, COLL, timedelta(days=30), lease=lease)
    grant = lease.acquire("run-1", T0)
    assert log.record("run-1", {"status": "ok"}, T0, release=grant) is True
    assert (log.round_trips, log.writes, lease.writes) == (1, 1, 2)
    assert db.collection(RUNS_COLLECTION).document("run-1").get().exists
    # Released: the next run takes the lease with its first create.
    assert lease.acquire("run-2", T0 + timedelta(minutes=1)).acquired


def test_run_record_is_kept_when_the_lease_was_taken_over(db: firestore.Client) -> None:
    lease = RunLease(db, COLL, timedelta(minutes=10))
    log = RunLog(db, COLL, timedelta(days=30), lease=lease)
    stale = lease.acquire("run-1", T0)
    newer = lease.acquire("run-2", T0 + timedelta(minutes=11))  # run-1 outlived its lease
    assert newer.acquired
    assert log.record("run-1", {"status": "ok"}, T0, release=stale) is False
    # The record is written; the newer holder's lease is untouched.
    assert db.collection(RUNS_COLLECTION).document("run-1").get().exists
    refused = lease.acquire("run-3", T0 + timedelta(minutes=12))
    assert (refused.acquired, refused.holder) == (False, "run-2")


def test_run_record_stays_under_the_document_limit(db: firestore.Client) -> None:
    healed = [
        {"position_id": f"p-{i}", "symbol": "BTC/USD", "note": "x" * 400} for i in range(5000)
    ]
    RunLog(db, COLL, timedelta(days=30)).record("run-big", {"status": "ok", "healed": healed}, T0)
    doc = db.collection(RUNS_COLLECTION).document("run-big").get().to_dict() or {}
    assert len(doc["report"]["healed"]) == 200
    assert doc["report"]["truncated_lists"] == {"healed": 5000}


# ---- the ledger ---------------------------------------------------------------------------


def split_heal(pid: str, shares: tuple[tuple[str, str], ...]) -> Heal:
    return replace(
        heal_for(pid),
        exit_order_id=shares[-1][0],
        allocation=tuple(
            Allocation(oid, Decimal(qty), Decimal("3150.25"), T0 + timedelta(hours=2))
            for oid, qty in shares
        ),
        evidence_order_ids=tuple(oid for oid, _ in shares),
    )


def test_a_heal_records_its_allocation_and_what_it_replaced(db: firestore.Client) -> None:
    doc = position_doc("p-1", "ETH/USD", 2, 3000, created_at=T0)
    doc["exit_reason"] = "TP1"  # a stale value the heal replaces, restored by an undo
    doc.pop("exit_order_id", None)  # absent before the heal
    seed(db, doc)
    repo = PositionRepository(db, COLL)
    repo.get_open_positions()

    [result] = repo.apply_heals(
        [split_heal("p-1", (("s-a", "0.5"), ("s-b", "1.5")))], run_id="run-1", now=T0
    )

    assert result.outcome is HealOutcome.APPLIED
    audit = (db.collection(COLL).document("p-1").get().to_dict() or {})["reconciler"]
    assert audit["allocation"] == [
        {"order_id": "s-a", "qty": "0.5"},
        {"order_id": "s-b", "qty": "1.5"},
    ]
    assert audit["replaced"]["exit_reason"] == "TP1"
    assert audit["replaced"]["status"] == "OPEN"
    assert "exit_order_id" in audit["absent"]
    assert audit["ledger_posted"] is True


def test_heals_post_to_the_ledger_in_the_same_batch_and_split_fills_merge(
    db: firestore.Client,
) -> None:
    seed(
        db,
        position_doc("p-1", "ETH/USD", 1, 3000, created_at=T0),
        position_doc("p-2", "ETH/USD", 1, 3000, created_at=T0),
    )
    repo = PositionRepository(db, COLL)
    repo.get_open_positions()
    heals = [split_heal("p-1", (("s-2", "1"),)), split_heal("p-2", (("s-2", "1"),))]
    before = repo.counters().round_trips

    repo.apply_heals(heals, run_id="run-1", now=T0)

    assert repo.counters().round_trips - before == 1  # one batch: two heals, one ledger doc
    postings = LedgerStore(db, COLL).postings_for(["s-2", "s-unknown"])
    assert sorted((p.order_id, p.position_id, p.qty) for p in postings) == [
        ("s-2", "p-1", Decimal(1)),
        ("s-2", "p-2", Decimal(1)),
    ]
    # A later heal of another position on the same fill adds to it, never overwrites.
    seed(db, position_doc("p-3", "ETH/USD", 1, 3000, created_at=T0))
    repo.get_open_positions()
    repo.apply_heals([split_heal("p-3", (("s-2", "0.5"),))], run_id="run-2", now=T0)
    assert len(LedgerStore(db, COLL).postings_for(["s-2"])) == 3


def test_a_refused_heal_posts_nothing_to_the_ledger(db: firestore.Client) -> None:
    seed(db, position_doc("p-1", "ETH/USD", 1, 3000, created_at=T0))
    repo = PositionRepository(db, COLL)
    repo.get_open_positions()
    db.collection(COLL).document("p-1").update({"qty": 2})  # the signal job wrote meanwhile

    [result] = repo.apply_heals([split_heal("p-1", (("s-9", "1"),))], run_id="r", now=T0)

    assert result.outcome is HealOutcome.CONFLICT
    assert LedgerStore(db, COLL).postings_for(["s-9"]) == ()


def test_the_ledger_reads_the_postings_of_many_orders_in_one_round_trip(
    db: firestore.Client,
) -> None:
    store = LedgerStore(db, COLL)
    store.postings_for([f"o-{i}" for i in range(300)])
    assert store.round_trips == 1


def test_closed_positions_name_their_orders_and_whether_they_are_posted(
    db: firestore.Client,
) -> None:
    by_job = position_doc("c-job", "ETH/USD", 1, 3000, created_at=T0, status="CLOSED")
    by_job.update(
        exit_time=T0 + timedelta(hours=1),
        exit_order_id="x-1",
        alpaca_order_id="e-1",
        tp_order_id="tp-1",
    )
    healed = position_doc("c-heal", "ETH/USD", 1, 3000, created_at=T0, status="CLOSED")
    healed.update(exit_time=T0 + timedelta(hours=1), reconciler={"ledger_posted": True})
    old = position_doc("c-old", "ETH/USD", 1, 3000, created_at=T0, status="CLOSED")
    old.update(exit_time=T0 - timedelta(days=40))
    seed(db, by_job, healed, old)

    closed = PositionRepository(db, COLL).get_closed_positions(T0)

    assert [c.position_id for c in closed] == ["c-heal", "c-job"]
    heal, job = closed
    assert heal.posted
    assert not job.posted
    assert (job.qty, job.exit_order_id) == (Decimal(1), "x-1")
    assert "e-1" in job.entry_order_ids
    assert job.leg_order_ids == {"tp-1"}


def test_a_held_position_is_read_as_held(db: firestore.Client) -> None:
    held = position_doc("p-held", "ETH/USD", 1, 3000, created_at=T0)
    held["reconciler"] = {"held": True}
    seed(db, held, position_doc("p-free", "ETH/USD", 1, 3000, created_at=T0))
    state = PositionRepository(db, COLL).get_open_positions()
    assert state.held == {"p-held"}


def test_numbers_must_be_numbers(db: firestore.Client) -> None:
    """Contract section 1: a boolean, a non-numeric string, NaN or infinity is malformed."""
    docs: dict[str, dict[str, object]] = {
        "q-bool": {"qty": True},
        "q-text": {"qty": "1.5 BTC"},
        "q-nan": {"qty": float("nan")},
        "p-inf": {"entry_fill_price": float("inf")},
        "p-bool": {"entry_fill_price": False},
    }
    seed(
        db,
        *(
            {**position_doc(pid, "ETH/USD", 1, 3000, created_at=T0), **bad}
            for pid, bad in docs.items()
        ),
        {**position_doc("q-string-number", "ETH/USD", 1, 3000, created_at=T0), "qty": "0.25"},
    )
    state = PositionRepository(db, COLL).get_open_positions()
    assert {i.key for i in state.malformed} == set(docs)
    assert [(p.position_id, p.qty) for p in state.positions] == [
        ("q-string-number", Decimal("0.25"))
    ]


def test_the_breaker_trips_and_resets(db: firestore.Client) -> None:
    breaker = BreakerStore(db, COLL)
    assert not breaker.load().tripped
    breaker.trip(run_id="r-1", heals_due=30, limit=25, reason="too many", now=T0)
    state = breaker.load()
    assert (state.tripped, state.heals_due, state.limit, state.run_id) == (True, 30, 25, "r-1")
    assert not BreakerStore(db, "live_positions").load().tripped  # per collection
    breaker.reset(by="ops", reason="checked", now=T0)
    assert not breaker.load().tripped


def test_an_unreadable_breaker_state_counts_as_tripped(db: firestore.Client) -> None:
    db.collection("reconciler_breaker").document(COLL).set({"tripped": "no"})
    assert BreakerStore(db, COLL).load().tripped


def test_the_closed_positions_query_can_resume_after_its_last_document(
    db: firestore.Client,
) -> None:
    """The client resumes a stream cut by a transient error after the last document it got;
    that needs the fields the query orders by in the projection (exit_time: a range filter).
    Without them, a long stream that hit one DeadlineExceeded failed the run (ValueError)."""
    for i in range(3):
        doc = position_doc(f"c{i}", "ETH/USD", 1, 3000, created_at=T0, status="CLOSED")
        doc.update(exit_time=T0 + timedelta(hours=i))
        seed(db, doc)
    repo = PositionRepository(db, COLL)
    query = repo._collection.where(filter=firestore.FieldFilter("exit_time", ">=", T0)).select(
        firestore_module._CLOSED_FIELDS
    )
    first = next(iter(query.limit(1).stream()))
    rest = [d.id for d in query.start_after(first).stream()]
    assert rest == ["c1", "c2"]


def test_parsed_positions_share_their_fields_set_and_a_copy_does_not() -> None:
    # Memory: positions read with the same fields share pydantic's set of them (it is ~2 KB a
    # position); a frozen Position never adds to it, and model_copy works on its own copy.
    first = firestore_module.parse_position(
        "p-1", position_doc("p-1", "BTC/USD", 0.5, 60000, created_at=T0)
    )
    second = firestore_module.parse_position(
        "p-2", position_doc("p-2", "ETH/USD", 1, 3000, created_at=T0)
    )
    assert not isinstance(first, Issue)
    assert not isinstance(second, Issue)
    assert first.model_fields_set is second.model_fields_set
    fields = set(first.model_fields_set)
    changed = first.model_copy(update={"exit_reason": "TP1"})
    assert changed.model_fields_set == fields | {"exit_reason"}
    assert first.model_fields_set == fields
    assert second.model_fields_set == fields
