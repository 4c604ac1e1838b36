"""Firestore adapter for the positions the signal job owns.

Reads: one query for ``status == OPEN``, and one for positions closed since the evidence window
began (their orders belong to them; the signal job's exits are posted for their quantity).
Each document is parsed at this edge; one that does not parse becomes an issue naming the
document and is never written.

Writes: a heal is a field-level ``update`` guarded by the document's ``update_time`` as read
(the document is still OPEN and unchanged), so a heal can never overwrite a close the signal job
wrote in between, and unknown fields survive. The heal records its allocation and the values of
the fields it replaced in the audit map ``reconciler`` (contract section 1), and posts the same
allocation to the ledger collection in the same atomic batch (``repository/ledger.py``).
Heals go in batches (one round trip per ``batch_size`` heals); if a batch is refused because one
precondition failed, its heals are retried one by one so that only the conflicting document is
skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from pydantic import ValidationError

from crypto_signals.domain.schemas import (
    ExitReason,
    Position,
    TradeStatus,
    decimal_text,
    strict_decimal,
)
from crypto_signals.domain.snapshots import (
    ClosedPosition,
    Issue,
    IssueKind,
    PostingSource,
    StoreState,
)
from crypto_signals.engine.plan import Heal
from crypto_signals.engine.ports import HealOutcome, HealResult, StoreCounters, StoreUnavailable
from crypto_signals.repository import ledger
from crypto_signals.repository.firestore_common import (
    OUTBOX_FLAG,
    Counter,
    FirestoreTimeouts,
    describe_google_error,
    fields_of,
)

__all__ = [
    "HEAL_REPLACES",
    "FirestoreTimeouts",
    "PositionRepository",
    "collection_for",
    "describe_google_error",
    "heal_fields",
    "parse_position",
]

log = logging.getLogger(__name__)

# The audit map's hold flag (an operator's undo) is read with the positions.
_HELD_FIELD = "reconciler.held"
_POSITION_FIELDS = sorted([*Position.model_fields, _HELD_FIELD])
# What a heal announcement shows (engine/findings.heal_line).
_ANNOUNCE_FIELDS = [
    "symbol",
    "exit_fill_price",
    "exit_time",
    "exit_order_id",
    "realized_pnl_usd",
    OUTBOX_FLAG,  # its filter's field, for a resumed query (see below)
]
# What the ledger needs of a closed position: its orders, its quantity, whether it is posted.
# A query resumed after a transient error (the client's retry restarts it after the last
# document it streamed) needs, in that document, every field the query orders by: the range
# filter on exit_time orders by it, so the projection must carry it.
_CLOSED_FIELDS = [
    "exit_time",
    "status",
    "symbol",
    "qty",
    "alpaca_order_id",
    "entry_order_id",
    "tp_order_id",
    "sl_order_id",
    "exit_order_id",
    "reconciler.ledger_posted",
]
# The fields a heal replaces; their values before it go into the audit map, for an undo.
HEAL_REPLACES = (
    "status",
    "exit_reason",
    "exit_fill_price",
    "exit_time",
    "exit_order_id",
    "realized_pnl_usd",
    "realized_pnl_pct",
    "trade_duration_seconds",
    "updated_at",
)
# A Firestore batch holds at most 500 writes; a heal is one, plus one per ledger document.
_MAX_BATCH_WRITES = 450


def collection_for(environment: str) -> str:
    """The positions collection of an environment (contract section 1)."""
    return "live_positions" if environment == "PROD" else "test_positions"


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
        position = Position.model_validate(fields)
    except ValidationError as exc:
        # Name the fields and the rule, never the values: a document may hold anything.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '?'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        return Issue(IssueKind.MALFORMED_DOCUMENT, doc_id, problems)
    _share_fields_set(position)
    return position


# Position's field-name sets, one per combination (a book has a handful).
_FIELDS_SETS: dict[frozenset[str], set[str]] = {}
_MAX_FIELDS_SETS = 256


def _share_fields_set(position: Position) -> None:
    """Give ``position`` the shared copy of its set of fields present in the document.

    pydantic keeps, per instance, the set of field names the input held
    (``model_fields_set``): about 2 KB for a position document, two thirds of what a parsed
    Position costs, so 20 MB of a book of 10,000. A Position is frozen, so nothing adds to that
    set (``model_copy`` copies it first): instances with the same fields can share one.
    """
    own = position.__pydantic_fields_set__
    key = frozenset(own)
    shared = _FIELDS_SETS.get(key)
    if shared is None:
        if len(_FIELDS_SETS) >= _MAX_FIELDS_SETS:
            return
        shared = _FIELDS_SETS[key] = own
    object.__setattr__(position, "__pydantic_fields_set__", shared)


def _number(value: Decimal | None, places: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value.quantize(Decimal(places)))
    except InvalidOperation:
        return float(value)  # too many digits to quantize: store it as it is


_ABSENT_SETS: dict[frozenset[str], frozenset[str]] = {}


def _absent_of(data: Mapping[str, Any]) -> frozenset[str]:
    """The heal-replaced fields a document lacks, as one shared set per combination (a book
    of 10,000 documents has a handful), so remembering it costs a reference per document."""
    absent = frozenset(f for f in HEAL_REPLACES if f not in data)
    return _ABSENT_SETS.setdefault(absent, absent)


def _replaced_from(position: Position, absent: frozenset[str]) -> dict[str, Any]:
    """What a heal replaces, from the parsed document: the same values the document holds
    (these fields parse without conversion, the status enum aside)."""
    values = {f: getattr(position, f) for f in HEAL_REPLACES if f not in absent}
    if "status" in values:
        values["status"] = position.status.value
    return values


def heal_fields(
    heal: Heal,
    *,
    run_id: str,
    now: datetime,
    replaced: Mapping[str, Any] | None = None,
    absent: Sequence[str] = (),
) -> dict[str, Any]:
    """The fields a heal sets (contract section 1), plus the reconciler's audit map.

    Audit fields are written by path (``reconciler.x``), so whatever else the map holds (an
    earlier undo's record) survives.
    """
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
        "reconciler.action": "heal",
        "reconciler.run_id": run_id,
        "reconciler.healed_at": now,
        "reconciler.evidence": heal.evidence.value,
        "reconciler.evidence_order_ids": list(heal.evidence_order_ids),
        # The allocation: which broker orders this close used, and how much of each.
        "reconciler.allocation": [
            {"order_id": a.order_id, "qty": decimal_text(a.qty)} for a in heal.allocation
        ],
        "reconciler.ledger_posted": True,
        # What the heal replaced, so `crypto-signals undo` can restore it exactly.
        "reconciler.replaced": dict(replaced or {}),
        "reconciler.absent": list(absent),
        # Outbox flag: the heal and its pending announcement are written atomically, so a
        # crash before the Discord message cannot lose it (the next run sends it).
        OUTBOX_FLAG: True,
    }


def closed_position(doc_id: str, data: Mapping[str, Any]) -> ClosedPosition:
    """What the ledger needs of a closed position; lenient (a bad qty only loses its posting)."""
    try:
        qty = strict_decimal(data.get("qty"))
    except ValueError:
        qty = None
    audit = data.get("reconciler")
    posted = isinstance(audit, dict) and audit.get("ledger_posted") is True
    entries = frozenset(str(data[f]) for f in ("alpaca_order_id", "entry_order_id") if data.get(f))
    legs = frozenset(str(data[f]) for f in ("tp_order_id", "sl_order_id") if data.get(f))
    exit_id = data.get("exit_order_id")
    return ClosedPosition(
        position_id=doc_id,
        symbol=str(data.get("symbol") or ""),
        qty=qty if qty is not None and qty > 0 else None,
        entry_order_ids=entries,
        leg_order_ids=legs,
        exit_order_id=str(exit_id) if exit_id else None,
        posted=posted,
    )


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
        # Each open document as read, and which heal-replaced fields it lacks: what a heal
        # replaces is recorded from these (for an undo).
        self._read_positions: dict[str, Position] = {}
        self._absent: dict[str, frozenset[str]] = {}
        self._count = Counter()

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
        held: set[str] = set()
        for doc in self._stream(query):
            data = fields_of(doc)
            parsed = parse_position(doc.id, data)
            if isinstance(parsed, Issue):
                malformed.append(parsed)
                continue
            self._read_times[doc.id] = doc.update_time
            self._read_positions[doc.id] = parsed
            self._absent[doc.id] = _absent_of(data)
            audit = data.get("reconciler")
            if isinstance(audit, dict) and audit.get("held") is True:
                held.add(doc.id)
            positions.append(parsed)
        return StoreState(tuple(positions), tuple(malformed), frozenset(held))

    def get_unannounced_heals(self) -> list[dict[str, Any]]:
        """Healed documents whose Discord announcement has not been delivered yet."""
        query = self._collection.where(
            filter=firestore.FieldFilter(OUTBOX_FLAG, "==", True)
        ).select(_ANNOUNCE_FIELDS)
        return [{**fields_of(doc), "position_id": doc.id} for doc in self._stream(query)]

    def get_closed_positions(self, since: datetime) -> tuple[ClosedPosition, ...]:
        """Positions closed since ``since``, and closed ones with no ``exit_time`` at all (the
        contract allows null): their orders belong to them, and the signal job's exits are
        posted for their quantity (the ledger derives that each run).

        Two queries: ``exit_time >= since`` (only
        closed documents carry one; a single-field range needs no composite index), and
        ``status == CLOSED and exit_time == null`` (equalities only: Firestore serves them by
        merging single-field indexes). Any position that used a fill in the evidence listing
        closed after that fill was submitted, so after the listing's start, or has no exit time.
        """
        recent = self._collection.where(
            filter=firestore.FieldFilter("exit_time", ">=", since)
        ).select(_CLOSED_FIELDS)
        undated = (
            self._collection.where(filter=firestore.FieldFilter("status", "==", "CLOSED"))
            .where(filter=firestore.FieldFilter("exit_time", "==", None))
            .select(_CLOSED_FIELDS)
        )
        # Each snapshot is read as it arrives and dropped: only what the ledger needs stays.
        found: dict[str, ClosedPosition] = {}
        for query in (recent, undated):
            for doc in self._stream(query):
                found[doc.id] = closed_position(doc.id, fields_of(doc))
        return tuple(found[k] for k in sorted(found))

    def mark_announced(self, position_ids: Sequence[str]) -> None:
        for chunk in _chunks(list(position_ids), self._batch_size):
            try:
                self._clear_flags(chunk)
            except gexc.NotFound:
                # One of them was deleted since it was read: clear the others one by one.
                for pid in chunk:
                    try:
                        self._clear_flags([pid])
                    except gexc.NotFound:
                        log.info("position %s was deleted: no outbox flag to clear", pid)

    def _clear_flags(self, position_ids: Sequence[str]) -> None:
        batch = self._client.batch()
        for pid in position_ids:
            batch.update(self._collection.document(pid), {OUTBOX_FLAG: False})
        self._commit(batch, len(position_ids))

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
        for chunk in _chunks_by_writes(list(heals), self._batch_size):
            results.extend(self._apply_chunk(chunk, run_id=run_id, now=now))
        return results

    def _precondition(self, position_id: str) -> Any:
        return self._client.write_option(last_update_time=self._read_times[position_id])

    def _postings(self, heal: Heal, *, run_id: str, now: datetime) -> dict[str, dict[str, Any]]:
        return ledger.posting_writes(
            self.collection_name,
            heal.position_id,
            heal.symbol,
            heal.allocation,
            source=PostingSource.HEAL,
            run_id=run_id,
            at=now,
        )

    def _queue_heal(self, batch: Any, heal: Heal, *, run_id: str, now: datetime) -> dict[str, Any]:
        """Add the heal's update to ``batch``; returns its outbox row (what is announced)."""
        position = self._read_positions.get(heal.position_id)
        absent = self._absent.get(heal.position_id, frozenset())
        replaced = _replaced_from(position, absent) if position is not None else {}
        fields = heal_fields(
            heal,
            run_id=run_id,
            now=now,
            replaced=replaced,
            absent=[f for f in HEAL_REPLACES if f in absent],
        )
        batch.update(
            self._collection.document(heal.position_id),
            fields,
            option=self._precondition(heal.position_id),
        )
        return _announcement(heal, fields)

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
        rows = [self._queue_heal(batch, heal, run_id=run_id, now=now) for heal in heals]
        postings = ledger.merge_writes(self._postings(h, run_id=run_id, now=now) for h in heals)
        writes = len(heals) + ledger.add_to_batch(self._client, batch, postings)
        try:
            self._commit(batch, writes)
            return results + [
                HealResult(h.position_id, HealOutcome.APPLIED, announcement=row)
                for h, row in zip(heals, rows, strict=True)
            ]
        except (gexc.FailedPrecondition, gexc.NotFound):
            # Someone changed one of these documents since we read it: find which, one by one.
            return results + [self._apply_one(h, run_id=run_id, now=now) for h in heals]
        except StoreUnavailable as exc:
            return results + [
                HealResult(h.position_id, HealOutcome.FAILED, str(exc)) for h in heals
            ]

    def _apply_one(self, heal: Heal, *, run_id: str, now: datetime) -> HealResult:
        """One heal and its ledger postings, in one atomic batch."""
        batch = self._client.batch()
        row = self._queue_heal(batch, heal, run_id=run_id, now=now)
        writes = 1 + ledger.add_to_batch(
            self._client, batch, self._postings(heal, run_id=run_id, now=now)
        )
        try:
            self._commit(batch, writes)
        except (gexc.FailedPrecondition, gexc.NotFound):
            if self._healed_by(self._collection.document(heal.position_id), run_id):
                # A batch that timed out may have committed before its retry: that is our heal.
                return HealResult(heal.position_id, HealOutcome.APPLIED, announcement=row)
            return HealResult(
                heal.position_id,
                HealOutcome.CONFLICT,
                "document changed since it was read (closed or updated by someone else)",
            )
        except StoreUnavailable as exc:
            return HealResult(heal.position_id, HealOutcome.FAILED, str(exc))
        return HealResult(heal.position_id, HealOutcome.APPLIED, announcement=row)

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


def _announcement(heal: Heal, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A heal's outbox row as :meth:`PositionRepository.get_unannounced_heals` reads it back:
    the announced fields as written, and the document id."""
    shown = (f for f in _ANNOUNCE_FIELDS if f != "symbol" and not f.startswith("reconciler."))
    row = {f: fields[f] for f in shown if f in fields}
    return {**row, "symbol": heal.symbol, "position_id": heal.position_id}


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _chunks_by_writes(heals: list[Heal], batch_heals: int = 200) -> Iterator[list[Heal]]:
    """At most ``batch_heals`` heals per batch, and never more writes than a batch holds."""
    chunk: list[Heal] = []
    writes = 0
    for heal in heals:
        cost = 1 + len(heal.allocation)
        if chunk and (len(chunk) >= batch_heals or writes + cost > _MAX_BATCH_WRITES):
            yield chunk
            chunk, writes = [], 0
        chunk.append(heal)
        writes += cost
    if chunk:
        yield chunk
