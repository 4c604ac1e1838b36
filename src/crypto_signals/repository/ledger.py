"""The ledger of broker fills in Firestore: for every order a heal or an operator close used,
how much of its fill went to which position.

Collection ``reconciler_ledger``, one document per (positions collection, broker order):
``{scope, order_id, symbol, fill_time, price, allocations: {position_id: {qty, source, run_id,
at}}}``. Quantities are decimal strings (exact). Postings are written in the same atomic
batch as the position change they explain (a heal, an operator close, an undo), merged by
position id, so two heals that split one fill never overwrite each other's share.

Why a collection of its own rather than only the audit map on each position document (which
records the same allocation, contract section 1): position documents carry a TTL
(``delete_at``). Once a healed position is deleted its audit map is gone, and a fill it used
would look free again to a later run listing that far back. The ledger has no TTL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from crypto_signals.domain.schemas import decimal_text
from crypto_signals.domain.snapshots import Posting, PostingSource
from crypto_signals.engine.plan import Allocation
from crypto_signals.engine.ports import StoreUnavailable
from crypto_signals.repository.firestore_common import (
    FirestoreTimeouts,
    describe_google_error,
    fields_of,
)

LEDGER_COLLECTION = "reconciler_ledger"


def ledger_doc_id(scope: str, order_id: str) -> str:
    return f"{scope}:{order_id}"


def posting_writes(
    scope: str,
    position_id: str,
    symbol: str,
    allocation: Iterable[Allocation],
    *,
    source: PostingSource,
    run_id: str,
    at: Any,
) -> dict[str, dict[str, Any]]:
    """Ledger document id -> the merge-set that posts ``allocation`` to ``position_id``."""
    out: dict[str, dict[str, Any]] = {}
    for share in allocation:
        out[ledger_doc_id(scope, share.order_id)] = {
            "scope": scope,
            "order_id": share.order_id,
            "symbol": symbol,
            "fill_time": share.at,
            "price": decimal_text(share.price),
            "allocations": {
                position_id: {
                    "qty": decimal_text(share.qty),
                    "source": source.value,
                    "run_id": run_id,
                    "at": at,
                }
            },
        }
    return out


def merge_writes(writes: Iterable[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Combine several positions' postings so each ledger document is written once per batch."""
    merged: dict[str, dict[str, Any]] = {}
    for batch in writes:
        for doc_id, fields in batch.items():
            if doc_id in merged:
                merged[doc_id]["allocations"].update(fields["allocations"])
            else:
                merged[doc_id] = {**fields, "allocations": dict(fields["allocations"])}
    return merged


def add_to_batch(client: firestore.Client, batch: Any, writes: dict[str, dict[str, Any]]) -> int:
    """Queue the merges in ``batch``; returns how many documents they write."""
    collection = client.collection(LEDGER_COLLECTION)
    for doc_id, fields in sorted(writes.items()):
        batch.set(collection.document(doc_id), fields, merge=True)
    return len(writes)


def release_in_batch(
    client: firestore.Client, batch: Any, scope: str, position_id: str, order_ids: Iterable[str]
) -> int:
    """Queue the removal of ``position_id``'s postings (an undo reverses its heal's postings)."""
    collection = client.collection(LEDGER_COLLECTION)
    count = 0
    for order_id in sorted(set(order_ids)):
        path = FieldPath("allocations", position_id).to_api_repr()
        batch.update(
            collection.document(ledger_doc_id(scope, order_id)), {path: firestore.DELETE_FIELD}
        )
        count += 1
    return count


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() and number >= 0 else None


class LedgerStore:
    """Reads postings of the orders a run is looking at: one batched get."""

    def __init__(
        self, client: firestore.Client, scope: str, timeouts: FirestoreTimeouts | None = None
    ) -> None:
        self._client = client
        self._scope = scope
        self._timeouts = timeouts or FirestoreTimeouts()
        self.reads = 0
        self.writes = 0  # its postings are written in the position stores' batches
        self.round_trips = 0

    def postings_for(self, order_ids: Sequence[str]) -> tuple[Posting, ...]:
        ids = sorted(set(order_ids))
        if not ids:
            return ()
        collection = self._client.collection(LEDGER_COLLECTION)
        refs = [collection.document(ledger_doc_id(self._scope, i)) for i in ids]
        self.round_trips += 1
        postings: list[Posting] = []
        try:
            for snap in self._client.get_all(
                refs,
                field_paths=["order_id", "allocations"],
                retry=self._timeouts.retry(),
                timeout=self._timeouts.call_seconds,
            ):
                self.reads += 1
                if not snap.exists:
                    continue
                postings += _postings_of(fields_of(snap), snap.id)
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            raise StoreUnavailable(f"ledger: {describe_google_error(exc)}") from None
        return tuple(postings)


def _postings_of(data: Mapping[str, Any], doc_id: str) -> list[Posting]:
    order_id = str(data.get("order_id") or doc_id.split(":", 1)[-1])
    allocations = data.get("allocations")
    if not isinstance(allocations, dict):
        return []
    out = []
    for position_id, entry in sorted(allocations.items()):
        if not isinstance(entry, dict):
            continue
        qty = _decimal(entry.get("qty"))
        if qty is None:
            # An unreadable posting cannot be ignored (the fill might look free): count it as
            # using the whole fill, the safe direction.
            qty = Decimal("Infinity")
        try:
            source = PostingSource(entry.get("source") or PostingSource.HEAL.value)
        except ValueError:
            source = PostingSource.HEAL
        out.append(Posting(order_id, str(position_id), qty, source))
    return out
