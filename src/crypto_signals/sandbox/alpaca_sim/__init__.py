"""A local, read-only simulator of the Alpaca Trading API v2, served over real HTTP.

Why this exists: the reconciler talks to Alpaca through alpaca-py's transport. Mocking that
in-process cannot catch wire-level mistakes -- how query parameters are encoded, which symbol
form (``BTC/USD`` vs ``BTCUSD``) each endpoint uses, off-by-one pagination on exclusive time
bounds, or how the code copes with a broker that misbehaves at the HTTP layer. The simulator
binds to loopback, serves Alpaca-shaped JSON, and lets tests and the sandbox point an
*unmodified* ``TradingClient(key, secret, paper=True, url_override=sim.base_url)`` at it.

What it serves follows Alpaca's published OpenAPI spec of the Trading API (a copy of it is the
source of ``tests/fixtures/alpaca/``, see ``scripts/derive_alpaca_schemas.py``); a conformance
test validates every answer against the spec's response schemas. Where the spec is silent the
simulator picks one reading, says which, and can be configured to the other
(:class:`AlpacaSimulator`'s keyword arguments):

* **status=open / closed.** The spec only says "open, closed or all". Non-final statuses are
  listed under ``open`` and final ones under ``closed``, except ``held``: a bracket's resting
  stop-loss leg "is seen as a closed order with 'Held' status" (alpacahq/alpaca-trade-api-python
  #322, alpaca-trade-api-js#87), so it is listed under ``closed`` (``held_listed_as="open"``
  for the other reading). With ``nested=true`` legs are never listed on their own: they come
  under their parent, whose status decides the listing (so an open exit leg of a filled entry
  is not in ``status=open&nested=true``, as alpaca-trade-api-js#80/#87 report).
* **The symbols filter.** The spec's text for ``symbols`` gives the legacy pair form
  ("``BTCUSD,BCHUSD,...``") while its crypto order example carries ``"symbol": "ETH/USD"``; the
  two only fit together if the server normalises the pair, and Alpaca's crypto documentation
  says the API "support[s] the legacy convention as well for backwards compatibility". So the
  default is ``symbol_filter="both"``; ``"slash"`` and ``"compact"`` model a server that
  matches one form only (the other then silently matches nothing).
* **Legs and limit.** Whether a nested parent's legs count toward ``limit`` is undocumented:
  ``legs_count_toward_limit`` (default False) models both.
* **Timestamps.** Go's ``RFC3339Nano`` as in the spec's examples (nanoseconds, trailing zeros
  dropped, ``Z``); ``submitted_at`` a little before ``created_at`` (the examples' order, except
  the multi-leg one). ``utc_offset`` serves an offset instead of ``Z``.
* **Rate limits.** Every answer carries ``X-RateLimit-Limit/Remaining/Reset`` (Reset: the Unix
  epoch second when the quota changes, per the spec's ``components.headers``); a 429 carries
  them too. The spec documents no ``Retry-After``, so it is only sent when a fault asks for it.
* **FILL activities** have no ``account_id`` (the spec's ``TradingActivities`` has none).

Served routes (names used by :meth:`AlpacaSimulator.inject_fault`,
:meth:`AlpacaSimulator.count` and :attr:`RecordedRequest.endpoint`):

* ``account``            GET /v2/account                                   (the product)
* ``positions``          GET /v2/positions                                 (the product)
* ``orders``             GET /v2/orders                                    (the product)
* ``order_by_id``        GET /v2/orders/{id}                               (targeted look-ups)
* ``order_by_client_id`` GET /v2/orders:by_client_order_id?client_order_id= (targeted look-ups)
* ``activities``         GET /v2/account/activities[/{type}]               (fill conformance)

Any other path answers 404 (endpoint ``"unknown"``). The simulator is read-only: every non-GET
request under ``/v2/`` answers 403 and is recorded, so tests can assert none was made.

Faults (:class:`Fault`) are injected per route name (or ``"*"``) and queued FIFO; each matching
request consumes one use of the first fault in the route's queue (then ``"*"``'s) that applies
to it: every fault does, unless its ``query`` names query-string values the request must have
(``Fault(..., query={"status": "closed"})``: closed-order listings only, whatever the order in
which requests made at the same time arrive);
``times=None`` keeps it until :meth:`AlpacaSimulator.clear_faults`. Authentication is checked
before faults; unknown paths and writes never consume faults.

Seeding: ``add_position``, ``add_fill``, ``add_order`` (keyword fields or an :class:`OrderSpec`),
``add_mleg_order``, ``add_raw_order`` (any JSON, e.g. an item a client cannot parse),
``patch_order`` / ``patch_position`` (verbatim field overrides), ``set_order_status``,
``update_account``, ``load_scenario``, ``reset``.
"""

from crypto_signals.sandbox.alpaca_sim.faults import Fault, FaultKind
from crypto_signals.sandbox.alpaca_sim.orders import OrderSpec
from crypto_signals.sandbox.alpaca_sim.simulator import (
    DEFAULT_ACCOUNT_ID,
    ENDPOINTS,
    AlpacaSimulator,
    RecordedRequest,
    SymbolFilter,
)

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "ENDPOINTS",
    "AlpacaSimulator",
    "Fault",
    "FaultKind",
    "OrderSpec",
    "RecordedRequest",
    "SymbolFilter",
]
