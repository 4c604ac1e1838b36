"""Ports: what the shell needs from the outside world, in the project's own types.

Each is a small ``typing.Protocol``; adapters (alpaca-py, Firestore, requests) implement them and
tests can use in-memory fakes without patching anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from crypto_signals.domain.snapshots import (
    BreakerState,
    BrokerState,
    ClosedOrders,
    ClosedPosition,
    EvidenceQuery,
    Posting,
    StoreState,
    SymbolForm,
)
from crypto_signals.engine.alerts import AlertState
from crypto_signals.engine.messages import AlertBatch, Delivery
from crypto_signals.engine.plan import Heal


@dataclass(frozen=True)
class LeaseGrant:
    acquired: bool
    holder: str | None = None
    expires_at: datetime | None = None
    token: Any = None  # the store's proof of ownership (Firestore: update_time of our write)


class BrokerUnavailable(Exception):
    """The broker could not be read completely: the run must not decide anything from it."""


class BrokerDeadline(BrokerUnavailable):
    """The broker could not be read before the run's deadline (a slow answer, a rate limit
    that resets too late): the run stops before writing anything, its lease may be gone."""


class StoreUnavailable(Exception):
    """Firestore could not be read or written as a whole (not a single-document conflict)."""


class Broker(Protocol):
    """``deadline`` is a ``time.monotonic()`` instant: waits (a rate limit's reset) never go
    past it; a call that cannot finish before it raises :class:`BrokerUnavailable`."""

    call_count: int

    def fetch_state(self, *, deadline: float | None = None) -> BrokerState: ...

    def fetch_closed_orders(
        self,
        query: EvidenceQuery,
        *,
        deadline: float | None = None,
        symbol_form: SymbolForm = "slash",
    ) -> ClosedOrders: ...

    def fetch_orders(
        self,
        order_ids: Sequence[str],
        client_order_ids: Sequence[str],
        *,
        deadline: float | None = None,
    ) -> ClosedOrders: ...


class HealOutcome(StrEnum):
    APPLIED = "applied"
    CONFLICT = "conflict"  # the document changed or closed since it was read: someone else acted
    FAILED = "failed"


@dataclass(frozen=True)
class HealResult:
    position_id: str
    outcome: HealOutcome
    detail: str = ""
    # An applied heal's row of the outbox, as written (the fields a heal announcement shows):
    # the run announces it from here instead of reading back what it just wrote.
    announcement: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class StoreCounters:
    reads: int = 0
    writes: int = 0
    round_trips: int = 0


class PositionStore(Protocol):
    def get_open_positions(self) -> StoreState: ...

    def apply_heals(
        self, heals: Sequence[Heal], *, run_id: str, now: datetime
    ) -> list[HealResult]: ...

    def counters(self) -> StoreCounters: ...


class Notifier(Protocol):
    """Tells people: renders the batch in its channel's form and says what got through."""

    def send(self, batch: AlertBatch) -> Delivery: ...


class AnnouncingStore(PositionStore, Protocol):
    """A position store that also keeps the heal-announcement outbox (the ``alert_pending``
    flag written with each heal)."""

    def get_unannounced_heals(self) -> list[dict[str, Any]]:
        """The outbox: healed documents whose announcement has not been delivered yet."""
        ...

    def get_closed_positions(self, since: datetime) -> tuple[ClosedPosition, ...]: ...

    def mark_announced(self, position_ids: Sequence[str]) -> None: ...


class AlertStore(Protocol):
    round_trips: int
    reads: int
    writes: int

    def load(self) -> dict[str, AlertState]: ...

    def save(self, states: Iterable[AlertState], *, announced: Sequence[str] = ()) -> None:
        """Write ``states``; with ``announced``, also mark those heals' announcements
        delivered (their outbox flags cleared), in the same write."""
        ...


class Lease(Protocol):
    round_trips: int
    reads: int
    writes: int

    def acquire(self, run_id: str, now: datetime) -> LeaseGrant: ...

    def release(self, grant: LeaseGrant) -> None: ...


class RunRecorder(Protocol):
    round_trips: int
    reads: int
    writes: int

    def record(
        self,
        run_id: str,
        report: Mapping[str, Any],
        now: datetime,
        *,
        release: LeaseGrant | None = None,
    ) -> bool:
        """Store the run's report; with ``release``, release that lease in the same atomic
        write (one round trip for the run's last step). True when the lease was released."""
        ...


class LedgerReader(Protocol):
    """The ledger of broker fills: what heals and operator closes posted to each order."""

    round_trips: int
    reads: int
    writes: int

    def postings_for(self, order_ids: Sequence[str]) -> tuple[Posting, ...]: ...


class Breaker(Protocol):
    round_trips: int
    reads: int
    writes: int

    def load(self) -> BreakerState: ...

    def trip(
        self, *, run_id: str, heals_due: int, limit: int, reason: str, now: datetime
    ) -> None: ...

    def reset(self, *, by: str, reason: str, now: datetime) -> None: ...
