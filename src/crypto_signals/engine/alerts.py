"""Alert deduplication, pure: current findings + stored alert states + now -> what to say.

A finding (an orphan on a symbol, an unverified zombie, drift on a symbol, a refused heal) is
announced once; again only when it changes (its fingerprint: quantity, side, reason) or when
the re-alert interval has passed; and a short "resolved" notice goes out when it disappears.
A finding a person acknowledged (``crypto-signals ack``) gets no reminder until it changes,
is resolved, or the acknowledgement expires; a change clears the acknowledgement.

Delivery is at-least-once through an outbox: the shell first writes the states returned here,
each carrying the notice it still owes (``pending``); it clears ``pending`` only after Discord
accepted the message. A failed or crashed delivery is therefore retried by the next run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum


class FindingKind(StrEnum):
    ORPHAN = "orphan"
    UNVERIFIED_ZOMBIE = "unverified_zombie"
    DRIFT = "drift"
    REFUSED_HEAL = "refused_heal"
    BREAKER = "breaker"
    UNREADABLE_BROKER_ITEM = "unreadable_broker_item"
    LISTING_INCONSISTENT = "listing_inconsistent"
    OVERALLOCATED_FILL = "overallocated_fill"
    RUN_FAILED = "run_failed"
    MALFORMED_DOCUMENT = "malformed_document"


# Version 2: fingerprints are quantities, sides and reason enums (never words). A state stored
# with an older version is adopted silently once, so the upgrade re-announces nothing.
IDENTITY_VERSION = 2


class Notice(StrEnum):
    NEW = "new"
    CHANGED = "changed"
    REMINDER = "reminder"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    key: str  # symbol key or position id
    fingerprint: str  # what makes it "the same" finding: quantity, side, reason
    line: str  # what a person reads
    subject: str = ""  # what it is about, as people write it (BTC/USD, a position id)

    @property
    def finding_id(self) -> str:
        return f"{self.kind.value}:{self.key}".replace("/", "_")


@dataclass(frozen=True)
class AlertState:
    finding_id: str
    kind: FindingKind
    key: str
    fingerprint: str
    line: str
    active: bool
    first_seen_at: datetime
    last_alerted_at: datetime | None = None
    pending: Notice | None = None
    identity_version: int = IDENTITY_VERSION
    subject: str = ""
    acknowledgement: Acknowledgement | None = None

    def acknowledged(self, now: datetime) -> bool:
        ack = self.acknowledgement
        return ack is not None and (ack.until is None or now < ack.until)


@dataclass(frozen=True)
class Acknowledgement:
    """A person said they know: no reminder until the finding changes, is resolved, or
    ``until`` passes (``None``: until it changes or is resolved)."""

    by: str
    reason: str
    at: datetime
    until: datetime | None = None


@dataclass(frozen=True)
class OwedNotice:
    finding_id: str
    kind: FindingKind
    notice: Notice
    line: str


@dataclass(frozen=True)
class AlertDecision:
    # States to write before sending (only those that changed): the outbox.
    writes: tuple[AlertState, ...]
    # Everything owed now, including notices a previous run failed to deliver.
    owed: tuple[OwedNotice, ...]


def decide_alerts(
    findings: Iterable[Finding],
    states: Mapping[str, AlertState],
    now: datetime,
    realert_after: timedelta,
) -> AlertDecision:
    current = {f.finding_id: f for f in findings}
    writes: list[AlertState] = []
    result: dict[str, AlertState] = dict(states)

    for fid, finding in sorted(current.items()):
        state = states.get(fid)
        notice: Notice | None
        if state is None or not state.active:
            notice = Notice.NEW
        elif state.identity_version < IDENTITY_VERSION:
            # Same finding, identity written by an older release: adopt it, say nothing new.
            adopted = replace(
                state,
                fingerprint=finding.fingerprint,
                line=finding.line,
                identity_version=IDENTITY_VERSION,
                subject=finding.subject or state.subject,
            )
            writes.append(adopted)
            result[fid] = adopted
            continue
        elif state.fingerprint != finding.fingerprint:
            # Changed before its NEW went out: it is still news, not a change to news.
            notice = Notice.NEW if state.pending is Notice.NEW else Notice.CHANGED
        elif state.pending is not None and state.pending is not Notice.RESOLVED:
            notice = state.pending  # still owed from an earlier run
        elif state.acknowledged(now):
            notice = None  # a person knows and said so
        elif state.last_alerted_at is None or now - state.last_alerted_at >= realert_after:
            notice = Notice.REMINDER
        else:
            notice = None
        if notice is None:
            continue  # already announced and not due: no write, no message
        changed = state is not None and state.fingerprint != finding.fingerprint
        updated = AlertState(
            finding_id=fid,
            kind=finding.kind,
            key=finding.key,
            fingerprint=finding.fingerprint,
            line=finding.line,
            active=True,
            first_seen_at=state.first_seen_at if state and state.active else now,
            last_alerted_at=state.last_alerted_at if state else None,
            pending=notice,
            subject=finding.subject or (state.subject if state else ""),
            # A change is news again: the acknowledgement was for what it was before.
            acknowledgement=None
            if changed or state is None or not state.active
            else state.acknowledgement,
        )
        writes.append(updated)
        result[fid] = updated

    for fid, state in sorted(states.items()):
        if fid in current:
            continue
        if state.active:
            # Its NEW notice never went out (this episode): nobody knows of it, so no
            # "resolved" either. A pending CHANGED means the NEW was delivered: resolve it.
            owed_new = state.pending is Notice.NEW
            resolved = replace(
                state,
                active=False,
                pending=None if owed_new else Notice.RESOLVED,
                acknowledgement=None,
            )
            writes.append(resolved)
            result[fid] = resolved

    owed = tuple(
        OwedNotice(s.finding_id, s.kind, s.pending, s.line)
        for _, s in sorted(result.items())
        if s.pending is not None
    )
    return AlertDecision(writes=tuple(writes), owed=owed)


def delivered(state: AlertState, now: datetime) -> AlertState:
    """The state after its owed notice reached Discord."""
    return replace(state, pending=None, last_alerted_at=now)
