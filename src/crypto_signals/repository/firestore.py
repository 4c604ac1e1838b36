"""Firestore adapter for the positions the signal job owns.

Reads: one query for ``status == OPEN``. Each document is parsed with the ``Position`` model at
this edge; one that does not parse becomes an issue naming the document and is never written.

Writes: a heal is a field-level ``update`` guarded by the document's ``update_time`` as read
(the document is still OPEN and unchanged), so a heal can never overwrite a close the signal job
wrote in between, and unknown fields survive. Heals go in atomic batches (one round trip per
``batch_size`` writes); if a batch is refused because one precondition failed, its heals are
retried one by one so that only the conflicting document is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type
from google.cloud import firestore
from pydantic import ValidationError

from crypto_signals.domain.schemas import ExitReason, Position, TradeStatus
from crypto_signals.domain.snapshots import Issue, IssueKind, StoreState
from crypto_signals.engine.plan import Heal
from crypto_signals.engine.ports import HealOutcome, HealResult, StoreCounters, StoreUnavailable

log = logging.getLogger(__name__)

_POSITION_FIELDS = sorted(Position.model_fields)
# What a heal announcement shows (engine/findings.heal_line).
_ANNOUNCE_FIELDS = ["symbol", "exit_fill_price", "exit_time", "exit_order_id", "realized_pnl_usd"]
# Fields that name a closed position's broker orders (plus its id, the entry client order id).
_CLAIM_FIELDS = ["alpaca_order_id", "entry_order_id", "tp_order_id", "sl_order_id", "exit_order_id"]

# Transient gRPC failures worth a bounded retry; everything else fails the call at once.
_TRANSIENT = if_exception_type(
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.TooManyRequests,
    gexc.Aborted,
)


def collection_for(environment: str) -> str:
    """The positions collection of an environment (contract section 1)."""
    return "live_positions" if environment == "PROD" else "test_positions"


@dataclass(frozen=True)
class FirestoreTimeouts:
    call_seconds: float = 10.0
    retry_deadline_seconds: float = 20.0

    def retry(self) -> Retry:
        return Retry(
            predicate=_TRANSIENT,
            initial=0.2,
            maximum=2.0,
            multiplier=2.0,
            timeout=self.retry_deadline_seconds,
        )


class _Counter:
    """Counts documents read and written and RPC round trips, for the report's stats."""

    def __init__(self) -> None:
        self.reads = 0
        self.writes = 0
        self.round_trips = 0

    def snapshot(self) -> StoreCounters:
        return StoreCounters(self.reads, self.writes, self.round_trips)


def describe_google_error(exc: Exception) -> str:
    """A short, secret-free description of a Google API failure."""
    if isinstance(exc, gexc.RetryError):
        cause = exc.cause
        return f"gave up after retries ({type(cause).__name__ if cause else 'deadline'})"
    if isinstance(exc, gexc.GoogleAPICallError):
        return f"{type(exc).__name__} ({exc.code})"
    return type(exc).__name__


def parse_position(doc_id: str, data: Mapping[str, Any] | None) -> Position | Issue:
    """Parse one document into a Position, or an issue naming what was wrong with it."""
    if not data:
        return Issue(IssueKind.MALFORMED_DOCUMENT, doc_id, "empty document")
    fields = dict(data)
    stored_id = fields.get("position_id")
    if stored_id is not None and stored_id != doc_id:
        return Issue(
            IssueKind.MALFORMED_DOCUMENT, doc_id, "position_id field differs from the document id"
        )
    fields["position_id"] = doc_id
    try:
        return Position.model_validate(fields)
    except ValidationError as exc:
        # Name the fields and the rule, never the values: a document may hold anything.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '?'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        return Issue(IssueKind.MALFORMED_DOCUMENT, doc_id, problems)


def _number(value: Decimal | None, places: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value.quantize(Decimal(places)))
    except InvalidOperation:
        return float(value)  # too many digits to quantize: store it as it is


