"""The report as a person at a terminal reads it: what was done, what is wrong, what to run.

A skipped run says why and nothing else; a failed run says what failed and what to check,
never a list of empty results (nothing was read); healed positions and zombies still OPEN are
separate lists; amounts carry ``$``; times are UTC to the second.
"""

from __future__ import annotations

from datetime import UTC, datetime

from crypto_signals.domain.schemas import ReconciliationReport, RunStatus


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _usd(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"${value:,.2f}" if abs(value) >= 1 or value == 0 else f"${value:.8f}".rstrip("0")


def _head(r: ReconciliationReport) -> str:
    return (
        f"Reconciliation {r.status.value.upper()}  env={r.environment}  run={r.run_id}  "
        f"started {_time(r.timestamp)}  {r.duration_seconds:.2f}s"
        + ("  [DRY RUN: nothing was written or sent]" if r.dry_run else "")
    )


def render_text(report: ReconciliationReport) -> str:
    r = report
    lines = [_head(r), ""]
    if r.status is RunStatus.SKIPPED:
        lines.append(f"Skipped: {r.skip_reason or 'the run did not start'}")
        return "\n".join(lines)
    if r.status is RunStatus.FAILED:
        lines.append("The run failed before it could decide anything; nothing was read as closed.")
        lines.extend(f"  - {c}" for c in r.critical_issues)
        if r.healed:
            lines.append(f"Heals written before the failure: {len(r.healed)}")
        lines.append("")
        lines.append(_stats(r))
        return "\n".join(lines)

    verb = "Would heal" if r.dry_run else "Healed"
    if r.healed:
        lines.append(f"{verb} as CLOSED_EXTERNALLY ({len(r.healed)}):")
        for h in r.healed:
            price = (
                "entry never filled"
                if h.exit_fill_price is None
                else f"exit {_usd(h.exit_fill_price)}"
            )
            lines.append(
                f"  {h.symbol:<10} {h.position_id}  {price} at {_time(h.exit_time)}  "
                f"order {h.exit_order_id or '-'}  P&L {_usd(h.realized_pnl_usd)} "
                f"({h.realized_pnl_pct:+.2f}%)  [{h.evidence}]"
            )
    else:
        lines.append(f"{verb}: none")
    open_zombies = sorted(set(r.unverified_zombies))
    lines.append(
        "Zombies still OPEN (no broker evidence yet): "
        + (", ".join(open_zombies) if open_zombies else "none")
    )
    lines.append(f"Orphans (at the broker, unknown to Firestore): {', '.join(r.orphans) or 'none'}")
    if r.pending:
        lines.append(f"Pending (too young or entry order working): {', '.join(r.pending)}")
    if r.held:
        lines.append(f"Held out of reconciliation by an operator: {', '.join(r.held)}")
    if r.heals_halted:
        lines.append("Heals are HALTED (the breaker is tripped): `crypto-signals breaker`")
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
    lines.append("")
    lines.append(_stats(r))
    return "\n".join(lines)


def _stats(r: ReconciliationReport) -> str:
    s = r.stats
    return (
        f"Stats: broker calls {s.broker_calls}, Firestore reads {s.firestore_reads} / writes "
        f"{s.firestore_writes} / round trips {s.firestore_round_trips}, Discord messages "
        f"{s.notifications_sent}, dust positions ignored {s.dust_positions}"
    )
