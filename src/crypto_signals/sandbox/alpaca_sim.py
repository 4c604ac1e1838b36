"""A local, read-only simulator of the Alpaca Trading API v2, served over real HTTP.

Why this exists: the reconciler talks to Alpaca through alpaca-py's ``TradingClient``. Mocking
that client in-process cannot catch wire-level mistakes -- how query parameters are encoded,
which symbol form (``BTC/USD`` vs ``BTCUSD``) each endpoint uses, off-by-one pagination on
exclusive time bounds, or how the code copes with a broker that misbehaves at the HTTP layer.
This simulator binds to loopback, serves Alpaca-shaped JSON, and lets tests and the sandbox point
an *unmodified* ``TradingClient(key, secret, paper=True, url_override=sim.base_url)`` at it.

Served routes (route names are used by :meth:`AlpacaSimulator.inject_fault`,
:meth:`AlpacaSimulator.count` and :attr:`RecordedRequest.endpoint`):

* ``account``            GET /v2/account
* ``positions``          GET /v2/positions
* ``orders``             GET /v2/orders
* ``order_by_id``        GET /v2/orders/{id}
* ``order_by_client_id`` GET /v2/orders:by_client_order_id?client_order_id=...
* ``activities``         GET /v2/account/activities/FILL and /v2/account/activities

Any other path answers 404 and is recorded with endpoint ``"unknown"``. The simulator is
read-only on purpose: the reconciler must never submit, replace or cancel anything, so every
non-GET request under ``/v2/`` answers 403 and is recorded, which lets tests assert that no
such request was ever made.

Fault model: a :class:`Fault` is injected per route name (or ``"*"`` for every served route)
and queued FIFO. Each matching request consumes one use of the fault at the head of the queue
(the route's own queue first, then ``"*"``); ``times=None`` keeps it active until
:meth:`AlpacaSimulator.clear_faults`. Authentication is checked before faults, and unknown
paths and writes never consume faults. Kinds:

* ``status``      -- the given HTTP status with an Alpaca JSON error body.
* ``rate_limit``  -- 429 with ``Retry-After`` and Alpaca's rate-limit body.
* ``hang``        -- no answer; the connection is closed after ``seconds`` (120 s if 0) or as
  soon as :meth:`AlpacaSimulator.stop` is called. Recorded with status 0.
* ``delay``       -- sleeps ``seconds``, then answers normally (from the state at answer time).
* ``malformed``   -- 200 whose body is not JSON.
* ``truncated``   -- 200 whose (otherwise valid) JSON body is cut in half; Content-Length is
  the truncated length, so only the JSON decoder notices.
* ``wrong_shape`` -- 200 with valid JSON of the wrong shape: lists come back wrapped in an
  object, and objects lose required fields (``id``, ``qty``, ``status``, ...).
* ``short_page``  -- ``orders`` only: half of the page that should have been served, with no
  error, to exercise pagination that stops early.
"""

from __future__ import annotations

import copy
import hmac
import json
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, cast, get_args
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "ENDPOINTS",
    "AlpacaSimulator",
    "Fault",
    "FaultKind",
    "RecordedRequest",
]

DEFAULT_ACCOUNT_ID = "5f3c1a8e-7b2d-4c1e-9a6f-0d4b8e2a1c37"

FaultKind = Literal[
    "status", "rate_limit", "hang", "delay", "malformed", "truncated", "wrong_shape", "short_page"
]
Number = str | int | float | Decimal
JSONDict = dict[str, Any]

ENDPOINTS: tuple[str, ...] = (
    "account",
    "positions",
    "orders",
    "order_by_id",
    "order_by_client_id",
    "activities",
)

OPEN_STATUSES = frozenset(
    {
        "new",
        "accepted",
        "pending_new",
        "partially_filled",
        "accepted_for_bidding",
        "pending_cancel",
        "pending_replace",
        "held",
        "calculated",
        "stopped",
        "suspended",
        # Not in Alpaca's documented open list, but alpaca-py knows it and it is not final.
        "pending_review",
    }
)
CLOSED_STATUSES = frozenset(
    {"filled", "canceled", "expired", "rejected", "replaced", "done_for_day"}
)
_ORDER_STATUSES = OPEN_STATUSES | CLOSED_STATUSES
_ORDER_TYPES = frozenset({"market", "limit", "stop", "stop_limit", "trailing_stop"})
_ORDER_CLASSES = frozenset({"simple", "bracket", "oco", "oto", "mleg"})
_TIME_IN_FORCE = frozenset({"day", "gtc", "opg", "cls", "ioc", "fok"})
_ASSET_CLASSES = frozenset({"us_equity", "us_option", "crypto", "crypto_perp"})
_CRYPTO_QUOTES = ("USDT", "USDC", "USD", "BTC")
# Go's strconv.ParseBool vocabulary, which is what Alpaca's backend accepts for booleans.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

