"""The broker adapter: alpaca-py (unmodified) as transport in, project snapshots out.

A failure of a call -- an HTTP error, a rate limit that does not reset before the run's
deadline, a timeout, a body that is not JSON, a body that is not a list (or an object) as a
whole -- becomes :class:`BrokerUnavailable` with a message naming the endpoint and what went
wrong. Nothing here ever returns an empty list for a failed call: the predecessor did, and closed
every open position.

One *item* the adapter cannot read (an order or a position) does not fail the call: it becomes an
:class:`~crypto_signals.domain.snapshots.UnreadableItem` in ``BrokerState.unreadable`` or
``ClosedOrders.unreadable`` (see ``broker/items.py``), and the rest of the listing is used.

Order listings page oldest first with ``after`` as the cursor and are complete only when a page
brings nothing new (see :meth:`AlpacaBroker._list_orders`): a short page never ends a listing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from crypto_signals.broker.alpaca_sdk import GetOrdersRequest, QueryOrderStatus, Sort, TradingClient
from crypto_signals.broker.alpaca_transport import AlpacaTransport, build_trading_client
from crypto_signals.broker.items import parse_account, parse_order_item, parse_position
from crypto_signals.domain.snapshots import (
    BrokerOrder,
    BrokerPosition,
    BrokerState,
    ClosedOrders,
    EvidenceQuery,
    SymbolForm,
    UnreadableItem,
)
from crypto_signals.domain.symbols import symbol_key
from crypto_signals.engine.ports import BrokerUnavailable

log = logging.getLogger(__name__)

PAGE_LIMIT = 500  # Alpaca's maximum page size for GET /v2/orders
# Beyond this many symbols the filter would make a very long URL; one unfiltered listing
# since the same time costs the same number of calls and is filtered here instead.
MAX_SYMBOL_FILTER = 50
DEFAULT_MAX_PAGES = 40

# Statuses of orders that may still fill (GET /v2/orders?status=open returns these).
OPEN_STATUSES = frozenset(
    {
        "new",
        "accepted",
        "pending_new",
        "partially_filled",
        "accepted_for_bidding",
        "pending_cancel",
        "pending_replace",
        "pending_review",
        "calculated",
        "stopped",
        "suspended",
        "held",
    }
)

# How ``fetch_closed_orders`` sends the ``symbols`` filter (``SymbolForm``): "slash", the
# symbols as the query holds them (Firestore's form: BTC/USD, AAPL), what the adapter has always
# sent; "compact", without the slash (BTCUSD, the form the spec's text gives as the example);
# "none", no filter at all (every closed order since ``after``, filtered here; more pages).
# Equity symbols are the same in both forms.


class AlpacaBroker:
    """Reads account, positions and orders; never submits or cancels anything."""

    def __init__(
        self,
        client: TradingClient,
        *,
        max_pages: int = DEFAULT_MAX_PAGES,
        rate_limit_waits: int = 2,
    ) -> None:
        if max_pages < 2:
            raise ValueError("max_pages must be >= 2: a complete listing needs a confirming page")
        self._transport = AlpacaTransport(client, rate_limit_waits=rate_limit_waits)
        self._max_pages = max_pages
        self._lock = threading.Lock()
        self.call_count = 0  # logical calls: one per endpoint or page (429 retries included)

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
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> AlpacaBroker:
        """``retries`` bounds both the session's retries (connect errors, 502/503/504) and the
        waits for a rate limit's reset."""
        client = build_trading_client(
            api_key=api_key,
            secret_key=secret_key,
            paper=paper,
            base_url=base_url,
            timeout_seconds=timeout_seconds,
            retries=retries,
        )
        return cls(client, max_pages=max_pages, rate_limit_waits=retries)

    @property
    def rate_limited(self) -> int:
        """How many 429 answers this adapter has received (each waited out or failed)."""
        return self._transport.rate_limited

    # -- the Broker port --------------------------------------------------------------------

    def fetch_state(self, *, deadline: float | None = None) -> BrokerState:
        """Account, positions and open orders. ``deadline`` (a ``time.monotonic()`` instant)
        bounds every call and every wait for a rate limit's reset."""
        account_endpoint = "GET /v2/account"
        payload = self._get("/account", None, endpoint=account_endpoint, deadline=deadline)
        try:
            account = parse_account(payload)
        except ValueError as exc:
            raise BrokerUnavailable(
                f"{account_endpoint}: unexpected response shape: {exc}"
            ) from None

        positions_endpoint = "GET /v2/positions"
        items = self._get("/positions", None, endpoint=positions_endpoint, deadline=deadline)
        if not isinstance(items, list):
            raise BrokerUnavailable(
                f"{positions_endpoint}: unexpected response shape (expected a list)"
            )
        positions: list[BrokerPosition] = []
        unreadable: list[UnreadableItem] = []
        for item in items:
            parsed = parse_position(positions_endpoint, item)
            if isinstance(parsed, UnreadableItem):
                unreadable.append(parsed)
            else:
                positions.append(parsed)

        open_listing = self._list_orders(
            "GET /v2/orders?status=open",
            QueryOrderStatus.OPEN,
            symbols=None,
            after=None,
            deadline=deadline,
        )
        if not open_listing.complete:
            # Open orders decide what is pending; a partial list is not good enough.
            raise BrokerUnavailable(f"GET /v2/orders?status=open: {open_listing.why_incomplete}")
        for item in unreadable + list(open_listing.unreadable):
            log.warning("unreadable broker item: %s: %s", item.endpoint, item.detail)
        return BrokerState(
            account_id=account.id,
            positions=tuple(positions),
            open_orders=open_listing.orders,
            unreadable=(*unreadable, *open_listing.unreadable),
        )

    def fetch_closed_orders(
        self,
        query: EvidenceQuery,
        *,
        deadline: float | None = None,
        symbol_form: SymbolForm = "slash",
    ) -> ClosedOrders:
        """Closed orders of ``query.symbols`` submitted after ``query.after``, legs flattened.

        ``symbol_form`` chooses how the ``symbols`` filter is sent (:data:`SymbolForm`): the
        caller can list again "with the other symbol form" (``"compact"``) or "without the
        filter" (``"none"``) when a listing misses orders it knows are there. More than
        :data:`MAX_SYMBOL_FILTER` symbols are never sent as a filter, whatever the form.

        Whatever the form, the same orders come back: those of the query's symbols (compared by
        :func:`symbol_key`), and the unreadable items whose symbol is one of them or could not
        be read. ``complete`` is False when the page cap or a stalled cursor stopped the
        listing.
        """
        if symbol_form not in ("slash", "compact", "none"):
            raise ValueError(f"unknown symbol_form {symbol_form!r}")
        symbols: list[str] | None
        if symbol_form == "none" or len(query.symbols) > MAX_SYMBOL_FILTER:
            symbols = None
        elif symbol_form == "compact":
            symbols = sorted({symbol_key(s) for s in query.symbols})
        else:
            symbols = list(query.symbols)
        wanted = {symbol_key(s) for s in query.symbols}
        listing = self._list_orders(
            "GET /v2/orders?status=closed",
            QueryOrderStatus.CLOSED,
            symbols=symbols,
            after=query.after,
            deadline=deadline,
        )
        if not listing.complete:
            log.warning("closed-order listing incomplete: %s", listing.why_incomplete)
        return ClosedOrders(
            tuple(o for o in listing.orders if o.key in wanted),
            complete=listing.complete,
            # An item whose symbol is unreadable could be anyone's: it is kept.
            unreadable=tuple(u for u in listing.unreadable if u.key is None or u.key in wanted),
        )

    def fetch_orders(
        self,
        order_ids: Sequence[str],
        client_order_ids: Sequence[str],
        *,
        deadline: float | None = None,
    ) -> ClosedOrders:
        """Targeted look-ups of known orders, legs flattened: ``GET /v2/orders/{id}`` (nested)
        for each id and ``GET /v2/orders:by_client_order_id`` for each client order id.

        A 404 means the broker has no such order (an answer, not a failure); any other failure
        raises :class:`BrokerUnavailable`, as a listing would. Only orders that are no longer
        open are returned: an order still working is not evidence of anything yet.
        """
        found: dict[str, BrokerOrder] = {}
        unreadable: list[UnreadableItem] = []
        calls = [(f"/orders/{i}", {"nested": "true"}, "GET /v2/orders/{id}") for i in order_ids]
        calls += [
            (
                "/orders:by_client_order_id",
                {"client_order_id": c},
                "GET /v2/orders:by_client_order_id",
            )
            for c in client_order_ids
        ]
        for path, params, endpoint in calls:
            payload = self._get(path, params, endpoint=endpoint, deadline=deadline, missing_ok=True)
            if payload is None:
                continue
            parsed = parse_order_item(endpoint, payload)
            for order in parsed.orders:
                if order.status not in OPEN_STATUSES:
                    found.setdefault(order.id, order)
            unreadable += parsed.unreadable
        return ClosedOrders(tuple(found.values()), True, tuple(unreadable))

    # -- listing ----------------------------------------------------------------------------

    def _list_orders(
        self,
        endpoint: str,
        status: QueryOrderStatus,
        *,
        symbols: list[str] | None,
        after: datetime | None,
        deadline: float | None,
    ) -> _Listing:
        """Page through ``GET /v2/orders`` oldest first (``nested=true``), ``after`` the cursor.

        ``after`` is exclusive at Alpaca, so each next page starts one microsecond before the
        newest order seen (orders sharing a timestamp across a page boundary are not lost) and
        items are deduplicated by id. The listing is complete only when a page brings nothing
        new: a short page proves nothing (legs may count toward ``limit``, a server may page
        shorter than asked), so a complete listing costs one confirming page -- empty, or the
        newest order(s) again. Incomplete (``complete=False``): the page cap was reached, or a
        page that brought nothing new was full (``limit`` orders or more sharing one instant: the
        cursor cannot move past them).
        """
        orders: dict[str, BrokerOrder] = {}
        unreadable: dict[str, UnreadableItem] = {}
        seen: set[str] = set()
        # Naive is UTC (as alpaca-py sends it), so that it compares with the orders' times.
        cursor = after.replace(tzinfo=UTC) if after and after.utcoffset() is None else after
        for page_number in range(1, self._max_pages + 1):
            request = GetOrdersRequest(
                status=status,
                symbols=symbols,
                after=cursor,
                limit=PAGE_LIMIT,
                direction=Sort.ASC,
                nested=True,
            )
            params = request.to_request_fields()
            if isinstance(params.get("symbols"), list):
                params["symbols"] = ",".join(params["symbols"])  # as TradingClient.get_orders
            page = self._get("/orders", params, endpoint=endpoint, deadline=deadline)
            if not isinstance(page, list):
                raise BrokerUnavailable(f"{endpoint}: unexpected response shape (expected a list)")
            parsed = [parse_order_item(endpoint, item) for item in page]
            new = [p for p in parsed if p.key not in seen]
            for item in new:
                seen.add(item.key)
                for order in item.orders:
                    orders.setdefault(order.id, order)
                for bad in item.unreadable:
                    unreadable.setdefault(_unreadable_key(bad), bad)
            if not new:
                if sum(p.size for p in parsed) >= PAGE_LIMIT:
                    return _Listing.partial(
                        orders, unreadable, f"listing stalled after {page_number} pages"
                    )
                return _Listing(tuple(orders.values()), tuple(unreadable.values()), True, "")
            stamps = [p.listed_at for p in parsed if p.listed_at is not None]
            if stamps:
                # Top-level orders only: a bracket leg is submitted when its parent fills, often
                # much later, and using it would skip every order submitted in between.
                newest = max(stamps) - timedelta(microseconds=1)
                cursor = newest if cursor is None else max(cursor, newest)
            # This page's JSON is not needed any more: let it go before the next one arrives
            # (the orders keep only their parsed values), so one page is in memory, not two.
            del page, parsed, new
        log.warning("%s stopped after %d pages", endpoint, self._max_pages)
        return _Listing.partial(orders, unreadable, f"more than {self._max_pages} pages")

    def _get(
        self,
        path: str,
        params: dict[str, Any] | None,
        *,
        endpoint: str,
        deadline: float | None,
        missing_ok: bool = False,
    ) -> Any:
        with self._lock:
            self.call_count += 1
        return self._transport.get(
            path, params, endpoint=endpoint, deadline=deadline, missing_ok=missing_ok
        )


@dataclass(frozen=True)
class _Listing:
    orders: tuple[BrokerOrder, ...]
    unreadable: tuple[UnreadableItem, ...]
    complete: bool
    why_incomplete: str

    @classmethod
    def partial(
        cls, orders: dict[str, BrokerOrder], unreadable: dict[str, UnreadableItem], why: str
    ) -> _Listing:
        return cls(tuple(orders.values()), tuple(unreadable.values()), False, why)


def _unreadable_key(item: UnreadableItem) -> str:
    return item.item_id or f"{item.symbol}|{item.client_order_id}|{item.detail}"


__all__ = ["MAX_SYMBOL_FILTER", "PAGE_LIMIT", "AlpacaBroker", "SymbolForm"]
