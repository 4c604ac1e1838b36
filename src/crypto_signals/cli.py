"""``crypto-signals``: the operator's command line (contract section 3).

    crypto-signals reconcile [--dry-run] [--json] [--force]
    crypto-signals sandbox demo [--json]

Exit status of ``reconcile``: 0 completed and nothing needs a person (or skipped), 1 completed
and something needs a person, 2 failed or refused (state unreadable, configuration invalid).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from crypto_signals.config import ConfigError, load_settings
from crypto_signals.domain.schemas import ReconciliationReport, RunStatus
from crypto_signals.logging_setup import configure_logging
from crypto_signals.report_text import render_text

EXIT_OK, EXIT_ATTENTION, EXIT_FAILED = 0, 1, 2


def exit_code(report: ReconciliationReport) -> int:
    if report.status is RunStatus.FAILED:
        return EXIT_FAILED
    return EXIT_ATTENTION if report.needs_attention else EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crypto-signals", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("reconcile", help="reconcile Firestore positions with the broker")
    rec.add_argument("--dry-run", action="store_true", help="compute everything, change nothing")
    rec.add_argument("--json", action="store_true", help="print the report as one JSON object")
    rec.add_argument("--force", action="store_true", help="lift the per-run heal limit once")
    sandbox = sub.add_parser("sandbox", help="local stand-ins: emulator, simulator, sink")
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command", required=True)
    demo = sandbox_sub.add_parser("demo", help="seed a scenario and reconcile it end to end")
    demo.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _json_logs_default() -> bool:
    fmt = os.environ.get("LOG_FORMAT", "").lower()
    return fmt == "json" or (not fmt and "K_SERVICE" in os.environ)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        configure_logging(
            json_format=_json_logs_default(), level=os.environ.get("LOG_LEVEL", "INFO")
        )
    except ValueError:
        print("crypto-signals: invalid configuration: LOG_LEVEL: unknown level", file=sys.stderr)
        return EXIT_FAILED
    if args.command == "sandbox":
        from crypto_signals.sandbox.demo import run_demo

        return run_demo(json_output=args.json)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"crypto-signals: {exc}", file=sys.stderr)
        return EXIT_FAILED
    from crypto_signals.bootstrap import build_reconciler

    try:
        reconciler = build_reconciler(settings)
    except Exception as exc:  # noqa: BLE001 - e.g. no Google credentials: exit 2, not a trace
        print(f"crypto-signals: cannot build the reconciler: {type(exc).__name__}", file=sys.stderr)
        return EXIT_FAILED
    report = reconciler.reconcile(dry_run=args.dry_run, force=args.force)
    if args.json:
        print(json.dumps(report.model_dump(mode="json")))
    else:
        print(render_text(report))
    return exit_code(report)


if __name__ == "__main__":
    sys.exit(main())