_ORDERS_MAX_LIMIT = 500
_ORDERS_DEFAULT_LIMIT = 50
_ACTIVITIES_MAX_PAGE = 100
_DEFAULT_FILL_PRICE = "100"  # matches add_position's default avg_entry_price
_DEFAULT_HANG_SECONDS = 120.0
_ACCOUNT_INT_FIELDS = frozenset(
    {"daytrade_count", "options_approved_level", "options_trading_level", "crypto_tier"}
)
_ORDER_NUMERIC_FIELDS = frozenset(
    {
        "qty",
        "filled_qty",
        "filled_avg_price",
        "limit_price",
        "stop_price",
        "notional",
        "trail_percent",
        "trail_price",
        "hwm",
        "ratio_qty",
    }
)
# Dropped by the wrong_shape fault: required by alpaca-py's Order / Position / TradeAccount /
# TradeActivity models, so strict parsers must reject the payload.
_REQUIRED_KEYS_TO_DROP = ("id", "qty", "status", "account_number", "created_at", "asset_id")
_ACCOUNT_CREATED_AT = "2024-01-02T15:04:05.000000Z"
_MAX_DISCARDED_BODY = 1 << 20


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour; see the module docstring for what each kind does."""

    kind: FaultKind
    status: int = 500
    retry_after: float = 1.0
    seconds: float = 0.0
    times: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in get_args(FaultKind):
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if not 400 <= self.status <= 599:
            raise ValueError("Fault.status must be an HTTP error status (400-599)")
        if self.retry_after < 0 or self.seconds < 0:
            raise ValueError("Fault.retry_after and Fault.seconds must be >= 0")
        if self.times is not None and self.times < 1:
            raise ValueError("Fault.times must be >= 1 or None")


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


@dataclass
class _OrderRecord:
    data: JSONDict
    submitted_at: datetime
    parent_id: str | None = None
    leg_ids: list[str] = field(default_factory=list)


@dataclass
class _ActivityRecord:
    data: JSONDict
    transaction_time: datetime


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


# ---------------------------------------------------------------------------------------------
# Value helpers


def _to_decimal(value: Number, name: str = "value") -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, not a bool")
    try:
        # str() first so floats like 0.1 keep their short repr instead of binary noise.
        result = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ValueError(f"{name} must be numeric, got {value!r}") from exc
    if not result.is_finite():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return result


def _fmt(value: Decimal) -> str:
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def _ratio(numerator: Decimal, denominator: Decimal) -> str:
    if denominator == 0:
        return "0"
    return _fmt((numerator / denominator).quantize(Decimal("1e-10")))


def _utc(value: datetime) -> datetime:
    # Naive datetimes are taken as UTC, as alpaca-py does when it serialises request fields.
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _parse_dt(value: datetime | str, name: str) -> datetime:
    if isinstance(value, datetime):
        return _utc(value)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a datetime or ISO-8601 string, got {value!r}")
    try:
        return _utc(datetime.fromisoformat(value.strip()))
    except ValueError as exc:
        raise ValueError(f"{name} is not an ISO-8601 timestamp: {value!r}") from exc


def _iso(value: datetime) -> str:
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _compact_symbol(symbol: str) -> str:
    return symbol.replace("/", "").strip().upper()


def _is_crypto_symbol(symbol: str) -> bool:
    upper = symbol.strip().upper()
    return "/" in upper or (len(upper) > 5 and upper.endswith(_CRYPTO_QUOTES))


def _slash_symbol(symbol: str) -> str:
    upper = symbol.strip().upper()
    if "/" in upper:
        return upper
    for quote in _CRYPTO_QUOTES:
        if upper.endswith(quote) and len(upper) > len(quote):
            return f"{upper[: -len(quote)]}/{quote}"
    return upper


def _asset_class(symbol: str, asset_class: str | None) -> str:
    if asset_class is None:
        return "crypto" if _is_crypto_symbol(symbol) else "us_equity"
    if asset_class not in _ASSET_CLASSES:
        raise ValueError(f"asset_class must be one of {sorted(_ASSET_CLASSES)}")
    return asset_class


def _asset_id(symbol: str) -> str:
    # Deterministic so a position and the orders for the same asset share an asset_id.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"alpaca-sim:asset:{_compact_symbol(symbol)}"))


def _check_uuid(value: str, name: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError as exc:
        raise ValueError(f"{name} must be a UUID, got {value!r}") from exc


def _choice(value: str, allowed: frozenset[str], name: str) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")
    return value


def _json_value(key: str, value: Any, numeric_keys: frozenset[str]) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if key in numeric_keys and value is not None:
        return _fmt(_to_decimal(value, key))
    if isinstance(value, Decimal):
        return _fmt(value)
    json.dumps(value)  # fail at set-up time, not inside a request handler
    return value


def _endpoint_for(path: str) -> str:
    trimmed = path.rstrip("/") or "/"
    if trimmed == "/v2/account":
        return "account"
    if trimmed == "/v2/positions":
        return "positions"
    if trimmed == "/v2/orders":
        return "orders"
    if trimmed == "/v2/orders:by_client_order_id":
        return "order_by_client_id"
    if trimmed.startswith("/v2/orders/") and "/" not in trimmed[len("/v2/orders/") :]:
        return "order_by_id"
    if trimmed == "/v2/account/activities" or trimmed.upper() == "/V2/ACCOUNT/ACTIVITIES/FILL":
        return "activities"
    return "unknown"


# ---------------------------------------------------------------------------------------------
# Query parameter helpers (raise _ApiError so bad input becomes a 422, as Alpaca does)


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


def _param_time(query: Mapping[str, list[str]], name: str) -> datetime | None:
    value = _param(query, name)
    if value is None:
        return None
    # An unescaped "+" in a hand-built URL decodes to a space; undo that for the offset.
    try:
        return _utc(datetime.fromisoformat(value.replace(" ", "+")))
    except ValueError:
        raise _unprocessable(f"invalid {name}: {value}") from None


def _in_window(moment: datetime, after: datetime | None, until: datetime | None) -> bool:
    # Both bounds are exclusive, per Alpaca's docs for orders and activities.
    if after is not None and moment <= after:
        return False
    return not (until is not None and moment >= until)


# ---------------------------------------------------------------------------------------------
# HTTP plumbing


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class _SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: AlpacaSimulator) -> None:
        self.simulator = simulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, reset) mid-answer is an expected test scenario.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0 closes the connection after each answer, so stop() leaves no idle keep-alive
    # connections (and their threads) behind.
    protocol_version = "HTTP/1.0"
    server_version = "alpaca-sim"
    sys_version = ""
    # Bounds how long a silent client can pin a handler thread.
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        # Unread request bodies make the kernel reset the connection on close, which would
        # hide the 403 answer from the client.
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(min(length, _MAX_DISCARDED_BODY))
        simulator = cast(_SimServer, self.server).simulator
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


# ---------------------------------------------------------------------------------------------
# The simulator


class AlpacaSimulator:
    """In-memory Alpaca broker state served read-only over HTTP on a background thread."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        account_id: str = DEFAULT_ACCOUNT_ID,
        api_key: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        if (api_key is None) != (secret_key is None):
            raise ValueError("api_key and secret_key must be given together")
        self._host = host
        self._port = port
        self._account_id = _check_uuid(account_id, "account_id")
        self._api_key = api_key
        self._secret_key = secret_key

        self._lock = threading.RLock()
        self._positions: dict[str, JSONDict] = {}
        self._orders: dict[str, _OrderRecord] = {}
        self._activities: list[_ActivityRecord] = []
        self._account_overrides: JSONDict = {}
        self._faults: dict[str, deque[_ActiveFault]] = {}
        self._requests: list[RecordedRequest] = []

        self._lifecycle_lock = threading.Lock()
        self._server: _SimServer | None = None
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._active = 0
        self._active_cond = threading.Condition()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> AlpacaSimulator:
        with self._lifecycle_lock:
            if self._server is not None:
                raise RuntimeError("simulator already started")
            self._stop_event.clear()
            server = _SimServer((self._host, self._port), self)
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"alpaca-sim:{server.server_address[1]}",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        with self._lifecycle_lock:
            server, thread = self._server, self._thread
            if server is None:
                return
            # Set first so hanging/delayed handlers wake up instead of pinning shutdown.
            self._stop_event.set()
            server.shutdown()
            server.server_close()
            if thread is not None:
                thread.join(timeout=5)
            with self._active_cond:
                self._active_cond.wait_for(lambda: self._active == 0, timeout=2)
            self._server, self._thread = None, None

    def __enter__(self) -> AlpacaSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        server = self._server
        if server is None:
            raise RuntimeError("simulator is not running; call start() first")
        host, port = server.server_address[0], server.server_address[1]
        return f"http://{host!s}:{port}"

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
                converted[key] = _fmt(_to_decimal(value, key))
            else:
                converted[key] = _json_value(key, value, frozenset())
        if "cash" in converted:
            _to_decimal(converted["cash"], "cash")
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
        side = _choice(side, frozenset({"long", "short"}), "side")
        quantity = _to_decimal(qty, "qty")
        if quantity == 0:
            raise ValueError("qty must be non-zero; use remove_position() for a flat position")
        if quantity < 0:
            side = "short"
        # Alpaca reports short positions with negative qty and market value.
        quantity = -abs(quantity) if side == "short" else abs(quantity)
        entry = _to_decimal(avg_entry_price, "avg_entry_price")
        price = entry if current_price is None else _to_decimal(current_price, "current_price")
        klass = _asset_class(symbol, asset_class)
        served_symbol = _compact_symbol(symbol) if klass == "crypto" else symbol.strip().upper()

        market_value = quantity * price
        cost_basis = quantity * entry
        unrealized = market_value - cost_basis
        position: JSONDict = {
            "asset_id": _asset_id(served_symbol),
            "symbol": served_symbol,
            "exchange": "CRYPTO" if klass == "crypto" else "NASDAQ",
            "asset_class": klass,
            "asset_marginable": klass != "crypto",
            "qty": _fmt(quantity),
            "qty_available": _fmt(quantity),
            "avg_entry_price": _fmt(entry),
            "side": side,
            "market_value": _fmt(market_value),
            "cost_basis": _fmt(cost_basis),
            "unrealized_pl": _fmt(unrealized),
            "unrealized_plpc": _ratio(unrealized, abs(cost_basis)),
            # The simulator has no intraday history, so "last day" is the entry price.
            "unrealized_intraday_pl": _fmt(unrealized),
            "unrealized_intraday_plpc": _ratio(unrealized, abs(cost_basis)),
            "current_price": _fmt(price),
            "lastday_price": _fmt(entry),
            "change_today": _ratio(price - entry, entry),
        }
        with self._lock:
            self._positions[_compact_symbol(symbol)] = position
        return copy.deepcopy(position)

    def remove_position(self, symbol: str) -> None:
        with self._lock:
            try:
                del self._positions[_compact_symbol(symbol)]
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
            symbol=symbol,
            side=side,
            qty=qty,
            submitted_at=at,
            filled_at=at,
            filled_avg_price=price,
            id=id,
            client_order_id=client_order_id,
        )

    def add_order(
        self,
        *,
        symbol: str,
        side: str,
        qty: Number,
        status: str = "filled",
        submitted_at: datetime | str,
        filled_at: datetime | str | None = None,
        filled_qty: Number | None = None,
        filled_avg_price: Number | None = None,
        id: str | None = None,
        client_order_id: str | None = None,
        order_type: str = "market",
        order_class: str = "simple",
        legs: list[dict[str, Any]] | None = None,
        asset_class: str | None = None,
        time_in_force: str | None = None,
        limit_price: Number | None = None,
        stop_price: Number | None = None,
    ) -> JSONDict:
        """Add an order (and its bracket legs); returns it as served with ``nested=true``.

        Leg dicts take the same keyword arguments; ``symbol``, ``qty``, ``submitted_at``,
        ``order_class``, ``asset_class`` and ``time_in_force`` default to the parent's, ``side``
        to the opposite side and ``status`` to ``"new"`` (a resting exit, not a fill).
        """
        with self._lock:
            parent = self._build_order(
                symbol=symbol,
                side=side,
                qty=qty,
                status=status,
                submitted_at=submitted_at,
                filled_at=filled_at,
                filled_qty=filled_qty,
                filled_avg_price=filled_avg_price,
                id=id,
                client_order_id=client_order_id,
                order_type=order_type,
                order_class=order_class,
                asset_class=asset_class,
                time_in_force=time_in_force,
                limit_price=limit_price,
                stop_price=stop_price,
            )
            children = [self._build_leg(parent, dict(leg)) for leg in legs or []]
            new_ids = [parent.data["id"], *(c.data["id"] for c in children)]
            new_cids = [
                parent.data["client_order_id"],
                *(c.data["client_order_id"] for c in children),
            ]
            if len(set(new_ids)) != len(new_ids) or len(set(new_cids)) != len(new_cids):
                raise ValueError("order ids and client_order_ids must be unique")
            for record in (parent, *children):
                if record.data["id"] in self._orders:
                    raise ValueError(f"duplicate order id {record.data['id']}")
                if self._find_by_client_id(record.data["client_order_id"]) is not None:
                    raise ValueError(
                        f"duplicate client_order_id {record.data['client_order_id']!r}"
                    )
            self._orders[parent.data["id"]] = parent
            for child in children:
                child.parent_id = parent.data["id"]
                parent.leg_ids.append(child.data["id"])
                self._orders[child.data["id"]] = child
            for record in (parent, *children):
                filled = _to_decimal(record.data["filled_qty"])
                if filled > 0:
                    when = record.data["filled_at"] or record.data["updated_at"]
                    self._record_fill(record, filled, _parse_dt(when, "filled_at"))
            return self._order_json(parent, nested=True)

    def set_order_status(self, order_id: str, status: str, **fields: Any) -> None:
        """Move an order to ``status``; ``fields`` override any order JSON field.

        ``updated_at`` defaults to now. Becoming ``filled`` defaults ``filled_qty`` to ``qty`` and
        ``filled_at`` to ``updated_at``; any increase of ``filled_qty`` appends a FILL activity.
        """
        _choice(status, _ORDER_STATUSES, "status")
        with self._lock:
            record = self._orders.get(str(order_id))
            if record is None:
                raise KeyError(f"order not found for {order_id}")
            data = record.data
            updated = _parse_dt(fields.pop("updated_at", None) or datetime.now(UTC), "updated_at")
            previous_filled = _to_decimal(data["filled_qty"] or "0")
            if status == "filled" and "filled_qty" not in fields:
                fields["filled_qty"] = data["qty"]
            data["status"] = status
            data["updated_at"] = _iso(updated)
            for key, value in fields.items():
                if key in {"submitted_at", "filled_at", "created_at"} and value is not None:
                    value = _parse_dt(value, key)
                data[key] = _json_value(key, value, _ORDER_NUMERIC_FIELDS)
            if "submitted_at" in fields:
                record.submitted_at = _parse_dt(data["submitted_at"], "submitted_at")
            timestamp_field = {
                "filled": "filled_at",
                "canceled": "canceled_at",
                "expired": "expired_at",
                "rejected": "failed_at",
                "replaced": "replaced_at",
            }.get(status)
            if timestamp_field is not None and data.get(timestamp_field) is None:
                data[timestamp_field] = data["updated_at"]
            filled = _to_decimal(data["filled_qty"] or "0")
            if filled < 0 or filled > _to_decimal(data["qty"]):
                raise ValueError("filled_qty must be between 0 and qty")
            if filled > 0 and data["filled_avg_price"] is None:
                data["filled_avg_price"] = _DEFAULT_FILL_PRICE
            if filled > previous_filled:
                when = data["filled_at"] if status == "filled" else data["updated_at"]
                self._record_fill(record, filled - previous_filled, _parse_dt(when, "filled_at"))

    def load_scenario(self, scenario: Mapping[str, Any]) -> None:
        """Replace the broker state (account overrides, positions, orders, activities).

        Shape: ``{"account": {...}, "positions": [add_position kwargs], "orders": [add_order
        kwargs, datetimes as ISO strings]}``. Other top-level keys (names, descriptions, the
        Firestore side of a scenario) are ignored. Faults and recorded requests are kept. On a
        validation error the previous state is restored and the error re-raised.
        """
        with self._lock:
            snapshot = (
                copy.deepcopy(self._account_overrides),
                copy.deepcopy(self._positions),
                copy.deepcopy(self._orders),
                copy.deepcopy(self._activities),
            )
            self._clear_broker_state()
            try:
                self.update_account(**dict(scenario.get("account") or {}))
                for position in scenario.get("positions") or []:
                    self.add_position(**dict(position))
                for order in scenario.get("orders") or []:
                    self.add_order(**dict(order))
            except BaseException:
                (
                    self._account_overrides,
                    self._positions,
                    self._orders,
                    self._activities,
                ) = snapshot
                raise

    def reset(self) -> None:
        """Clear positions, orders, activities, account overrides, faults and recorded requests."""
        with self._lock:
            self._clear_broker_state()
            self._faults.clear()
            self._requests.clear()

    # -- faults and request log ----------------------------------------------------------------

    def inject_fault(self, endpoint: str, fault: Fault) -> None:
        if endpoint != "*" and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {ENDPOINTS} or '*'")
        if fault.kind == "short_page" and endpoint != "orders":
            raise ValueError("short_page faults only apply to the 'orders' endpoint")
        with self._lock:
            self._faults.setdefault(endpoint, deque()).append(_ActiveFault(fault, fault.times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

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

    def _clear_broker_state(self) -> None:
        self._account_overrides = {}
        self._positions = {}
        self._orders = {}
        self._activities = []

    def _build_leg(self, parent: _OrderRecord, leg: dict[str, Any]) -> _OrderRecord:
        if "legs" in leg:
            raise ValueError("order legs cannot have legs of their own")
        if "type" in leg and "order_type" not in leg:
            leg["order_type"] = leg.pop("type")
        p = parent.data
        leg.setdefault("symbol", p["symbol"])
        leg.setdefault("qty", p["qty"])
        leg.setdefault("side", "sell" if p["side"] == "buy" else "buy")
        leg.setdefault("status", "new")
        leg.setdefault("submitted_at", parent.submitted_at)
        leg.setdefault("order_class", p["order_class"])
        leg.setdefault("asset_class", p["asset_class"])
        leg.setdefault("time_in_force", p["time_in_force"])
        return self._build_order(**leg)

    def _build_order(
        self,
        *,
        symbol: str,
        side: str,
        qty: Number,
        status: str = "filled",
        submitted_at: datetime | str,
        filled_at: datetime | str | None = None,
        filled_qty: Number | None = None,
        filled_avg_price: Number | None = None,
        id: str | None = None,
        client_order_id: str | None = None,
        order_type: str = "market",
        order_class: str = "simple",
        asset_class: str | None = None,
        time_in_force: str | None = None,
        limit_price: Number | None = None,
        stop_price: Number | None = None,
    ) -> _OrderRecord:
        _choice(side, frozenset({"buy", "sell"}), "side")
        _choice(status, _ORDER_STATUSES, "status")
        _choice(order_type, _ORDER_TYPES, "order_type")
        _choice(order_class, _ORDER_CLASSES, "order_class")
        klass = _asset_class(symbol, asset_class)
        tif = time_in_force or ("gtc" if klass == "crypto" else "day")
        _choice(tif, _TIME_IN_FORCE, "time_in_force")
        # Alpaca serves crypto orders with the slash form, unlike positions.
        served_symbol = _slash_symbol(symbol) if klass == "crypto" else symbol.strip().upper()

        quantity = _to_decimal(qty, "qty")
        if quantity <= 0:
            raise ValueError("order qty must be positive; use side='sell' for sells")
        if filled_qty is None:
            filled = quantity if status == "filled" else Decimal(0)
        else:
            filled = _to_decimal(filled_qty, "filled_qty")
        if filled < 0 or filled > quantity:
            raise ValueError("filled_qty must be between 0 and qty")
        submitted = _parse_dt(submitted_at, "submitted_at")
        filled_time = None if filled_at is None else _parse_dt(filled_at, "filled_at")
        if filled_time is None and status == "filled":
            filled_time = submitted
        if filled_avg_price is not None:
            avg_price: str | None = _fmt(_to_decimal(filled_avg_price, "filled_avg_price"))
        else:
            avg_price = _DEFAULT_FILL_PRICE if filled > 0 else None
        updated = max(submitted, filled_time) if filled_time is not None else submitted
        terminal_field = {
            "canceled": "canceled_at",
            "expired": "expired_at",
            "rejected": "failed_at",
            "replaced": "replaced_at",
        }.get(status)

        data: JSONDict = {
            "id": _check_uuid(id, "id") if id is not None else str(uuid.uuid4()),
            "client_order_id": client_order_id or str(uuid.uuid4()),
            "created_at": _iso(submitted),
            "updated_at": _iso(updated),
            "submitted_at": _iso(submitted),
            "filled_at": None if filled_time is None else _iso(filled_time),
            "expired_at": None,
            "expires_at": None,
            "canceled_at": None,
            "failed_at": None,
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": _asset_id(served_symbol),
            "symbol": served_symbol,
            "asset_class": klass,
            "notional": None,
            "qty": _fmt(quantity),
            "filled_qty": _fmt(filled),
            "filled_avg_price": avg_price,
            "order_class": order_class,
            "order_type": order_type,
            "type": order_type,
            "side": side,
            "position_intent": None,
            "time_in_force": tif,
            "limit_price": None if limit_price is None else _fmt(_to_decimal(limit_price)),
            "stop_price": None if stop_price is None else _fmt(_to_decimal(stop_price)),
            "status": status,
            "extended_hours": False,
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
            "subtag": None,
            "source": None,
        }
        if terminal_field is not None:
            data[terminal_field] = data["updated_at"]
        return _OrderRecord(data=data, submitted_at=submitted)

    def _record_fill(self, record: _OrderRecord, qty: Decimal, when: datetime) -> None:
        data = record.data
        cumulative = _to_decimal(data["filled_qty"])
        when = _utc(when)
        activity_id = f"{when:%Y%m%d%H%M%S}{when.microsecond // 1000:03d}::{uuid.uuid4()}"
        activity: JSONDict = {
            "id": activity_id,
            # Not sent by the Trading API, but alpaca-py's TradeActivity model requires it.
            "account_id": self._account_id,
            "activity_type": "FILL",
            "transaction_time": _iso(when),
            "type": "fill" if data["status"] == "filled" else "partial_fill",
            "price": data["filled_avg_price"] or _DEFAULT_FILL_PRICE,
            "qty": _fmt(qty),
            "side": data["side"],
            "symbol": data["symbol"],
            "leaves_qty": _fmt(max(_to_decimal(data["qty"]) - cumulative, Decimal(0))),
            "order_id": data["id"],
            "cum_qty": _fmt(cumulative),
            "order_status": data["status"],
        }
        self._activities.append(_ActivityRecord(data=activity, transaction_time=when))

    def _find_by_client_id(self, client_order_id: str) -> _OrderRecord | None:
        for record in self._orders.values():
            if record.data["client_order_id"] == client_order_id:
                return record
        return None

    def _order_json(self, record: _OrderRecord, *, nested: bool) -> JSONDict:
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

    def _take_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for key in (endpoint, "*"):
                queue = self._faults.get(key)
                if not queue:
                    continue
                active = queue[0]
                if active.remaining is not None:
                    active.remaining -= 1
                    if active.remaining <= 0:
                        queue.popleft()
                return active.fault
        return None

    def _serve(self, method: str, raw_path: str, headers: Message) -> _Reply | None:
        """Produce the answer for one request, or None to drop the connection unanswered."""
        with self._tracking():
            split = urlsplit(raw_path)
            path = unquote(split.path)
            query = parse_qs(split.query, keep_blank_values=True)
            endpoint = _endpoint_for(path)
            authenticated = self._authenticate(headers)

            def answer(reply: _Reply) -> _Reply:
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
            if endpoint == "unknown":
                return error(_ApiError(404, 40410000, "endpoint not found"))

            fault = self._take_fault(endpoint)
            if fault is not None:
                if fault.kind == "status":
                    phrase = HTTPStatus(fault.status).phrase.lower()
                    return error(_ApiError(fault.status, fault.status * 100000 + 10000, phrase))
                if fault.kind == "rate_limit":
                    reply = _Reply(
                        429,
                        _encode({"code": 42910000, "message": "rate limit exceeded"}),
                        {"Retry-After": format(fault.retry_after, "g")},
                    )
                    return answer(reply)
                if fault.kind == "hang":
                    self._record(method, path, endpoint, query, 0, authenticated)
                    self._stop_event.wait(fault.seconds or _DEFAULT_HANG_SECONDS)
                    return None
                if fault.kind == "delay":
                    self._stop_event.wait(fault.seconds)
                if fault.kind == "malformed":
                    return answer(_Reply(200, b'{"oops": <html><body>Bad Gateway</body></html>'))

            try:
                status, payload = self._route(
                    endpoint,
                    path,
                    query,
                    short_page=fault is not None and fault.kind == "short_page",
                )
            except _ApiError as err:
                status, payload = err.status, err.body()
            if fault is not None and fault.kind == "wrong_shape":
                return answer(_Reply(200, _encode(_wrong_shape(endpoint, payload))))
            body = _encode(payload)
            if fault is not None and fault.kind == "truncated":
                return answer(_Reply(200, body[: len(body) // 2]))
            return answer(_Reply(status, body))

    def _route(
        self, endpoint: str, path: str, query: Mapping[str, list[str]], *, short_page: bool
    ) -> tuple[int, Any]:
        handlers: dict[str, Callable[[], Any]] = {
            "account": self._get_account,
            "positions": self._get_positions,
            "orders": lambda: self._get_orders(query, short_page=short_page),
            "order_by_id": lambda: self._get_order_by_id(path, query),
            "order_by_client_id": lambda: self._get_order_by_client_id(query),
            "activities": lambda: self._get_activities(path, query),
        }
        with self._lock:
            return 200, handlers[endpoint]()

    def _get_account(self) -> JSONDict:
        overrides = self._account_overrides
        cash = _to_decimal(overrides.get("cash", "100000"), "cash")
        values = [_to_decimal(p["market_value"]) for p in self._positions.values()]
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
            "buying_power": _fmt(cash),
            "regt_buying_power": _fmt(cash),
            "daytrading_buying_power": "0",
            "effective_buying_power": _fmt(cash),
            "non_marginable_buying_power": _fmt(cash),
            "options_buying_power": _fmt(cash),
            "bod_dtbp": "0",
            "cash": _fmt(cash),
            "accrued_fees": "0",
            "pending_transfer_in": "0",
            "portfolio_value": _fmt(equity),
            "pattern_day_trader": False,
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "created_at": _ACCOUNT_CREATED_AT,
            "trade_suspended_by_user": False,
            "multiplier": "1",
            "shorting_enabled": True,
            "equity": _fmt(equity),
            "last_equity": _fmt(equity),
            "long_market_value": _fmt(long_value),
            "short_market_value": _fmt(short_value),
            "position_market_value": _fmt(long_value - short_value),
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

    def _get_positions(self) -> list[JSONDict]:
        return [copy.deepcopy(p) for _, p in sorted(self._positions.items())]

    def _get_orders(self, query: Mapping[str, list[str]], *, short_page: bool) -> list[JSONDict]:
        status = _param_choice(query, "status", frozenset({"open", "closed", "all"}), "open")
        limit = _param_int(query, "limit", _ORDERS_DEFAULT_LIMIT, _ORDERS_MAX_LIMIT)
        after = _param_time(query, "after")
        until = _param_time(query, "until")
        direction = _param_choice(query, "direction", frozenset({"asc", "desc"}), "desc")
        nested = _param_bool(query, "nested")
        side = _param(query, "side")
        if side is not None and side.lower() not in {"buy", "sell"}:
            raise _unprocessable(f"invalid side: {side}")
        raw_symbols = ",".join(query.get("symbols", []))
        symbols = {_compact_symbol(s) for s in raw_symbols.split(",") if s.strip()}
        wanted = {"open": OPEN_STATUSES, "closed": CLOSED_STATUSES, "all": _ORDER_STATUSES}[status]

        selected = [
            record
            for record in self._orders.values()
            if not (nested and record.parent_id is not None)
            and record.data["status"] in wanted
            and (not symbols or _compact_symbol(record.data["symbol"]) in symbols)
            and (side is None or record.data["side"] == side.lower())
            and _in_window(record.submitted_at, after, until)
        ]
        selected.sort(key=lambda r: (r.submitted_at, r.data["id"]), reverse=direction == "desc")
        page = selected[:limit]
        if short_page:
            page = page[: len(page) // 2]
        return [self._order_json(record, nested=nested) for record in page]

    def _get_order_by_id(self, path: str, query: Mapping[str, list[str]]) -> JSONDict:
        order_id = path.rstrip("/").rsplit("/", 1)[-1]
        nested = _param_bool(query, "nested")
        record = self._orders.get(order_id.lower())
        if record is None:
            raise _ApiError(404, 40410000, f"order not found for {order_id}")
        return self._order_json(record, nested=nested)

    def _get_order_by_client_id(self, query: Mapping[str, list[str]]) -> JSONDict:
        client_order_id = _param(query, "client_order_id")
        if client_order_id is None:
            raise _unprocessable("client_order_id is required")
        record = self._find_by_client_id(client_order_id)
        if record is None:
            raise _ApiError(404, 40410000, f"order not found for {client_order_id}")
        return self._order_json(record, nested=_param_bool(query, "nested"))

    def _get_activities(self, path: str, query: Mapping[str, list[str]]) -> list[JSONDict]:
        if path.rstrip("/") == "/v2/account/activities":
            raw_types = ",".join(query.get("activity_types", []))
            types = {t.strip().upper() for t in raw_types.split(",") if t.strip()}
            if types and "FILL" not in types:
                return []
        after = _param_time(query, "after")
        until = _param_time(query, "until")
        direction = _param_choice(query, "direction", frozenset({"asc", "desc"}), "desc")
        page_size = _param_int(query, "page_size", _ACTIVITIES_MAX_PAGE, _ACTIVITIES_MAX_PAGE)
        page_token = _param(query, "page_token")

        selected = [a for a in self._activities if _in_window(a.transaction_time, after, until)]
        selected.sort(key=lambda a: (a.transaction_time, a.data["id"]), reverse=direction == "desc")
        if page_token is not None:
            ids = [a.data["id"] for a in selected]
            if page_token not in ids:
                raise _unprocessable(f"invalid page_token: {page_token}")
            selected = selected[ids.index(page_token) + 1 :]
        return [copy.deepcopy(a.data) for a in selected[:page_size]]
