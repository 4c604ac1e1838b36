"""A plain-text rendering of the report for people at a terminal."""

from __future__ import annotations

from crypto_signals.domain.schemas import ReconciliationReport


def render_text(report: ReconciliationReport) -> str:
    r = report
    head = (
        f"Reconciliation {r.status.value.upper()}  env={r.environment}  run={r.run_id}  "
        f"{r.duration_seconds:.2f}s"
        + ("  [DRY RUN: nothing was written or sent]" if r.dry_run else "")
    )
    lines = [head, ""]
    verb = "Would heal" if r.dry_run else "Healed"
    if r.healed:
        lines.append(f"{verb} as CLOSED_EXTERNALLY ({len(r.healed)}):")
        for h in r.healed:
            price = (
                "entry never filled" if h.exit_fill_price is None else f"exit {h.exit_fill_price}"
            )
            lines.append(
                f"  {h.symbol:<10} {h.position_id}  {price} at {h.exit_time.isoformat()}  "
                f"order {h.exit_order_id or '-'}  P&L ${h.realized_pnl_usd:,.2f} "
                f"({h.realized_pnl_pct:+.2f}%)  [{h.evidence}]"
            )
    else:
        lines.append(f"{verb}: none")
    lines.append(
        f"Zombies (open in Firestore, gone at the broker): {', '.join(r.zombies) or 'none'}"
    )
    lines.append(f"Orphans (at the broker, unknown to Firestore): {', '.join(r.orphans) or 'none'}")
    if r.unverified_zombies:
        lines.append(f"Unverified zombies kept OPEN: {', '.join(r.unverified_zombies)}")
    if r.pending:
        lines.append(f"Pending (too young or entry order working): {', '.join(r.pending)}")
    for d in r.drift:
        extra = f"  ({d.explained_by})" if d.explained_by else ""
        lines.append(f"Drift {d.symbol}: Firestore {d.db_qty:g} vs broker {d.broker_qty:g}{extra}")
    if r.errors:
        lines.append("Errors:")
        lines.extend(f"  - {e}" for e in r.errors)
    if r.critical_issues:
        lines.append("")
        lines.append("NEEDS A PERSON:")
        lines.extend(f"  - {c}" for c in r.critical_issues)
    s = r.stats
    lines.append("")
    lines.append(
        f"Stats: broker calls {s.broker_calls}, Firestore reads {s.firestore_reads} / writes "
        f"{s.firestore_writes} / round trips {s.firestore_round_trips}, Discord messages "
        f"{s.notifications_sent}, dust positions ignored {s.dust_positions}"
    )
    return "\n".join(lines)
