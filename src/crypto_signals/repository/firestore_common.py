"""What every Firestore adapter here shares: timeouts with a bounded retry, counters, a
secret-free description of a Google API failure, and reading a snapshot's fields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type

from crypto_signals.engine.ports import StoreCounters

# Transient gRPC failures worth a bounded retry; everything else fails the call at once.
TRANSIENT = if_exception_type(
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.TooManyRequests,
    gexc.Aborted,
)


@dataclass(frozen=True)
class FirestoreTimeouts:
    call_seconds: float = 10.0
    retry_deadline_seconds: float = 20.0

    def retry(self) -> Retry:
        return Retry(
            predicate=TRANSIENT,
            initial=0.2,
            maximum=2.0,
            multiplier=2.0,
            timeout=self.retry_deadline_seconds,
        )


class Counter:
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


def fields_of(snapshot: Any) -> Mapping[str, Any]:
    """A snapshot's fields, to read and never to change, without ``to_dict()``'s deep copy.

    google-cloud-firestore deep-copies a document's data when it builds the snapshot, and
    again on every ``to_dict()`` so that no caller can change the snapshot. The adapters here
    only read the fields (into new objects), so that second copy is pure cost: about 40 ms of
    CPU per 1,000 open positions, on the run's critical path. Should the library stop keeping
    the data as ``_data``, this falls back to ``to_dict()``; a test checks that both agree.
    """
    if not snapshot.exists:
        return {}
    data = getattr(snapshot, "_data", None)
    if isinstance(data, dict):
        return data
    return snapshot.to_dict() or {}


# A heal's outbox flag, set in the heal's own write and cleared once Discord accepted its
# announcement (PositionRepository writes it, the alert states clear it with their notices).
OUTBOX_FLAG = "reconciler.alert_pending"
