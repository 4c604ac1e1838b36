"""The operator commands (contract section 3): check, write with a precondition, audit.

Every command that changes something:

* takes the run lease for the few seconds it writes, so it never interleaves with a run that
  is deciding (a run in progress refuses the command: try again in a minute);
* reads the documents it changes and writes them with a precondition on what it read, so a
  concurrent write by the signal job (or a heal) makes it refuse instead of losing an update;
  an operator's close and a heal can therefore never both close one position;
* writes its audit record in the same atomic batch;
* with ``dry_run``, says what it would change and writes nothing, not even the lease.

Nothing here ever sends anything to the broker: the broker is only read (adopt, close).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from crypto_signals.domain.schemas import Position, TradeStatus, TradeType, decimal_text
from crypto_signals.domain.snapshots import BrokerPosition, PostingSource
from crypto_signals.domain.symbols import symbol_key
from crypto_signals.engine.alerts import Acknowledgement, AlertState, FindingKind
from crypto_signals.engine.plan import Allocation
from crypto_signals.engine.plan.book import is_dust, signed_qty
from crypto_signals.engine.policy import Policy
from crypto_signals.engine.ports import Broker, Lease, LedgerReader
from crypto_signals.operations.changes import (
    Refused,
    adopted_document,
    adopted_id,
    close_fields,
    parse_duration,
    undo_of,
)
from crypto_signals.repository import ledger
from crypto_signals.repository.firestore import HEAL_REPLACES, PositionRepository, parse_position
from crypto_signals.repository.operator_store import Change, OperatorStore, WriteConflict
from crypto_signals.repository.reconciler_state import AlertStateStore, BreakerStore

# The findings `crypto-signals findings` lists and `ack` acknowledges (contract section 3).
FINDING_KINDS = frozenset(
    {
        FindingKind.ORPHAN,
        FindingKind.UNVERIFIED_ZOMBIE,
        FindingKind.DRIFT,
        FindingKind.REFUSED_HEAL,
        FindingKind.BREAKER,
    }
)
_DELETE = "<deleted>"  # how a removed field reads in an audit record's "after"


@dataclass
class ActionResult:
    action: str
    target: str
    dry_run: bool
    message: str
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    audit_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "target": self.target,
            "dry_run": self.dry_run,
            "changed": not self.dry_run,
            "message": self.message,
            "before": _json(self.before),
            "after": _json(self.after),
            "audit_id": self.audit_id,
        }


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if value is not None and not isinstance(value, str | int | float | bool):
        return str(value)
    return value


class Operator:
    """One person's commands against one positions collection."""

    def __init__(
        self,
        *,
        store: OperatorStore,
        positions: PositionRepository,
        alerts: AlertStateStore,
        breaker: BreakerStore,
        ledger: LedgerReader,
        lease: Lease,
        broker: Callable[[], Broker],
        policy: Policy,
        actor: str,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._positions = positions
        self._alerts = alerts
        self._breaker = breaker
        self._ledger = ledger
        self._lease = lease
        self._broker = broker  # built only by the commands that read the broker
        self._policy = policy
        self._actor = actor
        self._clock = clock

    # -- the lease ---------------------------------------------------------------------------

    @contextmanager
    def _exclusive(self, dry_run: bool) -> Iterator[datetime]:
        now = self._clock()
        if dry_run:
            yield now
            return
        grant = self._lease.acquire(f"operator:{self._actor}:{uuid.uuid4().hex[:8]}", now)
        if not grant.acquired:
            until = grant.expires_at.isoformat(timespec="seconds") if grant.expires_at else "?"
            raise Refused(
                f"a reconciliation run is in progress ({grant.holder}, lease until {until}): "
                "try again in a minute"
            )
        try:
            yield now
        finally:
            self._lease.release(grant)

    def _apply(
        self,
        change: Change,
        message: str,
        dry_run: bool,
        write: Callable[[Change], str] | None = None,
    ) -> ActionResult:
        """Dry run: say what would change. Else write it (a position change by default) and
        say what changed, with the audit record's id."""
        if dry_run:
            return ActionResult(
                change.action,
                change.target,
                True,
                f"would have {message}",
                change.before,
                change.after,
            )
        audit_id = (write or self._commit)(change)
        return ActionResult(
            change.action, change.target, False, message, change.before, change.after, audit_id
        )

    def _commit(self, change: Change) -> str:
        try:
            return self._store.commit(change)
        except WriteConflict:
            raise Refused(
                f"{change.target} changed while this command ran (the signal job or a run wrote "
                "it): nothing was written; look at it again and retry"
            ) from None

    # -- findings and ack -------------------------------------------------------------------

    def findings(self) -> list[dict[str, Any]]:
        now = self._clock()
        states = [s for s in self._alerts.load().values() if s.active and s.kind in FINDING_KINDS]
        return [_finding_json(s, now) for s in sorted(states, key=lambda s: s.finding_id)]

    def ack(self, finding_id: str, *, reason: str, for_: str | None, dry_run: bool) -> ActionResult:
        until_delta = parse_duration(for_) if for_ else None
        with self._exclusive(dry_run) as now:
            state = self._alerts.load().get(finding_id)
            if state is None or not state.active or state.kind not in FINDING_KINDS:
                raise Refused(
                    f"no open finding {finding_id!r}: `crypto-signals findings` lists them"
                )
            ack = Acknowledgement(
                by=self._actor,
                reason=reason,
                at=now,
                until=now + until_delta if until_delta else None,
            )
            # The person knows: nothing more is owed about it until it changes.
            updated = replace(state, acknowledgement=ack, pending=None)
            before = _ack_json(state.acknowledgement)
            after = _ack_json(ack)
            until_text = f" until {ack.until.isoformat(timespec='seconds')}" if ack.until else ""
            message = (
                f"acknowledged {finding_id}{until_text}: no reminder until it changes or is "
                "resolved"
            )
            change = Change("ack", finding_id, reason, self._actor, now, before, after)
            document = self._alerts.document(updated)
            return self._apply(
                change, message, dry_run, lambda c: self._store.audit_only(c, [document])
            )

    # -- adopt ------------------------------------------------------------------------------

    def adopt(self, symbol: str, *, reason: str, dry_run: bool) -> ActionResult:
        key = symbol_key(symbol)
        with self._exclusive(dry_run) as now:
            state = self._broker().fetch_state()
            holding = next(
                (p for p in state.positions if p.key == key and not is_dust(p, self._policy)),
                None,
            )
            if holding is None:
                raise Refused(f"{symbol} is not an orphan now: the broker holds none of it")
            tracked = [
                p
                for p in self._positions.get_open_positions().positions
                if symbol_key(p.symbol) == key and p.trade_type is not TradeType.THEORETICAL
            ]
            if tracked:
                ids = ", ".join(p.position_id for p in tracked[:3])
                raise Refused(f"{symbol} is not an orphan now: open in Firestore as {ids}")
            pid = self._adoption_id(state.account_id, holding)
            doc = adopted_document(
                pid,
                holding,
                account_id=state.account_id,
                avg_entry_price=holding.avg_entry_price,
                now=now,
                actor=self._actor,
                reason=reason,
            )
            message = (
                f"adopted {holding.display} as position {pid} ({_side(holding)} "
                f"{decimal_text(abs(holding.qty))}, entry "
                f"{_usd(holding.avg_entry_price)}): the next run no longer reports the orphan"
            )
            change = Change("adopt", pid, reason, self._actor, now, {}, doc, pid, create=doc)
            return self._apply(change, message, dry_run)

    def _adoption_id(self, account_id: str, holding: BrokerPosition) -> str:
        """The first generation of this holding's id that names no document yet; one that
        names an OPEN position means it was adopted already (refused)."""
        for generation in range(1, 100):
            pid = adopted_id(self._store.scope, account_id, holding, generation)
            existing = self._store.read(pid)
            if not existing.exists:
                return pid
            if existing.data.get("status") == TradeStatus.OPEN.value:
                raise Refused(f"{holding.display} was already adopted as {pid} (OPEN)")
        raise Refused(f"{holding.display} was adopted and closed 99 times: adopt it by hand")

    # -- close ------------------------------------------------------------------------------

    def close(
        self,
        position_id: str,
        *,
        reason: str,
        exit_price: Decimal | None,
        exit_time: datetime | None,
        exit_order_id: str | None,
        never_filled: bool,
        dry_run: bool,
    ) -> ActionResult:
        with self._exclusive(dry_run) as now:
            read = self._store.read(position_id)
            position = self._open_position(position_id, read.exists, read.data)
            self._check_broker_does_not_hold(position)
            if exit_order_id and not never_filled:
                self._check_exit_order(position, exit_order_id)
            fields = close_fields(
                position,
                exit_price=exit_price,
                exit_time=exit_time or now,
                exit_order_id=exit_order_id,
                never_filled=never_filled,
                now=now,
            )
            before = {f: read.data.get(f) for f in fields}
            allocation = (
                (
                    Allocation(
                        exit_order_id, position.qty, exit_price or Decimal(0), exit_time or now
                    ),
                )
                if exit_order_id and not never_filled
                else ()
            )
            updates = {
                **fields,
                "reconciler.action": "operator_close",
                "reconciler.closed_by": self._actor,
                "reconciler.reason": reason,
                "reconciler.closed_at": now,
                "reconciler.replaced": {f: read.data[f] for f in HEAL_REPLACES if f in read.data},
                "reconciler.absent": [f for f in HEAL_REPLACES if f not in read.data],
                "reconciler.allocation": [
                    {"order_id": a.order_id, "qty": decimal_text(a.qty)} for a in allocation
                ],
                "reconciler.ledger_posted": bool(allocation),
            }
            price = (
                "never filled, P&L $0.00"
                if never_filled
                else (
                    f"exit {_usd(exit_price)}, P&L {_usd(Decimal(str(fields['realized_pnl_usd'])))}"
                )
            )
            message = f"closed {position.symbol} position {position_id} as MANUAL_EXIT ({price})"
            post = ledger.posting_writes(
                self._store.scope,
                position_id,
                position.symbol,
                allocation,
                source=PostingSource.OPERATOR_CLOSE,
                run_id=f"operator:{self._actor}",
                at=now,
            )
            change = self._position_change(
                "close", position_id, reason, now, before, fields, updates, read.update_time
            )
            change.post = post
            return self._apply(change, message, dry_run)

    def _position_change(
        self,
        action: str,
        position_id: str,
        reason: str,
        now: datetime,
        before: dict[str, Any],
        after: dict[str, Any],
        updates: dict[str, Any],
        read_at: Any,
    ) -> Change:
        """A field-level update of one position, preconditioned on the update time it read."""
        return Change(
            action,
            position_id,
            reason,
            self._actor,
            now,
            before,
            after,
            position_id,
            updates=updates,
            precondition=read_at,
        )

    def _open_position(self, position_id: str, exists: bool, data: dict[str, Any]) -> Position:
        if not exists:
            raise Refused(f"no position {position_id} in {self._store.scope}")
        parsed = parse_position(position_id, data)
        if not isinstance(parsed, Position):
            raise Refused(f"position {position_id} does not parse ({parsed.detail}): fix it first")
        if parsed.status is not TradeStatus.OPEN:
            raise Refused(f"position {position_id} is not OPEN (it is {parsed.status.value})")
        return parsed

    def _check_exit_order(self, position: Position, order_id: str) -> None:
        """The order an operator names as the exit must be a fill on the position's symbol and
        closing side with enough of it left: the ledger records it as fact."""
        found = self._broker().fetch_orders([order_id], [])
        order = next((o for o in found.orders if o.id == order_id), None)
        if order is None or not order.is_fill:
            raise Refused(f"the broker has no filled order {order_id}: check the id")
        closing = "sell" if position.side == "buy" else "buy"
        if order.key != symbol_key(position.symbol) or order.side != closing:
            raise Refused(
                f"order {order_id} is a {order.side} of {order.symbol}, not a close of this "
                f"{position.side} {position.symbol} position"
            )
        used = sum((p.qty for p in self._ledger.postings_for([order_id])), Decimal(0))
        left = order.filled - used
        if left < position.qty and not self._policy.qty_close(left, position.qty):
            raise Refused(
                f"order {order_id} filled {decimal_text(order.filled)}, of which "
                f"{decimal_text(used)} already closed other positions: "
                f"{decimal_text(max(left, Decimal(0)))} is left, less than this position's "
                f"{decimal_text(position.qty)}"
            )

    def _check_broker_does_not_hold(self, position: Position) -> None:
        """Refused while the broker holds more of the symbol than the other open positions
        account for: then this position may well still be open there."""
        key = symbol_key(position.symbol)
        state = self._broker().fetch_state()
        held = next(
            (p.qty for p in state.positions if p.key == key and not is_dust(p, self._policy)),
            Decimal(0),
        )
        others = sum(
            (
                signed_qty(p)
                for p in self._positions.get_open_positions().positions
                if symbol_key(p.symbol) == key
                and p.position_id != position.position_id
                and p.trade_type is not TradeType.THEORETICAL
            ),
            Decimal(0),
        )
        if abs(held) > abs(others) and not self._policy.qty_close(held, others):
            raise Refused(
                f"the broker still holds {decimal_text(held)} {position.symbol}, more than the "
                f"other open positions account for ({decimal_text(others)}): position "
                f"{position.position_id} may still be open there; close it at the broker first"
            )

    # -- undo and release -------------------------------------------------------------------

    def undo(self, position_id: str, *, reason: str, dry_run: bool) -> ActionResult:
        with self._exclusive(dry_run) as now:
            read = self._store.read(position_id)
            if not read.exists:
                raise Refused(f"no position {position_id} in {self._store.scope}")
            undo = undo_of(position_id, read.data)
            audit = read.data.get("reconciler") or {}
            before = {f: read.data.get(f) for f in (*undo.updates, *undo.deletes)}
            after: dict[str, Any] = {**undo.updates, **{f: _DELETE for f in undo.deletes}}
            updates: dict[str, Any] = {
                **undo.updates,
                **{f: _delete_field() for f in undo.deletes},
                "reconciler.action": "undo",
                "reconciler.held": True,
                "reconciler.undone_by": self._actor,
                "reconciler.undone_at": now,
                "reconciler.undo_reason": reason,
                "reconciler.undone_allocation": audit.get("allocation") or [],
                "reconciler.allocation": [],
                "reconciler.ledger_posted": False,
                "reconciler.alert_pending": False,
            }
            message = (
                f"undid the heal of position {position_id}: OPEN again with the fields the heal "
                f"replaced, {len(undo.released_orders)} ledger posting(s) released, and held out "
                f"of reconciliation until `crypto-signals release {position_id} --reason ...`"
            )
            change = self._position_change(
                "undo", position_id, reason, now, before, after, updates, read.update_time
            )
            change.release = undo.released_orders
            return self._apply(change, message, dry_run)

    def release(self, position_id: str, *, reason: str, dry_run: bool) -> ActionResult:
        with self._exclusive(dry_run) as now:
            read = self._store.read(position_id)
            audit = read.data.get("reconciler") if read.exists else None
            if not isinstance(audit, dict) or audit.get("held") is not True:
                raise Refused(f"position {position_id} is not held: there is nothing to release")
            before = {"reconciler.held": True}
            after = {"reconciler.held": False}
            updates = {
                "reconciler.held": False,
                "reconciler.released_by": self._actor,
                "reconciler.released_at": now,
                "reconciler.release_reason": reason,
            }
            message = f"released position {position_id}: the next run reconciles it again"
            change = self._position_change(
                "release", position_id, reason, now, before, after, updates, read.update_time
            )
            return self._apply(change, message, dry_run)

    # -- breaker and runs -------------------------------------------------------------------

    def breaker_status(self) -> dict[str, Any]:
        state = self._breaker.load()
        return {
            "heals_halted": state.tripped,
            "since": _json(state.tripped_at),
            "reason": state.reason,
            "run_id": state.run_id,
            "heals_due": state.heals_due,
            "limit": state.limit,
        }

    def breaker_reset(self, *, reason: str, dry_run: bool) -> ActionResult:
        with self._exclusive(dry_run) as now:
            state = self._breaker.load()
            if not state.tripped:
                raise Refused("the breaker is not tripped: heals are not halted")
            before = self.breaker_status()
            fields = self._breaker.reset_fields(by=self._actor, reason=reason, now=now)
            after = {"heals_halted": False}
            message = "reset the breaker: the next run heals again"
            change = Change("breaker_reset", "breaker", reason, self._actor, now, before, after)
            ref = self._breaker.ref
            return self._apply(
                change, message, dry_run, lambda c: self._store.audit_only(c, [(ref, fields)])
            )

    def runs(self, last: int) -> list[dict[str, Any]]:
        out = []
        for record in self._store.recent_runs(last):
            report = record.get("report") or {}
            counts = record.get("report", {}).get("truncated_lists", {})
            out.append(
                {
                    "run_id": record["run_id"],
                    "started": _json(record.get("started_at")),
                    "status": record.get("status"),
                    "healed": counts.get("healed", len(report.get("healed") or [])),
                    "findings": len(report.get("critical_issues") or []),
                    "duration": report.get("duration_seconds"),
                }
            )
        return out


def _delete_field() -> Any:
    from google.cloud import firestore

    return firestore.DELETE_FIELD


def _side(holding: BrokerPosition) -> str:
    return "long" if holding.qty > 0 else "short"


def _usd(value: Decimal | None) -> str:
    return "n/a" if value is None else f"${value:,.2f}"


def _ack_json(ack: Acknowledgement | None) -> dict[str, Any]:
    if ack is None:
        return {"acknowledged": False}
    return {
        "acknowledged": True,
        "by": ack.by,
        "reason": ack.reason,
        "at": ack.at,
        "until": ack.until,
    }


def _finding_json(state: AlertState, now: datetime) -> dict[str, Any]:
    ack = state.acknowledgement
    live = state.acknowledged(now)
    return {
        "id": state.finding_id,
        "kind": state.kind.value,
        "subject": state.subject or state.key,
        "detail": state.line,
        "first_seen": _json(state.first_seen_at),
        "last_alerted": _json(state.last_alerted_at),
        "acknowledged_until": _json(ack.until) if ack and live and ack.until else None,
        "acknowledged_by": ack.by if ack and live else None,
    }
