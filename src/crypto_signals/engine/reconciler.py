"""The shell: lease -> fetch -> plan -> apply -> notify -> record, returning the report.

Everything that decides lives in :mod:`crypto_signals.engine.plan` and
:mod:`crypto_signals.engine.alerts`; this module only moves data between the ports and those
pure functions, in an order chosen so that a crash at any point leaves a state the next run
finishes from:

1. the lease is taken (a concurrent run returns ``skipped``);
2. Firestore and the broker are read completely, or the run fails and changes nothing;
3. heals are written, each with its announcement flag in the same document write;
4. alert states are written with the notices they owe (the outbox), then Discord is called;
5. only after Discord accepted the message are the flags and notices cleared (one write);
6. the run's report is stored and the lease released, in one atomic write.

Within a step, calls that do not depend on each other run at the same time (:func:`_both`):
the reads of step 2 (the open book, the broker, the breaker, the outbox earlier runs left),
the closed positions, the closed-order listing and the look-ups of old candidates. A run
therefore waits about one round trip per step, not one per call, which is what latency to
Alpaca and Firestore makes expensive. What runs at the same time affects the report (errors,
their order) only afterwards, in the calling thread, in the order of the steps above.

``reconcile`` never raises for a broker, Firestore or Discord failure: the report says so.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from crypto_signals.concurrency import all_of
from crypto_signals.domain.schemas import (
    DriftEntry,
    FillShare,
    HealedPosition,
    ReconciliationReport,
    RunStats,
    RunStatus,
    decimal_text,
)
from crypto_signals.domain.snapshots import (
    BreakerState,
    BrokerState,
    ClosedOrders,
    EvidenceQuery,
    ExpectedEntry,
    Issue,
    IssueKind,
    Ledger,
    StoreState,
    SymbolForm,
)
from crypto_signals.engine import findings as words
from crypto_signals.engine.alerts import (
    AlertDecision,
    AlertState,
    Finding,
    FindingKind,
    decide_alerts,
)
from crypto_signals.engine.alerts import delivered as delivered_state
from crypto_signals.engine.messages import AlertBatch, DeliveryOutcome, Endpoints
from crypto_signals.engine.plan import (
    Allocation,
    Book,
    Heal,
    Plan,
    classify,
    evidence_query,
    plan_reconciliation,
)
from crypto_signals.engine.policy import Policy
from crypto_signals.engine.ports import (
    AlertStore,
    AnnouncingStore,
    Breaker,
    Broker,
    BrokerDeadline,
    BrokerUnavailable,
    HealOutcome,
    HealResult,
    Lease,
    LeaseGrant,
    LedgerReader,
    Notifier,
    RunRecorder,
    StoreUnavailable,
)
from crypto_signals.logging_setup import run_context

log = logging.getLogger(__name__)

A = TypeVar("A")
B = TypeVar("B")
T = TypeVar("T")


def _both(first: Callable[[], A], second: Callable[[], B], *, name: str) -> tuple[A, B]:
    """Run two independent calls at the same time: a run waits one round trip, not two.

    Both always finish before this returns (each call has its own timeouts), so nothing is
    left running behind the run; then the first call's failure, if any, is raised, else the
    second's.
    """
    results: list[object] = all_of([first, second], name=name)
    return cast(A, results[0]), cast(B, results[1])


# The unannounced heals (PositionRepository.get_unannounced_heals).
_Outbox = list[dict[str, Any]]


def _attempt(call: Callable[[], T]) -> T | StoreUnavailable:
    """``call()``, or the Firestore failure it raised: for a call whose failure is recorded
    later (in the calling thread, in the order of the run's steps) rather than where it ran."""
    try:
        return call()
    except StoreUnavailable as exc:
        return exc


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Run:
    """What one run accumulates on its way to the report."""

    run_id: str
    started: datetime
    dry_run: bool
    errors: list[Issue] = field(default_factory=list)
    critical: list[str] = field(default_factory=list)
    healed: list[HealedPosition] = field(default_factory=list)
    notifications_sent: int = 0
    baseline: tuple[int, int, int, int] = (0, 0, 0, 0)
    t0: float = 0.0
    # time.monotonic() past which the run must not wait (its lease may be taken over).
    deadline: float | None = None
    skip_reason: str | None = None
    # The lease this run holds; released with the run's record when that is written.
    grant: LeaseGrant | None = None
    lease_released: bool = False


class RunDeadlineExceeded(StoreUnavailable):
    """The run took so long that its lease may have expired: it stops writing."""


class StateReconciler:
    """One reconciliation per call to :meth:`reconcile`; safe to call repeatedly."""

    def __init__(
        self,
        *,
        broker: Broker,
        store: AnnouncingStore,
        notifier: Notifier,
        alert_store: AlertStore | None = None,
        lease: Lease | None = None,
        run_log: RunRecorder | None = None,
        ledger: LedgerReader | None = None,
        breaker: Breaker | None = None,
        policy: Policy | None = None,
        environment: str = "DEV",
        enabled: bool = True,
        realert_after: timedelta = timedelta(hours=24),
        max_run_seconds: float | None = None,
        clock: Callable[[], datetime] | None = None,
        endpoints: Endpoints | None = None,
    ) -> None:
        self._broker = broker
        self._store = store
        self._notifier = notifier
        self._alerts = alert_store
        self._lease = lease
        self._run_log = run_log
        self._ledger = ledger
        self._breaker = breaker
        self._policy = policy or Policy()
        self._environment = environment
        self._enabled = enabled
        self._realert_after = realert_after
        # Past this, another run may hold a fresh lease: stop before writing anything more.
        self._max_run_seconds = max_run_seconds
        self._clock = clock or _utcnow
        self._endpoints = endpoints or Endpoints()

    # -- the run ------------------------------------------------------------------------------

    def reconcile(self, *, dry_run: bool = False, force: bool = False) -> ReconciliationReport:
        run = _Run(run_id=uuid.uuid4().hex, started=self._clock(), dry_run=dry_run)
        # Adapters count for their lifetime (a warm Cloud Function reuses them): report deltas.
        run.baseline = self._counts()
        t0 = run.t0 = time.monotonic()
        if self._max_run_seconds is not None:
            run.deadline = t0 + self._max_run_seconds
        with run_context(run.run_id):
            if not self._enabled:
                run.skip_reason = (
                    f"the reconciler is disabled in {self._environment} (it runs in PROD, or "
                    "with RECONCILER_ENABLED=true)"
                )
                log.info(run.skip_reason, extra={"event": "run_skipped"})
                return self._finish(run, t0, RunStatus.SKIPPED, None, record=False)
            grant = LeaseGrant(acquired=True)
            if not dry_run and self._lease is not None:
                try:
                    grant = self._lease.acquire(run.run_id, run.started)
                except StoreUnavailable as exc:
                    run.errors.append(Issue(IssueKind.LEASE_FAILED, "", str(exc)))
                    hint = words.failure_hint(IssueKind.LEASE_FAILED, self._endpoints)
                    run.critical.append(
                        f"reconciliation failed, nothing was changed: {exc}; {hint}"
                    )
                    return self._finish(run, t0, RunStatus.FAILED, None, record=False)
                if not grant.acquired:
                    until = (
                        grant.expires_at.isoformat(timespec="seconds") if grant.expires_at else "?"
                    )
                    run.skip_reason = (
                        f"another run holds the lease ({grant.holder}, until {until}): it is "
                        "reconciling now, so this run changed nothing"
                    )
                    log.info(run.skip_reason, extra={"event": "run_skipped"})
                    return self._finish(run, t0, RunStatus.SKIPPED, None, record=False)
            run.grant = grant if grant.token is not None else None
            try:
                plan = self._reconcile_locked(run, force)
                status = self._status(run, plan)
                return self._finish(run, t0, status, plan, record=not dry_run)
            except (BrokerUnavailable, StoreUnavailable) as exc:
                if isinstance(exc, RunDeadlineExceeded | BrokerDeadline):
                    kind = IssueKind.RUN_DEADLINE
                elif isinstance(exc, BrokerUnavailable):
                    kind = IssueKind.BROKER_UNAVAILABLE
                else:
                    kind = IssueKind.STORE_UNAVAILABLE
                self._fail(run, kind, str(exc))
                return self._finish(run, t0, RunStatus.FAILED, None, record=not dry_run)
            except Exception as exc:
                log.exception("unexpected error in reconciliation")
                self._fail(run, IssueKind.INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
                return self._finish(run, t0, RunStatus.FAILED, None, record=not dry_run)
            finally:
                if grant.token is not None and self._lease is not None and not run.lease_released:
                    self._lease.release(grant)

    def _fail(self, run: _Run, kind: IssueKind, detail: str) -> None:
        run.errors.append(Issue(kind, "", detail))
        written = (
            f" ({len(run.healed)} heal(s) were written before it)"
            if run.healed
            else (", nothing was changed")
        )
        hint = words.failure_hint(kind, self._endpoints)
        run.critical.append(f"reconciliation failed{written}: {detail}; {hint}")
        self._alert_failure(run, kind, detail)

    def _check_deadline(self, run: _Run, before: str) -> None:
        if self._max_run_seconds is None:
            return
        elapsed = time.monotonic() - run.t0
        if elapsed > self._max_run_seconds:
            raise RunDeadlineExceeded(
                f"run took {elapsed:.0f}s (limit {self._max_run_seconds:.0f}s, below the lease): "
                f"stopped before {before}"
            )

    def _reconcile_locked(self, run: _Run, force: bool) -> Plan:
        deadline = run.deadline
        breaker = self._breaker
        # Firestore, the broker and the breaker are read at the same time; all must succeed.
        # So is the outbox of earlier runs (heals whose announcement was not delivered): only
        # this run writes heals until it releases the lease, so what it owes after its heals
        # is that plus its own, and the run need not read back what it has just written. Its
        # failure is recorded where the outbox is used, as before (the heals still go ahead).
        store_state, (broker_state, (breaker_state, earlier_outbox)) = _both(
            self._store.get_open_positions,
            lambda: _both(
                lambda: self._broker.fetch_state(deadline=deadline),
                lambda: _both(
                    breaker.load if breaker else BreakerState,
                    lambda: _attempt(self._store.get_unannounced_heals),
                    name="reconcile-outbox",
                ),
                name="reconcile-breaker",
            ),
            name="reconcile-read",
        )
        # Classified once, for the evidence query and the plan.
        book = classify(store_state, broker_state, self._policy, run.started)
        closed, ledger = self._gather_evidence(run, store_state, broker_state, book)
        if not closed.complete:
            run.errors.append(
                Issue(
                    IssueKind.INCOMPLETE_EVIDENCE,
                    "",
                    "closed-order history was cut short; "
                    "positions without evidence in it stay OPEN",
                )
            )
        run.errors.extend(store_state.malformed)
        run.errors.extend(
            Issue(
                IssueKind.MALFORMED_BROKER_DATA,
                item.item_id or item.symbol or "",
                f"{item.endpoint}: {item.detail}",
            )
            for item in (*broker_state.unreadable, *closed.unreadable)
        )
        plan = plan_reconciliation(
            store_state,
            broker_state,
            closed,
            self._policy,
            run.started,
            ledger=ledger,
            breaker=breaker_state,
            force=force,
            book=book,
        )
        run.critical.extend(words.critical_issues_of(plan))
        self._log_findings(plan)

        if run.dry_run:
            run.healed = [_healed(h) for h in plan.heals]
            return plan

        self._check_deadline(run, "healing")
        self._record_breaker(run, plan)
        malformed = [
            Finding(
                FindingKind.MALFORMED_DOCUMENT,
                i.key,
                i.detail,
                words.malformed_line(i.key, i.detail),
            )
            for i in store_state.malformed
        ]

        # Step 3, the heals; then the alert states are read and written with the notices they
        # owe (read and written back to back: a person's acknowledgement written in between
        # would be overwritten). Discord waits for both. Writing the two at the same time was
        # measured twice and gained nothing (two commits at once on the emulator, and two
        # encodings under one interpreter lock: docs/performance.md, item 2).
        results = self._write_heals(run, plan)
        owed = _attempt(lambda: self._owe(run, plan, malformed, None, self._load_states()))
        outbox = _outbox_after(earlier_outbox, results)
        self._record_heals(run, plan, results)
        self._check_deadline(run, "notifying")
        if isinstance(outbox, StoreUnavailable) or isinstance(owed, StoreUnavailable):
            # As when they ran one after the other: the outbox's failure is named first.
            failure = outbox if isinstance(outbox, StoreUnavailable) else owed
            run.errors.append(Issue(IssueKind.ALERT_STATE_FAILED, "", str(failure)))
            return plan
        self._deliver(run, outbox, *owed)
        return plan

    def _gather_evidence(
        self, run: _Run, store_state: StoreState, broker_state: BrokerState, book: Book
    ) -> tuple[ClosedOrders, Ledger]:
        """The closed orders the plan needs and what earlier heals took from their fills.

        Three independent reads at once: the positions closed since the listing's start, the
        self-checked listing, and the targeted look-ups of old candidates' orders; then the
        ledger's postings for the fills found, in one batched get.
        """
        query = evidence_query(store_state, broker_state, self._policy, run.started, book=book)
        if query is None:
            return ClosedOrders(()), Ledger()
        deadline = run.deadline
        closed_positions, (listed, looked) = _both(
            lambda: self._store.get_closed_positions(query.after),
            lambda: _both(
                lambda: self._checked_listing(query, deadline),
                lambda: self._look_up(query, deadline),
                name="reconcile-lookups",
            ),
            name="reconcile-evidence",
        )
        orders = {o.id: o for o in (*listed.orders, *looked.orders)}
        closed = replace(
            listed,
            orders=tuple(orders.values()),
            unreadable=(*listed.unreadable, *looked.unreadable),
            looked_up=frozenset(query.lookup_positions),
        )
        fills = [o.id for o in closed.orders if o.is_fill]
        postings = self._ledger.postings_for(fills) if self._ledger and fills else ()
        return closed, Ledger(postings, closed_positions)

    def _checked_listing(self, query: EvidenceQuery, deadline: float | None) -> ClosedOrders:
        """The closed-orders listing, checked against the entry orders it must contain.

        A missing entry is first looked up by id and client order id (a few at most): one the
        broker does not know at all is the document's mistake, and only that position is
        unverified. One the broker does know means the listing missed it: the listing is asked
        again with the symbols as ``BTCUSD``, then with no symbol filter (the live filter might
        match one form only, and a listing that silently lacks orders would leave every crypto
        zombie unverified with nobody told why). Still missing after that: ``missing`` says so,
        and no heal rests on the listing.
        """
        if not query.symbols:
            return ClosedOrders(())
        listing = self._broker.fetch_closed_orders(query, deadline=deadline, symbol_form="slash")
        missing = _missing_entries(query.expected, listing)
        unknown: list[ExpectedEntry] = []
        if missing:
            missing, unknown = self._known_to_broker(missing, deadline)
        forms: tuple[SymbolForm, ...] = ("compact", "none")
        for form in forms:
            if not missing:
                break
            log.warning(
                "closed-order listing lacks %d entry order(s) the broker has, e.g. of %s: "
                "listing again (symbols %s)",
                len(missing),
                missing[0].position_id,
                form,
                extra={"event": "listing_inconsistent", "symbol_form": form},
            )
            listing = self._broker.fetch_closed_orders(query, deadline=deadline, symbol_form=form)
            missing = _missing_entries(tuple(missing), listing)
        return replace(
            listing,
            missing=tuple(missing),
            unknown_entries=tuple(unknown),
            listed_after=query.after,
        )

    def _known_to_broker(
        self, missing: list[ExpectedEntry], deadline: float | None
    ) -> tuple[list[ExpectedEntry], list[ExpectedEntry]]:
        """Split missing entries into those the broker has (by id or client order id) and
        those it does not know. Beyond a few, all count as known: a listing missing many is
        the listing's fault, and the look-ups must stay a small, bounded number of calls."""
        checked, rest = missing[:_MAX_ENTRY_LOOKUPS], missing[_MAX_ENTRY_LOOKUPS:]
        ids = sorted({i for e in checked for i in e.order_ids})
        found = self._broker.fetch_orders(ids, [e.position_id for e in checked], deadline=deadline)
        known_ids = {o.id for o in found.orders}
        known_clients = {o.client_order_id for o in found.orders if o.client_order_id}
        known = [e for e in checked if e.order_ids & known_ids or e.position_id in known_clients]
        unknown = [e for e in checked if e not in known]
        for entry in unknown:
            log.warning(
                "position %s names an entry order the broker does not know: unverified",
                entry.position_id,
                extra={"event": "entry_order_unknown", "position_id": entry.position_id},
            )
        return [*known, *rest], unknown

    def _look_up(self, query: EvidenceQuery, deadline: float | None) -> ClosedOrders:
        if not query.lookup_positions:
            return ClosedOrders(())
        return self._broker.fetch_orders(
            query.lookup_order_ids, query.lookup_positions, deadline=deadline
        )

    def _record_breaker(self, run: _Run, plan: Plan) -> None:
        """Trip before anything else is written; a forced run resets it before its heals."""
        if self._breaker is None:
            return
        if plan.trip is not None:
            self._breaker.trip(
                run_id=run.run_id,
                heals_due=plan.trip.heals_due,
                limit=plan.trip.limit,
                reason=words.breaker_line(plan.halted) if plan.halted else "heal limit",
                now=run.started,
            )
            log.error(
                "breaker tripped: %d heals due, limit %d: heals halted",
                plan.trip.heals_due,
                plan.trip.limit,
                extra={"event": "breaker_tripped"},
            )
        elif plan.resets_breaker:
            self._breaker.reset(
                by=f"reconcile --force (run {run.run_id})",
                reason="a forced run applied its heals",
                now=run.started,
            )
            log.warning("breaker reset by a forced run", extra={"event": "breaker_reset"})

    def _write_heals(self, run: _Run, plan: Plan) -> list[HealResult]:
        if not plan.heals:
            return []
        return self._store.apply_heals(plan.heals, run_id=run.run_id, now=run.started)

    def _record_heals(self, run: _Run, plan: Plan, results: list[HealResult]) -> None:
        by_id = {h.position_id: h for h in plan.heals}
        for result in results:
            heal = by_id[result.position_id]
            if result.outcome is HealOutcome.APPLIED:
                run.healed.append(_healed(heal))
                log.info(
                    "healed %s %s as CLOSED_EXTERNALLY (%s)",
                    heal.symbol,
                    heal.position_id,
                    heal.evidence.value,
                    extra={
                        "event": "position_healed",
                        "symbol": heal.symbol,
                        "position_id": heal.position_id,
                        "evidence": heal.evidence.value,
                    },
                )
            elif result.outcome is HealOutcome.CONFLICT:
                # Someone else (another run, the signal job) changed it first: their word stands.
                log.info("skipped heal of %s: %s", heal.position_id, result.detail)
                run.errors.append(Issue(IssueKind.HEAL_CONFLICT, heal.position_id, result.detail))
            else:
                run.errors.append(
                    Issue(IssueKind.HEAL_WRITE_FAILED, heal.position_id, result.detail)
                )
                run.critical.append(
                    f"heal of {heal.symbol} position {heal.position_id} could not be written: "
                    f"{result.detail}"
                )

    def _notify(
        self,
        run: _Run,
        plan: Plan,
        extra: list[Finding] | None = None,
        only: frozenset[FindingKind] | None = None,
    ) -> None:
        """Announce what is new, through the outbox, and clear it only after delivery.

        The failure path's notification (a completed run does the same in step 3 and
        :meth:`_deliver`). ``only`` limits the decision to some kinds of finding: a failed run
        knows nothing about orphans or drift, so it must neither announce nor "resolve" them.
        """
        try:
            heals, states = _both(
                self._store.get_unannounced_heals, self._load_states, name="reconcile-outbox"
            )
            owed = self._owe(run, plan, extra, only, states)
        except StoreUnavailable as exc:
            run.errors.append(Issue(IssueKind.ALERT_STATE_FAILED, "", str(exc)))
            return
        self._deliver(run, heals, *owed)

    def _load_states(self) -> dict[str, AlertState]:
        return self._alerts.load() if self._alerts else {}

    def _owe(
        self,
        run: _Run,
        plan: Plan,
        extra: list[Finding] | None,
        only: frozenset[FindingKind] | None,
        states: dict[str, AlertState],
    ) -> tuple[dict[str, AlertState], AlertDecision]:
        """Decide what to say and write the alert states with the notices they owe."""
        if only is not None:
            states = {k: v for k, v in states.items() if v.kind in only}
        decision = decide_alerts(
            words.findings_of(plan) + (extra or []), states, run.started, self._realert_after
        )
        if self._alerts and decision.writes:
            self._alerts.save(decision.writes)
        return states, decision

    def _deliver(
        self,
        run: _Run,
        heals: _Outbox,
        states: dict[str, AlertState],
        decision: AlertDecision,
    ) -> None:
        """Send what the outbox owes; clear what Discord accepted."""
        alerts = self._alerts
        sections = words.alert_sections(heals, decision.owed)
        if not sections:
            return
        batch = AlertBatch(
            tuple(sections),
            header=f"**crypto-signals reconciler** ({self._environment})",
            footer=f"run {run.run_id}",
        )
        result = self._notifier.send(batch)
        run.notifications_sent += result.messages_sent
        delivered = result.delivered
        if result.outcome is DeliveryOutcome.NOT_CONFIGURED:
            for section in sections:
                for line in section.lines:
                    log.warning("alert (DISCORD_WEBHOOK_URL unset): %s: %s", section.title, line)
            delivered = batch.keys  # logged is as far as it goes
        elif result.outcome is DeliveryOutcome.DELIVERED:
            delivered = batch.keys
        else:
            run.errors.append(
                Issue(
                    IssueKind.NOTIFICATION_FAILED,
                    "",
                    f"Discord delivery failed ({result.error}); what it did not accept stays "
                    "pending and the next run sends it",
                )
            )
        # Only what people received is cleared: a refused second message is owed, the
        # accepted first one is not sent again.
        announced = [
            str(h["position_id"])
            for h in heals
            if words.heal_key(str(h["position_id"])) in delivered
        ]
        current = {**states, **{s.finding_id: s for s in decision.writes}}
        owed_ids = sorted({n.finding_id for n in decision.owed if n.finding_id in delivered})
        notices = [delivered_state(current[fid], run.started) for fid in owed_ids]

        try:
            # What the delivery settled, heals and notices, in one write.
            if alerts is not None:
                if notices or announced:
                    alerts.save(notices, announced=announced)
            elif announced:
                self._store.mark_announced(announced)
        except StoreUnavailable as exc:
            # Delivered but not recorded: the next run repeats the message (at-least-once).
            run.errors.append(Issue(IssueKind.ALERT_STATE_FAILED, "", str(exc)))

    def _alert_failure(self, run: _Run, kind: IssueKind, detail: str) -> None:
        """Tell a person the run failed, once per failure kind (needs a readable Firestore)."""
        if run.dry_run or kind is IssueKind.STORE_UNAVAILABLE:
            return  # without Firestore there is no dedup: Cloud Monitoring alerts instead
        line = words.run_failed_line(detail, self._endpoints)
        finding = Finding(FindingKind.RUN_FAILED, kind.value, kind.value, line)
        try:
            self._notify(run, Plan(), extra=[finding], only=frozenset({FindingKind.RUN_FAILED}))
        except Exception:
            log.exception("could not alert the failure")

    # -- report -------------------------------------------------------------------------------

    def _status(self, run: _Run, plan: Plan) -> RunStatus:
        if run.critical or run.errors or plan.orphans or plan.unverified or plan.drift:
            return RunStatus.ISSUES
        return RunStatus.OK

    def _log_findings(self, plan: Plan) -> None:
        for o in plan.orphans:
            log.warning(
                "orphan: %s",
                words.orphan_line(o),
                extra={"event": "orphan_detected", "symbol": o.symbol},
            )
        for u in plan.unverified:
            log.warning(
                "unverified zombie: %s",
                words.unverified_line(u),
                extra={
                    "event": "unverified_zombie",
                    "symbol": u.symbol,
                    "position_id": u.position_id,
                },
            )
        for d in plan.drift:
            log.warning(
                "drift: %s", words.drift_line(d), extra={"event": "drift", "symbol": d.symbol}
            )

    def _finish(
        self, run: _Run, t0: float, status: RunStatus, plan: Plan | None, *, record: bool
    ) -> ReconciliationReport:
        report = ReconciliationReport(
            zombies=list(plan.zombie_symbols) if plan else [],
            orphans=[o.symbol for o in plan.orphans] if plan else [],
            reconciled_count=0 if run.dry_run else len(run.healed),
            timestamp=run.started,
            duration_seconds=0.0,
            critical_issues=run.critical,
            run_id=run.run_id,
            status=status,
            dry_run=run.dry_run,
            environment=self._environment,
            healed=run.healed,
            unverified_zombies=[u.position_id for u in plan.unverified] if plan else [],
            pending=[d.position_id for d in plan.deferred] if plan else [],
            drift=[
                DriftEntry(
                    symbol=d.symbol,
                    db_qty=float(d.db_qty),
                    broker_qty=float(d.broker_qty),
                    explained_by=words.drift_explanation(d),
                    kind=d.kind.value,
                    position_ids=list(d.position_ids),
                    fills=[_share(a) for _, a in d.allocations],
                )
                for d in plan.drift
            ]
            if plan
            else [],
            errors=[e.render() for e in run.errors],
            heals_halted=plan.halted is not None if plan else False,
            skip_reason=run.skip_reason,
            held=list(plan.held) if plan else [],
        )
        report.stats = self._stats(run, plan)
        report.duration_seconds = round(time.monotonic() - t0, 3)
        if record and self._run_log is not None:
            try:
                run.lease_released = self._run_log.record(
                    run.run_id, report.model_dump(mode="json"), run.started, release=run.grant
                )
            except StoreUnavailable as exc:
                report.errors.append(Issue(IssueKind.RUN_RECORD_FAILED, "", str(exc)).render())
        # Counted again so the returned report includes the run record's own write (the stored
        # record, written above, cannot count itself).
        report.stats = self._stats(run, plan)
        log.info(
            "reconciliation finished: %s (healed %d, orphans %d, unverified %d, drift %d)",
            status.value,
            report.reconciled_count,
            len(report.orphans),
            len(report.unverified_zombies),
            len(report.drift),
            extra={
                "event": "run_finished",
                "status": status.value,
                "dry_run": run.dry_run,
                "healed_count": report.reconciled_count,
                "orphan_count": len(report.orphans),
                "unverified_zombie_count": len(report.unverified_zombies),
                "drift_count": len(report.drift),
                "duration_seconds": report.duration_seconds,
            },
        )
        return report

    def _counts(self) -> tuple[int, int, int, int]:
        counters = self._store.counters()
        extras = [
            x
            for x in (self._alerts, self._lease, self._run_log, self._ledger, self._breaker)
            if x is not None
        ]
        return (
            self._broker.call_count,
            counters.reads + sum(x.reads for x in extras),
            counters.writes + sum(x.writes for x in extras),
            counters.round_trips + sum(x.round_trips for x in extras),
        )

    def _stats(self, run: _Run, plan: Plan | None) -> RunStats:
        now = self._counts()
        calls, reads, writes, trips = (a - b for a, b in zip(now, run.baseline, strict=True))
        return RunStats(
            broker_calls=calls,
            firestore_reads=reads,
            firestore_writes=writes,
            firestore_round_trips=trips,
            notifications_sent=run.notifications_sent,
            dust_positions=len(plan.dust) if plan else 0,
        )


def _outbox_after(
    earlier: _Outbox | StoreUnavailable, results: list[HealResult]
) -> _Outbox | StoreUnavailable:
    """The outbox once this run's heals are written: the earlier runs' undelivered heals and
    the rows of the heals just applied, in document-id order (as a read of it returns them)."""
    if isinstance(earlier, StoreUnavailable):
        return earlier
    rows = {str(row["position_id"]): row for row in earlier}
    for result in results:
        if result.outcome is HealOutcome.APPLIED and result.announcement is not None:
            rows[result.position_id] = {**result.announcement, "position_id": result.position_id}
    return [rows[pid] for pid in sorted(rows)]


# Missing entry orders looked up one by one before the listing is called inconsistent.
_MAX_ENTRY_LOOKUPS = 5


def _missing_entries(
    expected: tuple[ExpectedEntry, ...], listing: ClosedOrders
) -> list[ExpectedEntry]:
    ids = {o.id for o in listing.orders}
    clients = {o.client_order_id for o in listing.orders if o.client_order_id}
    return [e for e in expected if not (e.order_ids & ids) and e.position_id not in clients]


def _healed(heal: Heal) -> HealedPosition:
    return HealedPosition(
        position_id=heal.position_id,
        symbol=heal.symbol,
        exit_fill_price=float(heal.exit_fill_price) if heal.exit_fill_price is not None else None,
        exit_time=heal.exit_time,
        exit_order_id=heal.exit_order_id,
        realized_pnl_usd=float(heal.realized_pnl_usd),
        realized_pnl_pct=float(heal.realized_pnl_pct),
        evidence=heal.evidence.value,
        allocation=[_share(a) for a in heal.allocation],
    )


def _share(allocation: Allocation) -> FillShare:
    return FillShare(order_id=allocation.order_id, qty=decimal_text(allocation.qty))
