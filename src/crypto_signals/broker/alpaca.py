"""The broker adapter: alpaca-py (unmodified) in, project snapshots out.

Every failure -- an HTTP error, a 429 after alpaca-py's retries, a timeout, a body that is not
JSON, a body of the wrong shape -- becomes :class:`BrokerUnavailable` with a message naming the
endpoint and what went wrong. Nothing here ever returns an empty list for a failed call: the
predecessor did, and closed every open position.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import requests
from pydantic import ValidationError

from crypto_signals.broker.alpaca_sdk import (
    APIError,
    GetOrdersRequest,
    Order,
    Position,
    QueryOrderStatus,
    Sort,
    TradeAccount,
    TradingClient,
)
from crypto_signals.broker.http import TimeoutSession
from crypto_signals.domain.snapshots import (
    BrokerOrder,
    BrokerPosition,
    BrokerState,
    ClosedOrders,
    EvidenceQuery,
)
from crypto_signals.domain.symbols import symbol_key
from crypto_signals.engine.ports import BrokerUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

_PAGE_LIMIT = 500  # Alpaca's maximum page size for GET /v2/orders
# Beyond this many symbols the filter would make a very long URL; one unfiltered listing
# since the same time costs the same number of calls and is filtered here instead.
_MAX_SYMBOL_FILTER = 50


class AlpacaBroker:
    """Reads account, positions and orders; never submits or cancels anything."""

    def __init__(self, client: TradingClient, *, max_pages: int = 40) -> None:
        self._client = client
        self._max_pages = max_pages
        self.call_count = 0

    @classmethod
    def from_credentials(
        cls,
        *,
        api_key: str,
        secret_key: str,
        paper: bool,
        base_url: str | None,
        timeout_seconds: float,
        retries: int,
        max_pages: int = 40,
    ) -> AlpacaBroker:
        client = TradingClient(api_key, secret_key, paper=paper, url_override=base_url or None)
        # TradingClient exposes neither a timeout nor its retry settings (RESTClient does, but
        # TradingClient does not pass them through). Its RESTClient sends everything through
        # these attributes, so setting them is the narrowest way to bound every call: 429/504
        # are retried `retries` times one second apart by alpaca-py, the rest by the session.
        client._retry = retries
        client._retry_wait = 1
        client._session = TimeoutSession(
            connect_timeout=min(5.0, timeout_seconds), read_timeout=timeout_seconds, retries=retries
        )
        return cls(client, max_pages=max_pages)

    # -- calls --------------------------------------------------------------------------------

    def _call(self, endpoint: str, fn: Callable[[], T]) -> T:
        self.call_count += 1
        try:
            return fn()
        except APIError as exc:
            raise BrokerUnavailable(f"{endpoint}: {_describe_api_error(exc)}") from None
        except requests.exceptions.Timeout:
            raise BrokerUnavailable(f"{endpoint}: timed out") from None
        except requests.exceptions.JSONDecodeError:
            raise BrokerUnavailable(f"{endpoint}: malformed response (not JSON)") from None
        except json.JSONDecodeError:
            raise BrokerUnavailable(f"{endpoint}: malformed response (not JSON)") from None
        except requests.exceptions.RequestException as exc:
            raise BrokerUnavailable(f"{endpoint}: {type(exc).__name__}") from None
        except ValidationError as exc:
            raise BrokerUnavailable(
                f"{endpoint}: unexpected response shape: {_describe_validation(exc)}"
            ) from None
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            # alpaca-py iterating over a dict where it expected a list, and similar.
            raise BrokerUnavailable(
                f"{endpoint}: unexpected response shape ({type(exc).__name__})"
            ) from None

    def fetch_state(self, *, deadline: float | None = None) -> BrokerState:
        account = self._call("GET /v2/account", self._client.get_account)
        positions = self._call("GET /v2/positions", self._client.get_all_positions)
        open_orders = self._list_orders(
            "GET /v2/orders?status=open", QueryOrderStatus.OPEN, symbols=None, after=None
        )
        if not isinstance(account, TradeAccount) or not isinstance(positions, list):
            raise BrokerUnavailable("GET /v2/account or /v2/positions: unexpected response type")
        return BrokerState(
            account_id=str(account.id),
            positions=tuple(_convert("GET /v2/positions", _position, positions)),
            open_orders=open_orders,
        )

    def fetch_closed_orders(
        self, query: EvidenceQuery, *, deadline: float | None = None
    ) -> ClosedOrders:
        symbols = list(query.symbols) if len(query.symbols) <= _MAX_SYMBOL_FILTER else None
        wanted = {symbol_key(s) for s in query.symbols}
        try:
            orders = self._list_orders(
                "GET /v2/orders?status=closed",
                QueryOrderStatus.CLOSED,
                symbols=symbols,
                after=query.after,
            )
            complete = True
        except _IncompleteListing as partial:
            orders, complete = partial.orders, False
        return ClosedOrders(tuple(o for o in orders if o.key in wanted), complete=complete)

    def _list_orders(
        self,
        endpoint: str,
        status: QueryOrderStatus,
        *,
        symbols: list[str] | None,
        after: datetime | None,
    ) -> tuple[BrokerOrder, ...]:
        """Page through GET /v2/orders oldest first, using ``after`` as the cursor.

        ``after`` is exclusive at Alpaca, so the next page starts one microsecond before the last
        order seen and duplicates are dropped by id: orders sharing a timestamp across a page
        boundary are not lost. A page that brings nothing new stops the loop.
        """
        seen: dict[str, BrokerOrder] = {}
        cursor = after
        for _ in range(self._max_pages):
            request = GetOrdersRequest(
                status=status,
                symbols=symbols,
                after=cursor,
                limit=_PAGE_LIMIT,
                direction=Sort.ASC,
                nested=True,
            )
            page = self._call(endpoint, _bind(self._client.get_orders, request))
            if not isinstance(page, list):
                raise BrokerUnavailable(f"{endpoint}: unexpected response type")
            converted = _convert(endpoint, _orders_with_legs, page)
            new = [o for o in converted if o.id not in seen]
            for order in new:
                seen[order.id] = order
            if len(page) < _PAGE_LIMIT:
                return tuple(seen.values())
            if not new:
                break
            # Top-level orders only: a bracket leg is submitted when its parent fills, often
            # much later, and using it would skip every order submitted in between.
            cursor = max(o.submitted_at for o in page) - timedelta(microseconds=1)
        if status is QueryOrderStatus.OPEN:
            # Open orders decide what is pending; a partial list is not good enough.
            raise BrokerUnavailable(f"{endpoint}: more than {self._max_pages} pages")
        log.warning("closed-order listing stopped after %d pages", self._max_pages)
        raise _IncompleteListing(tuple(seen.values()))


def _bind(fn: Callable[..., T], request: GetOrdersRequest) -> Callable[[], T]:
    return lambda: fn(filter=request)


class _IncompleteListing(Exception):
    def __init__(self, orders: tuple[BrokerOrder, ...]) -> None:
        super().__init__("incomplete order listing")
        self.orders = orders


def _convert(endpoint: str, fn: Callable[[Any], Iterable[T]], items: Sequence[Any]) -> list[T]:
    out: list[T] = []
    for item in items:
        try:
            out.extend(fn(item))
        except (InvalidOperation, ValueError, TypeError, AttributeError) as exc:
            ident = getattr(item, "symbol", None) or getattr(item, "id", "?")
            raise BrokerUnavailable(
                f"{endpoint}: malformed item {ident}: {type(exc).__name__}"
            ) from None
    return out


def _decimal(value: Any, *, required: bool = True) -> Decimal | None:
    if value is None or value == "":
        if required:
            raise ValueError("missing number")
        return None
    number = Decimal(str(value))
    if not number.is_finite():
        raise ValueError("non-finite number")
    return number


def _position(p: Position) -> Iterable[BrokerPosition]:
    qty = _decimal(p.qty)
    assert qty is not None
    side = getattr(p.side, "value", p.side)
    signed = abs(qty) if side == "long" else -abs(qty)
    market_value = _decimal(p.market_value, required=False)
    asset_class = str(getattr(p.asset_class, "value", p.asset_class))
    yield BrokerPosition(
        symbol=p.symbol,
        qty=signed,
        market_value=abs(market_value) if market_value is not None else None,
        is_crypto=asset_class == "crypto",
    )


def _orders_with_legs(o: Order, parent: BrokerOrder | None = None) -> Iterable[BrokerOrder]:
    order = _order(o, parent)
    yield order
    for leg in o.legs or ():
        yield from _orders_with_legs(leg, order)


def _order(o: Order, parent: BrokerOrder | None = None) -> BrokerOrder:
    side = str(getattr(o.side, "value", o.side))
    if side not in ("buy", "sell") or not o.symbol:
        raise ValueError(f"order {o.id} has no usable side/symbol")
    filled_qty = _decimal(o.filled_qty, required=False)
    return BrokerOrder(
        id=str(o.id),
        client_order_id=o.client_order_id,
        symbol=o.symbol,
        side="buy" if side == "buy" else "sell",
        status=str(getattr(o.status, "value", o.status)),
        qty=_decimal(o.qty, required=False),
        filled_qty=filled_qty,
        filled_avg_price=_decimal(o.filled_avg_price, required=False),
        submitted_at=o.submitted_at,
        filled_at=o.filled_at,
        ended_at=o.canceled_at or o.expired_at or o.failed_at or o.updated_at,
        parent_id=parent.id if parent else None,
        parent_client_order_id=parent.client_order_id if parent else None,
    )


def _describe_api_error(exc: APIError) -> str:
    status = exc.status_code
    try:
        message = str(json.loads(str(exc))["message"])
    except (ValueError, KeyError, TypeError):
        message = "non-JSON error body"
    return f"HTTP {status}: {message[:200]}"


def _describe_validation(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid"
    where = ".".join(str(p) for p in errors[0]["loc"])
    return f"{exc.error_count()} error(s), first at {where or '?'}: {errors[0]['msg']}"
