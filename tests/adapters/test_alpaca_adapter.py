"""The alpaca-py adapter against the local Alpaca simulator, through unmodified alpaca-py.

Every broker failure must become BrokerUnavailable (fail closed), never an empty answer.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from crypto_signals.broker.alpaca import AlpacaBroker
from crypto_signals.domain.snapshots import EvidenceQuery
from crypto_signals.engine.ports import BrokerUnavailable
from crypto_signals.sandbox.alpaca_sim import AlpacaSimulator, Fault
from tests.conftest import API_KEY, SECRET_KEY

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def broker(
    sim: AlpacaSimulator, *, timeout: float = 2.0, retries: int = 1, max_windows: int = 4
) -> AlpacaBroker:
    return AlpacaBroker.from_credentials(
        api_key=API_KEY,
        secret_key=SECRET_KEY,
        paper=True,
        base_url=sim.base_url,
        timeout_seconds=timeout,
        retries=retries,
        max_windows=max_windows,
    )


def test_state_converts_positions_orders_and_account(sim: AlpacaSimulator) -> None:
    sim.add_position("BTC/USD", "0.5", avg_entry_price="60000", current_price="62000")
    sim.add_position("TSLA", "-3", side="short", avg_entry_price="200", current_price="210")
    sim.add_order(
        symbol="ETH/USD",
        side="buy",
        qty="1",
        status="new",
        submitted_at=T0,
        id=None,
        client_order_id="sig-eth",
    )

    state = broker(sim).fetch_state()

    assert state.account_id == sim.account_id
    by_symbol = {p.symbol: p for p in state.positions}
    assert set(by_symbol) == {"BTCUSD", "TSLA"}
    assert by_symbol["BTCUSD"].qty == Decimal("0.5")
    assert by_symbol["BTCUSD"].is_crypto
    assert by_symbol["BTCUSD"].display == "BTC/USD"
    assert by_symbol["BTCUSD"].market_value == Decimal("31000")
    assert by_symbol["TSLA"].qty == Decimal("-3")  # short: signed quantity
    assert by_symbol["TSLA"].market_value == Decimal("630")  # absolute value
    assert [o.client_order_id for o in state.open_orders] == ["sig-eth"]
    assert state.open_orders[0].key == "ETHUSD"


def test_state_uses_one_call_per_endpoint(sim: AlpacaSimulator) -> None:
    for i in range(30):
        sim.add_position(f"SYM{i}", "1", current_price="10")
    b = broker(sim)
    b.fetch_state()
    assert b.call_count == 3
    assert sorted(r.endpoint for r in sim.requests) == ["account", "orders", "positions"]
    assert all(r.method == "GET" for r in sim.requests)


def test_closed_orders_paginate_with_the_after_cursor(sim: AlpacaSimulator) -> None:
    # 1,100 fills with some sharing a timestamp across the page boundary.
    for i in range(1100):
        at = T0 + timedelta(seconds=i // 3)
        sim.add_fill("BTC/USD", "sell", "0.01", price="60000", at=at)
    sim.add_fill("ETH/USD", "sell", "1", price="3000", at=T0)
    b = broker(sim, max_windows=1)  # one window, page by page (split: test_listing_windows.py)

    closed = b.fetch_closed_orders(EvidenceQuery(("BTC/USD",), T0 - timedelta(hours=1)))

    assert closed.complete
    assert len(closed.orders) == 1100
    assert len({o.id for o in closed.orders}) == 1100
    assert {o.key for o in closed.orders} == {"BTCUSD"}
    order_requests = [r for r in sim.requests if r.endpoint == "orders"]
    # 500 + 500 (1 overlap) + 102 (1 overlap), then the page that proves the end: it brings
    # nothing new (the newest orders again).
    assert len(order_requests) == b.call_count == 4
    first = order_requests[0].query
    assert first["status"] == ["closed"]
    assert first["direction"] == ["asc"]
    assert first["limit"] == ["500"]
    assert first["symbols"] == ["BTC/USD"]
    assert [v.lower() for v in first["nested"]] == ["true"]


def test_closed_orders_many_symbols_use_one_unfiltered_listing(sim: AlpacaSimulator) -> None:
    symbols = tuple(f"S{i:03d}" for i in range(80))
    for s in symbols[:5]:
        sim.add_fill(s, "sell", "1", price="10", at=T0)
    sim.add_fill("OTHER", "sell", "1", price="10", at=T0)
    closed = broker(sim).fetch_closed_orders(EvidenceQuery(symbols, T0 - timedelta(days=1)))
    assert sorted(o.symbol for o in closed.orders) == list(symbols[:5])
    assert "symbols" not in sim.requests[-1].query


def test_bracket_legs_are_flattened(sim: AlpacaSimulator) -> None:
    sim.add_order(
        symbol="BTC/USD",
        side="buy",
        qty="1",
        status="filled",
        submitted_at=T0,
        filled_at=T0,
        filled_avg_price="60000",
        legs=[
            {
                "status": "filled",
                "filled_at": T0 + timedelta(hours=1),
                "filled_avg_price": "63000",
                "order_type": "limit",
                "limit_price": "63000",
            },
            {"status": "canceled", "order_type": "stop", "stop_price": "57000"},
        ],
        order_class="bracket",
    )
    closed = broker(sim).fetch_closed_orders(EvidenceQuery(("BTC/USD",), T0 - timedelta(hours=1)))
    sides = sorted((o.side, o.status) for o in closed.orders)
    assert sides == [("buy", "filled"), ("sell", "canceled"), ("sell", "filled")]


@pytest.mark.parametrize(
    ("endpoint", "fault", "expect"),
    [
        pytest.param("positions", Fault(kind="status", status=500), "HTTP 500", id="positions-500"),
        pytest.param("account", Fault(kind="status", status=403), "HTTP 403", id="account-403"),
        pytest.param(
            "orders", Fault(kind="status", status=503), "HTTP 503", id="orders-503-after-retries"
        ),
        pytest.param(
            "positions", Fault(kind="rate_limit", retry_after=0), "HTTP 429", id="429-storm"
        ),
        pytest.param("positions", Fault(kind="malformed"), "not JSON", id="malformed"),
        pytest.param("positions", Fault(kind="truncated"), "not JSON", id="truncated"),
        pytest.param(
            "positions", Fault(kind="wrong_shape"), "unexpected response", id="wrong-shape"
        ),
        pytest.param(
            "orders", Fault(kind="wrong_shape"), "unexpected response", id="orders-wrong-shape"
        ),
    ],
)
def test_every_failure_fails_closed(
    sim: AlpacaSimulator, endpoint: str, fault: Fault, expect: str
) -> None:
    sim.add_position("BTC/USD", "0.5", current_price="60000")
    sim.inject_fault(endpoint, fault)
    with pytest.raises(BrokerUnavailable) as raised:
        broker(sim).fetch_state()
    message = str(raised.value)
    assert expect in message
    assert API_KEY not in message
    assert SECRET_KEY not in message


def test_a_single_429_is_retried_by_alpaca_py(sim: AlpacaSimulator) -> None:
    sim.add_position("BTC/USD", "0.5", current_price="60000")
    sim.inject_fault("positions", Fault(kind="rate_limit", retry_after=0, times=1))
    state = broker(sim, retries=1).fetch_state()
    assert [p.symbol for p in state.positions] == ["BTCUSD"]
    statuses = [r.status for r in sim.requests if r.endpoint == "positions"]
    assert statuses == [429, 200]


def test_a_transient_503_is_retried(sim: AlpacaSimulator) -> None:
    sim.inject_fault("positions", Fault(kind="status", status=503, times=1))
    broker(sim, retries=1).fetch_state()
    assert [r.status for r in sim.requests if r.endpoint == "positions"] == [503, 200]


def test_a_hung_broker_fails_within_the_timeout(sim: AlpacaSimulator) -> None:
    sim.inject_fault("positions", Fault(kind="hang", seconds=30))
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="timed out"):
        broker(sim, timeout=1.0).fetch_state()
    # Read timeouts are not retried: one timeout, not retries x timeout.
    assert time.monotonic() - started < 5


def test_wrong_credentials_fail_closed(sim: AlpacaSimulator) -> None:
    b = AlpacaBroker.from_credentials(
        api_key="wrong",
        secret_key="wrong-secret",
        paper=True,
        base_url=sim.base_url,
        timeout_seconds=2,
        retries=0,
    )
    with pytest.raises(BrokerUnavailable, match="HTTP 401"):
        b.fetch_state()


def test_closed_orders_failure_is_not_an_empty_listing(sim: AlpacaSimulator) -> None:
    sim.inject_fault("orders", Fault(kind="status", status=500))
    with pytest.raises(BrokerUnavailable):
        broker(sim).fetch_closed_orders(EvidenceQuery(("BTC/USD",), T0))


def test_adapter_never_writes_to_the_broker(sim: AlpacaSimulator) -> None:
    sim.add_position("BTC/USD", "1", current_price="60000")
    b = broker(sim)
    b.fetch_state()
    b.fetch_closed_orders(EvidenceQuery(("BTC/USD",), T0))
    assert {r.method for r in sim.requests} == {"GET"}


def test_pagination_cursor_ignores_late_bracket_legs(sim: AlpacaSimulator) -> None:
    # A bracket entry whose exit leg was submitted a day later, then 699 manual fills.
    sim.add_order(
        symbol="BTC/USD",
        side="buy",
        qty="1",
        status="filled",
        submitted_at=T0,
        filled_at=T0,
        filled_avg_price="60000",
        order_class="bracket",
        legs=[
            {
                "status": "filled",
                "submitted_at": T0 + timedelta(days=1),
                "filled_at": T0 + timedelta(days=1),
                "filled_avg_price": "63000",
                "order_type": "limit",
                "limit_price": "63000",
            }
        ],
    )
    for i in range(699):
        at = T0 + timedelta(minutes=i + 1)
        sim.add_fill("BTC/USD", "sell", "0.001", price="60000", at=at)

    closed = broker(sim).fetch_closed_orders(EvidenceQuery(("BTC/USD",), T0 - timedelta(hours=1)))

    assert closed.complete
    assert len(closed.orders) == 1 + 1 + 699  # parent, its leg, every manual fill


def test_missing_filled_qty_is_not_zero(sim: AlpacaSimulator) -> None:
    order = sim.add_order(symbol="BTC/USD", side="buy", qty="1", status="canceled", submitted_at=T0)
    sim.set_order_status(order["id"], "canceled", filled_qty=None)
    closed = broker(sim).fetch_closed_orders(EvidenceQuery(("BTC/USD",), T0 - timedelta(hours=1)))
    [converted] = closed.orders
    assert converted.filled_qty is None
    assert not converted.never_filled
