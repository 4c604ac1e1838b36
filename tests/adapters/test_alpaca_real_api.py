"""The adapter against what the real Alpaca API sends, not our model of it (issue 10).

Each test drives AlpacaBroker through unmodified alpaca-py over real HTTP against the
simulator, configured for one reading of the API the spec leaves open, or seeded with a shape
from the spec's examples (``tests/fixtures/alpaca/examples.json``). Each fails on the adapter
as it was before issue 10 (commit 99857b8).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from crypto_signals.broker.alpaca import AlpacaBroker
from crypto_signals.broker.listing import MAX_WINDOWS
from crypto_signals.domain.snapshots import EvidenceQuery
from crypto_signals.engine.ports import BrokerUnavailable
from crypto_signals.sandbox.alpaca_sim import AlpacaSimulator, Fault
from tests.conftest import API_KEY, SECRET_KEY

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SINCE = T0 - timedelta(hours=1)
EXAMPLES: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parent.parent / "fixtures" / "alpaca" / "examples.json").read_text(
        encoding="utf-8"
    )
)["examples"]


def broker(
    sim: AlpacaSimulator,
    *,
    timeout: float = 2.0,
    retries: int = 1,
    max_pages: int = 40,
    max_windows: int = MAX_WINDOWS,
) -> AlpacaBroker:
    return AlpacaBroker.from_credentials(
        api_key=API_KEY,
        secret_key=SECRET_KEY,
        paper=True,
        base_url=sim.base_url,
        timeout_seconds=timeout,
        retries=retries,
        max_pages=max_pages,
        max_windows=max_windows,
    )


# The page-by-page tests below pin the pages of one window (``max_windows=1``): a long listing
# is otherwise split into windows of time (tests/adapters/test_listing_windows.py).
def walk(sim: AlpacaSimulator) -> AlpacaBroker:
    return broker(sim, max_windows=1)


def simulator(**options: Any) -> AlpacaSimulator:
    return AlpacaSimulator(api_key=API_KEY, secret_key=SECRET_KEY, **options)


@pytest.fixture
def counting() -> Iterator[AlpacaSimulator]:
    with simulator(legs_count_toward_limit=True) as sim:
        yield sim


def closed(b: AlpacaBroker, *symbols: str, **kwargs: Any) -> Any:
    return b.fetch_closed_orders(EvidenceQuery(symbols, SINCE), **kwargs)


# -- 1. an item the adapter cannot read does not fail the listing ----------------------------


def test_an_open_multi_leg_order_is_read_through_its_legs(sim: AlpacaSimulator) -> None:
    sim.add_fill("ETH/USD", "buy", "1", price="3000", at=T0)
    sim.add_mleg_order(
        status="new",
        submitted_at=T0 + timedelta(minutes=1),
        limit_price="10",
        legs=[
            {"symbol": "AAPL241213C00250000", "side": "buy", "ratio_qty": "1"},
            {"symbol": "AAPL241213C00260000", "side": "sell", "ratio_qty": "1"},
        ],
        client_order_id="spread-1",
    )
    sim.add_order(symbol="BTC/USD", side="buy", qty="1", status="new", submitted_at=T0)

    state = broker(sim).fetch_state()  # before: "has no usable side/symbol", the run failed

    assert state.unreadable == ()
    legs = [o for o in state.open_orders if o.parent_client_order_id == "spread-1"]
    assert sorted((o.symbol, o.side) for o in legs) == [
        ("AAPL241213C00250000", "buy"),
        ("AAPL241213C00260000", "sell"),
    ]
    assert {o.key for o in state.open_orders} == {
        "BTCUSD",
        "AAPL241213C00250000",
        "AAPL241213C00260000",
    }


@pytest.mark.parametrize("label", sorted(EXAMPLES["Order"]))
def test_every_order_example_of_the_spec_is_read(sim: AlpacaSimulator, label: str) -> None:
    example = dict(EXAMPLES["Order"][label])
    legs = example.pop("legs") or ()
    example["status"] = "accepted"  # list it as open
    sim.add_raw_order(example, legs=[{**leg, "status": "accepted"} for leg in legs])
    symbols = sorted(leg["symbol"] for leg in legs) or [example["symbol"]]

    state = broker(sim).fetch_state()  # before: the IPO and multi-leg examples failed it

    assert state.unreadable == ()
    assert sorted(o.symbol for o in state.open_orders) == symbols
    if label == "IPO":  # asset_class "ipo", which alpaca-py's enum lacks; a notional order
        [ipo] = state.open_orders
        assert (ipo.qty, ipo.filled_qty, ipo.side) == (None, Decimal(0), "buy")
    if label == "Crypto":  # nanoseconds truncated to microseconds
        [crypto] = state.open_orders
        assert crypto.submitted_at == datetime(2023, 12, 12, 22, 36, 51, 313261, tzinfo=UTC)
    if label == "MultilegOptions":
        assert {o.parent_id for o in state.open_orders} == {example["id"]}


def test_submitted_at_null_falls_back_to_created_at(sim: AlpacaSimulator) -> None:
    order = sim.add_fill("BTC/USD", "sell", "1", price="61000", at=T0)
    sim.patch_order(order["id"], submitted_at=None)  # the spec's schema allows null

    [read] = closed(broker(sim), "BTC/USD").orders

    assert read.id == order["id"]
    assert read.submitted_at == datetime.fromisoformat(order["created_at"][:26] + "+00:00")


def test_an_order_without_any_usable_time_is_named_and_the_rest_is_used(
    sim: AlpacaSimulator,
) -> None:
    good = sim.add_fill("BTC/USD", "sell", "1", price="61000", at=T0)
    bad = sim.add_fill("BTC/USD", "buy", "1", price="60000", at=T0, client_order_id="sig-btc")
    sim.patch_order(bad["id"], submitted_at=None, created_at=None)

    listing = closed(broker(sim), "BTC/USD")

    assert [o.id for o in listing.orders] == [good["id"]]
    [item] = listing.unreadable
    assert (item.endpoint, item.item_id, item.symbol, item.client_order_id) == (
        "GET /v2/orders?status=closed",
        bad["id"],
        "BTC/USD",
        "sig-btc",
    )
    assert "submitted_at" in item.detail
    assert listing.complete


def test_unreadable_fields_are_named_never_their_values(sim: AlpacaSimulator) -> None:
    cases = {
        "side": "",  # an empty side is only right on a multi-leg container
        "filled_qty": "ALPACA-SECRET-ish",
        "filled_avg_price": "NaN",
        "id": None,
        "symbol": 42,
    }
    for i, (field, value) in enumerate(cases.items()):
        order = sim.add_fill("BTC/USD", "sell", "1", price="1", at=T0 + timedelta(seconds=i))
        sim.patch_order(order["id"], **{field: value})
    sim.add_fill("BTC/USD", "sell", "1", price="1", at=T0 + timedelta(minutes=1))

    listing = closed(broker(sim), "BTC/USD", symbol_form="none")

    assert len(listing.orders) == 1
    details = sorted(item.detail for item in listing.unreadable)
    assert [d.split(":")[0] for d in details] == sorted(cases)
    assert not any("SECRET" in d or "NaN" in d or "42" in d for d in details)


def test_an_unreadable_leg_leaves_its_parent_readable(sim: AlpacaSimulator) -> None:
    entry = sim.add_order(
        symbol="AAPL",
        side="buy",
        qty="5",
        submitted_at=T0,
        order_class="bracket",
        legs=[
            {"order_type": "limit", "limit_price": "230", "status": "filled"},
            {"order_type": "stop"},
        ],
    )
    take_profit = entry["legs"][0]["id"]
    sim.patch_order(take_profit, filled_qty="five")

    listing = closed(broker(sim), "AAPL")

    assert {o.id for o in listing.orders} == {entry["id"], entry["legs"][1]["id"]}
    [item] = listing.unreadable
    assert (item.item_id, item.symbol) == (take_profit, "AAPL")
    assert item.detail.startswith("legs[0].filled_qty")


def test_a_leg_that_says_nothing_is_named_after_its_parent(sim: AlpacaSimulator) -> None:
    entry = sim.add_fill("AAPL", "buy", "5", price="200", at=T0, client_order_id="sig-aapl")
    sim.patch_order(entry["id"], order_class="oto", legs=["garbage"])

    listing = closed(broker(sim), "AAPL")

    assert [o.id for o in listing.orders] == [entry["id"]]
    [item] = listing.unreadable
    assert (item.item_id, item.symbol, item.client_order_id) == (entry["id"], "AAPL", "sig-aapl")
    assert item.detail == "legs[0]: expected an object, got string"


def test_a_position_that_does_not_parse_is_named(sim: AlpacaSimulator) -> None:
    sim.add_position("BTC/USD", "0.5", current_price="60000")
    sim.add_position("AAPL", "10", current_price="200")
    sim.patch_position("AAPL", qty="ten")

    state = broker(sim).fetch_state()

    assert [p.symbol for p in state.positions] == ["BTCUSD"]
    [item] = state.unreadable
    assert (item.endpoint, item.symbol, item.item_id, item.key) == (
        "GET /v2/positions",
        "AAPL",
        None,
        "AAPL",
    )
    assert item.detail.startswith("qty")


def test_a_body_that_is_not_a_list_still_fails_the_call(sim: AlpacaSimulator) -> None:
    sim.add_position("BTC/USD", "0.5", current_price="60000")
    sim.inject_fault("positions", Fault(kind="wrong_shape"))
    with pytest.raises(BrokerUnavailable, match=r"GET /v2/positions: unexpected response shape"):
        broker(sim).fetch_state()


# -- 2. paging proves completeness -----------------------------------------------------------


def seed_brackets(sim: AlpacaSimulator, n: int) -> None:
    for i in range(n):
        sim.add_order(
            symbol="AAPL",
            side="buy",
            qty="1",
            submitted_at=T0 + timedelta(seconds=i),
            order_class="bracket",
            legs=[{"order_type": "limit", "limit_price": "1"}, {"order_type": "stop"}],
        )


def test_legs_counted_toward_the_limit_do_not_cut_the_listing(counting: AlpacaSimulator) -> None:
    seed_brackets(counting, 200)  # 600 orders: a page holds 166 parents and their legs

    b = walk(counting)
    listing = closed(b, "AAPL")

    assert listing.complete
    assert len(listing.orders) == 600  # before: 498, marked complete
    assert b.call_count == 3  # 166 + 166 (1 overlap) ... until a page brings nothing new


def test_legs_not_counted_toward_the_limit(sim: AlpacaSimulator) -> None:
    seed_brackets(sim, 200)
    b = walk(sim)
    listing = closed(b, "AAPL")
    assert listing.complete
    assert len(listing.orders) == 600
    assert b.call_count == 2  # the page, and the page that proves the end


def test_a_listing_of_exactly_limit_orders(sim: AlpacaSimulator) -> None:
    for i in range(500):
        sim.add_fill("ETH/USD", "sell", "0.1", price="3000", at=T0 + timedelta(seconds=i))
    b = walk(sim)
    listing = closed(b, "ETH/USD")
    assert listing.complete
    assert len({o.id for o in listing.orders}) == 500
    assert b.call_count == 2


def test_a_short_page_does_not_end_the_listing(sim: AlpacaSimulator) -> None:
    for i in range(23):
        sim.add_fill("ETH/USD", "sell", "0.1", price="3000", at=T0 + timedelta(minutes=i))
    sim.inject_fault("orders", Fault(kind="short_page", page_size=5, times=None))

    listing = closed(broker(sim), "ETH/USD")

    assert listing.complete
    assert len(listing.orders) == 23  # before: 5 orders, marked complete


def test_the_page_cap_makes_the_listing_incomplete(sim: AlpacaSimulator) -> None:
    for i in range(12):
        sim.add_fill("ETH/USD", "sell", "0.1", price="3000", at=T0 + timedelta(minutes=i))
    sim.inject_fault("orders", Fault(kind="short_page", times=None))  # 2 per page

    listing = closed(broker(sim, max_pages=5), "ETH/USD")

    assert not listing.complete  # before: complete, with 2 of the 12 orders
    assert len(listing.orders) == 6  # 2, then one new per page


def test_an_incomplete_open_listing_fails_the_state(sim: AlpacaSimulator) -> None:
    for i in range(8):
        sim.add_order(
            symbol="BTC/USD", side="buy", qty="1", status="new", submitted_at=T0 + timedelta(i)
        )
    sim.inject_fault("orders", Fault(kind="short_page", times=None))
    with pytest.raises(BrokerUnavailable, match=r"status=open: more than 4 pages"):
        broker(sim, max_pages=4).fetch_state()


def test_a_cursor_that_cannot_move_is_incomplete(sim: AlpacaSimulator) -> None:
    for _ in range(501):  # more than a page at one instant
        sim.add_fill("ETH/USD", "sell", "0.1", price="3000", at=T0)
    listing = closed(broker(sim), "ETH/USD")
    assert not listing.complete
    assert len(listing.orders) == 500


# -- 3. the symbols filter -------------------------------------------------------------------


@pytest.mark.parametrize(("served", "finds"), [("slash", "slash"), ("compact", "compact")])
def test_a_filter_that_matches_one_symbol_form_only(served: Any, finds: str) -> None:
    with simulator(symbol_filter=served) as sim:
        sim.add_fill("BTC/USD", "sell", "1", price="61000", at=T0)
        sim.add_fill("AAPL", "sell", "1", price="200", at=T0)
        b = broker(sim)
        by_form = {
            form: sorted(o.symbol for o in closed(b, "BTC/USD", "AAPL", symbol_form=form).orders)
            for form in ("slash", "compact", "none")
        }
        sent = [r.query.get("symbols") for r in sim.requests if r.endpoint == "orders"]

    other = "compact" if finds == "slash" else "slash"
    assert by_form[finds] == by_form["none"] == ["AAPL", "BTC/USD"]
    assert by_form[other] == ["AAPL"]  # the crypto order silently missing: re-list
    # Each listing: a page and the page that proves the end; "none" sends no filter.
    assert sent == [["BTC/USD,AAPL"]] * 2 + [["AAPL,BTCUSD"]] * 2 + [None] * 2


def test_the_unfiltered_listing_returns_only_the_querys_symbols(sim: AlpacaSimulator) -> None:
    sim.add_fill("BTC/USD", "sell", "1", price="61000", at=T0)
    sim.add_fill("ETH/USD", "sell", "1", price="3000", at=T0)
    other = sim.add_fill("ETH/USD", "buy", "1", price="3000", at=T0)
    sim.patch_order(other["id"], filled_qty="?")  # unreadable, but not the query's symbol
    nameless = sim.add_fill("BTC/USD", "buy", "1", price="60000", at=T0)
    sim.patch_order(nameless["id"], symbol=None)  # could be anyone's: kept

    listing = closed(broker(sim), "BTC/USD", symbol_form="none")

    assert [o.symbol for o in listing.orders] == ["BTC/USD"]
    assert [(u.item_id, u.symbol) for u in listing.unreadable] == [(nameless["id"], None)]
    assert "symbols" not in sim.requests[-1].query


# -- 4. rate limits --------------------------------------------------------------------------


def test_a_rate_limit_is_waited_out_until_its_reset(sim: AlpacaSimulator) -> None:
    sim.add_position("BTC/USD", "0.5", current_price="60000")
    sim.inject_fault("positions", Fault(kind="rate_limit", reset_after=1.5, times=1))
    started = time.monotonic()

    state = broker(sim).fetch_state(deadline=time.monotonic() + 10)

    assert [p.symbol for p in state.positions] == ["BTCUSD"]
    assert time.monotonic() - started >= 1.4  # before: a fixed 1 s, still limited: failed
    statuses = [r.status for r in sim.requests if r.endpoint == "positions"]
    assert statuses == [429, 200]


def test_retry_after_is_honoured_too(sim: AlpacaSimulator) -> None:
    sim.inject_fault("account", Fault(kind="rate_limit", retry_after=2.2, reset_after=0, times=1))
    started = time.monotonic()
    broker(sim).fetch_state(deadline=time.monotonic() + 10)
    assert time.monotonic() - started >= 2.1
    assert [r.status for r in sim.requests if r.endpoint == "account"] == [429, 200]


def test_a_reset_past_the_deadline_fails_at_once(sim: AlpacaSimulator) -> None:
    # Account, positions and open orders are asked at once, and a rate limit applies to every
    # route until its reset: the first of the three is the one named.
    sim.inject_fault("account", Fault(kind="rate_limit", reset_after=30, times=1))
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as raised:
        broker(sim).fetch_state(deadline=time.monotonic() + 5)
    assert time.monotonic() - started < 1
    message = str(raised.value)
    assert message.startswith("GET /v2/account: HTTP 429: rate limit exceeded")
    assert "after the run's deadline" in message
    assert API_KEY not in message
    assert SECRET_KEY not in message


def test_rate_limit_waits_are_bounded(sim: AlpacaSimulator) -> None:
    sim.inject_fault("account", Fault(kind="rate_limit", reset_after=0, times=None))
    with pytest.raises(BrokerUnavailable, match=r"HTTP 429: .*still limited after 1 wait"):
        broker(sim, retries=1).fetch_state(deadline=time.monotonic() + 10)
    assert sim.count("account") == 2


def test_a_reset_more_than_a_minute_away_fails_without_a_deadline(sim: AlpacaSimulator) -> None:
    sim.inject_fault("account", Fault(kind="rate_limit", reset_after=300, times=1))
    with pytest.raises(BrokerUnavailable, match="more than a minute away"):
        broker(sim).fetch_state()


def test_the_deadline_bounds_a_hung_call(sim: AlpacaSimulator) -> None:
    sim.inject_fault("positions", Fault(kind="hang", seconds=30))
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="positions: timed out at the run's deadline"):
        broker(sim, timeout=10).fetch_state(deadline=time.monotonic() + 1)
    assert time.monotonic() - started < 3  # before: the 10 s timeout


def test_no_call_starts_after_the_deadline(sim: AlpacaSimulator) -> None:
    with pytest.raises(BrokerUnavailable, match="deadline passed before the call"):
        broker(sim).fetch_closed_orders(
            EvidenceQuery(("BTC/USD",), SINCE), deadline=time.monotonic() - 1
        )
    assert sim.count() == 0


# -- shapes: offsets, open orders --------------------------------------------------------------


def test_timestamps_with_an_offset_are_the_same_instants() -> None:
    with simulator(utc_offset=timedelta(hours=-4)) as sim:
        order = sim.add_fill("BTC/USD", "sell", "1", price="61000", at=T0 + timedelta(seconds=1))
        [read] = closed(broker(sim), "BTC/USD").orders
    assert order["submitted_at"] == "2026-11-20T08:00:01-04:00"
    assert read.submitted_at == read.filled_at == T0 + timedelta(seconds=1)


def test_an_unreadable_open_order_is_named_in_the_state(sim: AlpacaSimulator) -> None:
    good = sim.add_order(symbol="ETH/USD", side="buy", qty="1", status="new", submitted_at=T0)
    bad = sim.add_order(symbol="ETH/USD", side="buy", qty="1", status="new", submitted_at=T0)
    sim.patch_order(bad["id"], qty="1e")

    state = broker(sim).fetch_state()

    assert [o.id for o in state.open_orders] == [good["id"]]
    [item] = state.unreadable
    assert (item.endpoint, item.item_id, item.key) == (
        "GET /v2/orders?status=open",
        bad["id"],
        "ETHUSD",
    )
    assert item.detail == "qty: not a decimal number"
