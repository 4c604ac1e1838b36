"""Paging through ``GET /v2/orders``: complete only when a page brings nothing new.

Order listings page oldest first (``direction=asc``) with ``after`` as the cursor. ``after`` is
exclusive at Alpaca, so each next page starts one microsecond before the newest order seen
(orders sharing a timestamp across a page boundary are not lost) and items are deduplicated by
id. A listing is complete only when a page brings nothing new: a short page proves nothing (legs
may count toward ``limit``, a server may page shorter than asked), so a complete listing costs
one confirming page -- empty, or the newest order(s) again. It is incomplete when the page cap
is reached, or when a page that brought nothing new was full (``limit`` orders or more sharing
one instant: the cursor cannot move past them).

A long listing is split in time. Pages follow each other (each starts where the last ended), so
a listing of P pages waits P + 1 round trips. When the first page shows that more pages follow,
the rest of the window, up to now, is cut into consecutive windows (``after``/``until``, both
exclusive, each starting one microsecond before the previous one ends) listed at the same time,
each with its own confirming page: the same orders, in about P / k + 2 round trips for a few
more calls. The windows share the listing's page cap, grown by two pages per extra window (its
last page, not full, and its confirming page), so a split never cuts short a listing one window
would finish. A first page that is not full is not split: short listings, the common case, cost
what they always did.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from crypto_signals.broker.alpaca_sdk import GetOrdersRequest, QueryOrderStatus, Sort
from crypto_signals.broker.items import parse_order_item
from crypto_signals.concurrency import all_of
from crypto_signals.domain.snapshots import BrokerOrder, UnreadableItem
from crypto_signals.engine.ports import BrokerUnavailable

log = logging.getLogger(__name__)

PAGE_LIMIT = 500  # Alpaca's maximum page size for GET /v2/orders
# At most this many windows of one listing at the same time: a few calls more for a long
# listing, well inside Alpaca's 200 requests a minute.
MAX_WINDOWS = 4

_TICK = timedelta(microseconds=1)
# The most orders one listed item can hold: an order and its legs (up to 4 for a multi-leg
# order). A page fuller than the limit less this is full: when legs count toward ``limit``
# (as some servers do), a page of brackets holds 498 orders, not 500.
_LARGEST_ITEM = 5

# One page: the query parameters in, the decoded JSON body out (the adapter's GET).
FetchPage = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Listing:
    orders: tuple[BrokerOrder, ...]
    unreadable: tuple[UnreadableItem, ...]
    complete: bool
    why_incomplete: str


class _Budget:
    """The pages a listing may still fetch, shared by its windows; once one window has failed,
    the others stop at their next page (the listing fails anyway)."""

    def __init__(self, pages: int) -> None:
        self._left = pages
        self._lock = threading.Lock()
        self.failed = False

    def extend(self, pages: int) -> None:
        with self._lock:
            self._left += pages

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True


class _Walk:
    """The pages of one window, ``(after, until)``, one after the other."""

    def __init__(
        self,
        fetch: FetchPage,
        endpoint: str,
        status: QueryOrderStatus,
        symbols: list[str] | None,
        budget: _Budget,
        *,
        after: datetime | None,
        until: datetime | None,
    ) -> None:
        self._fetch = fetch
        self._endpoint = endpoint
        self._status = status
        self._symbols = symbols
        self._budget = budget
        self.cursor = after
        self.until = until
        self.orders: dict[str, BrokerOrder] = {}
        self.unreadable: dict[str, UnreadableItem] = {}
        self._seen: set[str] = set()
        self.pages = 0
        self.complete = False
        self.why_incomplete = ""
        self.capped = False
        # Of the first page: how many items (top-level, and with their legs), and the oldest
        # listing instant among them: the estimate of how many pages follow.
        self.first_items = 0
        self.first_size = 0
        self.first_stamp: datetime | None = None

    def step(self) -> bool:
        """Fetch the next page; True when the window is done (complete or not)."""
        if self._budget.failed:
            return self._stop("another window of the listing failed")
        if not self._budget.take():
            self.capped = True
            return self._stop("page cap")
        request = GetOrdersRequest(
            status=self._status,
            symbols=self._symbols,
            after=self.cursor,
            until=self.until,
            limit=PAGE_LIMIT,
            direction=Sort.ASC,
            nested=True,
        )
        params = request.to_request_fields()
        if isinstance(params.get("symbols"), list):
            params["symbols"] = ",".join(params["symbols"])  # as TradingClient.get_orders
        page = self._fetch(params)
        if not isinstance(page, list):
            raise BrokerUnavailable(
                f"{self._endpoint}: unexpected response shape (expected a list)"
            )
        self.pages += 1
        parsed = [parse_order_item(self._endpoint, item) for item in page]
        new = [p for p in parsed if p.key not in self._seen]
        for item in new:
            self._seen.add(item.key)
            for order in item.orders:
                self.orders.setdefault(order.id, order)
            for bad in item.unreadable:
                self.unreadable.setdefault(_unreadable_key(bad), bad)
        if not new:
            if sum(p.size for p in parsed) >= PAGE_LIMIT:
                return self._stop(f"listing stalled after {self.pages} pages")
            self.complete = True
            return True
        stamps = [p.listed_at for p in parsed if p.listed_at is not None]
        if self.pages == 1:
            self.first_items = len(parsed)
            self.first_size = sum(p.size for p in parsed)
            self.first_stamp = min(stamps, default=None)
        if stamps:
            # Top-level orders only: a bracket leg is submitted when its parent fills, often
            # much later, and using it would skip every order submitted in between.
            newest = max(stamps) - _TICK
            self.cursor = newest if self.cursor is None else max(self.cursor, newest)
        # This page's JSON is not needed any more: let it go before the next one arrives
        # (the orders keep only their parsed values), so one page is in memory, not two.
        del page, parsed, new
        return False

    def window(self, after: datetime, until: datetime | None) -> _Walk:
        """Another window of the same listing, sharing its page budget."""
        return _Walk(
            self._fetch,
            self._endpoint,
            self._status,
            self._symbols,
            self._budget,
            after=after,
            until=until,
        )

    def run(self) -> None:
        try:
            while not self.step():
                pass
        except BaseException:
            self._budget.failed = True
            raise

    def _stop(self, why: str) -> bool:
        self.why_incomplete = why
        return True


def list_orders(
    fetch: FetchPage,
    endpoint: str,
    status: QueryOrderStatus,
    *,
    symbols: list[str] | None,
    after: datetime | None,
    max_pages: int,
    max_windows: int,
    now: Callable[[], datetime],
) -> Listing:
    """Every order of the listing since ``after``, split into at most ``max_windows`` windows
    listed at the same time when the first page shows a long listing (module docstring)."""
    budget = _Budget(max_pages)
    # Naive is UTC (as alpaca-py sends it), so that it compares with the orders' times.
    cursor = after.replace(tzinfo=UTC) if after and after.utcoffset() is None else after
    first = _Walk(fetch, endpoint, status, symbols, budget, after=cursor, until=None)
    walks = [first]
    if not first.step():
        walks += _split(first, budget, now(), max_windows)
        if len(walks) == 1:
            first.run()
        else:
            all_of([w.run for w in walks], name="orders-listing")
    if any(w.capped for w in walks):
        log.warning("%s stopped after %d pages", endpoint, max_pages)
    return _merge(walks, max_pages)


def _split(first: _Walk, budget: _Budget, now: datetime, max_windows: int) -> list[_Walk]:
    """Cut what is left after the first page, up to ``now``, into windows of about half a
    page each (estimated from the first page's density), at most ``max_windows`` in all.
    ``first`` keeps the earliest; the new windows are returned (none when the listing looks
    short)."""
    oldest, cursor = first.first_stamp, first.cursor
    if max_windows < 2 or oldest is None or cursor is None or now <= cursor:
        return []
    if first.first_size < PAGE_LIMIT - _LARGEST_ITEM:
        return []  # a page short of the limit: most likely the listing ends with it
    left = now - cursor
    seen = cursor - oldest
    if seen <= timedelta(0):
        k = max_windows  # half a page or more within one instant: dense, split all the way
    else:
        # Windows of about half a page: a listing often grows denser toward now (recent
        # trading), and a window whose orders fit in one page costs the page and its
        # confirmation, one after the other, whatever its size.
        k = math.ceil(first.first_items * (left / seen) / (PAGE_LIMIT / 2))
    k = max(1, min(max_windows, k))
    if k == 1:
        return []
    # Compared with one window, each window after the first adds at most one page that is not
    # full (its last) and one confirming page: the cap grows by that, so that splitting never
    # cuts short a listing one window would have finished.
    budget.extend(2 * (k - 1))
    step = left / k
    bounds = [cursor + step * i for i in range(1, k)]
    first.until = bounds[0]
    # Each later window starts one microsecond before its bound (``after`` is exclusive), so
    # an order at the bound itself is listed; the last window is open: up to now.
    ends: Sequence[datetime | None] = [*bounds[1:], None]
    return [first.window(start - _TICK, end) for start, end in zip(bounds, ends, strict=True)]


def _merge(walks: list[_Walk], max_pages: int) -> Listing:
    orders: dict[str, BrokerOrder] = {}
    unreadable: dict[str, UnreadableItem] = {}
    for walk in walks:  # in time order
        for order_id, order in walk.orders.items():
            orders.setdefault(order_id, order)
        for key, bad in walk.unreadable.items():
            unreadable.setdefault(key, bad)
    incomplete = [w for w in walks if not w.complete]
    why = ""
    if incomplete:
        capped = any(w.capped for w in incomplete)
        why = f"more than {max_pages} pages" if capped else incomplete[0].why_incomplete
    return Listing(tuple(orders.values()), tuple(unreadable.values()), not incomplete, why)


def _unreadable_key(item: UnreadableItem) -> str:
    return item.item_id or f"{item.symbol}|{item.client_order_id}|{item.detail}"
