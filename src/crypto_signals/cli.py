"""crypto-signals: the reconciler's command line (contract section 3).

Exit status: 0 done and nothing needs a person; 1 done and something needs a person (reconcile
only); 2 failed or refused, with a message saying why.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from crypto_signals.config import ConfigError, Settings, load_settings
from crypto_signals.domain.schemas import ReconciliationReport, RunStatus
from crypto_signals.engine.ports import BrokerUnavailable, StoreUnavailable
from crypto_signals.logging_setup import configure_from_env
from crypto_signals.report_text import render_text

if TYPE_CHECKING:
    from crypto_signals.operations.service import Operator

EXIT_OK, EXIT_ATTENTION, EXIT_FAILED = 0, 1, 2

DESCRIPTION = """\
Keep the crypto-signals Firestore positions honest against the Alpaca broker.

  reconcile          heal zombies, alert orphans, report drift (Cloud Scheduler runs this)
  findings           what the reconciler alerted and has not seen resolved
  ack ID             stop reminders about a finding until it changes
  adopt SYMBOL       track an orphan (a holding the bot did not open) as an OPEN position
  close POSITION_ID  close a position the broker no longer holds, with its exit
  undo POSITION_ID   revert a heal; release POSITION_ID hands it back to the reconciler
  breaker [reset]    show, or reset, the breaker that halts heals
  runs               the most recent runs

