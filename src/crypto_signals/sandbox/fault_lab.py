"""The fault matrix: each case breaks the broker, Discord or Firestore in one way, runs the real
reconciler (same builder as production) against the stand-ins, and measures what matters to
the people whose money it is:

- false closes: positions closed without broker evidence (must be 0);
- double heals: positions healed by more than one run (must be 0);
- lost alerts: findings that were never announced once the fault was gone (must be 0);
- duplicate alerts: a finding announced more than once (must be 0);
- unexpected alerts: a kind of finding the case does not expect announced at all (must be 0);
- a clear error: a failed or degraded run says what was wrong.

Used by ``tests/e2e/test_fault_suite.py`` (one test per case) and by
``scripts/fault_matrix.py`` (prints the table for the README).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import firestore

from crypto_signals.bootstrap import build_reconciler
from crypto_signals.config import load_settings
from crypto_signals.domain.schemas import ReconciliationReport
from crypto_signals.sandbox.alpaca_sim import AlpacaSimulator, Fault
from crypto_signals.sandbox.discord_sink import DiscordSink, SinkFault
from crypto_signals.sandbox.firestore_emulator import FirestoreEmulator
from crypto_signals.sandbox.scenarios import World, entry_order_id, position_doc

LAB_KEY = "PKLABKEY0123456789"
LAB_SECRET = "lab-secret-0123456789abcdefghij"  # noqa: S105 - the simulator's fake credential
COLLECTION = "test_positions"

# The standard book every case starts from.
ZOMBIE = "sig-eth-zombie"  # closed by a manual sell: must be healed once
NO_EVIDENCE = "sig-avax-noevidence"  # gone at the broker, no fill: must stay OPEN
MATCHING = "sig-btc-matching"  # open in both places: must stay OPEN
ORPHAN_SYMBOL = "SOL/USD"
# Extra items some cases add (fixed ids, so that a case's expected error can name them).
GHOST = "sig-eth-ghost"  # an ETH/USD position whose entry order the broker never lists
UNREADABLE_ORDER_ID = "0b7e3c1a-55d2-4f0e-9c6b-2d8a41f7e913"  # on ETH/USD, the zombie's symbol
OTHER_UNREADABLE_ORDER_ID = "6a1f9d24-3c8e-4b57-a0d1-7e52c9b84f06"  # on LINK/USD, unrelated
# How each expected announcement reads in a message (resolved notices are not counted).
FINDING_MARKERS = {
    "orphan": "SOL/USD long",
    "unverified": f"position {NO_EVIDENCE} kept OPEN",
    "heal": f"position {ZOMBIE}: exit",
    "breaker": "until the breaker is reset",
    "unreadable": "the broker sent an unreadable item",
    "inconsistent": "the broker's order listing is inconsistent",
}
# The simulator's configurable readings of the API (cases change them; reset() restores them).
_SIM_SETTINGS = (
    "symbol_filter",
    "legs_count_toward_limit",
    "open_statuses",
    "closed_statuses",
    "rate_limit",
    "enforce_rate_limit",
)


@dataclass
class Lab:
    emulator: FirestoreEmulator
    db: firestore.Client
    sim: AlpacaSimulator
    sink: DiscordSink
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    reports: list[ReconciliationReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sim_settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # What the simulator was built with: every case starts from it.
        self.sim_settings = {name: getattr(self.sim, name) for name in _SIM_SETTINGS}

    def env(self, **overrides: str) -> dict[str, str]:
        return {
            "ENVIRONMENT": "DEV",
            "RECONCILER_ENABLED": "true",
            "GOOGLE_CLOUD_PROJECT": self.emulator.project,
            "FIRESTORE_EMULATOR_HOST": self.emulator.address,
            "ALPACA_API_KEY": LAB_KEY,
            "ALPACA_SECRET_KEY": LAB_SECRET,
            "ALPACA_BASE_URL": self.sim.base_url,
            "ALPACA_TIMEOUT_SECONDS": "2",
            "ALPACA_MAX_RETRIES": "1",
            "DISCORD_WEBHOOK_URL": self.sink.webhook_url,
            "DISCORD_TIMEOUT_SECONDS": "1",
            "FIRESTORE_TIMEOUT_SECONDS": "2",
            **overrides,
        }

    def reset(self) -> None:
        if not self.emulator.is_running():
            self.emulator.start()
        self.emulator.clear()
        self.sim.reset()  # state, faults and requests; not the settings below
        for name, value in self.sim_settings.items():
            setattr(self.sim, name, value)
        self.sink.reset()
        self.reports.clear()
        self.notes.clear()

    def seed(self) -> None:
        world, now, hours = World(self.db, self.sim, COLLECTION), self.now, timedelta(hours=1)
        world.position(position_doc(MATCHING, "BTC/USD", 0.5, 61000.0, created_at=now - 6 * hours))
        self.sim.add_position("BTC/USD", "0.5", avg_entry_price="61000", current_price="62000")
        world.position(position_doc(ZOMBIE, "ETH/USD", 2.0, 3000.0, created_at=now - 5 * hours))
        self.sim.add_fill("ETH/USD", "sell", "2", price="3150", at=now - hours)
        world.position(
            position_doc(NO_EVIDENCE, "AVAX/USD", 100.0, 35.0, created_at=now - 8 * hours)
        )
        self.sim.add_position(ORPHAN_SYMBOL, "40", avg_entry_price="150", current_price="152")

    def run(self, *, force: bool = False, **overrides: str) -> ReconciliationReport:
        settings = load_settings(self.env(**overrides))
        report = build_reconciler(settings, client=self.db).reconcile(force=force)
        self.reports.append(report)
        return report

    def run_concurrently(self, n: int, **overrides: str) -> list[ReconciliationReport]:
        """n runs at the same moment, each with its own clients, as n instances would."""
        barrier = threading.Barrier(n)
        out: list[ReconciliationReport] = []
        lock = threading.Lock()

        def one() -> None:
            reconciler = build_reconciler(
                load_settings(self.env(**overrides)),
                client=firestore.Client(project=self.emulator.project),
            )
            barrier.wait()
            report = reconciler.reconcile()
            with lock:
                out.append(report)

        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        self.reports.extend(out)
        return out

    def doc(self, pid: str) -> dict[str, Any]:
        return self.db.collection(COLLECTION).document(pid).get().to_dict() or {}

    def closed_listings(self) -> int:
        """How many closed-order pages the simulator has served (every run of the case)."""
        return sum(
            1
            for r in self.sim.requests
            if r.endpoint == "orders" and r.query.get("status") == ["closed"]
        )

    # -- what a case is judged on ---------------------------------------------------------------

    def outcome(self) -> Outcome:
        # Every document of the book (a case may add some), not only the standard three.
        closed = {
            snap.id
            for snap in self.db.collection(COLLECTION).stream()
            if (snap.to_dict() or {}).get("status") == "CLOSED"
        }
        heals_per_position = Counter(
            h.position_id for r in self.reports for h in r.healed if not r.dry_run
        )
        text = "\n".join(_message_text(m) for m in self.sink.messages)
        announcements = {
            name: sum(_message_text(m, resolved=False).count(marker) for m in self.sink.messages)
            for name, marker in FINDING_MARKERS.items()
        }
        return Outcome(
            statuses=tuple(r.status.value for r in self.reports),
            closes=len(closed),
            false_closes=len(closed - {ZOMBIE}),
            double_heals=sum(1 for c in heals_per_position.values() if c > 1),
            messages=len(self.sink.messages),
            announcements=announcements,
            errors=tuple(e for r in self.reports for e in r.errors),
            zombie_healed=ZOMBIE in closed,
            text=text,
            notes=tuple(self.notes),
        )


def _message_text(payload: dict[str, Any], *, resolved: bool = True) -> str:
    parts = [str(payload.get("content", ""))]
    for embed in payload.get("embeds", []):
        if not resolved and str(embed.get("title", "")).startswith("Resolved"):
            continue
        parts.append(str(embed.get("title", "")))
        parts.append(str(embed.get("description", "")))
    return "\n".join(parts)


@dataclass(frozen=True)
class Outcome:
    statuses: tuple[str, ...]
    closes: int
    false_closes: int
    double_heals: int
    messages: int
    announcements: dict[str, int]
    errors: tuple[str, ...]
    zombie_healed: bool
    text: str
    notes: tuple[str, ...] = ()

    def duplicate_alerts(self) -> int:
        return sum(max(0, n - 1) for n in self.announcements.values())

    def lost_alerts(self, expect: tuple[str, ...]) -> int:
        return sum(1 for name in expect if self.announcements.get(name, 0) == 0)

    def unexpected_alerts(self, expect: tuple[str, ...]) -> int:
        """Announcements of a kind of finding the case does not expect at all."""
        return sum(n for name, n in self.announcements.items() if name not in expect)


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    act: Callable[[Lab], None]
    # After the fault is gone (the last run is healthy), these must have been announced once.
    expect_announced: tuple[str, ...] = ("orphan", "unverified", "heal")
    expect_zombie_healed: bool = True
    # A substring every failed/degraded run's errors must contain (the "clear error").
    error_mentions: str | None = None


def _broker_fault(endpoint: str, fault: Fault, mentions: str) -> Callable[[Lab], None]:
    def act(lab: Lab) -> None:
        lab.sim.inject_fault(endpoint, fault)
        started = time.monotonic()
        failed = lab.run()
        lab.notes.append(f"failed run took {time.monotonic() - started:.1f}s")
        assert failed.status.value == "failed", failed.status
        assert lab.doc(ZOMBIE)["status"] == "OPEN"  # nothing healed on a failed read
        lab.sim.clear_faults()
        lab.run()  # the broker is back: the next scheduled run does the work

    return act


def _fails_after_alerts(lab: Lab) -> None:
    # Findings were announced; then the broker fails. The failed run knows nothing of them:
    # it must not call them resolved, and recovery must not announce them again.
    lab.run()
    lab.sim.inject_fault("positions", Fault(kind="status", status=502))
    failed = lab.run()
    assert failed.status.value == "failed", failed.status
    assert not any("Resolved" in _message_text(m) for m in lab.sink.messages)
    lab.sim.clear_faults()
    lab.run()
    resolved = [m for m in lab.sink.messages if "Resolved" in _message_text(m)]
    assert all(
        "SOL/USD" not in _message_text(m, resolved=True).split("Resolved", 1)[1] for m in resolved
    )


def _closed_orders_fail(lab: Lab) -> None:
    # The closed-order listing fails; the open-orders listing, asked at the same time as the
    # account and the positions (so in no fixed order with them), does not.
    lab.sim.inject_fault("orders", Fault(kind="status", status=500, query={"status": "closed"}))
    failed = lab.run()
    assert failed.status.value == "failed", failed.status
    assert lab.doc(ZOMBIE)["status"] == "OPEN"
    lab.sim.clear_faults()
    lab.run()


def _discord_fault(fault: SinkFault) -> Callable[[Lab], None]:
    def act(lab: Lab) -> None:
        lab.sink.inject_fault(fault)
        first = lab.run()
        assert lab.doc(ZOMBIE)["status"] == "CLOSED"  # heals do not wait for Discord
        lab.notes.append(f"first run: {first.status.value}")
        lab.sink.clear_faults()
        lab.run()
        lab.run()  # a third run must not repeat anything

    return act


def _short_page(lab: Lab) -> None:
    """Pages of 2 orders whatever ``limit`` asks: the listing runs into the page cap (40 pages,
    each bringing one new order past the overlapping cursor) before the zombie's closing sell,
    so the first run must say its evidence is incomplete and heal nothing it cannot prove."""
    for i in range(50):  # canceled limit buys between the zombie's entry and its closing sell
        lab.sim.add_order(
            symbol="ETH/USD",
            side="buy",
            qty="0.01",
            status="canceled",
            order_type="limit",
            limit_price="2900",
            submitted_at=lab.now - timedelta(hours=4) + timedelta(minutes=i),
        )
    lab.sim.inject_fault("orders", Fault(kind="short_page", page_size=2, times=None))
    cut = lab.run()
    pages = lab.closed_listings()
    lab.notes.append(f"cut run: {pages} closed-order pages, {cut.status.value}")
    assert pages >= 40, pages  # the page cap was reached
    assert any(e.startswith("incomplete_evidence") for e in cut.errors), cut.errors
    assert lab.doc(ZOMBIE)["status"] == "OPEN"  # its sell lies in the part never listed
    lab.sim.clear_faults()
    healed = lab.run()
    assert [h.position_id for h in healed.healed] == [ZOMBIE]


def _rate_limit_resets_in_run(lab: Lab) -> None:
    """One 429 whose X-RateLimit-Reset is a second or two away: waited out, same run heals."""
    lab.sim.inject_fault("positions", Fault(kind="rate_limit", reset_after=1, times=1))
    report = lab.run()
    limited = sum(1 for r in lab.sim.requests if r.status == 429)
    lab.notes.append(
        f"{limited} answer(s) 429, waited out; run took {report.duration_seconds:.1f}s"
    )
    assert limited >= 1
    assert report.status.value in ("ok", "issues"), report.errors
    assert [h.position_id for h in report.healed] == [ZOMBIE]  # healed in that same run
    lab.run()  # nothing repeats


def _rate_limit_past_deadline(lab: Lab) -> None:
    """A 429 whose reset comes long after the run's deadline (80% of a 5 s lease): the run
    fails at once rather than sleep past its lease; the next run, limit gone, heals. The limit
    holds for every route until its reset, and account, positions and open orders are asked at
    once: the account, the first of them, is the call named."""
    lab.sim.inject_fault("account", Fault(kind="rate_limit", reset_after=30, times=1))
    failed = lab.run(RECONCILER_LEASE_SECONDS="5")
    lab.notes.append(f"failed run took {failed.duration_seconds:.1f}s (reset in 30 s)")
    assert failed.status.value == "failed", failed.status
    assert failed.duration_seconds < 2.0, failed.duration_seconds  # did not wait for the reset
    assert lab.doc(ZOMBIE)["status"] == "OPEN"
    lab.sim.clear_faults()  # the quota resets
    lab.run()


def _compact_filter(lab: Lab) -> None:
    """The live ``symbols`` filter might match ``ETHUSD`` only: the slash listing then lacks
    the known entry orders, the reconciler lists again with the compact form, and heals."""
    lab.sim.symbol_filter = "compact"
    report = lab.run()
    forms = [
        q.get("symbols", ["(unfiltered)"])[0]
        for q in (r.query for r in lab.sim.requests if r.endpoint == "orders")
        if q.get("status") == ["closed"]
    ]
    lab.notes.append(f"closed listings sent symbols as: {', '.join(dict.fromkeys(forms))}")
    assert "AVAX/USD,ETH/USD" in forms, forms  # the form sent first: matches nothing here
    assert "AVAXUSD,ETHUSD" in forms, forms  # the re-listing that found the entries
    assert [h.position_id for h in report.healed] == [ZOMBIE]  # in the first run
    lab.run()


def _legs_count(lab: Lab) -> None:
    """Legs count toward ``limit``: 200 canceled bracket entries with two legs each (600
    items) on the zombie's symbol before its closing sell; pages of 500 items hold 166 orders,
    and a short page must not be read as the last one."""
    lab.sim.legs_count_toward_limit = True
    for i in range(200):
        lab.sim.add_order(
            symbol="ETH/USD",
            side="buy",
            qty="0.01",
            status="canceled",
            order_type="limit",
            limit_price="2900",
            submitted_at=lab.now - timedelta(hours=4) + timedelta(seconds=10 * i),
            order_class="bracket",
            legs=[
                {"order_type": "limit", "limit_price": "3300", "status": "canceled"},
                {"order_type": "stop", "stop_price": "2700", "status": "canceled"},
            ],
        )
    report = lab.run()
    pages = lab.closed_listings()
    lab.notes.append(f"{pages} closed-order pages for 203 orders and 400 legs")
    assert pages >= 3, pages  # two short pages, then one that brought nothing new
    assert [h.position_id for h in report.healed] == [ZOMBIE]
    lab.run()


def _first(lines: list[str], prefix: str) -> str:
    return next((line for line in lines if line.startswith(prefix)), "(none)")


def _unreadable_order(
    symbol: str, order_id: str, *, status: str
) -> Callable[[Lab], dict[str, Any]]:
    def add(lab: Lab) -> dict[str, Any]:
        served = lab.sim.add_order(
            symbol=symbol,
            side="buy",
            qty="1",
            status=status,
            order_type="limit",
            limit_price="10",
            submitted_at=lab.now - timedelta(hours=2),
            id=order_id,
        )
        # The spec allows a null submitted_at; with no created_at either it cannot be read.
        lab.sim.patch_order(order_id, submitted_at=None, created_at=None)
        return served

    return add


def _unreadable_elsewhere(lab: Lab) -> None:
    """An open order on an unrelated symbol the reconciler cannot read (and an open multi-leg
    options order, whose top-level symbol and side are empty): named in the errors, and the
    run goes on and heals the zombie."""
    lab.sim.add_mleg_order(
        legs=[
            {"symbol": "AAPL261218C00200000", "side": "buy"},
            {"symbol": "AAPL261218C00210000", "side": "sell"},
        ],
        submitted_at=lab.now - timedelta(hours=2),
        status="new",
        limit_price="1.25",
    )
    _unreadable_order("LINK/USD", OTHER_UNREADABLE_ORDER_ID, status="new")(lab)
    report = lab.run()
    assert report.status.value == "issues", report.status
    assert [h.position_id for h in report.healed] == [ZOMBIE]
    assert not any("no heal on" in c for c in report.critical_issues), report.critical_issues
    lab.run()


def _unreadable_on_zombie(lab: Lab) -> None:
    """A closed order on ETH/USD that cannot be read could be the zombie's evidence (or
    contradict it): no heal on ETH/USD this run, a critical issue names it; the rest of the
    book is reconciled. Then the broker serves it readably again and the next run heals."""
    served = _unreadable_order("ETH/USD", UNREADABLE_ORDER_ID, status="canceled")(lab)
    blocked = lab.run()
    assert blocked.status.value == "issues", blocked.status
    assert blocked.healed == []
    assert lab.doc(ZOMBIE)["status"] == "OPEN"
    assert any(
        c.startswith("no heal on ETH/USD this run: the broker sent an unreadable item")
        and UNREADABLE_ORDER_ID in c
        for c in blocked.critical_issues
    ), blocked.critical_issues
    assert NO_EVIDENCE in blocked.unverified_zombies  # other symbols are still reconciled
    lab.notes.append(f"critical: {_first(blocked.critical_issues, 'no heal on')}")
    # The fault clears: the order is served with its timestamps again.
    lab.sim.patch_order(
        UNREADABLE_ORDER_ID, submitted_at=served["submitted_at"], created_at=served["created_at"]
    )
    healed = lab.run()
    assert [h.position_id for h in healed.healed] == [ZOMBIE]
    lab.run()


def _listing_inconsistent(lab: Lab) -> None:
    """A fresh ETH/USD position whose entry order no listing shows (slash, compact,
    unfiltered): the listing cannot be trusted, so no heal at all this run and a critical
    issue says why. Then the ghost document is removed and the next run heals."""
    world = World(lab.db, lab.sim, COLLECTION)
    world.position(
        position_doc(GHOST, "ETH/USD", 1.0, 3050.0, created_at=lab.now - timedelta(hours=3)),
        entry=False,
    )
    # The broker has its entry order (found by id), but listed far outside the window its
    # document implies: no listing form shows it.
    lab.sim.add_fill(
        "ETH/USD",
        "buy",
        "1",
        price="3050",
        at=lab.now - timedelta(days=2),
        id=entry_order_id(GHOST),
        client_order_id=GHOST,
    )
    blocked = lab.run()
    pages = lab.closed_listings()
    assert blocked.healed == []
    assert lab.doc(ZOMBIE)["status"] == "OPEN"
    assert lab.doc(GHOST)["status"] == "OPEN"
    assert any(
        "the broker's order listing is inconsistent" in c and GHOST in c
        for c in blocked.critical_issues
    ), blocked.critical_issues
    lab.notes.append(f"critical: {_first(blocked.critical_issues, 'no heal on')}")
    lab.notes.append(f"{pages} closed-order pages (3 symbol forms)")
    lab.db.collection(COLLECTION).document(GHOST).delete()
    healed = lab.run()
    assert [h.position_id for h in healed.healed] == [ZOMBIE]
    lab.run()


def _entry_unknown(lab: Lab) -> None:
    """A fresh ETH/USD position whose entry order id the broker does not know at all (a typo,
    another account's order): that position alone is unverified; the zombie still heals."""
    world = World(lab.db, lab.sim, COLLECTION)
    world.position(
        position_doc(GHOST, "ETH/USD", 1.0, 3050.0, created_at=lab.now - timedelta(hours=3)),
        entry=False,
    )
    report = lab.run()
    assert [h.position_id for h in report.healed] == [ZOMBIE]
    assert GHOST in report.unverified_zombies
    assert not any("inconsistent" in c for c in report.critical_issues)
    lab.notes.append(f"{GHOST} unverified: entry order unknown to the broker")
    lab.db.collection(COLLECTION).document(GHOST).delete()
    lab.run()


def _firestore_down(lab: Lab) -> None:
    # Firestore disappears while the run waits on the broker: nothing may be half-written.
    lab.sim.inject_fault("orders", Fault(kind="delay", seconds=1.5, times=1))
    stopper = threading.Timer(0.3, lab.emulator.stop)
    stopper.start()
    report = lab.run()
    stopper.join()
    lab.notes.append(f"run with Firestore gone: {report.status.value}, {report.errors[:1]}")
    assert report.status.value in ("failed", "issues")
    lab.emulator.start()
    # The emulator keeps no data across restarts: re-seed and show the next run recovers.
    lab.sim.reset()
    lab.sink.reset()
    lab.reports.clear()
    lab.seed()
    lab.run()


def _concurrent(n: int) -> Callable[[Lab], None]:
    def act(lab: Lab) -> None:
        reports = lab.run_concurrently(n)
        ran = [r for r in reports if r.status.value != "skipped"]
        lab.notes.append(f"{len(ran)} of {n} ran, {n - len(ran)} skipped (lease)")
        lab.run()

    return act


def _crash_between_heal_and_message(lab: Lab) -> None:
    """A real crash: the CLI process is killed after its heal is written, before Discord."""
    lab.sink.inject_fault(SinkFault(kind="hang", seconds=30, times=None))
    env = {**os.environ, **lab.env(RECONCILER_LEASE_SECONDS="3", DISCORD_TIMEOUT_SECONDS="20")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "crypto_signals.cli", "reconcile", "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while lab.doc(ZOMBIE).get("status") != "CLOSED":
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError("the run never healed before it ended")
            time.sleep(0.05)
        # Wait until it is stuck on Discord (the sink saw the POST), then kill -9.
        while not lab.sink.attempts and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    lab.notes.append("killed mid-notification")
    lab.sink.reset()  # the hung POST never reached anyone
    time.sleep(3.2)  # the crashed run's lease expires
    lab.run()
    lab.run()


def _breaker(lab: Lab) -> None:
    """More heals due than the limit: none is applied, later runs heal nothing, and only a
    forced run applies them (paper keys on the live collection look like this)."""
    tripped = lab.run(RECONCILER_HEAL_LIMIT="0")
    assert tripped.heals_halted
    assert tripped.reconciled_count == 0
    for _ in range(2):  # the next scheduled runs: still halted, nothing healed
        later = lab.run(RECONCILER_HEAL_LIMIT="0")
        assert later.heals_halted
        assert lab.doc(ZOMBIE)["status"] == "OPEN"
    forced = lab.run(force=True, RECONCILER_HEAL_LIMIT="0")
    assert not forced.heals_halted
    lab.notes.append(f"halted for {len(lab.reports) - 1} runs; --force healed it")


def _breaker_concurrent(lab: Lab) -> None:
    """Two runs at once, both over the limit: one trips it (the other is skipped); none heals."""
    lab.run_concurrently(2, RECONCILER_HEAL_LIMIT="0")
    assert lab.doc(ZOMBIE)["status"] == "OPEN"
    assert lab.run(RECONCILER_HEAL_LIMIT="0").heals_halted
    lab.run(force=True, RECONCILER_HEAL_LIMIT="0")


def _repeat(lab: Lab) -> None:
    for _ in range(3):
        lab.run()


CASES: tuple[Case, ...] = (
    Case("healthy, three runs", "no fault; runs repeat", _repeat),
    Case(
        "broker 500 on positions",
        "persistent HTTP 500",
        _broker_fault("positions", Fault(kind="status", status=500), "HTTP 500"),
        error_mentions="HTTP 500",
    ),
    Case(
        "broker 429 storm",
        "429 on every call, beyond the waits for its reset",
        _broker_fault("positions", Fault(kind="rate_limit", retry_after=0), "HTTP 429"),
        error_mentions="HTTP 429: rate limit exceeded; still limited after 1 wait(s)",
    ),
    Case(
        "rate limit resets within the run",
        "one 429, X-RateLimit-Reset 1 s away",
        _rate_limit_resets_in_run,
    ),
    Case(
        "rate limit resets after the deadline",
        "one 429, reset in 30 s; lease 5 s",
        _rate_limit_past_deadline,
        error_mentions="run_deadline: GET /v2/account: HTTP 429",
    ),
    Case(
        "broker hangs",
        "positions never answer",
        _broker_fault("positions", Fault(kind="hang", seconds=30), "timed out"),
        error_mentions="timed out",
    ),
    Case(
        "malformed positions body",
        "200 with non-JSON",
        _broker_fault("positions", Fault(kind="malformed"), "not JSON"),
        error_mentions="not JSON",
    ),
    Case(
        "truncated open-orders body",
        "200 with half a JSON document",
        _broker_fault("orders", Fault(kind="truncated", times=1), "not JSON"),
        error_mentions="not JSON",
    ),
    Case(
        "wrong-shape account",
        "200 with required fields missing",
        _broker_fault("account", Fault(kind="wrong_shape"), "unexpected response"),
        error_mentions="unexpected response",
    ),
    Case(
        "broker fails after alerts went out",
        "a 502 run between two healthy runs",
        _fails_after_alerts,
        error_mentions="HTTP 502",
    ),
    Case(
        "closed-orders listing fails",
        "open orders fine, order history 500",
        _closed_orders_fail,
        error_mentions="orders?status=closed: HTTP 500",
    ),
    Case(
        "pagination stops short",
        "order pages of 2 whatever limit asks; the 40-page cap is hit",
        _short_page,
        error_mentions="incomplete_evidence",
    ),
    Case(
        "symbol filter matches the compact form only",
        "symbols=ETH/USD matches nothing, ETHUSD does",
        _compact_filter,
    ),
    Case(
        "legs count toward limit",
        "200 bracket entries (600 items) on the zombie's symbol",
        _legs_count,
    ),
    Case(
        "an unreadable order on another symbol",
        "open LINK/USD order with null timestamps; an mleg order",
        _unreadable_elsewhere,
        error_mentions=f"malformed_broker_data: {OTHER_UNREADABLE_ORDER_ID}",
    ),
    Case(
        "an unreadable order on the zombie's symbol",
        "closed ETH/USD order with null timestamps, then fixed",
        _unreadable_on_zombie,
        expect_announced=("orphan", "unverified", "heal", "unreadable"),
        error_mentions=f"malformed_broker_data: {UNREADABLE_ORDER_ID}",
    ),
    Case(
        "broker listing inconsistent",
        "a fresh position's entry order never listed, then removed",
        _listing_inconsistent,
        expect_announced=("orphan", "unverified", "heal", "inconsistent"),
    ),
    Case(
        "entry order unknown to the broker",
        "a document names an entry order the broker does not have",
        _entry_unknown,
        expect_announced=("orphan", "unverified", "heal"),
    ),
    Case(
        "Discord 500",
        "webhook answers 500 on every attempt",
        _discord_fault(SinkFault(kind="status", status=500, times=None)),
        error_mentions="Discord delivery failed",
    ),
    Case(
        "Discord 429 storm",
        "retry_after beyond the client's budget",
        _discord_fault(SinkFault(kind="rate_limit", retry_after=60, times=None)),
        error_mentions="Discord delivery failed",
    ),
    Case(
        "Discord 429 once",
        "one 429 with a short retry_after",
        _discord_fault(SinkFault(kind="rate_limit", retry_after=0.2, times=1)),
    ),
    Case(
        "Discord timeout",
        "webhook hangs",
        _discord_fault(SinkFault(kind="hang", seconds=5, times=None)),
        error_mentions="Discord delivery failed",
    ),
    Case(
        "Firestore stops mid-run",
        "emulator killed while the run waits on the broker",
        _firestore_down,
    ),
    Case("2 concurrent runs", "two runs at the same moment", _concurrent(2)),
    Case("8 concurrent runs", "eight runs at the same moment", _concurrent(8)),
    Case(
        "breaker trips",
        "more heals due than RECONCILER_HEAL_LIMIT: halted until --force",
        _breaker,
        expect_announced=("orphan", "unverified", "heal", "breaker"),
    ),
    Case(
        "breaker trips, 2 concurrent runs",
        "two runs over the limit at the same moment",
        _breaker_concurrent,
        expect_announced=("orphan", "unverified", "heal", "breaker"),
    ),
    Case(
        "crash between heal and message",
        "process killed after the heal, before Discord",
        _crash_between_heal_and_message,
    ),
)


def run_case(lab: Lab, case: Case) -> Outcome:
    lab.reset()
    lab.seed()
    case.act(lab)
    return lab.outcome()
