"""The reconciler's own Firestore records: alert states, the run lease, and the run log.

All three live beside the positions, keyed by the positions collection so that PROD and the
other environments never share a lease or an alert history in one project.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from crypto_signals.domain.snapshots import BreakerState
from crypto_signals.engine.alerts import Acknowledgement, AlertState, FindingKind, Notice
from crypto_signals.engine.ports import LeaseGrant, StoreUnavailable
from crypto_signals.repository.firestore_common import (
    OUTBOX_FLAG,
    FirestoreTimeouts,
    describe_google_error,
    fields_of,
)

log = logging.getLogger(__name__)

ALERTS_COLLECTION = "reconciler_alerts"
LEASES_COLLECTION = "reconciler_leases"
RUNS_COLLECTION = "reconciler_runs"
BREAKER_COLLECTION = "reconciler_breaker"


class _Base:
    def __init__(self, client: firestore.Client, scope: str, timeouts: FirestoreTimeouts | None):
        self._client = client
        self._scope = scope  # the positions collection this state belongs to
        self._timeouts = timeouts or FirestoreTimeouts()
        self.round_trips = 0
        self.reads = 0
        self.writes = 0

    def _kw(self) -> dict[str, Any]:
        return {"retry": self._timeouts.retry(), "timeout": self._timeouts.call_seconds}


class AlertStateStore(_Base):
    """One document per finding: what was last said about it and what is still owed."""

    def _doc_id(self, finding_id: str) -> str:
        return f"{self._scope}:{finding_id}"

    def document(self, state: AlertState) -> tuple[Any, dict[str, Any]]:
        """Where ``state`` is stored and what is stored (for a write batched with others)."""
        return self._ref(state.finding_id), _state_to(state, self._scope)

    def load(self) -> dict[str, AlertState]:
        query = self._client.collection(ALERTS_COLLECTION).where(
            filter=firestore.FieldFilter("scope", "==", self._scope)
        )
        self.round_trips += 1
        states: dict[str, AlertState] = {}
        try:
            for doc in query.stream(**self._kw()):
                self.reads += 1
                state = _state_from(fields_of(doc))
                if state is not None:
                    states[state.finding_id] = state
                else:
                    log.warning("ignoring unreadable alert state %s", doc.id)
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            raise StoreUnavailable(f"alert states: {describe_google_error(exc)}") from None
        return states

    def save(self, states: Iterable[AlertState], *, announced: Sequence[str] = ()) -> None:
        """Write ``states``; with ``announced`` (position ids of heals whose announcement was
        delivered), clear those heals' outbox flags in the same batches: what a delivery
        settles is recorded in one write, not one per kind of document."""
        positions = self._client.collection(self._scope)
        writes: list[tuple[Any, dict[str, Any], bool]] = [
            (self._ref(state.finding_id), _state_to(state, self._scope), False) for state in states
        ]
        writes += [(positions.document(pid), {OUTBOX_FLAG: False}, True) for pid in announced]
        for start in range(0, len(writes), _SAVE_BATCH):
            chunk = writes[start : start + _SAVE_BATCH]
            try:
                self._commit(chunk)
            except gexc.NotFound:
                # A healed position was deleted since it was read (its TTL, or by hand): the
                # flag to clear is gone with it. Failing the batch would leave every notice
                # owed and the next run would send the whole message again.
                self._commit_without_missing(chunk)

    def _commit(self, chunk: Sequence[tuple[Any, dict[str, Any], bool]]) -> None:
        batch = self._client.batch()
        for ref, fields, is_update in chunk:
            if is_update:
                batch.update(ref, fields)  # a field of the position, nothing else
            else:
                batch.set(ref, fields)
        self.round_trips += 1
        try:
            batch.commit(**self._kw())
        except gexc.NotFound:
            if not any(is_update for _, _, is_update in chunk):
                raise StoreUnavailable("alert states: NotFound on a write that creates") from None
            raise
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            raise StoreUnavailable(f"alert states: {describe_google_error(exc)}") from None
        self.writes += len(chunk)

    def _commit_without_missing(self, chunk: Sequence[tuple[Any, dict[str, Any], bool]]) -> None:
        """The states in one batch, then each flag on its own, skipping deleted positions (a
        rare path: a few round trips more, once)."""
        states = [w for w in chunk if not w[2]]
        if states:
            self._commit(states)
        for write in (w for w in chunk if w[2]):
            try:
                self._commit([write])
            except gexc.NotFound:
                log.info(
                    "position %s was deleted before its announcement was recorded: no flag "
                    "to clear",
                    write[0].id,
                    extra={"event": "outbox_position_deleted", "position_id": write[0].id},
                )

    def _ref(self, finding_id: str) -> Any:
        return self._client.collection(ALERTS_COLLECTION).document(self._doc_id(finding_id))


# Writes per batch of AlertStateStore.save (Firestore allows 500).
_SAVE_BATCH = 400


def _state_to(state: AlertState, scope: str) -> dict[str, Any]:
    return {
        "scope": scope,
        "finding_id": state.finding_id,
        "kind": state.kind.value,
        "key": state.key,
        "fingerprint": state.fingerprint,
        "line": state.line,
        "active": state.active,
        "first_seen_at": state.first_seen_at,
        "last_alerted_at": state.last_alerted_at,
        "pending": state.pending.value if state.pending else None,
        "identity_version": state.identity_version,
        "subject": state.subject,
        "acknowledgement": None
        if state.acknowledgement is None
        else {
            "by": state.acknowledgement.by,
            "reason": state.acknowledgement.reason,
            "at": state.acknowledgement.at,
            "until": state.acknowledgement.until,
        },
    }


def _ack_from(data: Any) -> Acknowledgement | None:
    if not isinstance(data, Mapping) or not isinstance(data.get("at"), datetime):
        return None
    until = data.get("until")
    return Acknowledgement(
        by=str(data.get("by") or "?"),
        reason=str(data.get("reason") or ""),
        at=data["at"],
        until=until if isinstance(until, datetime) else None,
    )


def _state_from(data: Mapping[str, Any]) -> AlertState | None:
    try:
        return AlertState(
            finding_id=str(data["finding_id"]),
            kind=FindingKind(data["kind"]),
            key=str(data["key"]),
            fingerprint=str(data["fingerprint"]),
            line=str(data["line"]),
            active=bool(data["active"]),
            first_seen_at=data["first_seen_at"],
            last_alerted_at=data.get("last_alerted_at"),
            pending=Notice(data["pending"]) if data.get("pending") else None,
            # States written before identity versions existed are version 1.
            identity_version=int(data.get("identity_version") or 1),
            subject=str(data.get("subject", data["key"])),
            acknowledgement=_ack_from(data.get("acknowledgement")),
        )
    except (KeyError, ValueError, TypeError):
        return None


class RunLease(_Base):
    """A lease with expiry, taken with Firestore preconditions (compare-and-set, no locks).

    ``create`` succeeds for exactly one of several simultaneous runs; an expired lease is taken
    over with an update guarded by the update_time that was read, so of two runs that both saw
    it expired, one wins. A crashed run's lease simply expires.

    A run releases its lease by deleting it, so the lease is usually absent: ``create`` is tried
    first (one round trip), and only a lease that exists is read and, if expired, taken over.
    """

    def __init__(
        self,
        client: firestore.Client,
        scope: str,
        duration: timedelta,
        timeouts: FirestoreTimeouts | None = None,
    ) -> None:
        super().__init__(client, scope, timeouts)
        self._duration = duration
        self._ref = client.collection(LEASES_COLLECTION).document(scope)

    def acquire(self, run_id: str, now: datetime) -> LeaseGrant:
        expires_at = now + self._duration
        data = {"holder": run_id, "acquired_at": now, "expires_at": expires_at}
        try:
            try:
                self.round_trips += 1
                result = self._ref.create(data, **self._kw())
            except (gexc.AlreadyExists, gexc.Conflict):
                self.round_trips += 1
                snap = self._ref.get(**self._kw())
                self.reads += 1
                if not snap.exists:
                    # Released between the two calls: another run may be taking it right now.
                    return LeaseGrant(False, "another run (taken concurrently)", None)
                current = snap.to_dict() or {}
                expires = current.get("expires_at")
                if isinstance(expires, datetime) and expires > now:
                    return LeaseGrant(False, str(current.get("holder")), expires)
                self.round_trips += 1
                result = self._ref.update(
                    data,
                    option=self._client.write_option(last_update_time=snap.update_time),
                    **self._kw(),
                )
        except (gexc.AlreadyExists, gexc.Conflict, gexc.FailedPrecondition):
            return LeaseGrant(False, "another run (taken concurrently)", None)
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            raise StoreUnavailable(f"lease: {describe_google_error(exc)}") from None
        self.writes += 1
        return LeaseGrant(True, run_id, expires_at, result.update_time)

    def queue_release(self, batch: Any, grant: LeaseGrant) -> None:
        """Release ``grant`` as part of ``batch`` (committed by the caller, atomically with
        its other writes): the same guarded delete as :meth:`release`."""
        batch.delete(self._ref, option=self._client.write_option(last_update_time=grant.token))

    def release(self, grant: LeaseGrant) -> None:
        if not grant.acquired:
            return
        try:
            self.round_trips += 1
            self._ref.delete(
                option=self._client.write_option(last_update_time=grant.token), **self._kw()
            )
            self.writes += 1
        except (gexc.FailedPrecondition, gexc.NotFound):
            log.warning("lease was taken over before release (the run outlived its lease)")
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            # It expires by itself; the next run waits at most the lease duration.
            log.warning("could not release the lease: %s", describe_google_error(exc))


# A Firestore document holds at most 1 MiB; a report lists every heal, pending position and
# orphan, about 72 KiB per 1,000 positions. Lists are cut to this many items in the record,
# with the full counts kept beside them (the full report is still returned and logged).
RECORD_LIST_LIMIT = 200


def compact_report(report: Mapping[str, Any], limit: int = RECORD_LIST_LIMIT) -> dict[str, Any]:
    out = dict(report)
    cut: dict[str, int] = {}
    for key, value in report.items():
        if isinstance(value, list) and len(value) > limit:
            out[key] = value[:limit]
            cut[key] = len(value)
    if cut:
        out["truncated_lists"] = cut
    return out


class RunLog(_Base):
    """Stores every non-dry run's report for audit; ``expire_at`` is the TTL field.

    Given the run lease, it stores the report and releases the lease in one batch: the run's
    last step costs one round trip instead of two.
    """

    def __init__(
        self,
        client: firestore.Client,
        scope: str,
        retention: timedelta,
        timeouts: FirestoreTimeouts | None = None,
        *,
        lease: RunLease | None = None,
    ) -> None:
        super().__init__(client, scope, timeouts)
        self._retention = retention
        self._lease = lease

    def record(
        self,
        run_id: str,
        report: Mapping[str, Any],
        now: datetime,
        *,
        release: LeaseGrant | None = None,
    ) -> bool:
        doc = {
            "scope": self._scope,
            "report": compact_report(report),
            "status": report.get("status"),
            "started_at": now,
            "expire_at": now + self._retention,
        }
        ref = self._client.collection(RUNS_COLLECTION).document(run_id)
        lease = self._lease
        try:
            if lease is not None and release is not None and release.token is not None:
                batch = self._client.batch()
                batch.set(ref, doc)
                lease.queue_release(batch, release)
                try:
                    self.round_trips += 1
                    batch.commit(**self._kw())
                    self.writes += 1
                    lease.writes += 1
                    return True
                except (gexc.FailedPrecondition, gexc.NotFound):
                    # The lease was taken over (this run outlived it), or a retried commit
                    # had already gone through: the record is written alone, the lease left
                    # to whoever holds it now.
                    log.warning("lease was taken over before release (the run outlived its lease)")
            self.round_trips += 1
            ref.set(doc, **self._kw())
            self.writes += 1
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            raise StoreUnavailable(f"run log: {describe_google_error(exc)}") from None
        return False


class BreakerStore(_Base):
    """The heal breaker's state: one document per positions collection.

    Tripped by a run whose heals exceeded the limit; reset by ``crypto-signals breaker reset``
    or by a forced run. Read by every run (one get), written only when it changes.
    """

    def __init__(
        self, client: firestore.Client, scope: str, timeouts: FirestoreTimeouts | None = None
    ) -> None:
        super().__init__(client, scope, timeouts)
        self._ref = client.collection(BREAKER_COLLECTION).document(scope)

    def load(self) -> BreakerState:
        try:
            self.round_trips += 1
            snap = self._ref.get(**self._kw())
            self.reads += 1
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            raise StoreUnavailable(f"breaker: {describe_google_error(exc)}") from None
        data = snap.to_dict() or {} if snap.exists else {}
        due, limit = data.get("heals_due"), data.get("limit")
        return BreakerState(
            # Anything but an explicit False counts as tripped once the document exists with a
            # trip: an unreadable state must not silently resume heals.
            tripped=bool(data) and data.get("tripped") is not False,
            tripped_at=data.get("tripped_at"),
            reason=str(data["reason"]) if data.get("reason") else None,
            run_id=str(data["run_id"]) if data.get("run_id") else None,
            heals_due=due if isinstance(due, int) and not isinstance(due, bool) else None,
            limit=limit if isinstance(limit, int) and not isinstance(limit, bool) else None,
        )

    def trip(self, *, run_id: str, heals_due: int, limit: int, reason: str, now: datetime) -> None:
        self._write(
            {
                "scope": self._scope,
                "tripped": True,
                "tripped_at": now,
                "run_id": run_id,
                "heals_due": heals_due,
                "limit": limit,
                "reason": reason,
            }
        )

    def reset(self, *, by: str, reason: str, now: datetime) -> None:
        self._write(self.reset_fields(by=by, reason=reason, now=now))

    def reset_fields(self, *, by: str, reason: str, now: datetime) -> dict[str, Any]:
        return {
            "scope": self._scope,
            "tripped": False,
            "reset_at": now,
            "reset_by": by,
            "reset_reason": reason,
        }

    @property
    def ref(self) -> Any:
        return self._ref

    def _write(self, fields: dict[str, Any]) -> None:
        try:
            self.round_trips += 1
            self._ref.set(fields, merge=True, **self._kw())
            self.writes += 1
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            raise StoreUnavailable(f"breaker: {describe_google_error(exc)}") from None