Every command that changes something takes --reason, accepts --dry-run, records who did what in
Firestore (reconciler_audit), and never sends anything to the broker.
"""


def exit_code(report: ReconciliationReport) -> int:
    if report.status is RunStatus.FAILED:
        return EXIT_FAILED
    return EXIT_ATTENTION if report.needs_attention else EXIT_OK


def _changing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", required=True, help="why (recorded in the audit)")
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would change; change nothing"
    )
    parser.add_argument("--by", help="who (default: RECONCILER_OPERATOR, else the OS user)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crypto-signals",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rec = sub.add_parser("reconcile", help="reconcile Firestore positions with the broker")
    rec.add_argument("--dry-run", action="store_true", help="compute everything, change nothing")
    rec.add_argument("--json", action="store_true", help="print the report as one JSON object")
    rec.add_argument(
        "--force",
        action="store_true",
        help="apply the run's heals though the breaker would stop them",
    )

    findings = sub.add_parser("findings", help="the open findings")
    findings.add_argument("--json", action="store_true", help="print one JSON object")

    ack = sub.add_parser("ack", help="acknowledge a finding (no reminder until it changes)")
    ack.add_argument("finding_id", metavar="FINDING_ID")
    ack.add_argument("--for", dest="for_", metavar="DURATION", help="90m, 12h, 7d")
    _changing(ack)

    adopt = sub.add_parser("adopt", help="track an orphan as an OPEN position")
    adopt.add_argument("symbol", metavar="SYMBOL")
    _changing(adopt)

    close = sub.add_parser("close", help="close an OPEN position the broker no longer holds")
    close.add_argument("position_id", metavar="POSITION_ID")
    how = close.add_mutually_exclusive_group(required=True)
    how.add_argument("--exit-price", metavar="PRICE")
    how.add_argument("--never-filled", action="store_true", help="the entry never filled")
    close.add_argument("--exit-time", metavar="ISO", help="default: now")
    close.add_argument("--exit-order-id", metavar="ID", help="the broker order that closed it")
    _changing(close)

    for name, text in (
        ("undo", "revert a heal and hold the position out of reconciliation"),
        ("release", "hand a held position back to the reconciler"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("position_id", metavar="POSITION_ID")
        _changing(cmd)

    breaker = sub.add_parser("breaker", help="show (or reset) the heal breaker")
    breaker.add_argument("--json", action="store_true", help="print one JSON object")
    breaker_sub = breaker.add_subparsers(dest="breaker_command")
    reset = breaker_sub.add_parser("reset", help="resume heals")
    _changing(reset)

    runs = sub.add_parser("runs", help="the most recent runs")
    runs.add_argument("--last", type=int, default=10, metavar="N")
    runs.add_argument("--json", action="store_true", help="print one JSON object")

    sandbox = sub.add_parser("sandbox", help="local stand-ins: emulator, simulator, sink")
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command", required=True)
    demo = sandbox_sub.add_parser("demo", help="seed a scenario and reconcile it end to end")
    demo.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _say(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    print(json.dumps(payload) if getattr(args, "json", False) else text)


def _refuse(args: argparse.Namespace, message: str) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": message}))
    else:
        print(f"crypto-signals: {message}", file=sys.stderr)
    return EXIT_FAILED


def actor(explicit: str | None) -> str:
    return explicit or os.environ.get("RECONCILER_OPERATOR", "").strip() or getpass.getuser()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_from_env()
    if args.command == "sandbox":
        from crypto_signals.sandbox.demo import run_demo

        return run_demo(json_output=args.json)
    try:
        settings = load_settings()
    except ConfigError as exc:
        return _refuse(args, str(exc))
    if args.command == "reconcile":
        return _reconcile(args, settings)
    return _operate(args, settings)


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from crypto_signals.bootstrap import build_reconciler, describe_build_error

    try:
        reconciler = build_reconciler(settings)
    except Exception as exc:  # noqa: BLE001 - e.g. no Google credentials: exit 2, not a trace
        return _refuse(args, describe_build_error(exc))
    report = reconciler.reconcile(dry_run=args.dry_run, force=args.force)
    _say(args, report.model_dump(mode="json"), render_text(report))
    return exit_code(report)


def _operate(args: argparse.Namespace, settings: Settings) -> int:
    from crypto_signals.bootstrap import build_operator, describe_build_error, endpoints_of
    from crypto_signals.operations.changes import Refused

    try:
        operator = build_operator(settings, actor=actor(getattr(args, "by", None)))
    except Exception as exc:  # noqa: BLE001 - e.g. no Google credentials
        return _refuse(args, describe_build_error(exc))
    where = endpoints_of(settings)
    try:
        return _dispatch(args, operator)
    except Refused as exc:
        return _refuse(args, str(exc))
    except StoreUnavailable as exc:
        return _refuse(args, f"{exc}; Firestore could not be reached: check {where.firestore}")
    except BrokerUnavailable as exc:
        return _refuse(args, f"{exc}; check that {where.broker} is reachable")


def _dispatch(args: argparse.Namespace, operator: Operator) -> int:
    from crypto_signals.operations.changes import parse_price, parse_time

    if args.command == "findings":
        return _findings(args, operator.findings())
    if args.command == "runs":
        return _runs(args, operator.runs(max(1, args.last)))
    if args.command == "breaker" and args.breaker_command != "reset":
        return _breaker(args, operator.breaker_status())
    change = {"reason": args.reason, "dry_run": args.dry_run}
    if args.command == "ack":
        return _done(args, operator.ack(args.finding_id, for_=args.for_, **change))
    if args.command == "adopt":
        return _done(args, operator.adopt(args.symbol, **change))
    if args.command == "close":
        result = operator.close(
            args.position_id,
            exit_price=parse_price(args.exit_price) if args.exit_price else None,
            exit_time=parse_time(args.exit_time) if args.exit_time else None,
            exit_order_id=args.exit_order_id,
            never_filled=args.never_filled,
            **change,
        )
        return _done(args, result)
    if args.command == "undo":
        return _done(args, operator.undo(args.position_id, **change))
    if args.command == "release":
        return _done(args, operator.release(args.position_id, **change))
    return _done(args, operator.breaker_reset(**change))


def _done(args: argparse.Namespace, result: Any) -> int:
    audit = f" (audit {result.audit_id})" if result.audit_id else " (dry run: nothing written)"
    _say(args, result.to_json(), f"{result.message}{audit}")
    return EXIT_OK


def _findings(args: argparse.Namespace, findings: list[dict[str, Any]]) -> int:
    if not findings:
        text = "No open findings."
    else:
        rows = []
        for f in findings:
            ack = f" [acknowledged by {f['acknowledged_by']}]" if f["acknowledged_by"] else ""
            rows.append(
                f"{f['id']}  ({f['kind']}, since {f['first_seen']}){ack}\n    {f['detail']}"
            )
        text = "\n".join(rows)
    _say(args, {"findings": findings}, text)
    return EXIT_OK


def _breaker(args: argparse.Namespace, status: dict[str, Any]) -> int:
    if status["heals_halted"]:
        text = (
            f"Heals are HALTED since {status['since']} ({status['heals_due']} heals were due, "
            f"limit {status['limit']}; run {status['run_id']}). Resume with "
            '`crypto-signals breaker reset --reason "..."`'
        )
    else:
        text = "Heals are not halted."
    _say(args, status, text)
    return EXIT_OK


def _runs(args: argparse.Namespace, runs: list[dict[str, Any]]) -> int:
    text = (
        "\n".join(
            f"{r['started']}  {r['run_id']}  {r['status']:<8} healed {r['healed']}  "
            f"findings {r['findings']}  {r['duration']}s"
            for r in runs
        )
        or "No runs recorded."
    )
    _say(args, {"runs": runs}, text)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
