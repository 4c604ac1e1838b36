"""Issue 10 end to end: the real Alpaca, not our model of it.

Each test makes the simulator behave the way the live API may (a filter that matches one
symbol form, legs that count toward ``limit``, items alpaca-py cannot parse, a rate limit
shared with the signal job, a zombie from weeks ago) and runs the production build against it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from crypto_signals.domain.schemas import RunStatus
from crypto_signals.engine.reconciler import StateReconciler
from crypto_signals.sandbox.alpaca_sim import Fault
from crypto_signals.sandbox.discord_sink import DiscordSink
from crypto_signals.sandbox.scenarios import World, entry_order_id, position_doc

Build = Callable[..., StateReconciler]
H = timedelta(hours=1)


def zombie(world: World, pid: str, symbol: str, now: datetime, *, qty: str = "1") -> None:
    world.position(position_doc(pid, symbol, float(qty), 100.0, created_at=now - 5 * H))
    world.sim.add_fill(symbol, "sell", qty, price="110", at=now - H)


def listings(world: World) -> list[dict[str, list[str]]]:
    """The query of every GET /v2/orders the run made, in order."""
    return [
        r.query
        for r in world.sim.requests
        if r.endpoint == "orders" and r.query.get("status") == ["closed"]
    ]


def test_1_an_unreadable_order_on_another_symbol_does_not_stop_the_run(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    zombie(world, "z", "ETH/USD", now)
    # An open multi-leg options order: top-level symbol and side are empty strings.
    world.sim.add_mleg_order(
        legs=[{"symbol": "AAPL250620C00100000", "side": "buy"}],
        submitted_at=now - 2 * H,
        status="new",
    )
    ipo = world.sim.add_order(
        symbol="NEWCO", side="buy", qty="10", status="canceled", submitted_at=now - 2 * H
    )
    world.sim.patch_order(ipo["id"], asset_class="ipo")

    report = make_reconciler().reconcile()

    assert report.status is not RunStatus.FAILED
    assert [h.position_id for h in report.healed] == ["z"]


def test_1_an_unreadable_order_on_a_zombies_symbol_blocks_that_symbol_only(
    world: World, sink: DiscordSink, make_reconciler: Build, now: datetime
) -> None:
    zombie(world, "z-eth", "ETH/USD", now)
    zombie(world, "z-sol", "SOL/USD", now)
    bad = world.sim.add_order(
        symbol="ETH/USD", side="sell", qty="1", status="canceled", submitted_at=now - 2 * H
    )
    world.sim.patch_order(bad["id"], submitted_at=None, created_at=None)

    report = make_reconciler().reconcile()

    assert [h.position_id for h in report.healed] == ["z-sol"]
    assert world.read("z-eth")["status"] == "OPEN"
    assert any("no heal on ETH/USD" in c and bad["id"] in c for c in report.critical_issues)
    assert "Unreadable broker data" in str(sink.messages)


def test_2_legs_that_count_toward_limit_never_cut_the_listing_short(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    world.sim.legs_count_toward_limit = True
    # 300 bracket entries with two legs each: 900 items against a limit of 500.
    for i in range(300):
        world.sim.add_order(
            symbol="BTC/USD",
            side="buy",
            qty="0.01",
            status="filled",
            submitted_at=now - 4 * H + timedelta(seconds=i),
            filled_at=now - 4 * H + timedelta(seconds=i),
            filled_avg_price="60000",
            order_class="bracket",
            legs=[
                {"order_type": "limit", "status": "new"},
                {"order_type": "stop", "status": "new"},
            ],
        )
    zombie(world, "z", "BTC/USD", now)  # its sell is the newest order of all

    report = make_reconciler().reconcile()

    assert [h.position_id for h in report.healed] == ["z"]
    assert len(listings(world)) >= 3  # pages until one brought nothing new


def test_3_a_filter_that_matches_only_the_compact_form_is_caught_and_relisted(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    world.sim.symbol_filter = "compact"
    zombie(world, "z", "ETH/USD", now)

    report = make_reconciler().reconcile()

    assert [h.position_id for h in report.healed] == ["z"]
    forms = [q.get("symbols", ["(none)"])[0] for q in listings(world)]
    assert "ETH/USD" in forms
    assert "ETHUSD" in forms


def test_3_a_listing_that_never_shows_a_known_entry_heals_nothing_and_says_so(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    zombie(world, "z", "ETH/USD", now)
    # The broker has this position's entry order (found by id), but no listing form shows
    # it: it is listed two days before the document says the position was entered.
    world.position(
        position_doc("ghost", "ETH/USD", 1.0, 100.0, created_at=now - 6 * H), entry=False
    )
    world.sim.add_fill(
        "ETH/USD",
        "buy",
        "1",
        price="100",
        at=now - timedelta(days=2),
        id=entry_order_id("ghost"),
        client_order_id="ghost",
    )

    report = make_reconciler().reconcile()

    assert report.healed == []
    assert world.read("z")["status"] == "OPEN"
    assert any("listing is inconsistent" in c and "ghost" in c for c in report.critical_issues)
    assert len(listings(world)) >= 3  # slash, compact, unfiltered


def test_4_a_rate_limit_that_resets_within_the_run_is_waited_out(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    zombie(world, "z", "ETH/USD", now)
    world.sim.inject_fault("positions", Fault(kind="rate_limit", reset_after=1, times=1))

    report = make_reconciler(ALPACA_MAX_RETRIES="2").reconcile()

    assert report.status is RunStatus.OK
    assert [h.position_id for h in report.healed] == ["z"]


def test_4_a_rate_limit_that_resets_after_the_deadline_fails_the_run_at_once(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    zombie(world, "z", "ETH/USD", now)
    world.sim.inject_fault("positions", Fault(kind="rate_limit", reset_after=30, times=1))

    report = make_reconciler(RECONCILER_LEASE_SECONDS="10").reconcile()

    assert report.status is RunStatus.FAILED
    assert report.duration_seconds < 5
    assert any(e.startswith("run_deadline") and "HTTP 429" in e for e in report.errors)
    assert world.read("z")["status"] == "OPEN"


def test_5_an_old_unverified_zombie_does_not_drag_the_listing_back(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    old = position_doc("old", "AVAX/USD", 10.0, 30.0, created_at=now - timedelta(days=40))
    world.position(old)
    zombie(world, "fresh", "ETH/USD", now)

    report = make_reconciler().reconcile()

    assert [h.position_id for h in report.healed] == ["fresh"]
    assert report.unverified_zombies == ["old"]
    after = listings(world)[0]["after"][0]  # where the listing starts (pages move it on)
    assert datetime.fromisoformat(after.replace("Z", "+00:00")) >= now - 6 * H  # not 40 days
    assert report.stats.broker_calls <= 8  # account, positions, open, listing, look-ups


def test_5_an_old_zombie_heals_from_a_targeted_look_up_of_its_own_stop(
    world: World, make_reconciler: Build, now: datetime
) -> None:
    opened = now - timedelta(days=40)
    entry = world.sim.add_order(
        symbol="AVAX/USD",
        side="buy",
        qty="10",
        status="filled",
        submitted_at=opened,
        filled_at=opened,
        filled_avg_price="30",
        client_order_id="old",
        order_class="bracket",
        legs=[
            {"order_type": "limit", "status": "canceled"},
            {
                "order_type": "stop",
                "status": "filled",
                "filled_at": opened + timedelta(days=2),
                "filled_avg_price": "27",
            },
        ],
    )
    doc = position_doc("old", "AVAX/USD", 10.0, 30.0, created_at=opened)
    doc.update(alpaca_order_id=entry["id"], entry_order_id=entry["id"])
    world.position(doc, entry=False)

    report = make_reconciler().reconcile()

    [healed] = report.healed
    assert healed.position_id == "old"
    assert healed.exit_fill_price == 27
    assert listings(world) == []  # no listing at all: only the look-ups


def test_credentials_in_a_proxy_url_never_reach_the_report(
    world: World, sink: DiscordSink, make_reconciler: Build, now: datetime
) -> None:
    host_port = world.sim.base_url.split("//", 1)[1]
    proxy = f"http://proxyuser:ProxyPassw0rd@{host_port}"
    world.sim.inject_fault("positions", Fault(kind="status", status=500))

    report = make_reconciler(ALPACA_BASE_URL=proxy).reconcile()

    assert report.status is RunStatus.FAILED
    text = report.model_dump_json() + str(sink.messages)
    assert "ProxyPassw0rd" not in text
    assert "proxyuser" not in text
    assert host_port in text  # the host is named, so a person knows what to check
