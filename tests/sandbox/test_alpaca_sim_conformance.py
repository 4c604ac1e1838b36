"""What the simulator serves conforms to Alpaca's published spec (the derived fixtures).

``tests/fixtures/alpaca/`` is derived from Alpaca's OpenAPI spec by
``scripts/derive_alpaca_schemas.py`` (never read at test time from elsewhere). Every route the
simulator serves is validated against the spec's response schema, over real HTTP, for a book
with each shape the reconciler meets: crypto and equity positions long and short; simple,
bracket (with a held stop leg), partially filled, canceled, expired, multi-leg option, option,
IPO and notional orders; FILL activities; the rate-limit headers.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from crypto_signals.sandbox.alpaca_sim import AlpacaSimulator, Fault
from tests.sandbox.openapi_subset import UnsupportedSchema, validate

KEY = "conformance-key"
SECRET = "conformance-secret"
HEADERS = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "alpaca"
SCHEMAS: dict[str, Any] = json.loads((FIXTURES / "schemas.json").read_text(encoding="utf-8"))
EXAMPLES: dict[str, dict[str, Any]] = json.loads(
    (FIXTURES / "examples.json").read_text(encoding="utf-8")
)["examples"]
DEFINITIONS: dict[str, Any] = SCHEMAS["definitions"]
T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
# Go's RFC3339Nano: up to nine fractional digits, never a trailing zero, Z.
RFC3339_NANO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,8}[1-9])?Z$")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def sim() -> Iterator[AlpacaSimulator]:
    with AlpacaSimulator(api_key=KEY, secret_key=SECRET) as simulator:
        yield simulator


def get(sim: AlpacaSimulator, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{sim.base_url}{path}", headers=HEADERS, params=params, timeout=5)


def violations(value: Any, route: str) -> list[str]:
    return validate(value, SCHEMAS["responses"][route], DEFINITIONS)


def seed_book(sim: AlpacaSimulator) -> dict[str, str]:
    sim.add_position("BTC/USD", "0.25", avg_entry_price="60000", current_price="64000")
    sim.add_position("TSLA", "-3", avg_entry_price="250", current_price="260")
    sim.add_position("AAPL", "5", avg_entry_price="200", current_price="210")
    made: dict[str, str] = {}
    made["fill"] = sim.add_fill("ETH/USD", "sell", "2", price="3150.25", at=at(1))["id"]
    made["bracket"] = sim.add_order(
        symbol="AAPL",
        side="buy",
        qty="5",
        submitted_at=at(2),
        filled_avg_price="200",
        order_class="bracket",
        order_type="limit",
        limit_price="200",
        legs=[
            {"order_type": "limit", "limit_price": "230"},
            {"order_type": "stop", "stop_price": "180", "status": "held"},
        ],
    )["id"]
    made["partial"] = sim.add_order(
        symbol="AAPL",
        side="sell",
        qty="10",
        status="partially_filled",
        filled_qty="4",
        filled_avg_price="201.5",
        submitted_at=at(3),
        order_type="limit",
        limit_price="201.5",
        client_order_id="partial-1",
    )["id"]
    made["canceled"] = sim.add_order(
        symbol="BTC/USD", side="buy", qty="1", status="canceled", submitted_at=at(4)
    )["id"]
    made["canceled_partly_filled"] = sim.add_order(
        symbol="BTC/USD",
        side="sell",
        qty="1",
        status="canceled",
        filled_qty="0.4",
        filled_avg_price="61000",
        submitted_at=at(5),
    )["id"]
    made["expired"] = sim.add_order(
        symbol="TSLA", side="sell", qty="1", status="expired", submitted_at=at(6)
    )["id"]
    made["mleg"] = sim.add_mleg_order(
        submitted_at=at(7),
        limit_price="10",
        filled_avg_price="1.28",
        legs=[
            {"symbol": "AAPL241213C00250000", "side": "buy", "ratio_qty": "3"},
            {"symbol": "AAPL241213C00260000", "side": "sell", "ratio_qty": "1"},
        ],
    )["id"]
    made["option"] = sim.add_order(
        symbol="AAPL250620C00100000",
        side="buy",
        qty="2",
        status="new",
        asset_class="us_option",
        order_type="limit",
        limit_price="10",
        submitted_at=at(8),
    )["id"]
    made["ipo"] = sim.add_order(
        symbol="FI111225",
        side="buy",
        notional="500",
        status="accepted",
        asset_class="ipo",
        time_in_force="gtc",
        submitted_at=at(9),
    )["id"]
    made["notional"] = sim.add_order(
        symbol="BTC/USD",
        side="buy",
        notional="250",
        filled_qty="0.004",
        filled_avg_price="62500",
        submitted_at=at(10),
    )["id"]
    return made


# -- the fixtures and the validator ----------------------------------------------------------


@pytest.mark.parametrize(
    ("definition", "label"),
    [(d, label) for d, examples in sorted(EXAMPLES.items()) for label in sorted(examples)],
)
def test_the_specs_own_examples_conform_to_the_derived_schemas(definition: str, label: str) -> None:
    example = EXAMPLES[definition][label]
    assert validate(example, {"$ref": f"#/definitions/{definition}"}, DEFINITIONS) == []


def test_the_validator_rejects_what_the_spec_forbids() -> None:
    order = dict(EXAMPLES["Order"]["Crypto"])
    assert validate(order, {"$ref": "#/definitions/Order"}, DEFINITIONS) == []
    cases: dict[str, Any] = {
        "time_in_force": None,  # not nullable
        "status": "pending",  # not in the enum
        "id": "not-a-uuid",
        "created_at": "2023-12-12 22:36:51",  # no offset
        "expires_at": None,  # nullable: false (so the simulator omits it)
        "filled_qty": "",  # minLength 1
    }
    for field, bad in cases.items():
        errors = validate({**order, field: bad}, {"$ref": "#/definitions/Order"}, DEFINITIONS)
        assert errors, field
        assert field in errors[0]
    missing = {k: v for k, v in order.items() if k != "type"}
    assert validate(missing, {"$ref": "#/definitions/Order"}, DEFINITIONS) == [
        "$: missing required 'type'"
    ]
    assert validate({"ratio_qty": "x"}, {"$ref": "#/definitions/Order"}, DEFINITIONS)
    with pytest.raises(UnsupportedSchema):
        validate("x", {"pattern": "^x$"}, DEFINITIONS)


def test_the_fixtures_say_where_they_came_from() -> None:
    source = SCHEMAS["source"]
    assert source["commit"] == "88722ce"
    assert "MIT" in source["licence"]
    assert {r["where"] for r in SCHEMAS["relaxations"]} >= {"Order.symbol", "Order.side"}
    assert all(r["evidence"] for r in SCHEMAS["relaxations"])


# -- the simulator against the schemas -------------------------------------------------------


def test_account_and_positions_conform(sim: AlpacaSimulator) -> None:
    seed_book(sim)
    assert violations(get(sim, "/v2/account").json(), "GET /v2/account") == []
    positions = get(sim, "/v2/positions").json()
    assert {p["symbol"] for p in positions} == {"BTCUSD", "TSLA", "AAPL"}
    assert violations(positions, "GET /v2/positions") == []


@pytest.mark.parametrize("status", ["open", "closed", "all"])
@pytest.mark.parametrize("nested", ["true", "false"])
def test_order_listings_conform(sim: AlpacaSimulator, status: str, nested: str) -> None:
    seed_book(sim)
    orders = get(sim, "/v2/orders", status=status, nested=nested, limit=500).json()
    assert orders
    assert violations(orders, "GET /v2/orders") == []


def test_every_order_shape_conforms_by_id_and_by_client_id(sim: AlpacaSimulator) -> None:
    made = seed_book(sim)
    for name, order_id in made.items():
        served = get(sim, f"/v2/orders/{order_id}", nested="true").json()
        assert violations(served, "GET /v2/orders/{order_id}") == [], name
    by_client = get(sim, "/v2/orders:by_client_order_id", client_order_id="partial-1").json()
    assert by_client["id"] == made["partial"]
    assert violations(by_client, "GET /v2/orders:by_client_order_id") == []


def test_fill_activities_conform_and_carry_no_account_id(sim: AlpacaSimulator) -> None:
    seed_book(sim)
    fills = get(sim, "/v2/account/activities/FILL").json()
    assert len(fills) >= 5
    assert violations(fills, "GET /v2/account/activities/FILL") == []
    assert all("account_id" not in f for f in fills)
    assert {f["type"] for f in fills} == {"fill", "partial_fill"}


def test_orders_have_the_shapes_of_the_specs_examples(sim: AlpacaSimulator) -> None:
    made = seed_book(sim)

    def order(name: str) -> dict[str, Any]:
        data: dict[str, Any] = get(sim, f"/v2/orders/{made[name]}", nested="true").json()
        return data

    fill, option, mleg, ipo = order("fill"), order("option"), order("mleg"), order("ipo")
    # Simple orders: order_class "" (crypto, equity, IPO examples), "simple" for an option.
    assert (fill["order_class"], ipo["order_class"], option["order_class"]) == ("", "", "simple")
    # submitted_at a little before created_at (the crypto example: 24 ms), Go's RFC3339Nano.
    assert fill["submitted_at"] == "2026-03-02T14:31:00Z"
    assert fill["created_at"] == "2026-03-02T14:31:00.024450436Z"
    for data in (fill, option, mleg, ipo):
        for key in ("submitted_at", "created_at", "updated_at"):
            assert RFC3339_NANO.match(data[key]), (key, data[key])
    # Multi-leg: a container with empty symbol and side; legs carry the contracts.
    assert (mleg["symbol"], mleg["side"], mleg["asset_class"], mleg["order_class"]) == (
        "",
        "",
        "",
        "mleg",
    )
    assert mleg["created_at"] < mleg["submitted_at"]  # the mleg example's order
    assert [(leg["symbol"], leg["side"], leg["ratio_qty"], leg["qty"]) for leg in mleg["legs"]] == [
        ("AAPL241213C00250000", "buy", "3", "3"),
        ("AAPL241213C00260000", "sell", "1", "1"),
    ]
    assert {leg["type"] for leg in mleg["legs"]} == {""}
    assert (ipo["asset_class"], ipo["qty"], ipo["notional"]) == ("ipo", None, "500")
    # Fields the schema does not let be null are omitted, as in the examples.
    assert "expires_at" not in fill
    assert "position_intent" not in fill


def test_held_legs_are_listed_as_closed(sim: AlpacaSimulator) -> None:
    made = seed_book(sim)
    closed = get(sim, "/v2/orders", status="closed", nested="false", limit=500).json()
    open_ = get(sim, "/v2/orders", status="open", nested="false", limit=500).json()
    held = [o for o in closed if o["status"] == "held"]
    assert len(held) == 1
    assert all(o["status"] != "held" for o in open_)
    assert made["bracket"] in {o["id"] for o in closed}


def test_rate_limit_headers_on_every_answer_and_on_a_429(sim: AlpacaSimulator) -> None:
    headers = SCHEMAS["rate_limit_headers"]
    ok = get(sim, "/v2/account")
    for name, schema in headers.items():
        assert validate(int(ok.headers[name]), schema, DEFINITIONS) == []
    assert int(ok.headers["X-RateLimit-Limit"]) == 200
    first_remaining = int(ok.headers["X-RateLimit-Remaining"])
    assert int(get(sim, "/v2/account").headers["X-RateLimit-Remaining"]) == first_remaining - 1
    assert int(ok.headers["X-RateLimit-Reset"]) > time.time()

    sim.inject_fault("positions", Fault("rate_limit", reset_after=1, times=1))
    limited = get(sim, "/v2/positions")
    assert limited.status_code == 429
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    reset = int(limited.headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 2
    assert "Retry-After" not in limited.headers  # the spec documents none
    # The quota is per key: until the reset, every route answers 429.
    assert get(sim, "/v2/account").status_code == 429
    time.sleep(max(reset - time.time(), 0) + 0.05)
    assert get(sim, "/v2/account").status_code == 200
