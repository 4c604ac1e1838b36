"""Where the time goes: wall time spent inside the reconciler's collaborators, per phase.

:class:`PhaseTimer` wraps the entry points named in :data:`PHASES` while it is active and adds
up the time spent in each. A name that no longer resolves is an error (:class:`PhaseMissing`),
and so is a phase the warm-up run never entered (:meth:`PhaseTimer.require_called`): either
would otherwise leave a row of zeros in the phase table, which reads as "costs nothing".
"""

from __future__ import annotations

import functools
import importlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

PACKAGE = "crypto_signals"


class Phase(NamedTuple):
    label: str
    # "module:Class.method" or "module:function", the module relative to crypto_signals.
    where: str


# In the order of a run (engine/reconciler.py): lease; the four reads of step 2 at once (the
# open book, the broker, the breaker, the outbox earlier runs left); the book classified once;
# the evidence query; the closed positions, the evidence listing and the look-ups at once, then
# the ledger; the plan; the heals, then the alert states loaded and saved; Discord; then
# the notices and the heals' flags cleared in one write; the run log, which releases the lease
# in the same write. The
# breaker's writes (trip, reset) are not timed: a forced run on a fresh world never trips it,
# and there is nothing tripped to reset.
#
# The planning functions are wrapped where the reconciler looks them up (its module namespace,
# bound by ``from crypto_signals.engine.plan import ...``): wrapping them in
# engine/plan/planner.py or engine/plan/query.py would not be seen by the reconciler.
PHASES: tuple[Phase, ...] = (
    Phase("Firestore: lease acquire", "repository.reconciler_state:RunLease.acquire"),
    Phase(
        "Firestore: open positions ∥", "repository.firestore:PositionRepository.get_open_positions"
    ),
    Phase("broker: account, positions, open orders ∥", "broker.alpaca:AlpacaBroker.fetch_state"),
    Phase("Firestore: breaker state ∥", "repository.reconciler_state:BreakerStore.load"),
    Phase(
        "Firestore: earlier runs' outbox ∥",
        "repository.firestore:PositionRepository.get_unannounced_heals",
    ),
    Phase("plan: classify()", "engine.reconciler:classify"),
    Phase("plan: evidence_query()", "engine.reconciler:evidence_query"),
    Phase(
        "Firestore: closed positions ∥",
        "repository.firestore:PositionRepository.get_closed_positions",
    ),
    Phase("broker: closed orders (evidence) ∥", "broker.alpaca:AlpacaBroker.fetch_closed_orders"),
    Phase("Firestore: ledger postings (one get)", "repository.ledger:LedgerStore.postings_for"),
    Phase("plan: plan_reconciliation()", "engine.reconciler:plan_reconciliation"),
    Phase("Firestore: write heals", "repository.firestore:PositionRepository.apply_heals"),
    Phase("Firestore: alert states load", "repository.reconciler_state:AlertStateStore.load"),
    Phase(
        "Firestore: alert states save (x2; after delivery, with the heals' flags)",
        "repository.reconciler_state:AlertStateStore.save",
    ),
    Phase("Discord: send", "notifications.discord:DiscordWebhookClient.send"),
    Phase(
        "Firestore: run log and lease release (one write)",
        "repository.reconciler_state:RunLog.record",
    ),
)
OTHER_PHASE = "other (report, logging, alert decisions, rendering)"
WALL = "wall time of the run"


class PhaseMissing(LookupError):
    """A timed name does not resolve to callable code: the code it named has moved."""

    def __init__(self, phase: Phase, detail: str) -> None:
        super().__init__(
            f"phase {phase.label!r}: {PACKAGE}.{phase.where} {detail}; "
            "update PHASES in benchmarks/reconcile/phases.py to the current code"
        )
        self.phase = phase


def resolve(phase: Phase) -> tuple[Any, str, Callable[..., Any]]:
    """(owner, attribute, current value) of a phase's target, or :class:`PhaseMissing`."""
    module_name, sep, qualname = phase.where.partition(":")
    if not sep or not module_name or not qualname:
        raise PhaseMissing(phase, "is not of the form 'module:qualname'")
    try:
        owner: Any = importlib.import_module(f"{PACKAGE}.{module_name}")
    except ImportError as exc:
        raise PhaseMissing(phase, f"cannot be imported ({exc})") from None
    *path, attr = qualname.split(".")
    for depth, name in enumerate(path):
        if not hasattr(owner, name):
            where = ".".join([module_name, *path[:depth]])
            raise PhaseMissing(phase, f"does not exist: {where} has no {name!r}")
        owner = getattr(owner, name)
    if not hasattr(owner, attr):
        where = ".".join([module_name, *path])
        raise PhaseMissing(phase, f"does not exist: {where} has no {attr!r}")
    target = getattr(owner, attr)
    if not callable(target):
        raise PhaseMissing(phase, f"is not callable (it is a {type(target).__name__})")
    return owner, attr, target


class PhaseTimer:
    """Wraps the collaborators' entry points while active and adds up the time spent in each."""

    def __init__(self, phases: Sequence[Phase] = PHASES) -> None:
        self.phases = tuple(phases)
        self.totals: dict[str, float] = {}
        self.intervals: list[tuple[float, float]] = []
        self.called: set[str] = set()
        self._lock = threading.Lock()
        self._undo: list[Callable[[], None]] = []

    def __enter__(self) -> PhaseTimer:
        # Resolve every name before wrapping any: a missing one leaves nothing wrapped.
        targets = [(phase, *resolve(phase)) for phase in self.phases]
        for phase, owner, attr, original in targets:
            setattr(owner, attr, self._wrap(phase.label, original))
            self._undo.append(functools.partial(setattr, owner, attr, original))
        return self

    def __exit__(self, *exc: object) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def _wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                ended = time.perf_counter()
                with self._lock:
                    self.totals[label] = self.totals.get(label, 0.0) + ended - started
                    self.intervals.append((started, ended))
                    self.called.add(label)

        return timed

    def require_called(self, what: str) -> None:
        """Raise if a phase was not entered since the last :meth:`take` (``what`` ran)."""
        missing = [p for p in self.phases if p.label not in self.called]
        if missing:
            names = "; ".join(f"{p.label!r} ({PACKAGE}.{p.where})" for p in missing)
            raise RuntimeError(
                f"{what} never called {names}: the code exists but is no longer on the run's "
                "path; update PHASES in benchmarks/reconcile/phases.py to the current code"
            )

    def take(self, total: float) -> dict[str, float]:
        """Time per phase, plus 'other': the wall time during which no phase ran.

        Phases marked ∥ run at the same time as another, so the phases add up to more than
        the wall time; 'other' is computed from the union of the intervals, not the sum.
        """
        with self._lock:
            out = dict(self.totals)
            out[OTHER_PHASE] = max(0.0, total - union_length(self.intervals))
            out[WALL] = total
            self.totals = {}
            self.intervals = []
            self.called = set()
        return out


def union_length(intervals: Sequence[tuple[float, float]]) -> float:
    """The length of the union of ``(start, stop)`` intervals: shared time counted once."""
    covered = 0.0
    end = -math.inf
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        covered += stop - max(start, end)
        end = stop
    return covered
