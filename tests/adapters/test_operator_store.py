"""The operator's Firestore writes on the emulator: a precondition, or nothing at all."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.cloud import firestore

from crypto_signals.repository.operator_store import (
    AUDIT_COLLECTION,
    Change,
    OperatorStore,
    WriteConflict,
)
from crypto_signals.sandbox.scenarios import position_doc

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def change(store: OperatorStore, pid: str, precondition: object) -> Change:
    return Change(
        "close",
        pid,
        "r",
        "ops",
        T0,
        {"status": "OPEN"},
        {"status": "CLOSED"},
        pid,
        updates={"status": "CLOSED"},
        precondition=precondition,
    )


def test_a_change_written_after_someone_else_wrote_the_document_writes_nothing(
    db: firestore.Client,
) -> None:
    db.collection("test_positions").document("p").set(
        position_doc("p", "ETH/USD", 1, 10, created_at=T0)
    )
    store = OperatorStore(db, "test_positions")
    read = store.read("p")
    db.collection("test_positions").document("p").update({"current_stop_loss": 9.1})  # the job

    with pytest.raises(WriteConflict):
        store.commit(change(store, "p", read.update_time))

    doc = db.collection("test_positions").document("p").get().to_dict() or {}
    assert (doc["status"], doc["current_stop_loss"]) == ("OPEN", 9.1)  # no lost update
    assert list(db.collection(AUDIT_COLLECTION).stream()) == []  # nor an audit of nothing


def test_a_change_and_its_audit_are_written_together(db: firestore.Client) -> None:
    db.collection("test_positions").document("p").set(
        position_doc("p", "ETH/USD", 1, 10, created_at=T0)
    )
    store = OperatorStore(db, "test_positions")
    audit_id = store.commit(change(store, "p", store.read("p").update_time))
    assert (db.collection("test_positions").document("p").get().to_dict() or {})[
        "status"
    ] == "CLOSED"
    audit = db.collection(AUDIT_COLLECTION).document(audit_id).get().to_dict() or {}
    assert {k: audit[k] for k in ("action", "target", "reason", "actor")} == {
        "action": "close",
        "target": "p",
        "reason": "r",
        "actor": "ops",
    }
    assert (audit["before"], audit["after"]) == ({"status": "OPEN"}, {"status": "CLOSED"})


def test_creating_a_document_that_exists_is_a_conflict(db: firestore.Client) -> None:
    db.collection("test_positions").document("a").set({"status": "OPEN"})
    store = OperatorStore(db, "test_positions")
    adopt = Change("adopt", "a", "r", "ops", T0, {}, {"status": "OPEN"}, "a", create={"x": 1})
    with pytest.raises(WriteConflict):
        store.commit(adopt)
    assert (db.collection("test_positions").document("a").get().to_dict() or {}) == {
        "status": "OPEN"
    }
