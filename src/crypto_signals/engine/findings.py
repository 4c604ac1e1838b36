"""Pure rendering of a plan into what people read: alert findings, critical issues, sections.

Kept apart from the shell so the words a trader reads are tested as data, like the plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from crypto_signals.domain.symbols import symbol_key
from crypto_signals.engine.alerts import Finding, FindingKind, Notice, OwedNotice
from crypto_signals.engine.plan import AlertOrphan, Plan, RefuseHeal, ReportDrift, Unverified
from crypto_signals.notifications.discord_render import AlertSection, Severity


def fmt_qty(qty: Decimal) -> str:
    text = format(qty.normalize(), "f")
    return text if text != "-0" else "0"


def fmt_usd(value: Decimal | float | None) -> str:
    if value is None:
        return "n/a"
    return f"${Decimal(str(value)):,.2f}"


def orphan_line(o: AlertOrphan) -> str:
    return (
        f"{o.symbol} {o.side} {fmt_qty(o.qty)} (market value {fmt_usd(o.market_value)}): "
        "open at the broker, no open Firestore position"
    )


def unverified_line(u: Unverified) -> str:
    return f"{u.symbol} position {u.position_id} kept OPEN: {u.reason}"


def drift_line(d: ReportDrift) -> str:
    line = f"{d.symbol}: Firestore {fmt_qty(d.db_qty)} vs broker {fmt_qty(d.broker_qty)}"
    return f"{line} ({d.explained_by})" if d.explained_by else line


def refused_line(r: RefuseHeal) -> str:
    return f"{r.heal.symbol} position {r.heal.position_id} not healed: {r.detail}"


def findings_of(plan: Plan) -> list[Finding]:
    """The plan's findings that deserve an alert, each with what makes it 'the same' finding."""
    out: list[Finding] = []
    for o in plan.orphans:
        out.append(
            Finding(
                FindingKind.ORPHAN,
                symbol_key(o.symbol),
                f"{o.side}:{fmt_qty(o.qty)}",
                orphan_line(o),
            )
        )
    for u in plan.unverified:
        out.append(
            Finding(FindingKind.UNVERIFIED_ZOMBIE, u.position_id, u.reason, unverified_line(u))
        )
    for d in plan.drift:
        out.append(
            Finding(
                FindingKind.DRIFT,
                symbol_key(d.symbol),
                f"{fmt_qty(d.db_qty)}:{fmt_qty(d.broker_qty)}",
                drift_line(d),
            )
        )
    for r in plan.refused:
        out.append(
            Finding(FindingKind.REFUSED_HEAL, r.heal.position_id, r.reason.value, refused_line(r))
        )
    return out


def critical_issues_of(plan: Plan) -> list[str]:
    lines = [f"orphan {orphan_line(o)}" for o in plan.orphans]
    lines += [f"unverified zombie {unverified_line(u)}" for u in plan.unverified]
    lines += [f"drift {drift_line(d)}" for d in plan.drift]
    reasons = sorted({r.detail for r in plan.refused})
    for reason in reasons:
        ids = sorted(r.heal.position_id for r in plan.refused if r.detail == reason)
        lines.append(f"heals refused for {len(ids)} position(s) ({', '.join(ids[:10])}): {reason}")
    return lines


def heal_line(doc: Mapping[str, Any]) -> str:
    price = doc.get("exit_fill_price")
    exit_time = doc.get("exit_time")
    when = exit_time.isoformat() if isinstance(exit_time, datetime) else str(exit_time)
    if price is None:
        return (
            f"{doc.get('symbol')} position {doc.get('position_id')}: entry order never filled, "
            "closed with P&L $0.00"
        )
    return (
        f"{doc.get('symbol')} position {doc.get('position_id')}: exit {price} at {when} "
        f"(order {doc.get('exit_order_id')}), P&L {fmt_usd(doc.get('realized_pnl_usd'))}"
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
    FindingKind.RUN_FAILED: ("Reconciliation failed", Severity.CRITICAL),
    FindingKind.MALFORMED_DOCUMENT: (
        "Unreadable position documents (left untouched, not reconciled)",
        Severity.WARNING,
    ),
}


def alert_sections(
    heals: Sequence[Mapping[str, Any]], owed: Iterable[OwedNotice]
) -> list[AlertSection]:
    """One section per kind of news, in the order a trader should read them."""
    owed = list(owed)
    sections: list[AlertSection] = []
    for kind, (title, severity) in _TITLES.items():
        fresh = [
            ("(changed) " if n.notice is Notice.CHANGED else "") + n.line
            for n in owed
            if n.kind is kind and n.notice in (Notice.NEW, Notice.CHANGED)
        ]
        if fresh:
            sections.append(AlertSection(title, severity, tuple(fresh)))
    if heals:
        sections.append(
            AlertSection(
                "Healed as CLOSED_EXTERNALLY (closed at the broker outside the bot)",
                Severity.INFO,
                tuple(heal_line(h) for h in heals),
            )
        )
    reminders = [n.line for n in owed if n.notice is Notice.REMINDER]
    if reminders:
        sections.append(
            AlertSection("Still unresolved (reminder)", Severity.WARNING, tuple(reminders))
        )
    resolved = [n.line for n in owed if n.notice is Notice.RESOLVED]
    if resolved:
        sections.append(AlertSection("Resolved", Severity.RESOLVED, tuple(resolved)))
    return sections
