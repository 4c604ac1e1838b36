"""Firestore for the operator commands: read a position as it is, write a change with its
precondition, its ledger postings and its audit record in one atomic batch.

The audit collection ``reconciler_audit`` holds one document per change:
``{scope, action, target, reason, actor, at, before, after}`` (contract section 3). A change
whose precondition fails (the signal job or a heal wrote the document since it was read) writes
nothing at all, audit included, and is reported as a conflict.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from crypto_signals.domain.schemas import decimal_text
from crypto_signals.engine.ports import StoreUnavailable
from crypto_signals.repository import ledger
from crypto_signals.repository.firestore_common import FirestoreTimeouts, describe_google_error
from crypto_signals.repository.reconciler_state import RUNS_COLLECTION

AUDIT_COLLECTION = "reconciler_audit"


class WriteConflict(Exception):
    """The document changed (or came to exist) since it was read: nothing was written."""


@dataclass(frozen=True)
class DocumentRead:
    exists: bool
    data: dict[str, Any]
    update_time: Any


@dataclass
class Change:
    """One operator change to one position document, and everything that goes with it."""

    action: str
    target: str
    reason: str
    actor: str
    at: datetime
    before: dict[str, Any]
    after: dict[str, Any]
    # The document write: field-level update (dotted paths), or a create.
    position_id: str | None = None
    updates: dict[str, Any] = field(default_factory=dict)
    create: dict[str, Any] | None = None
    precondition: Any = None  # the update_time as read
    # Ledger: postings to add (ledger document id -> merge-set) and orders to release.
    post: dict[str, dict[str, Any]] = field(default_factory=dict)
    release: tuple[str, ...] = ()


def _plain(value: Any) -> Any:
    """Firestore-storable: Decimals as exact text, containers recursively."""
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class OperatorStore:
    def __init__(
        self, client: firestore.Client, scope: str, timeouts: FirestoreTimeouts | None = None
    ) -> None:
        self._client = client
        self._scope = scope
        self._positions = client.collection(scope)
        self._timeouts = timeouts or FirestoreTimeouts()

    @property
    def scope(self) -> str:
        return self._scope

    def _kw(self) -> dict[str, Any]:
        return {"retry": self._timeouts.retry(), "timeout": self._timeouts.call_seconds}

    def read(self, position_id: str) -> DocumentRead:
        try:
            snap = self._positions.document(position_id).get(**self._kw())
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            raise StoreUnavailable(
                f"read {self._scope}/{position_id}: {describe_google_error(exc)}"
            ) from None
        return DocumentRead(snap.exists, snap.to_dict() or {}, snap.update_time)

    def commit(self, change: Change) -> str:
        """Write the change, its ledger postings and its audit record atomically; returns the
        audit record's id. Raises :class:`WriteConflict` if the precondition failed."""
        batch = self._client.batch()
        if change.position_id is not None:
            ref = self._positions.document(change.position_id)
            if change.create is not None:
                batch.create(ref, change.create)
            else:
                batch.update(
                    ref,
                    change.updates,
                    option=self._client.write_option(last_update_time=change.precondition),
                )
        ledger.add_to_batch(self._client, batch, change.post)
        if change.release and change.position_id is not None:
            ledger.release_in_batch(
                self._client, batch, self._scope, change.position_id, change.release
            )
        audit_id = self._audit(batch, change)
        try:
            batch.commit(**self._kw())
        except (gexc.FailedPrecondition, gexc.NotFound, gexc.AlreadyExists, gexc.Conflict):
            raise WriteConflict(change.target) from None
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            raise StoreUnavailable(f"write {self._scope}: {describe_google_error(exc)}") from None
        return audit_id

    def audit_only(self, change: Change, writes: Iterable[tuple[Any, dict[str, Any]]]) -> str:
        """A change to reconciler records (an alert state, the breaker) with its audit record."""
        batch = self._client.batch()
        for ref, data in writes:
            batch.set(ref, data, merge=True)
        audit_id = self._audit(batch, change)
        try:
            batch.commit(**self._kw())
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            raise StoreUnavailable(f"write: {describe_google_error(exc)}") from None
        return audit_id

    def _audit(self, batch: Any, change: Change) -> str:
        """Queue the change's audit record in ``batch``: it is written with it or not at all."""
        audit_id = uuid.uuid4().hex
        batch.set(
            self._client.collection(AUDIT_COLLECTION).document(audit_id),
            {
                "scope": self._scope,
                "action": change.action,
                "target": change.target,
                "reason": change.reason,
                "actor": change.actor,
                "at": change.at,
                "before": _plain(change.before),
                "after": _plain(change.after),
            },
        )
        return audit_id

    def recent_runs(self, last: int) -> list[dict[str, Any]]:
        """The newest run records of this scope. Ordered by ``started_at`` alone (no composite
        index needed), filtered by scope here, a few pages at most."""
        out: list[dict[str, Any]] = []
        query = (
            self._client.collection(RUNS_COLLECTION)
            .order_by("started_at", direction=firestore.Query.DESCENDING)
            .limit(max(4 * last, 20))
        )
        cursor = None
        try:
            for _ in range(10):
                page = list((query.start_after(cursor) if cursor else query).stream(**self._kw()))
                for snap in page:
                    data = snap.to_dict() or {}
                    if data.get("scope") == self._scope:
                        out.append({"run_id": snap.id, **data})
                        if len(out) >= last:
                            return out
                if len(page) < max(4 * last, 20):
                    return out
                cursor = page[-1]
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            raise StoreUnavailable(f"run log: {describe_google_error(exc)}") from None
        return out
