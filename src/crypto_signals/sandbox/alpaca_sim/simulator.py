"""The simulator: in-memory broker state, a route table, faults, and the HTTP handler."""

from __future__ import annotations

import bisect
import copy
import hmac
import json
import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal, overload
from urllib.parse import parse_qs, unquote, urlsplit

from crypto_signals.sandbox.alpaca_sim._values import (
    JSONDict,
    Number,
    asset_id,
    check_uuid,
    choice,
    compact_symbol,
    fmt,
    is_crypto_symbol,
    iso,
    json_value,
    ratio,
    to_decimal,
    to_ns,
)
from crypto_signals.sandbox.alpaca_sim.faults import Fault
from crypto_signals.sandbox.alpaca_sim.orders import (
    DEFAULT_FILL_PRICE,
    FINAL_STATUSES,
    NUMERIC_FIELDS,
    ORDER_STATUSES,
    TERMINAL_FIELD,
    TIME_FIELDS,
    WORKING_STATUSES,
    Instant,
    OrderRecord,
    OrderSpec,
    build_order,
)
from crypto_signals.sandbox.loopback import LoopbackService

DEFAULT_ACCOUNT_ID = "5f3c1a8e-7b2d-4c1e-9a6f-0d4b8e2a1c37"
SymbolFilter = Literal["slash", "compact", "both"]

_ORDERS_MAX_LIMIT = 500
_ORDERS_DEFAULT_LIMIT = 50
_ACTIVITIES_MAX_PAGE = 100
_DEFAULT_HANG_SECONDS = 120.0
_RATE_WINDOW_SECONDS = 60
# Alpaca's documented Trading API quota (per key, per minute); the spec's header example is 100.
_DEFAULT_RATE_LIMIT = 200
_ACCOUNT_CREATED_AT = "2024-01-02T15:04:05Z"
_MAX_DISCARDED_BODY = 1 << 20
_ACCOUNT_INT_FIELDS = frozenset(
    {"daytrade_count", "options_approved_level", "options_trading_level", "crypto_tier"}
)
# Dropped by the wrong_shape fault: required by the spec's schemas (and alpaca-py's models).
_REQUIRED_KEYS_TO_DROP = ("id", "qty", "status", "account_number", "created_at", "asset_id")
# Go's strconv.ParseBool vocabulary, which is what Alpaca's backend accepts for booleans.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_MAX_ID = "\U0010ffff"


@dataclass(frozen=True)
class RecordedRequest:
    """A request the simulator received. Credentials are never stored, only whether they matched."""

    method: str
    path: str
    endpoint: str
    query: dict[str, list[str]]
    status: int
    authenticated: bool


@dataclass
class _ActiveFault:
    fault: Fault
    remaining: int | None


@dataclass(frozen=True)
class _RateLimitEpisode:
    reset: int  # the X-RateLimit-Reset epoch second
    retry_at: float | None  # when Retry-After (if sent) runs out

    @property
    def until(self) -> float:
        return max(float(self.reset), self.retry_at or 0.0)

    def reply(self, now: float) -> _Reply:
        headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(self.reset)}
        if self.retry_at is not None:
            headers["Retry-After"] = format(round(max(self.retry_at - now, 0.0), 3), "g")
        body = _encode({"code": 42910000, "message": "rate limit exceeded"})
        return _Reply(429, body, headers)


@dataclass
class _ActivityRecord:
    data: JSONDict
    transaction_ns: int


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class _ApiError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> JSONDict:
        return {"code": self.code, "message": self.message}


def _unprocessable(message: str) -> _ApiError:
    return _ApiError(422, 42210000, message)


@dataclass(frozen=True)
class _Request:
    path: str
    query: Mapping[str, list[str]]
    params: Mapping[str, str]  # named groups of the route's path pattern
    short_page: Fault | None


_RouteHandler = Callable[["AlpacaSimulator", _Request], Any]


@dataclass(frozen=True)
class _Route:
    """One served route: its name (for faults and counts), path pattern and handler."""

    name: str
    pattern: re.Pattern[str]
    handler: _RouteHandler
    paged: bool = False  # the short_page fault applies


def _route(
    name: str, pattern: str, *, paged: bool = False
) -> Callable[[_RouteHandler], _RouteHandler]:
    """Adds the decorated method to the route table: the one place a route is declared."""

    def register(handler: _RouteHandler) -> _RouteHandler:
        _ROUTES.append(_Route(name, re.compile(pattern, re.IGNORECASE), handler, paged))
        return handler

    return register


_ROUTES: list[_Route] = []


