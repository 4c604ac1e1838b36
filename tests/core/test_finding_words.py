"""Every line a person reads ends with what resolves it (issue 11), after the " -> " mark."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from crypto_signals.domain.snapshots import ExpectedEntry, UnreadableItem
from crypto_signals.engine import findings as words
from crypto_signals.engine.messages import Endpoints
from crypto_signals.engine.plan import (
    AlertOrphan,
    BlockReason,
    BlockSymbol,
    DriftKind,
    Evidence,
    Halted,
    Heal,
    OverAllocated,
    RefusalReason,
    RefuseHeal,
    ReportDrift,
    Unverified,
    UnverifiedReason,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HEAL = Heal(
    "p1", "BTC/USD", Decimal(1), NOW, "o1", Decimal(1), Decimal(1), 60, Evidence.CLOSING_FILL
)
ITEM = UnreadableItem("GET /v2/orders?status=closed", "o9", "BTC/USD", None, "side: missing")

LINES = {
    "orphan": words.orphan_line(AlertOrphan("SOL/USD", "long", Decimal(40), Decimal(6000))),
    "unverified": words.unverified_line(
        Unverified("p1", "AVAX/USD", UnverifiedReason.NO_CLOSING_FILL)
    ),
    "drift": words.drift_line(
        ReportDrift("BTC/USD", Decimal(1), Decimal("0.5"), DriftKind.AMBIGUOUS)
    ),
    "refused (limit)": words.refused_line(RefuseHeal(HEAL, RefusalReason.HEAL_LIMIT, 30, 25)),
    "refused (account)": words.refused_line(RefuseHeal(HEAL, RefusalReason.ACCOUNT_MISMATCH)),
    "breaker (now)": words.breaker_line(Halted(30, 25, None, tripped_now=True)),
    "breaker (earlier)": words.breaker_line(Halted(30, 25, NOW, tripped_now=False)),
    "unreadable": words.blocked_line(BlockSymbol("BTC/USD", (ITEM,), ("p1",))),
    "inconsistent": words.blocked_line(
        BlockSymbol(
            "*",
            (),
            ("p1",),
            BlockReason.LISTING_INCONSISTENT,
            (ExpectedEntry("p1", frozenset({"e1"}), "BTC/USD"),),
        )
    ),
    "overallocated": words.overallocated_line(
        OverAllocated("o1", "BTC/USD", Decimal(1), Decimal(2), ("a", "b"))
    ),
    "malformed": words.malformed_line("p1", "qty: must be a number, not a boolean"),
    "run failed": words.run_failed_line("GET /v2/positions: HTTP 500", Endpoints()),
    "heal": words.heal_line(
        {
            "position_id": "p1",
            "symbol": "BTC/USD",
            "exit_fill_price": 1.0,
            "exit_time": NOW,
            "exit_order_id": "o1",
            "realized_pnl_usd": 1.0,
        }
    ),
}
COMMANDS = {
    "orphan": ["crypto-signals adopt SOL/USD", "crypto-signals ack orphan:SOLUSD"],
    "unverified": ["crypto-signals close p1", "--exit-price", "--never-filled"],
    "drift": ["crypto-signals ack drift:BTCUSD"],
    "refused (limit)": ["crypto-signals breaker reset", "crypto-signals reconcile --force"],
    "refused (account)": ["ALPACA_API_KEY"],
    "breaker (now)": ["crypto-signals breaker reset", "crypto-signals reconcile --force"],
    "breaker (earlier)": ["crypto-signals breaker reset", "2026-12-01 12:00:00 UTC"],
    "unreadable": ["Alpaca app"],
    "inconsistent": ["Alpaca API status"],
    "overallocated": ["crypto-signals undo"],
    "malformed": ["fix the document"],
    "run failed": ["crypto-signals runs"],
    "heal": ["crypto-signals undo p1"],
}


@pytest.mark.parametrize("kind", sorted(LINES))
def test_the_line_names_what_resolves_it(kind: str) -> None:
    line = LINES[kind]
    what, _, hint = line.partition(words.HINT)
    assert hint, f"{kind}: no ' -> ' part: {line}"
    for expected in COMMANDS[kind]:
        assert expected in line, f"{kind}: {expected!r} missing from {line!r}"
    assert words.without_hint(line) == what
    assert "{" not in line  # no unformatted placeholder


def test_a_resolved_notice_shows_only_what_it_was() -> None:
    assert "crypto-signals" not in words.without_hint(LINES["orphan"])
