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
brings nothing new (see :mod:`crypto_signals.broker.listing`): a short page never ends a
listing. A long listing is split into windows of time listed at the same time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from crypto_signals.broker.alpaca_sdk import QueryOrderStatus, TradingClient
from crypto_signals.broker.alpaca_transport import AlpacaTransport, build_trading_client
from crypto_signals.broker.items import (
    RawAccount,
    parse_account,
    parse_order_item,
    parse_position,
)
from crypto_signals.broker.listing import MAX_WINDOWS, Listing, list_orders
from crypto_signals.concurrency import all_of
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
        max_windows: int = MAX_WINDOWS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``max_windows``: how many windows of time a long closed-order listing may be split
        into, listed at the same time (1: never split); ``clock`` says where the last one ends
        (``broker/listing.py``)."""
        if max_windows < 1:
            raise ValueError("max_windows must be >= 1")
        if max_pages < 2:
            raise ValueError("max_pages must be >= 2: a complete listing needs a confirming page")
        self._transport = AlpacaTransport(client, rate_limit_waits=rate_limit_waits)
        self._max_pages = max_pages
        self._max_windows = max_windows
        self._clock = clock
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
        max_windows: int = MAX_WINDOWS,
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
        return cls(client, max_pages=max_pages, rate_limit_waits=retries, max_windows=max_windows)

    @property
    def rate_limited(self) -> int:
        """How many 429 answers this adapter has received (each waited out or failed)."""
        return self._transport.rate_limited

    # -- the Broker port --------------------------------------------------------------------

    def fetch_state(self, *, deadline: float | None = None) -> BrokerState:
        """Account, positions and open orders. ``deadline`` (a ``time.monotonic()`` instant)
        bounds every call and every wait for a rate limit's reset.

        The three are independent and asked at once: a run waits one Alpaca round trip here,
        not three. Any failure fails the whole state; when several fail, the first in the order
        account, positions, open orders is the one named.
        """
        parts: list[Any] = all_of(
            [
                lambda: self._fetch_account(deadline),
                lambda: self._fetch_positions(deadline),
                lambda: self._fetch_open_orders(deadline),
            ],
            name="broker-state",
        )
        account, (positions, unreadable), open_listing = parts
        for item in (*unreadable, *open_listing.unreadable):
            log.warning("unreadable broker item: %s: %s", item.endpoint, item.detail)
        return BrokerState(
            account_id=account.id,
            positions=positions,
            open_orders=open_listing.orders,
            unreadable=(*unreadable, *open_listing.unreadable),
        )

    def _fetch_account(self, deadline: float | None) -> RawAccount:
        endpoint = "GET /v2/account"
        payload = self._get("/account", None, endpoint=endpoint, deadline=deadline)
        try:
            return parse_account(payload)
        except ValueError as exc:
            raise BrokerUnavailable(f"{endpoint}: unexpected response shape: {exc}") from None

    def _fetch_positions(
        self, deadline: float | None
    ) -> tuple[tuple[BrokerPosition, ...], tuple[UnreadableItem, ...]]:
        endpoint = "GET /v2/positions"
        items = self._get("/positions", None, endpoint=endpoint, deadline=deadline)
        if not isinstance(items, list):
            raise BrokerUnavailable(f"{endpoint}: unexpected response shape (expected a list)")
        positions: list[BrokerPosition] = []
        unreadable: list[UnreadableItem] = []
        for item in items:
            parsed = parse_position(endpoint, item)
            if isinstance(parsed, UnreadableItem):
                unreadable.append(parsed)
            else:
                positions.append(parsed)
        return tuple(positions), tuple(unreadable)

    def _fetch_open_orders(self, deadline: float | None) -> Listing:
        endpoint = "GET /v2/orders?status=open"
        listing = self._list_orders(
            endpoint, QueryOrderStatus.OPEN, symbols=None, after=None, deadline=deadline
        )
        if not listing.complete:
            # Open orders decide what is pending; a partial list is not good enough.
            raise BrokerUnavailable(f"{endpoint}: {listing.why_incomplete}")
        return listing

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
    ) -> Listing:
        """Every page of ``GET /v2/orders`` (``nested=true``) since ``after``: see
        :mod:`crypto_signals.broker.listing` for what makes a listing complete, and how a long
        one is split into windows listed at the same time."""
        return list_orders(
            lambda params: self._get("/orders", params, endpoint=endpoint, deadline=deadline),
            endpoint,
            status,
            symbols=symbols,
            after=after,
            max_pages=self._max_pages,
            max_windows=self._max_windows,
            now=self._clock,
        )

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


__all__ = ["MAX_SYMBOL_FILTER", "AlpacaBroker", "SymbolForm"]