def heal_fields(heal: Heal, *, run_id: str, now: datetime) -> dict[str, Any]:
    """The fields a heal sets (contract section 1), plus the reconciler's audit map."""
    return {
        "status": TradeStatus.CLOSED.value,
        "exit_reason": ExitReason.CLOSED_EXTERNALLY.value,
        "exit_fill_price": _number(heal.exit_fill_price, "0.0000000001"),
        "exit_time": heal.exit_time,
        "exit_order_id": heal.exit_order_id,
        "realized_pnl_usd": _number(heal.realized_pnl_usd, "0.00000001"),
        "realized_pnl_pct": _number(heal.realized_pnl_pct, "0.000001"),
        "trade_duration_seconds": heal.trade_duration_seconds,
        "updated_at": now,
        "reconciler": {
            "run_id": run_id,
            "healed_at": now,
            "evidence": heal.evidence.value,
            "evidence_order_ids": list(heal.evidence_order_ids),
            # Outbox flag: the heal and its pending announcement are written atomically, so a
            # crash before the Discord message cannot lose it (the next run sends it).
            "alert_pending": True,
        },
    }


class PositionRepository:
    """Reads open positions and heals them; one instance per run (it remembers what it read)."""

    def __init__(
        self,
        client: firestore.Client,
        collection: str,
        *,
        timeouts: FirestoreTimeouts | None = None,
        batch_size: int = 200,
    ) -> None:
        self._client = client
        self._collection = client.collection(collection)
        self.collection_name = collection
        self._timeouts = timeouts or FirestoreTimeouts()
        self._batch_size = batch_size
        self._read_times: dict[str, Any] = {}
        self._count = _Counter()

    def counters(self) -> StoreCounters:
        return self._count.snapshot()

    def _stream(self, query: Any) -> Iterator[Any]:
        self._count.round_trips += 1
        try:
            for doc in query.stream(
                retry=self._timeouts.retry(), timeout=self._timeouts.call_seconds
            ):
                self._count.reads += 1
                yield doc
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            raise StoreUnavailable(
                f"query {self.collection_name}: {describe_google_error(exc)}"
            ) from None

    def get_open_positions(self) -> StoreState:
        # Projection: only the fields the Position model reads cross the wire and stay in
        # memory; documents may carry large fields the reconciler never looks at.
        query = self._collection.where(filter=firestore.FieldFilter("status", "==", "OPEN")).select(
            _POSITION_FIELDS
        )
        positions: list[Position] = []
        malformed: list[Issue] = []
        for doc in self._stream(query):
            parsed = parse_position(doc.id, doc.to_dict())
            if isinstance(parsed, Issue):
                malformed.append(parsed)
                continue
            self._read_times[doc.id] = doc.update_time
            positions.append(parsed)
        return StoreState(tuple(positions), tuple(malformed))

    def get_unannounced_heals(self) -> list[dict[str, Any]]:
        """Healed documents whose Discord announcement has not been delivered yet."""
        query = self._collection.where(
            filter=firestore.FieldFilter("reconciler.alert_pending", "==", True)
        ).select(_ANNOUNCE_FIELDS)
        out = []
        for doc in self._stream(query):
            data = doc.to_dict() or {}
            data["position_id"] = doc.id
            out.append(data)
        return out

    def get_closed_order_claims(self, since: datetime) -> frozenset[str]:
        """Order ids, and position ids (= client order ids), of positions closed since ``since``.

        Their fills are those positions' exits; the planner must not read them as evidence
        that another position was closed. One query: ``exit_time`` is only set on closed
        documents, and a single-field range needs no composite index.
        """
        query = self._collection.where(
            filter=firestore.FieldFilter("exit_time", ">=", since)
        ).select(_CLAIM_FIELDS)
        claims: set[str] = set()
        for doc in self._stream(query):
            data = doc.to_dict() or {}
            claims.add(doc.id)
            claims.update(str(data[f]) for f in _CLAIM_FIELDS if data.get(f))
        return frozenset(claims)

    def mark_announced(self, position_ids: Sequence[str]) -> None:
        for chunk in _chunks(list(position_ids), self._batch_size):
            batch = self._client.batch()
            for pid in chunk:
                batch.update(self._collection.document(pid), {"reconciler.alert_pending": False})
            self._commit(batch, len(chunk))

    def _commit(self, batch: Any, size: int) -> None:
        self._count.round_trips += 1
        try:
            batch.commit(retry=self._timeouts.retry(), timeout=self._timeouts.call_seconds)
        except (gexc.FailedPrecondition, gexc.NotFound):
            raise  # per-document conflicts: the caller sorts them out
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            raise StoreUnavailable(
                f"write {self.collection_name}: {describe_google_error(exc)}"
            ) from None
        self._count.writes += size

    def apply_heals(self, heals: Sequence[Heal], *, run_id: str, now: datetime) -> list[HealResult]:
        results: list[HealResult] = []
        for chunk in _chunks(list(heals), self._batch_size):
            results.extend(self._apply_chunk(chunk, run_id=run_id, now=now))
        return results

    def _precondition(self, position_id: str) -> Any:
        return self._client.write_option(last_update_time=self._read_times[position_id])

    def _apply_chunk(self, heals: list[Heal], *, run_id: str, now: datetime) -> list[HealResult]:
        unread = [h for h in heals if h.position_id not in self._read_times]
        results = [
            HealResult(h.position_id, HealOutcome.FAILED, "position was not read in this run")
            for h in unread
        ]
        heals = [h for h in heals if h.position_id in self._read_times]
        if not heals:
            return results
        batch = self._client.batch()
        for heal in heals:
            batch.update(
                self._collection.document(heal.position_id),
                heal_fields(heal, run_id=run_id, now=now),
                option=self._precondition(heal.position_id),
            )
        try:
            self._commit(batch, len(heals))
            return results + [HealResult(h.position_id, HealOutcome.APPLIED) for h in heals]
        except (gexc.FailedPrecondition, gexc.NotFound):
            # Someone changed one of these documents since we read it: find which, one by one.
            return results + [self._apply_one(h, run_id=run_id, now=now) for h in heals]
        except StoreUnavailable as exc:
            return results + [
                HealResult(h.position_id, HealOutcome.FAILED, str(exc)) for h in heals
            ]

    def _apply_one(self, heal: Heal, *, run_id: str, now: datetime) -> HealResult:
        ref = self._collection.document(heal.position_id)
        self._count.round_trips += 1
        try:
            ref.update(
                heal_fields(heal, run_id=run_id, now=now),
                option=self._precondition(heal.position_id),
                retry=self._timeouts.retry(),
                timeout=self._timeouts.call_seconds,
            )
        except (gexc.FailedPrecondition, gexc.NotFound):
            if self._healed_by(ref, run_id):
                # A batch that timed out may have committed before its retry: that is our heal.
                return HealResult(heal.position_id, HealOutcome.APPLIED)
            return HealResult(
                heal.position_id,
                HealOutcome.CONFLICT,
                "document changed since it was read (closed or updated by someone else)",
            )
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            return HealResult(heal.position_id, HealOutcome.FAILED, describe_google_error(exc))
        self._count.writes += 1
        return HealResult(heal.position_id, HealOutcome.APPLIED)

    def _healed_by(self, ref: Any, run_id: str) -> bool:
        self._count.round_trips += 1
        self._count.reads += 1
        try:
            snap = ref.get(retry=self._timeouts.retry(), timeout=self._timeouts.call_seconds)
        except (gexc.GoogleAPICallError, gexc.RetryError):
            return False
        data = snap.to_dict() or {}
        audit = data.get("reconciler")
        return isinstance(audit, dict) and audit.get("run_id") == run_id


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
