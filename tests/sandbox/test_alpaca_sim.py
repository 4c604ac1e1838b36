"""Drive the Alpaca simulator through the unmodified alpaca-py TradingClient over real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pydantic
import pytest
import requests
from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import (
    AssetClass,
    AssetExchange,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionSide,
    QueryOrderStatus,
    TimeInForce,
)
from alpaca.trading.models import Order, Position, TradeAccount
from alpaca.trading.requests import GetOrderByIdRequest, GetOrdersRequest, MarketOrderRequest

from crypto_signals.sandbox.alpaca_sim import AlpacaSimulator, Fault, RecordedRequest

KEY = "sim-key-id"
SECRET = "sim-secret-do-not-log"
HEADERS = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def sim() -> Iterator[AlpacaSimulator]:
    with AlpacaSimulator(api_key=KEY, secret_key=SECRET) as simulator:
        yield simulator


@pytest.fixture
def client(sim: AlpacaSimulator) -> TradingClient:
    return TradingClient(KEY, SECRET, paper=True, url_override=sim.base_url)


def raw_get(sim: AlpacaSimulator, path: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("timeout", 5)
    return requests.get(f"{sim.base_url}{path}", headers=HEADERS, **kwargs)


def ids(orders: list[Any]) -> list[str]:
    return [str(o.id) for o in orders]


# TradingClient methods return "model | raw dict"; these narrow to the model so the assertions
# below type-check, and they fail loudly if the client ever hands back raw data.
def account_of(client: TradingClient) -> TradeAccount:
    result = client.get_account()
    assert isinstance(result, TradeAccount)
    return result


def positions_of(client: TradingClient) -> list[Position]:
    result = client.get_all_positions()
    assert isinstance(result, list)
    return result


def orders_of(client: TradingClient, request: GetOrdersRequest | None = None) -> list[Order]:
    result = client.get_orders(request)
    assert isinstance(result, list)
    return result


def order_by_id(
    client: TradingClient, order_id: UUID | str, request: GetOrderByIdRequest | None = None
) -> Order:
    result = client.get_order_by_id(order_id, request)
    assert isinstance(result, Order)
    return result


def order_by_client_id(client: TradingClient, client_order_id: str) -> Order:
    result = client.get_order_by_client_id(client_order_id)
    assert isinstance(result, Order)
    return result


# --- account & positions ----------------------------------------------------------------------


def test_get_account_parses_and_reflects_positions(
    sim: AlpacaSimulator, client: TradingClient
) -> None:
    sim.add_position("BTC/USD", "0.5", avg_entry_price="60000", current_price="65000")
    sim.add_position("AAPL", 10, side="short", avg_entry_price=200, current_price=190)

    account = account_of(client)

    assert account.id == UUID(sim.account_id)
    assert account.status == "ACTIVE"
    assert account.currency == "USD"
    assert account.cash == "100000"
    assert account.long_market_value == "32500"
    assert account.short_market_value == "-1900"
    assert account.equity == account.portfolio_value == "130600"


def test_account_overrides_from_scenario(sim: AlpacaSimulator, client: TradingClient) -> None:
    sim.load_scenario({"account": {"cash": 2500.5, "status": "ACCOUNT_CLOSED"}})

    account = account_of(client)

    assert account.cash == "2500.5"
    assert account.status == "ACCOUNT_CLOSED"
    assert account.equity == "2500.5"


def test_positions_crypto_and_equity_long_and_short(
    sim: AlpacaSimulator, client: TradingClient
) -> None:
    sim.add_position("BTC/USD", "0.25", avg_entry_price="60000", current_price="64000")
    sim.add_position("ETHUSD", "2", side="short", avg_entry_price="3000", current_price="2900")
    sim.add_position("AAPL", "5", avg_entry_price="200", current_price="210")
    sim.add_position("TSLA", "-3", avg_entry_price="250", current_price="260")

    positions = {p.symbol: p for p in positions_of(client)}

    assert set(positions) == {"BTCUSD", "ETHUSD", "AAPL", "TSLA"}
    btc, eth, aapl, tsla = (positions[s] for s in ("BTCUSD", "ETHUSD", "AAPL", "TSLA"))
    assert (btc.asset_class, btc.exchange) == (AssetClass.CRYPTO, AssetExchange.CRYPTO)
    assert (aapl.asset_class, aapl.exchange) == (AssetClass.US_EQUITY, AssetExchange.NASDAQ)
    assert (btc.side, btc.qty, btc.market_value) == (PositionSide.LONG, "0.25", "16000")
    assert btc.cost_basis == "15000"
    assert btc.unrealized_pl == "1000"
    assert (eth.side, eth.qty, eth.market_value) == (PositionSide.SHORT, "-2", "-5800")
    assert eth.unrealized_pl == "200"  # a short gains when the price falls
    assert (aapl.side, aapl.qty, aapl.unrealized_pl) == (PositionSide.LONG, "5", "50")
    assert (tsla.side, tsla.qty, tsla.market_value) == (PositionSide.SHORT, "-3", "-780")
    assert tsla.unrealized_pl == "-30"
    assert btc.qty_available == "0.25"

    sim.remove_position("BTCUSD")
    assert {p.symbol for p in positions_of(client)} == {"ETHUSD", "AAPL", "TSLA"}
    with pytest.raises(KeyError):
        sim.remove_position("DOGEUSD")


# --- orders -----------------------------------------------------------------------------------


def seed_orders(sim: AlpacaSimulator) -> dict[str, str]:
    made: dict[str, str] = {}

    def add(name: str, **kwargs: Any) -> None:
        made[name] = sim.add_order(**kwargs)["id"]

    add("before", symbol="BTC/USD", side="buy", qty="1", submitted_at=at(10))
    add("on_bound", symbol="BTC/USD", side="buy", qty="1", submitted_at=at(30))
    add(
        "bracket",
        symbol="BTCUSD",
        side="buy",
        qty="0.5",
        submitted_at=at(40),
        filled_avg_price="60000",
        order_class="bracket",
        legs=[
            {"order_type": "limit", "limit_price": "70000", "submitted_at": at(41)},
            {"order_type": "stop", "stop_price": "55000", "status": "held", "submitted_at": at(42)},
        ],
    )
    add("eth", symbol="ETH/USD", side="buy", qty="3", submitted_at=at(45))
    add("canceled", symbol="BTC/USD", side="sell", qty="1", status="canceled", submitted_at=at(50))
    add("open", symbol="BTC/USD", side="buy", qty="1", status="new", submitted_at=at(55))
    add("sell", symbol="BTC/USD", side="sell", qty="0.5", submitted_at=at(60))
    add("late", symbol="BTC/USD", side="sell", qty="0.5", submitted_at=at(70))
    return made


def test_get_orders_closed_symbol_after_limit_asc_nested(
    sim: AlpacaSimulator, client: TradingClient
) -> None:
    made = seed_orders(sim)

    orders = orders_of(
        client,
        GetOrdersRequest(
            status=QueryOrderStatus.CLOSED,
            symbols=["BTC/USD"],
            after=at(30),
            limit=3,
            direction=Sort.ASC,
            nested=True,
        ),
    )

    # "on_bound" sits exactly on the exclusive bound; "eth" and "open" are filtered out.
    assert ids(orders) == [made["bracket"], made["canceled"], made["sell"]]
    bracket = orders[0]
    assert bracket.symbol == "BTC/USD"
    assert bracket.asset_class == AssetClass.CRYPTO
    assert bracket.status == OrderStatus.FILLED
    assert bracket.filled_qty == "0.5"
    assert bracket.filled_avg_price == "60000"
    assert bracket.time_in_force == TimeInForce.GTC
    assert bracket.legs is not None
    assert [(leg.side, leg.status) for leg in bracket.legs] == [
        (OrderSide.SELL, OrderStatus.NEW),
        (OrderSide.SELL, OrderStatus.HELD),
    ]
    assert bracket.legs[0].limit_price == "70000"
    assert all(o.legs is None for o in orders[1:])
    last = sim.requests[-1]
    assert last.endpoint == "orders"
    assert last.query["symbols"] == ["BTC/USD"]
    assert last.query["nested"] == ["True"]


def test_get_orders_flattens_legs_and_matches_either_symbol_form(
    sim: AlpacaSimulator, client: TradingClient
) -> None:
    made = seed_orders(sim)

    flat = orders_of(
        client,
        GetOrdersRequest(
            status=QueryOrderStatus.ALL, symbols=["BTCUSD"], after=at(35), until=at(45)
        ),
    )

    assert len(flat) == 3  # parent + two legs, default direction desc, none nested
    assert flat[-1].id == UUID(made["bracket"])
    assert all(o.legs is None for o in flat)
    assert {o.order_class for o in flat} == {"bracket"}

    open_orders = orders_of(client, GetOrdersRequest(side=OrderSide.BUY))  # default status=open
    assert ids(open_orders) == [made["open"]]


def test_get_orders_defaults_desc_and_until_is_exclusive(
    sim: AlpacaSimulator, client: TradingClient
) -> None:
    made = seed_orders(sim)

    orders = orders_of(
        client, GetOrdersRequest(status=QueryOrderStatus.CLOSED, side=OrderSide.SELL, until=at(70))
    )

    # Not nested, so the bracket's held stop-loss leg (at 42) is listed too: held orders are
    # listed under closed (alpacahq/alpaca-trade-api-python#322).
    held = [o for o in orders if o.status == OrderStatus.HELD]
    assert ids(orders) == [made["sell"], made["canceled"], *ids(held)]
    assert len(held) == 1


def test_get_orders_pagination_by_after(sim: AlpacaSimulator, client: TradingClient) -> None:
    expected = [
        sim.add_order(symbol="ETH/USD", side="buy", qty="1", submitted_at=at(i))["id"]
        for i in range(7)
    ]
    seen: list[str] = []
    after = T0 - timedelta(seconds=1)
    while True:
        page = orders_of(
            client,
            GetOrdersRequest(status=QueryOrderStatus.ALL, after=after, limit=3, direction=Sort.ASC),
        )
        seen.extend(ids(page))
        if len(page) < 3:
            break
        after = page[-1].submitted_at

    assert seen == expected
    assert sim.count("orders") == 3


def test_get_orders_rejects_invalid_parameters(sim: AlpacaSimulator, client: TradingClient) -> None:
    with pytest.raises(APIError) as excinfo:
        orders_of(client, GetOrdersRequest(limit=501))
    assert excinfo.value.status_code == 422
    assert excinfo.value.code == 42210000
    assert excinfo.value.message == "limit must be <= 500"

    for params in ({"status": "pending"}, {"direction": "up"}, {"after": "yesterday"}):
        response = raw_get(sim, "/v2/orders", params=params)
        assert response.status_code == 422
        assert response.json()["code"] == 42210000


def test_get_order_by_id_and_client_id(sim: AlpacaSimulator, client: TradingClient) -> None:
    made = seed_orders(sim)
    stored = sim.add_order(
        symbol="AAPL",
        side="buy",
        qty="2",
        status="partially_filled",
        filled_qty="1",
        filled_avg_price="201.5",
        client_order_id="signal-123",
        submitted_at=at(90),
    )

    by_id = order_by_id(client, stored["id"])
    assert (by_id.symbol, by_id.asset_class, by_id.time_in_force) == ("AAPL", "us_equity", "day")
    assert (by_id.status, by_id.filled_qty) == (OrderStatus.PARTIALLY_FILLED, "1")
    by_client = order_by_client_id(client, "signal-123")
    assert by_client.id == UUID(stored["id"])

    assert order_by_id(client, made["bracket"]).legs is None
    nested = order_by_id(client, made["bracket"], GetOrderByIdRequest(nested=True))
    assert nested.legs is not None
    assert len(nested.legs) == 2

    missing = uuid4()
    with pytest.raises(APIError) as excinfo:
        order_by_id(client, missing)
    assert excinfo.value.status_code == 404
    assert excinfo.value.code == 40410000
    assert str(missing) in excinfo.value.message
    with pytest.raises(APIError) as excinfo:
        order_by_client_id(client, "no-such-order")
    assert excinfo.value.status_code == 404


def test_add_fill_is_a_market_order_filled_in_full_at_once(
    sim: AlpacaSimulator, client: TradingClient
) -> None:
    stored = sim.add_fill("ETH/USD", "sell", "2", price="3150.25", at=at(30), client_order_id="x-1")

    order = order_by_client_id(client, "x-1")
    assert order.id == UUID(stored["id"])
    assert (order.status, order.side, order.order_type) == (
        OrderStatus.FILLED,
        OrderSide.SELL,
        OrderType.MARKET,
    )
    assert (order.qty, order.filled_qty, order.filled_avg_price) == ("2", "2", "3150.25")
    assert order.submitted_at == order.filled_at == at(30)


def test_set_order_status_fills_and_records_activity(
    sim: AlpacaSimulator, client: TradingClient
) -> None:
    order = sim.add_order(symbol="SOL/USD", side="buy", qty="4", status="new", submitted_at=at(0))

    sim.set_order_status(order["id"], "filled", filled_avg_price="150", updated_at=at(5))

    fetched = order_by_id(client, order["id"])
    assert fetched.status == OrderStatus.FILLED
    assert fetched.filled_qty == "4"
    assert fetched.filled_at == at(5)
    fills = client.get("/account/activities/FILL")
    assert [(f["order_id"], f["qty"], f["price"], f["type"]) for f in fills] == [
        (order["id"], "4", "150", "fill")
    ]
    with pytest.raises(KeyError):
        sim.set_order_status(str(uuid4()), "canceled")


# --- activities -------------------------------------------------------------------------------


def test_activities_fill_shape_filters_and_paging(
    sim: AlpacaSimulator, client: TradingClient
) -> None:
    order_ids = [
        sim.add_order(
            symbol="BTC/USD",
            side="buy",
            qty="1",
            filled_avg_price=str(60000 + i),
            submitted_at=at(i),
            filled_at=at(i) + timedelta(seconds=1),
        )["id"]
        for i in range(5)
    ]
    partial = sim.add_order(
        symbol="AAPL",
        side="sell",
        qty="10",
        status="partially_filled",
        filled_qty="4",
        filled_avg_price="200",
        submitted_at=at(10),
    )
    sim.add_order(symbol="AAPL", side="buy", qty="1", status="new", submitted_at=at(11))

    newest_first = client.get("/account/activities/FILL")
    assert [a["order_id"] for a in newest_first] == [partial["id"], *reversed(order_ids)]
    partial_fill = newest_first[0]
    assert (partial_fill["type"], partial_fill["qty"], partial_fill["leaves_qty"]) == (
        "partial_fill",
        "4",
        "6",
    )
    assert partial_fill["order_status"] == "partially_filled"
    # The Trading API's activities carry no account_id (alpaca-py's TradeActivity wants one).
    assert all("account_id" not in a for a in newest_first)
    first = client.get("/account/activities/FILL", {"direction": "asc"})[0]
    assert first["id"].startswith("20260101000001000::")
    assert first["symbol"] == "BTC/USD"
    assert (first["side"], first["cum_qty"], first["leaves_qty"]) == ("buy", "1", "0")

    pages: list[list[str]] = []
    params: dict[str, Any] = {"direction": "asc", "page_size": 2, "after": at(0).isoformat()}
    while True:
        page = client.get("/account/activities/FILL", params)
        if not page:
            break
        pages.append([a["order_id"] for a in page])
        params["page_token"] = page[-1]["id"]
    assert pages == [order_ids[0:2], order_ids[2:4], [order_ids[4], partial["id"]]]

    windowed = client.get(
        "/account/activities",
        {"activity_types": "FILL", "after": at(2).isoformat(), "until": at(4).isoformat()},
    )
    assert [a["order_id"] for a in windowed] == [order_ids[3], order_ids[2]]
    assert client.get("/account/activities", {"activity_types": "DIV"}) == []
    assert raw_get(sim, "/v2/account/activities/FILL", params={"page_size": 101}).status_code == 422


# --- faults -----------------------------------------------------------------------------------


def test_status_fault_is_an_api_error_and_consumed_times(
    sim: AlpacaSimulator, client: TradingClient
) -> None:
    sim.inject_fault("positions", Fault("status", status=503, times=2))

    for _ in range(2):
        with pytest.raises(APIError) as excinfo:
            positions_of(client)
        assert excinfo.value.status_code == 503
        assert excinfo.value.code == 50310000
    assert positions_of(client) == []
    assert [r.status for r in sim.requests] == [503, 503, 200]


def test_a_fault_with_a_query_applies_only_to_requests_that_match_it(
    sim: AlpacaSimulator, client: TradingClient
) -> None:
    sim.inject_fault("orders", Fault("status", status=500, times=1, query={"status": "closed"}))
    sim.inject_fault("orders", Fault("status", status=502, times=1))

    # The open listing passes the closed-only fault by and takes the next one.
    with pytest.raises(APIError) as first:
        client.get("/orders", {"status": "open"})
    assert first.value.status_code == 502
    assert client.get("/orders", {"status": "open"}) == []
    with pytest.raises(APIError) as second:
        client.get("/orders", {"status": "closed"})
    assert second.value.status_code == 500
    assert client.get("/orders", {"status": "closed"}) == []  # used up


def test_faults_are_fifo_per_endpoint_and_wildcard(
    sim: AlpacaSimulator, client: TradingClient
) -> None:
    sim.inject_fault("account", Fault("status", status=500, times=1))
    sim.inject_fault("account", Fault("status", status=502, times=1))
    sim.inject_fault("*", Fault("status", status=507, times=2))

    statuses = []
    for _ in range(4):
        try:
            account_of(client)
            statuses.append(200)
        except APIError as err:
            statuses.append(err.status_code)
    assert statuses == [500, 502, 507, 507]

    sim.inject_fault("*", Fault("status", status=500))  # times=None: until cleared
    for call in (client.get_account, client.get_all_positions, client.get_orders):
        with pytest.raises(APIError):
            call()
    sim.clear_faults()
    assert positions_of(client) == []


def test_rate_limit_until_the_reset_with_optional_retry_after(sim: AlpacaSimulator) -> None:
    sim.add_position("BTC/USD", "1")
    sim.inject_fault("positions", Fault("rate_limit", reset_after=0.5, times=1))

    first = raw_get(sim, "/v2/positions")
    assert first.status_code == 429
    assert first.json() == {"code": 42910000, "message": "rate limit exceeded"}
    assert (first.headers["X-RateLimit-Limit"], first.headers["X-RateLimit-Remaining"]) == (
        "200",
        "0",
    )
    assert "Retry-After" not in first.headers
    reset = int(first.headers["X-RateLimit-Reset"])
    # The episode lasts until the reset, on every route, without consuming more faults.
    assert raw_get(sim, "/v2/account").status_code == 429
    time.sleep(max(reset - time.time(), 0) + 0.05)
    assert raw_get(sim, "/v2/positions").status_code == 200
    assert [r.status for r in sim.requests] == [429, 429, 200]

    sim.inject_fault("positions", Fault("rate_limit", retry_after=2.5, reset_after=0, times=1))
    response = raw_get(sim, "/v2/positions")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2.5"
    sim.clear_faults()  # also ends the episode
    assert raw_get(sim, "/v2/positions").status_code == 200


def test_a_quota_can_be_enforced() -> None:
    with AlpacaSimulator(rate_limit=2, enforce_rate_limit=True) as limited:
        answers = [raw_get(limited, "/v2/account") for _ in range(3)]
    assert [a.status_code for a in answers] in ([200, 200, 429], [200, 200, 200])
    if answers[2].status_code == 429:  # unless the clock minute turned in between
        assert answers[2].headers["X-RateLimit-Remaining"] == "0"
    assert [a.headers["X-RateLimit-Remaining"] for a in answers[:2]] in (["1", "0"], ["1", "1"])


def test_malformed_and_truncated_bodies_fail_json_decoding(
    sim: AlpacaSimulator, client: TradingClient
) -> None:
    sim.add_position("AAPL", "1")
    sim.inject_fault("positions", Fault("malformed", times=1))
    with pytest.raises(requests.exceptions.JSONDecodeError):
        positions_of(client)

    sim.inject_fault("account", Fault("truncated", times=1))
    with pytest.raises(requests.exceptions.JSONDecodeError):
        account_of(client)

    full = raw_get(sim, "/v2/account").content
    sim.inject_fault("account", Fault("truncated", times=1))
    cut = raw_get(sim, "/v2/account")
    assert cut.status_code == 200
    assert int(cut.headers["Content-Length"]) == len(cut.content) == len(full) // 2
    assert full.startswith(cut.content)


def test_wrong_shape_fails_model_validation(sim: AlpacaSimulator, client: TradingClient) -> None:
    sim.add_position("AAPL", "1")
    order = sim.add_order(symbol="AAPL", side="buy", qty="1", submitted_at=at(0))
    for endpoint in ("positions", "account", "orders", "order_by_id"):
        sim.inject_fault(endpoint, Fault("wrong_shape", times=1))

    with pytest.raises(pydantic.ValidationError):
        positions_of(client)
    with pytest.raises(pydantic.ValidationError):
        account_of(client)
    with pytest.raises(pydantic.ValidationError):
        orders_of(client, GetOrdersRequest(status=QueryOrderStatus.ALL))
    with pytest.raises(pydantic.ValidationError):
        order_by_id(client, order["id"])
    assert all(r.status == 200 for r in sim.requests)


def test_short_page_serves_at_most_page_size_orders_without_error(
    sim: AlpacaSimulator, client: TradingClient
) -> None:
    expected = [
        sim.add_order(symbol="BTC/USD", side="buy", qty="1", submitted_at=at(i))["id"]
        for i in range(6)
    ]
    sim.inject_fault("orders", Fault("short_page", times=1))
    sim.inject_fault("orders", Fault("short_page", page_size=3, times=1))
    request = GetOrdersRequest(status=QueryOrderStatus.ALL, limit=5, direction=Sort.ASC)

    assert ids(orders_of(client, request)) == expected[:2]  # default page_size: 2
    assert ids(orders_of(client, request)) == expected[:3]
    assert ids(orders_of(client, request)) == expected[:5]
    with pytest.raises(ValueError, match="page_size"):
        Fault("short_page", page_size=1)


def test_legs_may_count_toward_the_limit() -> None:
    with AlpacaSimulator(legs_count_toward_limit=True) as counting:
        for i in range(3):
            counting.add_order(
                symbol="AAPL",
                side="buy",
                qty="1",
                submitted_at=at(i),
                order_class="bracket",
                legs=[{"order_type": "limit", "limit_price": "1"}, {"order_type": "stop"}],
            )
        nested = raw_get(
            counting, "/v2/orders", params={"status": "all", "nested": "true", "limit": 7}
        )
        flat = raw_get(counting, "/v2/orders", params={"status": "all", "limit": 7})
    assert len(nested.json()) == 2  # 2 parents + 4 legs = 6 <= 7; a third would make 9
    assert len(flat.json()) == 7


def test_the_symbols_filter_form_is_configurable() -> None:
    def listed(form: Any, symbols: str) -> list[str]:
        with AlpacaSimulator(symbol_filter=form) as s:
            s.add_fill("BTC/USD", "buy", "1", price="1", at=at(0))
            s.add_fill("AAPL", "buy", "1", price="1", at=at(1))
            page = raw_get(s, "/v2/orders", params={"status": "all", "symbols": symbols}).json()
        return sorted(o["symbol"] for o in page)

    assert listed("both", "BTC/USD,AAPL") == listed("both", "BTCUSD,AAPL") == ["AAPL", "BTC/USD"]
    assert listed("slash", "BTC/USD,AAPL") == ["AAPL", "BTC/USD"]
    assert listed("slash", "BTCUSD,AAPL") == ["AAPL"]
    assert listed("compact", "BTCUSD,AAPL") == ["AAPL", "BTC/USD"]
    assert listed("compact", "BTC/USD,AAPL") == ["AAPL"]


def test_hang_times_out_client_and_drops_connection(sim: AlpacaSimulator) -> None:
    sim.inject_fault("positions", Fault("hang", seconds=5, times=1))
    with pytest.raises(requests.exceptions.ReadTimeout):
        raw_get(sim, "/v2/positions", timeout=0.3)

    sim.inject_fault("positions", Fault("hang", seconds=0.2, times=1))
    with pytest.raises(requests.exceptions.ConnectionError):
        raw_get(sim, "/v2/positions", timeout=5)

    assert [r.status for r in sim.requests] == [0, 0]
    assert raw_get(sim, "/v2/positions").json() == []


def test_stop_returns_promptly_while_a_request_hangs() -> None:
    sim = AlpacaSimulator().start()
    sim.inject_fault("*", Fault("hang"))  # default: 120 s
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            raw_get(sim, "/v2/account", timeout=30)
        except requests.exceptions.RequestException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    deadline = time.monotonic() + 5
    while sim.count("account") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    url = sim.base_url

    started = time.monotonic()
    sim.stop()
    assert time.monotonic() - started < 2
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], requests.exceptions.ConnectionError)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{url}/v2/account", timeout=1)


def test_delay_answers_after_the_delay(sim: AlpacaSimulator, client: TradingClient) -> None:
    sim.inject_fault("account", Fault("delay", seconds=0.3, times=1))

    started = time.monotonic()
    account = account_of(client)

    assert time.monotonic() - started >= 0.3
    assert account.id == UUID(sim.account_id)


def test_fault_validation(sim: AlpacaSimulator) -> None:
    with pytest.raises(ValueError, match="unknown endpoint"):
        sim.inject_fault("clock", Fault("status"))
    with pytest.raises(ValueError, match="short_page"):
        sim.inject_fault("positions", Fault("short_page"))
    with pytest.raises(ValueError, match="times"):
        Fault("status", times=0)


# --- request log, auth, read-only -------------------------------------------------------------


def test_requests_are_recorded_without_secrets(sim: AlpacaSimulator, client: TradingClient) -> None:
    orders_of(client, GetOrdersRequest(status=QueryOrderStatus.ALL, limit=7))
    account_of(client)

    recorded = sim.requests
    assert recorded == [
        RecordedRequest(
            method="GET",
            path="/v2/orders",
            endpoint="orders",
            query={"status": ["all"], "limit": ["7"]},
            status=200,
            authenticated=True,
        ),
        RecordedRequest("GET", "/v2/account", "account", {}, 200, True),
    ]
    assert KEY not in repr(recorded)
    assert SECRET not in repr(recorded)
    assert (sim.count(), sim.count("orders"), sim.count("positions")) == (2, 1, 0)
    sim.clear_requests()
    assert sim.count() == 0


def test_writes_are_refused_and_recorded(sim: AlpacaSimulator, client: TradingClient) -> None:
    sim.add_position("BTC/USD", "1")
    order = MarketOrderRequest(
        symbol="BTC/USD", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.GTC
    )

    for write in (
        lambda: client.submit_order(order),
        client.cancel_orders,
        lambda: client.close_position("BTCUSD"),
    ):
        with pytest.raises(APIError) as excinfo:
            write()
        assert excinfo.value.status_code == 403
        assert excinfo.value.code == 40310000

    writes = [(r.method, r.path, r.status) for r in sim.requests if r.method != "GET"]
    assert writes == [
        ("POST", "/v2/orders", 403),
        ("DELETE", "/v2/orders", 403),
        ("DELETE", "/v2/positions/BTCUSD", 403),
    ]
    assert [p.symbol for p in positions_of(client)] == ["BTCUSD"]


def test_wrong_credentials_get_401(sim: AlpacaSimulator) -> None:
    intruder = TradingClient(KEY, "wrong-secret", paper=True, url_override=sim.base_url)
    sim.inject_fault("account", Fault("status", status=500, times=1))

    with pytest.raises(APIError) as excinfo:
        account_of(intruder)

    assert excinfo.value.status_code == 401
    assert excinfo.value.code == 40110000
    assert excinfo.value.message == "request is not authorized"
    assert sim.requests[-1].authenticated is False
    assert "wrong-secret" not in repr(sim.requests)
    assert requests.get(f"{sim.base_url}/v2/account", timeout=5).status_code == 401
    # Rejected requests do not consume faults.
    with pytest.raises(APIError) as excinfo:
        account_of(TradingClient(KEY, SECRET, paper=True, url_override=sim.base_url))
    assert excinfo.value.status_code == 500


def test_unknown_endpoint_is_404(sim: AlpacaSimulator, client: TradingClient) -> None:
    with pytest.raises(APIError) as excinfo:
        client.get_clock()
    assert excinfo.value.status_code == 404
    assert excinfo.value.message == "endpoint not found"
    assert sim.requests[-1].endpoint == "unknown"


# --- scenarios & reset ------------------------------------------------------------------------


def test_load_scenario_and_reset(sim: AlpacaSimulator, client: TradingClient) -> None:
    sim.add_position("DOGE/USD", "100")
    sim.load_scenario(
        {
            "name": "one open bracket",
            "account": {"cash": "5000"},
            "positions": [{"symbol": "BTCUSD", "qty": "0.1", "avg_entry_price": "60000"}],
            "orders": [
                {
                    "symbol": "BTC/USD",
                    "side": "buy",
                    "qty": "0.1",
                    "submitted_at": "2026-01-01T00:00:00Z",
                    "filled_at": "2026-01-01T00:00:02+00:00",
                    "filled_avg_price": "60000",
                    "order_class": "bracket",
                    "legs": [{"order_type": "stop", "stop_price": "55000"}],
                }
            ],
        }
    )

    assert [p.symbol for p in positions_of(client)] == ["BTCUSD"]
    assert account_of(client).equity == "11000"
    [order] = orders_of(client, GetOrdersRequest(status=QueryOrderStatus.ALL, nested=True))
    assert order.filled_at == T0 + timedelta(seconds=2)
    assert order.legs is not None
    assert order.legs[0].stop_price == "55000"

    with pytest.raises(ValueError, match="side"):
        sim.load_scenario({"positions": [{"symbol": "AAPL", "qty": 1, "side": "sideways"}]})
    assert [p.symbol for p in positions_of(client)] == ["BTCUSD"]  # state restored

    sim.inject_fault("*", Fault("status"))
    sim.reset()
    assert sim.count() == 0
    assert positions_of(client) == []
    assert orders_of(client, GetOrdersRequest(status=QueryOrderStatus.ALL)) == []
    assert client.get("/account/activities/FILL") == []
    assert account_of(client).cash == "100000"
