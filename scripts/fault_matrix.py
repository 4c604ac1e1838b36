"""Print the fault matrix: every fault case run against the real stand-ins, as a table.

    .venv/bin/python scripts/fault_matrix.py [--write docs/fault-matrix.md]

Each row: the case, the run statuses in order (the fault, then recovery), positions closed
(the one zombie with a closing fill is the only correct close), false closes, double heals,
Discord messages, duplicate, lost and unexpected alerts (a kind of finding the case does not
expect, announced), and the first error the run reported.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from datetime import UTC, datetime

from crypto_signals.sandbox.alpaca_sim import AlpacaSimulator
from crypto_signals.sandbox.discord_sink import DiscordSink
from crypto_signals.sandbox.fault_lab import CASES, LAB_KEY, LAB_SECRET, Lab, run_case
from crypto_signals.sandbox.firestore_emulator import FirestoreEmulator


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", help="also write the table to this markdown file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)

    header = (
        "| case | what breaks | run statuses | closes | false closes | double heals | messages | "
        "duplicate alerts | lost alerts | unexpected alerts | first error | notes | s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    bad = 0
    with (
        FirestoreEmulator() as emulator,
        AlpacaSimulator(api_key=LAB_KEY, secret_key=LAB_SECRET) as sim,
        DiscordSink() as sink,
    ):
        lab = Lab(emulator, emulator.client(), sim, sink)
        for case in CASES:
            started = time.monotonic()
            try:
                o = run_case(lab, case)
            except AssertionError as exc:
                bad += 1
                rows.append(
                    f"| {case.name} | {case.description} | ASSERTION FAILED: {exc} |"
                    " | | | | | | | | | |"
                )
                continue
            dup, lost = o.duplicate_alerts(), o.lost_alerts(case.expect_announced)
            unexpected = o.unexpected_alerts(case.expect_announced)
            bad += int(bool(o.false_closes or o.double_heals or dup or lost or unexpected))
            first_error = (o.errors[0][:90] if o.errors else "").replace("|", "/")
            rows.append(
                f"| {case.name} | {case.description} | {' → '.join(o.statuses)} | {o.closes} | "
                f"{o.false_closes} | {o.double_heals} | {o.messages} | {dup} | {lost} | "
                f"{unexpected} | {first_error} | {'; '.join(o.notes).replace('|', '/')[:160]} | "
                f"{time.monotonic() - started:.1f} |"
            )
            print(rows[-1], flush=True)
    table = "\n".join([header, *rows])
    stamp = (
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC} on {platform.node()} "
        f"({platform.machine()}, Python {platform.python_version()}) by "
        "`.venv/bin/python scripts/fault_matrix.py --write docs/fault-matrix.md`."
    )
    print()
    print(table)
    if args.write:
        with open(args.write, "w", encoding="utf-8") as fh:
            fh.write("# Fault matrix\n\n" + stamp + "\n\n")
            fh.write(
                "Every case starts from the same book: a zombie with a closing fill (the only "
                "correct close), a zombie without evidence, a matching position and an orphan "
                "(each position with its filled entry order at the broker). Some cases add to "
                "it (orders on the zombie's symbol, an unreadable order, a position whose entry "
                "the broker never lists). The fault is injected through the Alpaca simulator "
                "(or a reading of the API it is configured to follow), the Discord sink or the "
                "Firestore emulator; then the fault clears and the reconciler runs again.\n\n"
            )
            fh.write(table + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
