"""Pure rendering of a plan into what people read: alert findings, critical issues, sections.

Kept apart from the shell so the words a trader reads are tested as data, like the plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from crypto_signals.domain.snapshots import IssueKind
from crypto_signals.domain.symbols import symbol_key
from crypto_signals.engine.alerts import Finding, FindingKind, Notice, OwedNotice
from crypto_signals.engine.messages import AlertSection, Endpoints, Severity
from crypto_signals.engine.plan import (
    AlertOrphan,
    Allocation,
    BlockReason,
    BlockSymbol,
    DriftKind,
    Halted,
    OverAllocated,
    Plan,
    RefusalReason,
    RefuseHeal,
    ReportDrift,
    Unverified,
    UnverifiedReason,
)


def fmt_qty(qty: Decimal) -> str:
    text = format(qty.normalize(), "f")
    return text if text != "-0" else "0"


def fmt_usd(value: Decimal | float | None) -> str:
    if value is None:
        return "n/a"
    return f"${Decimal(str(value)):,.2f}"


def fmt_price(value: Decimal | float | None) -> str:
    """A fill price in dollars: cents from $1 up, significant digits below (crypto pairs)."""
    if value is None:
        return "n/a"
    number = Decimal(str(value))
    if abs(number) >= 1:
        return f"${number:,.2f}"
    return f"${number:.8f}".rstrip("0").rstrip(".")


def fmt_time(value: datetime | None) -> str:
    """UTC to the second: what a person compares with the Alpaca app."""
    if value is None:
        return "n/a"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def share_text(share: Allocation) -> str:
    return f"order {share.order_id}: {fmt_qty(share.qty)} @ {fmt_price(share.price)}"


def _id(kind: FindingKind, key: str) -> str:
    return Finding(kind, key, "", "").finding_id


REASON = '--reason "..."'
# Between what a line says and the command that resolves it; a "resolved" notice shows only
# what it was.
HINT = " -> "


def without_hint(line: str) -> str:
    return line.split(HINT, 1)[0]


def orphan_line(o: AlertOrphan) -> str:
    fid = _id(FindingKind.ORPHAN, symbol_key(o.symbol))
    return (
        f"{o.symbol} {o.side} {fmt_qty(o.qty)} (market value {fmt_usd(o.market_value)}): "
        f"open at the broker, no open Firestore position{HINT}to track it: "
        f"`crypto-signals adopt {o.symbol} {REASON}`; if it is held outside the bot: "
        f"`crypto-signals ack {fid} {REASON}`"
    )


_UNVERIFIED_WORDS: dict[UnverifiedReason, str] = {
    UnverifiedReason.NO_CLOSING_FILL: "no filled closing order at the broker after the entry",
    UnverifiedReason.COVERED_IN_PART: "closing fills after the entry cover only part of it",
    UnverifiedReason.NO_ENTRY_TIME: (
        "no entry time to match closing fills against, and no own exit leg filled"
    ),
    UnverifiedReason.ENTRY_PRICE_MISSING: (
        "closing fill found but entry_fill_price is missing or not positive: P&L cannot be computed"
    ),
    UnverifiedReason.ENTRY_UNFILLED_BUT_FILLED_AT: (
        "the broker shows the entry order ended unfilled, but Firestore has filled_at"
    ),
    UnverifiedReason.ENTRY_ORDER_UNKNOWN: (
        "the broker has no order with the entry order id (alpaca_order_id / entry_order_id) "
        "this document names: check the id"
    ),
}


def unverified_words(u: Unverified) -> str:
    words = _UNVERIFIED_WORDS[u.reason]
    if u.reason is UnverifiedReason.COVERED_IN_PART and u.covered_qty is not None:
        words = f"closing fills after the entry cover {fmt_qty(u.covered_qty)} of it"
    if u.listing_incomplete:
        words += " (order history listing was incomplete)"
    return words


def unverified_line(u: Unverified) -> str:
    return (
        f"{u.symbol} position {u.position_id} kept OPEN: {unverified_words(u)}{HINT}once you "
        f"know how it closed: `crypto-signals close {u.position_id} {REASON} --exit-price PRICE` "
        "(or `--never-filled`)"
    )


_DRIFT_WORDS: dict[DriftKind, str] = {
    DriftKind.EVIDENCE_DOES_NOT_ADD_UP: "broker fills close {positions}, but the rest still "
    "does not match the broker, so nothing was healed",
    DriftKind.PARTIAL_CLOSE: "partial external close of {positions}",
    DriftKind.BROKER_HOLDS_MORE: "the broker holds more than Firestore knows",
    DriftKind.AMBIGUOUS: "a fill closed one of {positions}, and the broker still holds the "
    "others: the broker does not say which one closed, so nothing was healed",
    DriftKind.UNEXPLAINED: "",
}


def drift_explanation(d: ReportDrift) -> str | None:
    words = _DRIFT_WORDS[d.kind].format(positions=", ".join(d.position_ids))
    if d.allocations:
        fills = "; ".join(f"{pid} {share_text(a)}" for pid, a in d.allocations)
        words = f"{words} ({fills})"
    return words or None


def drift_line(d: ReportDrift) -> str:
    line = f"{d.symbol}: Firestore {fmt_qty(d.db_qty)} vs broker {fmt_qty(d.broker_qty)}"
    explained = drift_explanation(d)
    line = f"{line}: {explained}" if explained else line
    fid = _id(FindingKind.DRIFT, symbol_key(d.symbol))
    return (
        f"{line} (nothing was changed){HINT}check the positions in the Alpaca app, then "
        f"`crypto-signals ack {fid} {REASON}`"
    )


def refusal_words(r: RefuseHeal) -> str:
    if r.reason is RefusalReason.ACCOUNT_MISMATCH:
        return (
            f"{r.foreign_accounts} account id(s) on open positions differ from the broker "
            "account: check the Alpaca keys and ENVIRONMENT"
        )
    if r.reason is RefusalReason.HEAL_LIMIT:
        return (
            f"{r.heals_due} heals due exceed the limit of {r.limit} per run: none was applied "
            "and heals are halted (the breaker tripped)"
        )
    return "heals are halted: the breaker tripped in an earlier run and was not reset"


def refusal_fix(r: RefuseHeal) -> str:
    if r.reason is RefusalReason.ACCOUNT_MISMATCH:
        return "fix ALPACA_API_KEY / ALPACA_SECRET_KEY or ENVIRONMENT"
    return (
        f"if the heals are right: `crypto-signals breaker reset {REASON}` "
        "(or `crypto-signals reconcile --force`)"
    )


def refused_line(r: RefuseHeal) -> str:
    return (
        f"{r.heal.symbol} position {r.heal.position_id} not healed: {refusal_words(r)}"
        f"{HINT}{refusal_fix(r)}"
    )


def overallocated_line(o: OverAllocated) -> str:
    who = ", ".join(o.position_ids) or "?"
    return (
        f"{o.symbol} order {o.order_id} filled {fmt_qty(o.filled)}, but {fmt_qty(o.used)} of "
        f"it is recorded as the close of {who}: one of those closes is wrong{HINT}check them "
        f"in the Alpaca app; a wrong heal: `crypto-signals undo POSITION_ID {REASON}`"
    )


def breaker_line(halted: Halted) -> str:
    due = f"{halted.heals_due} heals were due" if halted.heals_due is not None else "heals"
    limit = f", more than the limit of {halted.limit} per run" if halted.limit is not None else ""
    since = "" if halted.tripped_now else f" (tripped {fmt_time(halted.since)})"
    return (
        f"{due}{limit}: none was applied, and heals are halted until the breaker is "
        f"reset{since}{HINT}check `crypto-signals findings`; if the heals are right: "
        f"`crypto-signals breaker reset {REASON}` (or `crypto-signals reconcile --force`)"
    )


def blocked_line(b: BlockSymbol) -> str:
    where = "every symbol" if b.symbol == "*" else b.symbol
    if b.reason is BlockReason.LISTING_INCONSISTENT:
        entries = ", ".join(f"{m.position_id} ({m.symbol})" for m in b.missing[:5])
        more = f" and {len(b.missing) - 5} more" if len(b.missing) > 5 else ""
        return (
            f"no heal on {where} this run: the broker's order listing is inconsistent: it lacks "
            f"the entry orders of {entries}{more}, though listed three ways (symbols with a "
            f"slash, without one, and no symbol filter), and the broker finds them by id"
            f"{HINT}check the Alpaca API status; it clears by itself when the listing is whole "
            "again"
        )
    items = "; ".join(
        f"{i.endpoint} item {i.item_id or '?'}"
        + (f" ({i.symbol})" if i.symbol else "")
        + f": {i.detail}"
        for i in b.items[:3]
    )
    more = f" and {len(b.items) - 3} more" if len(b.items) > 3 else ""
    return (
        f"no heal on {where} this run: the broker sent an unreadable item ({items}{more})"
        f"{HINT}look at the order in the Alpaca app; this clears by itself once the broker "
        "serves it in a shape the reconciler reads"
    )


def malformed_line(position_id: str, detail: str) -> str:
    return (
        f"{position_id}: {detail}{HINT}fix the document in Firestore (the reconciler never "
        "touches a document it cannot read)"
    )


def run_failed_line(detail: str, where: Endpoints) -> str:
    kind_hint = "`crypto-signals runs` shows the recent runs"
    return f"{detail}{HINT}{kind_hint}; check {where.broker} and {where.firestore}"


def findings_of(plan: Plan) -> list[Finding]:
    """The plan's findings that deserve an alert. Identity is (kind, subject, fingerprint) from
    data only: quantities, sides and reason enums, never the words of a line."""
    out: list[Finding] = []
    for o in plan.orphans:
        fingerprint = f"{o.side}:{fmt_qty(o.qty)}"
        out.append(
            Finding(FindingKind.ORPHAN, symbol_key(o.symbol), fingerprint, orphan_line(o), o.symbol)
        )
    for u in plan.unverified:
        out.append(
            Finding(
                FindingKind.UNVERIFIED_ZOMBIE,
                u.position_id,
                u.reason.value,
                unverified_line(u),
                u.position_id,
            )
        )
    for d in plan.drift:
        fingerprint = f"{fmt_qty(d.db_qty)}:{fmt_qty(d.broker_qty)}"
        out.append(
            Finding(FindingKind.DRIFT, symbol_key(d.symbol), fingerprint, drift_line(d), d.symbol)
        )
    for r in plan.refused:
        # Refused because the breaker tripped in this run or an earlier one: the same finding
        # (a trip must not re-announce every refused heal as "changed" in the next run).
        halted = r.reason in (RefusalReason.HEAL_LIMIT, RefusalReason.BREAKER_TRIPPED)
        out.append(
            Finding(
                FindingKind.REFUSED_HEAL,
                r.heal.position_id,
                "halted" if halted else r.reason.value,
                refused_line(r),
                r.heal.position_id,
            )
        )
    if plan.halted is not None:
        # One finding for as long as heals are halted: announced when it trips, resolved when
        # it is reset.
        out.append(
            Finding(FindingKind.BREAKER, "heals", "tripped", breaker_line(plan.halted), "heals")
        )
    for over in plan.overallocated:
        out.append(
            Finding(
                FindingKind.OVERALLOCATED_FILL,
                over.order_id,
                f"{fmt_qty(over.filled)}:{fmt_qty(over.used)}",
                overallocated_line(over),
                over.order_id,
            )
        )
    for b in plan.blocked:
        fingerprint = (
            b.reason.value
            + ":"
            + ",".join(
                sorted([i.item_id or "?" for i in b.items] + [m.position_id for m in b.missing])
            )
        )
        kind = (
            FindingKind.LISTING_INCONSISTENT
            if b.reason is BlockReason.LISTING_INCONSISTENT
            else FindingKind.UNREADABLE_BROKER_ITEM
        )
        out.append(Finding(kind, symbol_key(b.symbol), fingerprint, blocked_line(b), b.symbol))
    return out


def critical_issues_of(plan: Plan) -> list[str]:
    lines = [f"orphan {orphan_line(o)}" for o in plan.orphans]
    lines += [f"unverified zombie {unverified_line(u)}" for u in plan.unverified]
    lines += [f"drift {drift_line(d)}" for d in plan.drift]
    if plan.halted is not None:
        lines.append(f"breaker tripped: {breaker_line(plan.halted)}")
    by_reason: dict[RefusalReason, list[RefuseHeal]] = {}
    for r in plan.refused:
        by_reason.setdefault(r.reason, []).append(r)
    for _, refused in sorted(by_reason.items()):
        ids = sorted(r.heal.position_id for r in refused)
        lines.append(
            f"heals refused for {len(ids)} position(s) ({', '.join(ids[:10])}): "
            f"{refusal_words(refused[0])}; {refusal_fix(refused[0])}"
        )
    lines += [blocked_line(b) for b in plan.blocked]
    lines += [f"fill used twice: {overallocated_line(x)}" for x in plan.overallocated]
    return lines


def heal_line(doc: Mapping[str, Any]) -> str:
    price = doc.get("exit_fill_price")
    exit_time = doc.get("exit_time")
    when = fmt_time(exit_time) if isinstance(exit_time, datetime) else str(exit_time)
    if price is None:
        return (
            f"{doc.get('symbol')} position {doc.get('position_id')}: entry order never filled, "
            "closed with P&L $0.00"
        )
    pid = doc.get("position_id")
    return (
        f"{doc.get('symbol')} position {pid}: exit {fmt_price(price)} at "
        f"{when} (order {doc.get('exit_order_id')}), P&L {fmt_usd(doc.get('realized_pnl_usd'))}"
        f"{HINT}if wrong: `crypto-signals undo {pid} {REASON}`"
    )


_TITLES: dict[FindingKind, tuple[str, Severity]] = {
    FindingKind.ORPHAN: (
        "Orphan positions at the broker (unknown to Firestore)",
        Severity.CRITICAL,
    ),
    FindingKind.UNVERIFIED_ZOMBIE: (
        "Unverified zombies: open in Firestore, gone at the broker, no evidence (kept OPEN)",
        Severity.CRITICAL,
    ),
    FindingKind.DRIFT: ("Quantity drift (nothing was changed)", Severity.WARNING),
    FindingKind.REFUSED_HEAL: ("Heals refused", Severity.CRITICAL),
    FindingKind.BREAKER: ("Heals halted: the breaker tripped", Severity.CRITICAL),
    FindingKind.UNREADABLE_BROKER_ITEM: (
        "Unreadable broker data (no heal on the symbols it could affect)",
        Severity.CRITICAL,
    ),
    FindingKind.OVERALLOCATED_FILL: (
        "A broker fill is recorded as the close of more than it filled",
        Severity.CRITICAL,
    ),
    FindingKind.LISTING_INCONSISTENT: (
        "The broker's order listing is inconsistent (no heal this run)",
        Severity.CRITICAL,
    ),
    FindingKind.RUN_FAILED: ("Reconciliation failed", Severity.CRITICAL),
    FindingKind.MALFORMED_DOCUMENT: (
        "Unreadable position documents (left untouched, not reconciled)",
        Severity.WARNING,
    ),
}


def failure_hint(kind: IssueKind, where: Endpoints) -> str:
    """What to check when a run failed this way."""
    if kind is IssueKind.BROKER_UNAVAILABLE:
        return (
            f"check that {where.broker} is reachable and that ALPACA_API_KEY / "
            "ALPACA_SECRET_KEY are valid for it"
        )
    if kind in (IssueKind.STORE_UNAVAILABLE, IssueKind.LEASE_FAILED):
        return f"Firestore could not be reached: check {where.firestore}"
    if kind is IssueKind.RUN_DEADLINE:
        return (
            f"the run outlived its deadline (80% of RECONCILER_LEASE_SECONDS): check how fast "
            f"{where.broker} and {where.firestore} answer"
        )
    if kind is IssueKind.INTERNAL_ERROR:
        return "a bug: the log line 'unexpected error in reconciliation' has the traceback"
    return "see the errors above"


def heal_key(position_id: str) -> str:
    return f"heal:{position_id}"


def _section(title: str, severity: Severity, items: list[tuple[str, str]]) -> AlertSection:
    return AlertSection(title, severity, tuple(t for _, t in items), tuple(k for k, _ in items))


def alert_sections(
    heals: Sequence[Mapping[str, Any]], owed: Iterable[OwedNotice]
) -> list[AlertSection]:
    """One section per kind of news, in the order a trader should read them; each line keyed
    by what it announces (a finding id, or ``heal:<position id>``)."""
    owed = list(owed)
    sections: list[AlertSection] = []
    for kind, (title, severity) in _TITLES.items():
        fresh = [
            (n.finding_id, ("(changed) " if n.notice is Notice.CHANGED else "") + n.line)
            for n in owed
            if n.kind is kind and n.notice in (Notice.NEW, Notice.CHANGED)
        ]
        if fresh:
            sections.append(_section(title, severity, fresh))
    if heals:
        sections.append(
            _section(
                "Healed as CLOSED_EXTERNALLY (closed at the broker outside the bot)",
                Severity.INFO,
                [(heal_key(str(h.get("position_id"))), heal_line(h)) for h in heals],
            )
        )
    reminders = [(n.finding_id, n.line) for n in owed if n.notice is Notice.REMINDER]
    if reminders:
        sections.append(_section("Still unresolved (reminder)", Severity.WARNING, reminders))
    resolved = [(n.finding_id, without_hint(n.line)) for n in owed if n.notice is Notice.RESOLVED]
    if resolved:
        sections.append(_section("Resolved", Severity.RESOLVED, resolved))
    return sections