class AlpacaSimulator(LoopbackService):
    """In-memory Alpaca broker state served read-only over HTTP on a background thread.

    Configuration (each models a reading of the real API the spec leaves open):

    * ``symbol_filter``: which forms of a crypto pair ``GET /v2/orders?symbols=`` matches:
      ``"slash"`` (``BTC/USD``), ``"compact"`` (``BTCUSD``) or ``"both"`` (the default; see the
      package docstring for the evidence).
    * ``legs_count_toward_limit``: with ``nested=true``, whether a parent's legs count toward
      ``limit`` (undocumented; default False).
    * ``held_listed_as``: where ``held`` orders are listed, ``"closed"`` (default) or ``"open"``.
    * ``rate_limit`` / ``enforce_rate_limit``: the per-minute quota in ``X-RateLimit-*`` headers
      and whether exceeding it answers 429 (off by default: tests page a lot).
    * ``utc_offset``: serve timestamps with this offset instead of ``Z``.
    """

    _service_name = "alpaca-sim"
    _quiet_disconnects = True

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        account_id: str = DEFAULT_ACCOUNT_ID,
        api_key: str | None = None,
        secret_key: str | None = None,
        symbol_filter: SymbolFilter = "both",
        legs_count_toward_limit: bool = False,
        held_listed_as: Literal["closed", "open"] = "closed",
        rate_limit: int = _DEFAULT_RATE_LIMIT,
        enforce_rate_limit: bool = False,
        utc_offset: timedelta = timedelta(0),
    ) -> None:
        if (api_key is None) != (secret_key is None):
            raise ValueError("api_key and secret_key must be given together")
        super().__init__(host=host, port=port)
        self._account_id = check_uuid(account_id, "account_id")
        self._api_key = api_key
        self._secret_key = secret_key
        choice(symbol_filter, frozenset({"slash", "compact", "both"}), "symbol_filter")
        self.symbol_filter = symbol_filter
        self.legs_count_toward_limit = legs_count_toward_limit
        choice(held_listed_as, frozenset({"closed", "open"}), "held_listed_as")
        self.open_statuses = WORKING_STATUSES | ({"held"} if held_listed_as == "open" else set())
        self.closed_statuses = FINAL_STATUSES | ({"held"} if held_listed_as == "closed" else set())
        if rate_limit < 1:
            raise ValueError("rate_limit must be >= 1")
        self.rate_limit = rate_limit
        self.enforce_rate_limit = enforce_rate_limit
        self._offset = utc_offset

        self._lock = threading.RLock()
        self._positions: dict[str, JSONDict] = {}
        self._orders: dict[str, OrderRecord] = {}
        self._by_client_id: dict[str, str] = {}
        self._index: list[tuple[int, str]] = []  # (listed_ns, id) of every order, sorted
        self._activities: list[_ActivityRecord] = []
        self._account_overrides: JSONDict = {}
        self._faults: dict[str, deque[_ActiveFault]] = {}
        self._requests: list[RecordedRequest] = []
        self._window_start = 0
        self._window_count = 0
        self._limited: _RateLimitEpisode | None = None

        self._active = 0
        self._active_cond = threading.Condition()

    # -- lifecycle (start, stop, context manager, base_url: LoopbackService) -------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    def _after_stop(self) -> None:
        with self._active_cond:
            self._active_cond.wait_for(lambda: self._active == 0, timeout=2)

    @property
    def account_id(self) -> str:
        return self._account_id

    # -- state: account ------------------------------------------------------------------------

    def update_account(self, **fields: Any) -> None:
        """Override fields of the served account JSON (e.g. ``cash``, ``status``)."""
        if "id" in fields:
            raise ValueError("the account id is fixed; pass account_id= to the constructor")
        converted: JSONDict = {}
        for key, value in fields.items():
            if key in _ACCOUNT_INT_FIELDS or isinstance(value, bool) or value is None:
                converted[key] = value
            elif isinstance(value, int | float | Decimal):
                converted[key] = fmt(to_decimal(value, key))
            else:
                converted[key] = json_value(key, value, frozenset(), self._offset)
        if "cash" in converted:
            to_decimal(converted["cash"], "cash")
        with self._lock:
            self._account_overrides.update(converted)

    # -- state: positions ----------------------------------------------------------------------

    def add_position(
        self,
        symbol: str,
        qty: Number,
        *,
        side: str = "long",
        avg_entry_price: Number = "100",
        current_price: Number | None = None,
        asset_class: str | None = None,
    ) -> JSONDict:
        """Add (or replace) an open position; returns the served JSON."""
        side = choice(side, frozenset({"long", "short"}), "side")
        quantity = to_decimal(qty, "qty")
        if quantity == 0:
            raise ValueError("qty must be non-zero; use remove_position() for a flat position")
        if quantity < 0:
            side = "short"
        # Alpaca reports short positions with negative qty and market value.
        quantity = -abs(quantity) if side == "short" else abs(quantity)
        entry = to_decimal(avg_entry_price, "avg_entry_price")
        price = entry if current_price is None else to_decimal(current_price, "current_price")
        if asset_class is None:
            klass = "crypto" if is_crypto_symbol(symbol) else "us_equity"
        else:
            klass = choice(
                asset_class,
                frozenset({"us_equity", "us_option", "crypto", "crypto_perp"}),
                "asset_class",
            )
        served_symbol = compact_symbol(symbol) if klass == "crypto" else symbol.strip().upper()

        market_value = quantity * price
        cost_basis = quantity * entry
        unrealized = market_value - cost_basis
        position: JSONDict = {
            "asset_id": asset_id(served_symbol),
            "symbol": served_symbol,
            # alpaca-py's AssetExchange knows CRYPTO; the spec's ExchangeForPosition enum does
            # not list it (a gap; "" is for options).
            "exchange": {"crypto": "CRYPTO", "us_option": ""}.get(klass, "NASDAQ"),
            "asset_class": klass,
            "asset_marginable": klass == "us_equity",
            "qty": fmt(quantity),
            "qty_available": fmt(quantity),
            "avg_entry_price": fmt(entry),
            "side": side,
            "market_value": fmt(market_value),
            "cost_basis": fmt(cost_basis),
            "unrealized_pl": fmt(unrealized),
            "unrealized_plpc": ratio(unrealized, abs(cost_basis)),
            # The simulator has no intraday history, so "last day" is the entry price.
            "unrealized_intraday_pl": fmt(unrealized),
            "unrealized_intraday_plpc": ratio(unrealized, abs(cost_basis)),
            "current_price": fmt(price),
            "lastday_price": fmt(entry),
            "change_today": ratio(price - entry, entry),
        }
        with self._lock:
            self._positions[compact_symbol(symbol)] = position
        return copy.deepcopy(position)

    def patch_position(self, symbol: str, **raw_fields: Any) -> None:
        """Set served fields of a position verbatim (no validation): malformed data on demand."""
        with self._lock:
            position = self._positions.get(compact_symbol(symbol))
            if position is None:
                raise KeyError(f"no position for {symbol!r}")
            for key, value in raw_fields.items():
                json.dumps(value)
                position[key] = value

    def remove_position(self, symbol: str) -> None:
        with self._lock:
            try:
                del self._positions[compact_symbol(symbol)]
            except KeyError:
                raise KeyError(f"no position for {symbol!r}") from None

    # -- state: orders -------------------------------------------------------------------------

    def add_fill(
        self,
        symbol: str,
        side: str,
        qty: Number,
        *,
        price: Number,
        at: datetime | str,
        id: str | None = None,
        client_order_id: str | None = None,
    ) -> JSONDict:
        """A market order submitted and filled in full at ``at``: the usual evidence of a trade."""
        return self.add_order(
            OrderSpec(
                symbol=symbol,
                side=side,
                qty=qty,
                submitted_at=at,
                filled_at=at,
                filled_avg_price=price,
                id=id,
                client_order_id=client_order_id,
            )
        )

    @overload
    def add_order(self, spec: OrderSpec, /) -> JSONDict: ...

    @overload
    def add_order(self, /, **fields: Any) -> JSONDict: ...

    def add_order(self, spec: OrderSpec | None = None, /, **fields: Any) -> JSONDict:
        """Add an order (and its legs); returns it as served with ``nested=true``.

        Either an :class:`OrderSpec` or its fields as keyword arguments (``symbol``, ``side``,
        ``qty``, ``status``, ``submitted_at``, ``filled_at``, ``filled_qty``,
        ``filled_avg_price``, ``id``, ``client_order_id``, ``order_type``, ``order_class``,
        ``legs`` as dicts, ``asset_class``, ``time_in_force``, ``limit_price``, ``stop_price``,
        ``notional``, ...); see :class:`OrderSpec` for the defaults.
        """
        if spec is None:
            spec = OrderSpec.of(fields)
        elif fields:
            raise TypeError("pass an OrderSpec or keyword fields, not both")
        with self._lock:
            parent = build_order(spec, offset=self._offset, is_leg=False)
            children = [
                build_order(spec.leg(leg), offset=self._offset, is_leg=True)
                for leg in spec.legs or ()
            ]
            if spec.order_class == "mleg" and not children:
                raise ValueError("a multi-leg (mleg) order needs legs")
            records = [parent, *children]
            self._check_unique(records)
            for child in children:
                child.parent_id = parent.id
                parent.leg_ids.append(child.id)
            for record in records:
                self._store(record)
            for record in records if spec.order_class != "mleg" else children:
                filled = to_decimal(record.data["filled_qty"])
                if filled > 0:
                    when = record.data["filled_at"] or record.data["updated_at"]
                    self._record_fill(record, filled, to_ns(when, "filled_at"))
            return self._order_json(parent, nested=True)

    def add_mleg_order(
        self,
        *,
        legs: Sequence[Mapping[str, Any]],
        submitted_at: Instant,
        qty: Number = "1",
        status: str = "filled",
        order_type: str = "limit",
        limit_price: Number | None = None,
        filled_avg_price: Number | None = None,
        filled_at: Instant | None = None,
        id: str | None = None,
        client_order_id: str | None = None,
    ) -> JSONDict:
        """A multi-leg options order (``order_class: "mleg"``), as in the spec's example.

        Each leg needs ``symbol`` (the option contract) and may give ``side``, ``ratio_qty``
        (default 1), ``position_intent``, ``status`` (default: the order's), ``filled_avg_price``.
        """
        leg_specs = [{"status": status, "filled_at": filled_at, **dict(leg)} for leg in legs]
        return self.add_order(
            OrderSpec(
                symbol="",
                side="",
                qty=qty,
                status=status,
                submitted_at=submitted_at,
                filled_at=filled_at,
                filled_avg_price=filled_avg_price,
                id=id,
                client_order_id=client_order_id,
                order_type=order_type,
                order_class="mleg",
                limit_price=limit_price,
                time_in_force="day",
                legs=leg_specs,
            )
        )

    def add_raw_order(
        self,
        data: Mapping[str, Any],
        *,
        listed_at: Instant | None = None,
        legs: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Serve an order JSON verbatim (a spec example, or an item a client cannot parse).

        It is listed (sorted and filtered by ``after``/``until``) at ``listed_at``, else its
        ``submitted_at``, else its ``created_at``; by its ``status`` and ``symbol`` when they are
        strings. ``legs`` are served nested under it (verbatim too).
        """
        record = self._raw_record(data, listed_at)
        children = [self._raw_record(leg, listed_at or record.listed_ns) for leg in legs]
        with self._lock:
            self._check_unique([record, *children])
            for child in children:
                child.parent_id = record.id
                record.leg_ids.append(child.id)
            for item in (record, *children):
                self._store(item)

    def patch_order(self, order_id: str, **raw_fields: Any) -> None:
        """Set served fields of an order verbatim (no validation, no fill activity): for
        example ``submitted_at=None`` or ``filled_qty="n/a"``. Where it is listed is unchanged."""
        with self._lock:
            record = self._orders.get(str(order_id))
            if record is None:
                raise KeyError(f"order not found for {order_id}")
            for key, value in raw_fields.items():
                json.dumps(value)
                record.data[key] = value

    def set_order_status(self, order_id: str, status: str, **fields: Any) -> None:
        """Move an order to ``status``; ``fields`` override any order JSON field.

        ``updated_at`` defaults to now. Becoming ``filled`` defaults ``filled_qty`` to ``qty`` and
        ``filled_at`` to ``updated_at``; any increase of ``filled_qty`` appends a FILL activity.
        """
        choice(status, ORDER_STATUSES, "status")
        with self._lock:
            record = self._orders.get(str(order_id))
            if record is None:
                raise KeyError(f"order not found for {order_id}")
            data = record.data
            updated = fields.pop("updated_at", None) or datetime.now(UTC)
            previous_filled = to_decimal(data["filled_qty"] or "0")
            if status == "filled" and "filled_qty" not in fields:
                fields["filled_qty"] = data["qty"]
            data["status"] = status
            data["updated_at"] = iso(to_ns(updated, "updated_at"), self._offset)
            for key, value in fields.items():
                if key in TIME_FIELDS and value is not None:
                    value = iso(to_ns(value, key), self._offset)
                data[key] = json_value(key, value, NUMERIC_FIELDS, self._offset)
            if "submitted_at" in fields and data["submitted_at"] is not None:
                self._reindex(record, to_ns(data["submitted_at"], "submitted_at"))
            terminal_field = TERMINAL_FIELD.get(status)
            if terminal_field is not None and data.get(terminal_field) is None:
                data[terminal_field] = data["updated_at"]
            filled = to_decimal(data["filled_qty"] or "0")
            if filled < 0 or (data["qty"] is not None and filled > to_decimal(data["qty"])):
                raise ValueError("filled_qty must be between 0 and qty")
            if filled > 0 and data["filled_avg_price"] is None:
                data["filled_avg_price"] = DEFAULT_FILL_PRICE
            if filled > previous_filled:
                when = data["filled_at"] if status == "filled" else data["updated_at"]
                self._record_fill(record, filled - previous_filled, to_ns(when, "filled_at"))

    def load_scenario(self, scenario: Mapping[str, Any]) -> None:
        """Replace the broker state (account overrides, positions, orders, activities).

        Shape: ``{"account": {...}, "positions": [add_position kwargs], "orders": [add_order
        kwargs, datetimes as ISO strings]}``. Other top-level keys (names, descriptions, the
        Firestore side of a scenario) are ignored. Faults and recorded requests are kept. On a
        validation error the previous state is restored and the error re-raised.
        """
        with self._lock:
            snapshot = self._snapshot()
            self._clear_broker_state()
            try:
                self.update_account(**dict(scenario.get("account") or {}))
                for position in scenario.get("positions") or []:
                    self.add_position(**dict(position))
                for order in scenario.get("orders") or []:
                    self.add_order(**dict(order))
            except BaseException:
                self._restore(snapshot)
                raise

    def reset(self) -> None:
        """Clear positions, orders, activities, account overrides, faults and recorded requests."""
        with self._lock:
            self._clear_broker_state()
            self._faults.clear()
            self._limited = None
            self._requests.clear()

    # -- faults and request log ----------------------------------------------------------------

    def inject_fault(self, endpoint: str, fault: Fault) -> None:
        if endpoint != "*" and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {ENDPOINTS} or '*'")
        if fault.kind == "short_page" and endpoint not in _PAGED:
            raise ValueError(f"short_page faults only apply to {', '.join(_PAGED)}")
        with self._lock:
            self._faults.setdefault(endpoint, deque()).append(_ActiveFault(fault, fault.times))

    def clear_faults(self) -> None:
        """Forget queued faults (and end a rate-limit episode a fault started)."""
        with self._lock:
            self._faults.clear()
            self._limited = None

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def count(self, endpoint: str | None = None) -> int:
        with self._lock:
            if endpoint is None:
                return len(self._requests)
            return sum(1 for r in self._requests if r.endpoint == endpoint)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- internals: state ----------------------------------------------------------------------

    def _snapshot(self) -> tuple[Any, ...]:
        return copy.deepcopy(
            (
                self._account_overrides,
                self._positions,
                self._orders,
                self._by_client_id,
                self._index,
                self._activities,
            )
        )

    def _restore(self, snapshot: tuple[Any, ...]) -> None:
        (
            self._account_overrides,
            self._positions,
            self._orders,
            self._by_client_id,
            self._index,
            self._activities,
        ) = snapshot

    def _clear_broker_state(self) -> None:
        self._account_overrides = {}
        self._positions = {}
        self._orders = {}
        self._by_client_id = {}
        self._index = []
        self._activities = []

    def _check_unique(self, records: Sequence[OrderRecord]) -> None:
        ids = [r.id for r in records]
        cids = [r.data.get("client_order_id") for r in records]
        cids = [c for c in cids if isinstance(c, str)]
        if len(set(ids)) != len(ids) or len(set(cids)) != len(cids):
            raise ValueError("order ids and client_order_ids must be unique")
        for record in records:
            if record.id in self._orders:
                raise ValueError(f"duplicate order id {record.id}")
            cid = record.data.get("client_order_id")
            if isinstance(cid, str) and cid in self._by_client_id:
                raise ValueError(f"duplicate client_order_id {cid!r}")

    def _store(self, record: OrderRecord) -> None:
        self._orders[record.id] = record
        cid = record.data.get("client_order_id")
        if isinstance(cid, str):
            self._by_client_id[cid] = record.id
        bisect.insort(self._index, (record.listed_ns, record.id))

    def _reindex(self, record: OrderRecord, listed_ns: int) -> None:
        position = bisect.bisect_left(self._index, (record.listed_ns, record.id))
        if position < len(self._index) and self._index[position] == (record.listed_ns, record.id):
            del self._index[position]
        record.listed_ns = listed_ns
        bisect.insort(self._index, (listed_ns, record.id))

    def _raw_record(self, data: Mapping[str, Any], listed_at: Instant | int | None) -> OrderRecord:
        served = copy.deepcopy(dict(data))
        json.dumps(served)
        listed_ns: int | None = listed_at if isinstance(listed_at, int) else None
        if listed_at is not None and not isinstance(listed_at, int):
            listed_ns = to_ns(listed_at, "listed_at")
        for key in ("submitted_at", "created_at"):
            if listed_ns is None and isinstance(served.get(key), str):
                try:
                    listed_ns = to_ns(served[key], key)
                except ValueError:
                    continue
        if listed_ns is None:
            raise ValueError("a raw order needs listed_at= when it has no usable timestamp")
        raw_id = served.get("id")
        # Stored under its id; an id-less item (unreadable on purpose) under a generated key.
        key = raw_id if isinstance(raw_id, str) and raw_id else f"raw-{uuid.uuid4()}"
        return OrderRecord(data=served, listed_ns=listed_ns, key=key)

    def _record_fill(self, record: OrderRecord, qty: Decimal, when_ns: int) -> None:
        data = record.data
        cumulative = to_decimal(data["filled_qty"])
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=when_ns // 1000)
        activity_id = f"{moment:%Y%m%d%H%M%S}{moment.microsecond // 1000:03d}::{uuid.uuid4()}"
        leaves = to_decimal(data["qty"]) - cumulative if data["qty"] is not None else Decimal(0)
        # The Trading API's FILL activity (spec: TradingActivities) has no account_id.
        activity: JSONDict = {
            "id": activity_id,
            "activity_type": "FILL",
            "transaction_time": iso(when_ns, self._offset),
            "type": "fill" if data["status"] == "filled" else "partial_fill",
            "price": data["filled_avg_price"] or DEFAULT_FILL_PRICE,
            "qty": fmt(qty),
            "side": data["side"],
            "symbol": data["symbol"],
            "leaves_qty": fmt(max(leaves, Decimal(0))),
            "order_id": data["id"],
            "cum_qty": fmt(cumulative),
            "order_status": data["status"],
        }
        self._activities.append(_ActivityRecord(data=activity, transaction_ns=when_ns))

    def _order_json(self, record: OrderRecord, *, nested: bool) -> JSONDict:
        data = copy.deepcopy(record.data)
        if nested and record.leg_ids:
            data["legs"] = [copy.deepcopy(self._orders[i].data) for i in record.leg_ids]
        return data

    # -- internals: request handling -----------------------------------------------------------

    @contextmanager
    def _tracking(self) -> Iterator[None]:
        with self._active_cond:
            self._active += 1
        try:
            yield
        finally:
            with self._active_cond:
                self._active -= 1
                self._active_cond.notify_all()

    def _authenticate(self, headers: Message) -> bool:
        key = headers.get("APCA-API-KEY-ID") or ""
        secret = headers.get("APCA-API-SECRET-KEY") or ""
        if self._api_key is None or self._secret_key is None:
            return bool(key and secret)
        # Both comparisons always run so timing does not reveal which one failed.
        key_ok = hmac.compare_digest(key.encode(), self._api_key.encode())
        secret_ok = hmac.compare_digest(secret.encode(), self._secret_key.encode())
        return key_ok and secret_ok

    def _record(
        self,
        method: str,
        path: str,
        endpoint: str,
        query: dict[str, list[str]],
        status: int,
        authenticated: bool,
    ) -> None:
        with self._lock:
            self._requests.append(
                RecordedRequest(method, path, endpoint, query, status, authenticated)
            )

    def _take_fault(self, endpoint: str, query: Mapping[str, list[str]]) -> Fault | None:
        """The first fault queued for this endpoint (or for every route) that matches the
        request; the ones before it in the queue wait for requests they match."""
        with self._lock:
            for key in (endpoint, "*"):
                queue = self._faults.get(key)
                if not queue:
                    continue
                active = next((a for a in queue if a.fault.matches(query)), None)
                if active is None:
                    continue
                if active.remaining is not None:
                    active.remaining -= 1
                    if active.remaining <= 0:
                        queue.remove(active)
                return active.fault
        return None

    def _count_request(self) -> tuple[dict[str, str], bool]:
        """Count one request against the quota: its X-RateLimit-* headers, and whether it is
        over the quota. A fixed window per clock minute (the spec: "Request limit per minute";
        Reset is "the UNIX epoch when the remaining quota changes")."""
        now = int(time.time())
        with self._lock:
            start = now - now % _RATE_WINDOW_SECONDS
            if start != self._window_start:
                self._window_start, self._window_count = start, 0
            self._window_count += 1
            remaining = self.rate_limit - self._window_count
            headers = {
                "X-RateLimit-Limit": str(self.rate_limit),
                "X-RateLimit-Remaining": str(max(remaining, 0)),
                "X-RateLimit-Reset": str(start + _RATE_WINDOW_SECONDS),
            }
            return headers, remaining < 0 and self.enforce_rate_limit

    def _start_rate_limit(self, fault: Fault) -> _Reply:
        """A rate-limit episode: this request and every one until the reset (and Retry-After,
        when the fault gives one) answer 429, whatever the route: Alpaca's quota is per key."""
        now = time.time()
        reset = math.ceil(now + fault.seconds_to_reset)
        retry_at = None if fault.retry_after is None else now + fault.retry_after
        with self._lock:
            self._limited = _RateLimitEpisode(reset, retry_at)
        return self._limited.reply(now)

    def _rate_limited_reply(self) -> _Reply | None:
        now = time.time()
        with self._lock:
            episode = self._limited
            if episode is None or now >= episode.until:
                self._limited = None
                return None
        return episode.reply(now)

    def _serve(self, method: str, raw_path: str, headers: Message) -> _Reply | None:
        """Produce the answer for one request, or None to drop the connection unanswered."""
        with self._tracking():
            split = urlsplit(raw_path)
            path = unquote(split.path)
            query = parse_qs(split.query, keep_blank_values=True)
            route, params = _match(path)
            endpoint = route.name if route is not None else "unknown"
            authenticated = self._authenticate(headers)
            quota, over_quota = self._count_request()

            def answer(reply: _Reply) -> _Reply:
                reply.headers = {**quota, **reply.headers}
                self._record(method, path, endpoint, query, reply.status, authenticated)
                return reply

            def error(err: _ApiError) -> _Reply:
                return answer(_Reply(err.status, _encode(err.body())))

            if self._api_key is not None and not authenticated:
                return error(_ApiError(401, 40110000, "request is not authorized"))
            if method != "GET":
                if path.startswith("/v2/"):
                    return error(_ApiError(403, 40310000, "simulator is read-only"))
                return error(_ApiError(404, 40410000, "endpoint not found"))
            if route is None:
                return error(_ApiError(404, 40410000, "endpoint not found"))
            if over_quota:
                quota["X-RateLimit-Remaining"] = "0"
                return error(_ApiError(429, 42910000, "rate limit exceeded"))
            limited = self._rate_limited_reply()
            if limited is not None:
                return answer(limited)

            fault = self._take_fault(endpoint, query)
            if fault is not None:
                if fault.kind == "status":
                    phrase = HTTPStatus(fault.status).phrase.lower()
                    return error(_ApiError(fault.status, fault.status * 100000 + 10000, phrase))
                if fault.kind == "rate_limit":
                    return answer(self._start_rate_limit(fault))
                if fault.kind == "hang":
                    self._record(method, path, endpoint, query, 0, authenticated)
                    self._stopping.wait(fault.seconds or _DEFAULT_HANG_SECONDS)
                    return None
                if fault.kind == "delay":
                    self._stopping.wait(fault.seconds)
                if fault.kind == "malformed":
                    return answer(_Reply(200, b'{"oops": <html><body>Bad Gateway</body></html>'))

            request = _Request(
                path=path,
                query=query,
                params=params,
                short_page=fault if fault is not None and fault.kind == "short_page" else None,
            )
            try:
                with self._lock:
                    status, payload = 200, route.handler(self, request)
            except _ApiError as err:
                status, payload = err.status, err.body()
            if fault is not None and fault.kind == "wrong_shape":
                return answer(_Reply(200, _encode(_wrong_shape(endpoint, payload))))
            body = _encode(payload)
            if fault is not None and fault.kind == "truncated":
                return answer(_Reply(200, body[: len(body) // 2]))
            return answer(_Reply(status, body))

    # -- routes ---------------------------------------------------------------------------------

    @_route("account", r"/v2/account")
    def _get_account(self, request: _Request) -> JSONDict:
        overrides = self._account_overrides
        cash = to_decimal(overrides.get("cash", "100000"), "cash")
        values = [to_decimal(p["market_value"]) for p in self._positions.values()]
        long_value = sum((v for v in values if v > 0), Decimal(0))
        short_value = sum((v for v in values if v < 0), Decimal(0))
        equity = cash + long_value + short_value
        account: JSONDict = {
            "id": self._account_id,
            "admin_configurations": {},
            "user_configurations": None,
            "account_number": "PA3SIMULATOR",
            "status": "ACTIVE",
            "crypto_status": "ACTIVE",
            "options_approved_level": 0,
            "options_trading_level": 0,
            "currency": "USD",
            "buying_power": fmt(cash),
            "regt_buying_power": fmt(cash),
            "daytrading_buying_power": "0",
            "effective_buying_power": fmt(cash),
            "non_marginable_buying_power": fmt(cash),
            "options_buying_power": fmt(cash),
            "bod_dtbp": "0",
            "cash": fmt(cash),
            "accrued_fees": "0",
            "pending_transfer_in": "0",
            "portfolio_value": fmt(equity),
            "pattern_day_trader": False,
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "created_at": _ACCOUNT_CREATED_AT,
            "trade_suspended_by_user": False,
            "multiplier": "1",
            "shorting_enabled": True,
            "equity": fmt(equity),
            "last_equity": fmt(equity),
            "long_market_value": fmt(long_value),
            "short_market_value": fmt(short_value),
            "position_market_value": fmt(long_value - short_value),
            "initial_margin": "0",
            "maintenance_margin": "0",
            "last_maintenance_margin": "0",
            "sma": "0",
            "daytrade_count": 0,
            "crypto_tier": 1,
            "intraday_adjustments": "0",
            "pending_reg_taf_fees": "0",
        }
        account.update(copy.deepcopy(overrides))
        return account

    @_route("positions", r"/v2/positions")
    def _get_positions(self, request: _Request) -> list[JSONDict]:
        return [copy.deepcopy(p) for _, p in sorted(self._positions.items())]

    @_route("orders", r"/v2/orders", paged=True)
    def _get_orders(self, request: _Request) -> list[JSONDict]:
        query = request.query
        status = _param_choice(query, "status", frozenset({"open", "closed", "all"}), "open")
        limit = _param_int(query, "limit", _ORDERS_DEFAULT_LIMIT, _ORDERS_MAX_LIMIT)
        after = _param_time(query, "after")
        until = _param_time(query, "until")
        direction = _param_choice(query, "direction", frozenset({"asc", "desc"}), "desc")
        nested = _param_bool(query, "nested")
        side = _param(query, "side")
        if side is not None and side.lower() not in {"buy", "sell"}:
            raise _unprocessable(f"invalid side: {side}")
        matches_symbol = self._symbol_matcher(",".join(query.get("symbols", [])))
        wanted = {
            "open": self.open_statuses,
            "closed": self.closed_statuses,
            "all": ORDER_STATUSES,
        }[status]
        if request.short_page is not None:
            limit = min(limit, request.short_page.short_page_size)

        # after/until are exclusive bounds on the listing instant (submitted_at).
        low = 0 if after is None else bisect.bisect_left(self._index, (after + 1, ""))
        high = len(self._index) if until is None else bisect.bisect_left(self._index, (until, ""))
        positions = range(low, high) if direction == "asc" else range(high - 1, low - 1, -1)
        page: list[OrderRecord] = []
        used = 0
        for position in positions:
            record = self._orders[self._index[position][1]]
            data = record.data
            if nested and record.parent_id is not None:
                continue  # listed under its parent
            if data.get("status") not in wanted:
                continue
            symbol = data.get("symbol")
            if matches_symbol is not None and not (
                isinstance(symbol, str) and matches_symbol(symbol)
            ):
                continue
            if side is not None and data.get("side") != side.lower():
                continue
            size = 1 + (len(record.leg_ids) if nested and self.legs_count_toward_limit else 0)
            if page and used + size > limit:
                break
            page.append(record)
            used += size
            if used >= limit:
                break
        return [self._order_json(record, nested=nested) for record in page]

    def _symbol_matcher(self, raw: str) -> Callable[[str], bool] | None:
        requested = {s.strip().upper() for s in raw.split(",") if s.strip()}
        if not requested:
            return None
        if self.symbol_filter == "slash":
            # Matches the symbol as orders carry it: BTC/USD; BTCUSD matches no crypto order.
            return lambda symbol: symbol.strip().upper() in requested
        if self.symbol_filter == "compact":
            # Only the form the spec's text gives: BTCUSD; BTC/USD matches nothing.
            compact = {s for s in requested if "/" not in s}
            return lambda symbol: compact_symbol(symbol) in compact
        keys = {compact_symbol(s) for s in requested}
        return lambda symbol: compact_symbol(symbol) in keys

    @_route("order_by_id", r"/v2/orders/(?P<order_id>[^/:]+)")
    def _get_order_by_id(self, request: _Request) -> JSONDict:
        order_id = request.params["order_id"]
        record = self._orders.get(order_id.lower()) or self._orders.get(order_id)
        if record is None:
            raise _ApiError(404, 40410000, f"order not found for {order_id}")
        return self._order_json(record, nested=_param_bool(request.query, "nested"))

    @_route("order_by_client_id", r"/v2/orders:by_client_order_id")
    def _get_order_by_client_id(self, request: _Request) -> JSONDict:
        client_order_id = _param(request.query, "client_order_id")
        if client_order_id is None:
            raise _unprocessable("client_order_id is required")
        order_id = self._by_client_id.get(client_order_id)
        if order_id is None:
            raise _ApiError(404, 40410000, f"order not found for {client_order_id}")
        return self._order_json(self._orders[order_id], nested=_param_bool(request.query, "nested"))

    @_route("activities", r"/v2/account/activities(?:/(?P<activity_type>[A-Za-z_]+))?")
    def _get_activities(self, request: _Request) -> list[JSONDict]:
        query = request.query
        activity_type = request.params.get("activity_type")
        if activity_type is not None:
            types = {activity_type.upper()}
        else:
            raw_types = ",".join(query.get("activity_types", []))
            types = {t.strip().upper() for t in raw_types.split(",") if t.strip()} or {"FILL"}
        if "FILL" not in types:
            return []  # the simulator only has fills
        after = _param_time(query, "after")
        until = _param_time(query, "until")
        direction = _param_choice(query, "direction", frozenset({"asc", "desc"}), "desc")
        page_size = _param_int(query, "page_size", _ACTIVITIES_MAX_PAGE, _ACTIVITIES_MAX_PAGE)
        page_token = _param(query, "page_token")

        selected = [a for a in self._activities if _in_window(a.transaction_ns, after, until)]
        selected.sort(key=lambda a: (a.transaction_ns, a.data["id"]), reverse=direction == "desc")
        if page_token is not None:
            ids = [a.data["id"] for a in selected]
            if page_token not in ids:
                raise _unprocessable(f"invalid page_token: {page_token}")
            selected = selected[ids.index(page_token) + 1 :]
        return [copy.deepcopy(a.data) for a in selected[:page_size]]


ENDPOINTS: tuple[str, ...] = tuple(route.name for route in _ROUTES)
_PAGED: tuple[str, ...] = tuple(route.name for route in _ROUTES if route.paged)


def _match(path: str) -> tuple[_Route | None, dict[str, str]]:
    trimmed = path.rstrip("/") or "/"
    for route in _ROUTES:
        found = route.pattern.fullmatch(trimmed)
        if found is not None:
            return route, {k: v for k, v in found.groupdict().items() if v is not None}
    return None, {}


# ---------------------------------------------------------------------------------------------
# Query parameters (bad input is a 422, as at Alpaca)


def _param(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    value = values[-1].strip()
    return value or None


def _param_choice(
    query: Mapping[str, list[str]], name: str, allowed: frozenset[str], default: str
) -> str:
    value = _param(query, name)
    if value is None:
        return default
    if value.lower() not in allowed:
        raise _unprocessable(f"invalid {name}: {value}")
    return value.lower()


def _param_bool(query: Mapping[str, list[str]], name: str) -> bool:
    value = _param(query, name)
    if value is None:
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _unprocessable(f"invalid {name}: {value}")


def _param_int(query: Mapping[str, list[str]], name: str, default: int, maximum: int) -> int:
    value = _param(query, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise _unprocessable(f"invalid {name}: {value}") from None
    if number < 1:
        raise _unprocessable(f"{name} must be >= 1")
    if number > maximum:
        raise _unprocessable(f"{name} must be <= {maximum}")
    return number


def _param_time(query: Mapping[str, list[str]], name: str) -> int | None:
    value = _param(query, name)
    if value is None:
        return None
    # An unescaped "+" in a hand-built URL decodes to a space; undo that for the offset.
    text = value.replace(" ", "+")
    try:
        return to_ns(text, name)
    except ValueError:
        pass
    try:  # a bare date, or other forms Python reads
        return to_ns(datetime.fromisoformat(text), name)
    except ValueError:
        raise _unprocessable(f"invalid {name}: {value}") from None


def _in_window(moment: int, after: int | None, until: int | None) -> bool:
    # Both bounds are exclusive, per Alpaca's docs for orders and activities.
    if after is not None and moment <= after:
        return False
    return not (until is not None and moment >= until)


# ---------------------------------------------------------------------------------------------
# HTTP


def _encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def _wrong_shape(endpoint: str, payload: Any) -> Any:
    def strip(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: v for k, v in item.items() if k not in _REQUIRED_KEYS_TO_DROP}
        return item

    if isinstance(payload, list):
        return {endpoint: [strip(item) for item in payload]}
    return strip(payload)


def _make_handler(simulator: AlpacaSimulator) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        # HTTP/1.0 closes the connection after each answer, so stop() leaves no idle
        # keep-alive connections (and their threads) behind.
        protocol_version = "HTTP/1.0"
        server_version = "alpaca-sim"
        sys_version = ""
        # Bounds how long a silent client can pin a handler thread.
        timeout = 30

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            self._dispatch()

        do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        def _dispatch(self) -> None:
            # Unread request bodies make the kernel reset the connection on close, which
            # would hide the 403 answer from the client.
            length = int(self.headers.get("Content-Length") or 0)
            if length > 0:
                self.rfile.read(min(length, _MAX_DISCARDED_BODY))
            reply = simulator._serve(self.command, self.path, self.headers)
            if reply is None:
                self.close_connection = True
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)

    return _Handler
