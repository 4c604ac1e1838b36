"""What the reconciler tells people, in its own types: alert sections in, a delivery out.

The shell builds :class:`AlertBatch` objects and hands them to the notifier port; the notifier
(Discord today) renders them within its own limits and says which items reached people. Every
line carries the key of what it announces (a finding id, or ``heal:<position id>``), so when a
channel accepts the first message of a run and refuses the second, only what was refused is
owed to the next run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    """How bad a section is (a notifier may colour by it)."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class AlertSection:
    """A titled group of findings; one line per finding.

    ``keys``, when given, is parallel to ``lines``: the item each line announces.
    """

    title: str
    severity: Severity
    lines: tuple[str, ...]
    keys: tuple[str, ...] = ()

    def key_of(self, index: int) -> str | None:
        return self.keys[index] if index < len(self.keys) else None


@dataclass(frozen=True)
class AlertBatch:
    sections: tuple[AlertSection, ...]
    header: str
    footer: str = ""

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(k for s in self.sections for k in s.keys)


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"  # some or all of it did not reach anyone
    NOT_CONFIGURED = "not_configured"  # no channel: the lines were logged instead


@dataclass(frozen=True)
class Delivery:
    outcome: DeliveryOutcome
    messages_sent: int = 0
    # The keys of the lines people received (all of them when DELIVERED).
    delivered: frozenset[str] = field(default_factory=frozenset)
    error: str | None = None  # never contains a secret


@dataclass(frozen=True)
class Endpoints:
    """Where the run reads from, in words a person can check (never a secret): named when a
    run fails, so the message says what to look at."""

    broker: str = "the Alpaca API"
    firestore: str = "Firestore"
