"""The public entry for callers that reconcile before doing anything else (the signal job).

``reconcile_at_startup`` is advisory by default: a failed run is logged (and alerted by the
reconciler) and the caller goes on. With ``strict`` (or ``RECONCILER_STRICT_STARTUP=true``) it
tells the caller to stop before trading when the run failed or left unverified zombies, because
then the book the job is about to trade on is not known to be right.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from crypto_signals.config import ConfigError, Settings, load_settings
from crypto_signals.domain.schemas import ReconciliationReport, RunStatus
from crypto_signals.engine.reconciler import StateReconciler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartupDecision:
    proceed: bool
    reason: str
    report: ReconciliationReport | None


Builder = Callable[[Settings], StateReconciler]


def _default_builder(settings: Settings) -> StateReconciler:
    from crypto_signals.bootstrap import build_reconciler  # the one builder

    return build_reconciler(settings)


def reconcile_at_startup(
    settings: Settings | None = None,
    *,
    strict: bool | None = None,
    build: Builder = _default_builder,
) -> StartupDecision:
    """Reconcile once; say whether the caller may go on trading.

    ``build`` makes the reconciler from the settings: the production builder unless a caller
    (a test, an embedding job) hands in its own.
    """
    try:
        settings = settings or load_settings()
    except ConfigError as exc:
        # Settings did not load, but a strict job must still stop: read the flag on its own.
        flag = os.environ.get("RECONCILER_STRICT_STARTUP", "").strip().lower()
        strict_mode = strict if strict is not None else flag in ("1", "true", "yes", "on")
        log.error("startup reconciliation not run: %s", exc)
        return StartupDecision(not strict_mode, f"configuration invalid: {exc}", None)
    strict_mode = settings.reconciler_strict_startup if strict is None else strict
    try:
        report = build(settings).reconcile()
    except Exception as exc:  # noqa: BLE001 - a job must get a decision, not a trace
        from crypto_signals.bootstrap import describe_build_error

        reason = describe_build_error(exc)
        log.error("startup reconciliation not run: %s", reason)
        return StartupDecision(not strict_mode, reason, None)
    if report.status is RunStatus.SKIPPED and settings.enabled:
        # Another run holds the lease: the book is being checked, but not by us, not yet.
        reason = "another reconciliation run holds the lease; this start was not reconciled"
        if strict_mode:
            log.error("strict startup: stopping before trading: %s", reason)
            return StartupDecision(False, reason, report)
        return StartupDecision(True, reason, report)
    if report.status is RunStatus.FAILED:
        reason = "reconciliation failed: " + "; ".join(report.errors or report.critical_issues)
    elif report.unverified_zombies:
        reason = f"{len(report.unverified_zombies)} unverified zombie(s) kept OPEN"
    else:
        return StartupDecision(True, f"reconciliation {report.status.value}", report)
    if strict_mode:
        log.error("strict startup: stopping before trading: %s", reason)
        return StartupDecision(False, reason, report)
    log.warning("advisory startup reconciliation: %s; continuing", reason)
    return StartupDecision(True, reason, report)
