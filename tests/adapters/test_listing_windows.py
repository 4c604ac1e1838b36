"""A long order listing is split into windows of time listed at the same time; the three calls
of the broker's state are made at once. Through unmodified alpaca-py against the simulator.

The windows must list exactly what one window page by page lists (orders at a window's bounds
included), share the listing's page cap, fail as a whole when one fails, and leave a short
listing alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crypto_signals.broker.alpaca import AlpacaBroker
from crypto_signals.broker.alpaca_transport import build_trading_client
from crypto_signals.domain.snapshots import ClosedOrders, EvidenceQuery
from crypto_signals.engine.ports import BrokerUnavailable
from crypto_signals.sandbox.alpaca_sim import AlpacaSimulator, Fault
from tests.conftest import API_KEY, SECRET_KEY

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
# The listing's "now": where the last window ends. 2,000 s after T0, so that orders seeded one
# a second from T0 are spread over the whole window, as a trading bot's are.
NOW = T0 + timedelta(seconds=2000)
SINCE = T0 - timedelta(hours=1)


def broker(
    sim: AlpacaSimulator, *, max_windows: int = 4, max_pages: int = 40, retries: int = 1
) -> AlpacaBroker:
    client = build_trading_client(
        api_key=API_KEY,
        secret_key=SECRET_KEY,
        paper=True,
        base_url=sim.base_url,
        timeout_seconds=2.0,
        retries=retries,
    )
    return AlpacaBroker(client, max_pages=max_pages, max_windows=max_windows, clock=lambda: NOW)


def listing(b: AlpacaBroker) -> ClosedOrders:
    return b.fetch_closed_orders(EvidenceQuery(("BTC/USD",), SINCE))


def seed(sim: AlpacaSimulator, count: int) -> None:
    for i in range(count):
        sim.add_fill("BTC/USD", "sell", "0.01", price="60000", at=T0 + timedelta(seconds=i))


def order_requests(sim: AlpacaSimulator) -> list[dict[str, list[str]]]:
    return [r.query for r in sim.requests if r.endpoint == "orders"]


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_long_listing_is_split_and_lists_what_one_window_lists(sim: AlpacaSimulator) -> None:
    seed(sim, 2000)
    one = listing(broker(sim, max_windows=1))
    walked = len(order_requests(sim))
    sim.clear_requests()

    split = listing(broker(sim))

    assert one.complete
    assert split.complete
    assert len(one.orders) == 2000
    assert sorted(o.id for o in split.orders) == sorted(o.id for o in one.orders)
    queries = order_requests(sim)
    windows = {q.get("until", ["open"])[0] for q in queries[1:]}
    # The first page, then the rest cut into 4 windows (the last one open, up to now) of about a
    # page each, each ending with its own confirming page.
    assert len(windows) == 4
    assert "open" in windows
    # Page by page: 5 pages (each after the first re-serves the newest order seen) and the
    # confirming page, one after the other; split: 9 calls, but only 3 one after the other.
    assert walked == 6
    assert len(queries) == 1 + 4 * 2


def test_orders_at_a_windows_bounds_are_listed(sim: AlpacaSimulator) -> None:
    seed(sim, 2000)
    listing(broker(sim))
    bounds = sorted({parse_time(q["until"][0]) for q in order_requests(sim) if "until" in q})
    assert len(bounds) == 3
    # The same first page gives the same windows: orders exactly at each bound, and a
    # microsecond either side of it, must all be listed once.
    extra = [b + timedelta(microseconds=d) for b in bounds for d in (-1, 0, 1)]
    for at in extra:
        sim.add_fill("BTC/USD", "sell", "0.02", price="61000", at=at)
    sim.clear_requests()

    split = listing(broker(sim))

    assert split.complete
    assert len(split.orders) == 2000 + len(extra)
    assert len({o.id for o in split.orders}) == len(split.orders)
    listed = {o.submitted_at for o in split.orders if o.qty is not None and str(o.qty) == "0.02"}
    assert listed == set(extra)
    assert {parse_time(q["until"][0]) for q in order_requests(sim) if "until" in q} == set(bounds)


def test_the_windows_share_the_page_cap(sim: AlpacaSimulator) -> None:
    seed(sim, 2000)
    # The cap, 2 pages, grows by 2 per extra window (its last page and its confirmation): 8
    # pages in all, one short of the 9 the split listing needs.
    b = broker(sim, max_pages=2)

    result = listing(b)

    assert not result.complete  # heals resting on it are withheld
    assert b.call_count == 8
    assert len(order_requests(sim)) == 8


def test_a_split_never_cuts_short_a_listing_one_window_finishes(sim: AlpacaSimulator) -> None:
    seed(sim, 2000)
    one = broker(sim, max_pages=6, max_windows=1)  # 5 pages and the confirming page: 6
    assert listing(one).complete
    assert one.call_count == 6

    split = broker(sim, max_pages=6)
    result = listing(split)

    assert result.complete  # split it needs 9 calls, within the cap grown for its windows
    assert len(result.orders) == 2000
    assert split.call_count == 9


def test_a_window_that_fails_fails_the_listing(sim: AlpacaSimulator) -> None:
    seed(sim, 2000)
    # The first page is served as usual; the next orders request fails, in whichever window.
    sim.inject_fault("orders", Fault(kind="delay", seconds=0.0, times=1))
    sim.inject_fault("orders", Fault(kind="status", status=500, times=1))

    with pytest.raises(BrokerUnavailable, match=r"^GET /v2/orders\?status=closed: HTTP 500"):
        listing(broker(sim, retries=0))
    assert any("until" in q for q in order_requests(sim))  # it was split


@pytest.mark.parametrize("count", [100, 300, 494])
def test_a_listing_whose_first_page_is_not_full_is_not_split(
    sim: AlpacaSimulator, count: int
) -> None:
    seed(sim, count)  # one page that is not full, however far "now" is from its orders
    b = broker(sim)

    result = listing(b)

    assert result.complete
    assert len(result.orders) == count
    assert b.call_count == 2  # the page and the page that proves the end, as always
    assert all("until" not in q for q in order_requests(sim))


def test_the_state_asks_account_positions_and_open_orders_at_once(sim: AlpacaSimulator) -> None:
    sim.add_position("BTC/USD", "0.5", avg_entry_price="60000", current_price="62000")
    # The account answers late; asked one after the other, nothing else would be asked before
    # it answered. Requests are recorded when answered.
    sim.inject_fault("account", Fault(kind="delay", seconds=0.5, times=1))

    state = broker(sim).fetch_state()

    assert state.account_id == sim.account_id
    answered = [r.endpoint for r in sim.requests]
    assert sorted(answered[:2]) == ["orders", "positions"]
    assert answered[2:] == ["account"]


def test_the_first_failure_of_the_state_is_named_in_order(sim: AlpacaSimulator) -> None:
    # The open orders fail at once, the positions only later (the connection is dropped after
    # 0.3 s): the positions are named, as when the calls were made one after the other.
    sim.inject_fault("positions", Fault(kind="hang", seconds=0.3, times=1))
    sim.inject_fault("orders", Fault(kind="status", status=500, times=None))

    with pytest.raises(BrokerUnavailable, match=r"^GET /v2/positions: "):
        broker(sim, retries=0).fetch_state()
    assert sim.count("account") == 1
    assert sim.count("orders") == 1
