"""The fault suite: every case of the fault matrix, judged on the rules of money.

Each case breaks the broker, Discord or Firestore through the stand-ins (never by patching
code), runs the real reconciler, then lets the fault clear and runs again. Each asserts:
no false close, no double heal, no lost alert, no duplicate alert, no alert of a kind the case
does not expect (an unreadable item, an inconsistent listing, a tripped breaker), and a clear
error.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google.cloud import firestore

from crypto_signals.sandbox.alpaca_sim import AlpacaSimulator
from crypto_signals.sandbox.discord_sink import DiscordSink
from crypto_signals.sandbox.fault_lab import CASES, LAB_KEY, LAB_SECRET, Case, Lab, run_case
from crypto_signals.sandbox.firestore_emulator import FirestoreEmulator


@pytest.fixture(scope="module")
def lab(emulator: FirestoreEmulator) -> Iterator[Lab]:
    with (
        AlpacaSimulator(api_key=LAB_KEY, secret_key=LAB_SECRET) as sim,
        DiscordSink() as sink,
    ):
        yield Lab(emulator, firestore.Client(project=emulator.project), sim, sink)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault_case(lab: Lab, case: Case) -> None:
    outcome = run_case(lab, case)

    assert outcome.false_closes == 0, "a position was closed without broker evidence"
    assert outcome.double_heals == 0, "a position was healed by more than one run"
    assert outcome.duplicate_alerts() == 0, f"repeated alerts: {outcome.announcements}"
    assert outcome.lost_alerts(case.expect_announced) == 0, f"lost alerts: {outcome.announcements}"
    assert outcome.unexpected_alerts(case.expect_announced) == 0, (
        f"unexpected alerts: {outcome.announcements}"
    )
    if case.expect_zombie_healed:
        assert outcome.zombie_healed, "the zombie with a closing fill was not healed in the end"
    if case.error_mentions:
        assert any(case.error_mentions in e for e in outcome.errors), outcome.errors
    # The last run, with the fault gone, completed.
    assert outcome.statuses[-1] in ("ok", "issues"), outcome.statuses
