"""Orders as the simulator seeds and serves them: one :class:`OrderSpec` for orders and legs.

The served shape follows the spec's ``Order`` schema and its five examples (crypto, equity, IPO,
option, multi-leg option):

* a simple order's ``order_class`` is ``""`` (``"simple"`` for the option example);
* ``submitted_at`` comes slightly *before* ``created_at`` (23 to 91 ms in the crypto, equity,
  IPO and option examples), except for the multi-leg example, where ``created_at`` comes 7.7 ms
  before ``submitted_at``;
* timestamps are Go's ``RFC3339Nano``: nanoseconds, trailing zeros dropped, ``Z``;
* a multi-leg (``mleg``) order has empty ``symbol``, ``side``, ``asset_class`` and ``asset_id``
  at the top level; its legs carry the option contracts, ``ratio_qty``, ``position_intent`` and
  empty ``type``/``order_type``;
* fields the examples omit (``expires_at``, ``position_intent``, ``ratio_qty`` on plain
  orders) are omitted rather than served as ``null``, because the schema does not allow null for
  them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from crypto_signals.sandbox.alpaca_sim._values import (
    JSONDict,
    Number,
    asset_id,
    check_uuid,
    choice,
    fmt,
    fmt_number,
    is_crypto_symbol,
    iso,
    slash_symbol,
    to_decimal,
    to_ns,
)

# Statuses Alpaca lists under status=open. The spec only says "open, closed or all"; this is
# every non-final status (alpaca-py's pending_review included). ``held`` is the exception: a
# bracket's resting stop-loss leg is "seen as a closed order with 'Held' status"
# (alpacahq/alpaca-trade-api-python#322; alpaca-trade-api-js#87), so by default the simulator
# lists it under closed (AlpacaSimulator(held_listed_as="open") to model the other reading).
WORKING_STATUSES = frozenset(
    {
        "new",
        "accepted",
        "pending_new",
        "partially_filled",
        "accepted_for_bidding",
        "pending_cancel",
        "pending_replace",
        "calculated",
        "stopped",
        "suspended",
        "pending_review",
    }
)
FINAL_STATUSES = frozenset(
    {"filled", "canceled", "expired", "rejected", "replaced", "done_for_day"}
)
ORDER_STATUSES = WORKING_STATUSES | FINAL_STATUSES | {"held"}
ORDER_TYPES = frozenset({"market", "limit", "stop", "stop_limit", "trailing_stop"})
ORDER_CLASSES = frozenset({"simple", "", "bracket", "oco", "oto", "mleg"})
TIME_IN_FORCE = frozenset({"day", "gtc", "opg", "cls", "ioc", "fok"})
ASSET_CLASSES = frozenset({"us_equity", "us_option", "crypto", "ipo", "crypto_perp"})
POSITION_INTENTS = frozenset({"buy_to_open", "buy_to_close", "sell_to_open", "sell_to_close"})
NUMERIC_FIELDS = frozenset(
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
TIME_FIELDS = frozenset(
    {
        "submitted_at",
        "created_at",
        "updated_at",
        "filled_at",
        "canceled_at",
        "expired_at",
        "failed_at",
        "replaced_at",
        "expires_at",
    }
)
TERMINAL_FIELD = {
    "filled": "filled_at",
    "canceled": "canceled_at",
    "expired": "expired_at",
    "rejected": "failed_at",
    "replaced": "replaced_at",
}
DEFAULT_FILL_PRICE = "100"  # matches add_position's default avg_entry_price

# Gaps taken from the spec's CryptoOrderResponse example (created - submitted, updated -
# created) and MultilegOptionsOrderResponse (submitted - created).
_CREATED_AFTER_SUBMITTED_NS = 24_450_436
_UPDATED_AFTER_CREATED_NS = 43_271
_MLEG_CREATED_BEFORE_SUBMITTED_NS = 7_722_159

Instant = datetime | str


@dataclass(frozen=True, kw_only=True)
class OrderSpec:
    """One order to seed: a top-level order or one of its legs.

    ``qty`` or ``notional`` is required. ``created_at`` defaults to the spec's gap after
    ``submitted_at``; ``filled_qty`` to ``qty`` when ``status`` is ``filled`` (else 0);
    ``filled_at`` to ``submitted_at`` when filled; ``asset_class`` from the symbol;
    ``time_in_force`` to ``gtc`` for crypto and ``day`` otherwise. ``legs`` are specs or
    mappings of the same fields; a mapping's missing ``symbol``, ``qty``, ``submitted_at``,
    ``order_class``, ``asset_class`` and ``time_in_force`` come from the parent, ``side``
    defaults to the opposite side and ``status`` to ``"new"`` (a resting exit, not a fill).
    """

    symbol: str
    side: str
    qty: Number | None = None
    status: str = "filled"
    submitted_at: Instant
    created_at: Instant | None = None
    filled_at: Instant | None = None
    filled_qty: Number | None = None
    filled_avg_price: Number | None = None
    id: str | None = None
    client_order_id: str | None = None
    order_type: str = "market"
    order_class: str = "simple"
    legs: Sequence[OrderSpec | Mapping[str, Any]] | None = ()
    asset_class: str | None = None
    time_in_force: str | None = None
    limit_price: Number | None = None
    stop_price: Number | None = None
    notional: Number | None = None
    position_intent: str | None = None
    ratio_qty: Number | None = None

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> OrderSpec:
        """A spec from keyword-style values (``type`` is accepted for ``order_type``)."""
        data = dict(values)
        if "type" in data and "order_type" not in data:
            data["order_type"] = data.pop("type")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TypeError(f"unknown order field(s): {', '.join(unknown)}")
        return cls(**data)

    def leg(self, leg: OrderSpec | Mapping[str, Any]) -> OrderSpec:
        """The spec of one of this order's legs, with the parent's defaults filled in."""
        if isinstance(leg, OrderSpec):
            if leg.legs:
                raise ValueError("order legs cannot have legs of their own")
            return leg
        data = dict(leg)
        if data.get("legs"):
            raise ValueError("order legs cannot have legs of their own")
        data.pop("legs", None)
        if "type" in data and "order_type" not in data:
            data["order_type"] = data.pop("type")
        data.setdefault("submitted_at", self.submitted_at)
        data.setdefault("order_class", self.order_class)
        data.setdefault("status", "new")
        if self.order_class == "mleg":
            # A contract per leg; the leg's quantity is its ratio times the strategy's.
            data.setdefault("side", "buy")
            data.setdefault("ratio_qty", 1)
            data.setdefault("asset_class", "us_option")
            data.setdefault("time_in_force", self.time_in_force or "day")
            if "qty" not in data and self.qty is not None:
                data["qty"] = to_decimal(data["ratio_qty"], "ratio_qty") * to_decimal(
                    self.qty, "qty"
                )
        else:
            data.setdefault("symbol", self.symbol)
            data.setdefault("qty", self.qty)
            data.setdefault("side", "sell" if self.side == "buy" else "buy")
            data.setdefault("asset_class", self.asset_class)
            data.setdefault("time_in_force", self.time_in_force)
        return OrderSpec.of(data)


@dataclass
class OrderRecord:
    """An order as stored: its served JSON, and the instant it is listed (sorted) by."""

    data: JSONDict
    listed_ns: int
    key: str  # the id; a raw item without one is stored under a generated key
    parent_id: str | None = None
    leg_ids: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.key


def build_order(spec: OrderSpec, *, offset: timedelta, is_leg: bool) -> OrderRecord:
    """The served JSON of one order (legs are built separately and attached when listed)."""
    mleg = spec.order_class == "mleg"
    mleg_parent = mleg and not is_leg
    mleg_leg = mleg and is_leg
    choice(spec.status, ORDER_STATUSES, "status")
    choice(spec.order_class, ORDER_CLASSES, "order_class")
    if mleg_parent:
        if spec.order_type not in ("market", "limit"):
            raise ValueError("a multi-leg (mleg) order is a market or limit order")
        side, symbol, klass, served_asset_id = "", "", "", ""
    else:
        side = choice(spec.side, frozenset({"buy", "sell"}), "side")
        if not spec.symbol.strip():
            raise ValueError("symbol is required (only a multi-leg order has none)")
        klass = _asset_class(spec.symbol, spec.asset_class)
        # Alpaca serves crypto orders with the slash form, unlike positions.
        symbol = slash_symbol(spec.symbol) if klass == "crypto" else spec.symbol.strip().upper()
        served_asset_id = asset_id(symbol)
    choice(spec.order_type, ORDER_TYPES, "order_type")
    tif = spec.time_in_force or ("gtc" if klass == "crypto" else "day")
    choice(tif, TIME_IN_FORCE, "time_in_force")
    intent = spec.position_intent
    if mleg_leg and intent is None:
        intent = "buy_to_open" if side == "buy" else "sell_to_open"
    if intent is not None:
        choice(intent, POSITION_INTENTS, "position_intent")

    if spec.qty is None and spec.notional is None:
        raise ValueError("an order needs qty or notional")
    quantity = None if spec.qty is None else to_decimal(spec.qty, "qty")
    if quantity is not None and quantity <= 0:
        raise ValueError("order qty must be positive; use side='sell' for sells")
    if spec.filled_qty is not None:
        filled = to_decimal(spec.filled_qty, "filled_qty")
    elif spec.status == "filled" and quantity is not None:
        filled = quantity
    else:
        filled = Decimal(0)
    if filled < 0 or (quantity is not None and filled > quantity):
        raise ValueError("filled_qty must be between 0 and qty")

    submitted = to_ns(spec.submitted_at, "submitted_at")
    if spec.created_at is not None:
        created = to_ns(spec.created_at, "created_at")
    elif mleg_parent:
        created = submitted - _MLEG_CREATED_BEFORE_SUBMITTED_NS
    else:
        created = submitted + _CREATED_AFTER_SUBMITTED_NS
    filled_time = None if spec.filled_at is None else to_ns(spec.filled_at, "filled_at")
    if filled_time is None and spec.status == "filled":
        filled_time = submitted
    # An ended order ended when it last changed; the served terminal time keeps the seeding
    # instant (tests seed "canceled at T" and expect T back).
    terminal = max(submitted, filled_time) if filled_time is not None else submitted
    updated = max(created, terminal) + _UPDATED_AFTER_CREATED_NS
    if spec.filled_avg_price is not None:
        avg_price = fmt_number(spec.filled_avg_price, "filled_avg_price")
    else:
        avg_price = DEFAULT_FILL_PRICE if filled > 0 else None
    order_type = "" if mleg_leg else spec.order_type
    served_class = spec.order_class
    if served_class == "simple" and klass != "us_option":
        served_class = ""  # the spec's crypto, equity and IPO examples

    def when(ns: int | None) -> str | None:
        return None if ns is None else iso(ns, offset)

    data: JSONDict = {
        "id": check_uuid(spec.id, "id") if spec.id is not None else str(uuid.uuid4()),
        "client_order_id": spec.client_order_id or str(uuid.uuid4()),
        "created_at": when(created),
        "updated_at": when(updated),
        "submitted_at": when(submitted),
        "filled_at": when(filled_time),
        "expired_at": None,
        "canceled_at": None,
        "failed_at": None,
        "replaced_at": None,
        "replaced_by": None,
        "replaces": None,
        "asset_id": served_asset_id,
        "symbol": symbol,
        "asset_class": klass,
        "notional": fmt_number(spec.notional, "notional"),
        "qty": None if quantity is None else fmt(quantity),
        "filled_qty": fmt(filled),
        "filled_avg_price": avg_price,
        "order_class": served_class,
        "order_type": order_type,
        "type": order_type,
        "side": side,
        "time_in_force": tif,
        "limit_price": fmt_number(spec.limit_price, "limit_price"),
        "stop_price": fmt_number(spec.stop_price, "stop_price"),
        "status": spec.status,
        "extended_hours": False,
        "legs": None,
        "trail_percent": None,
        "trail_price": None,
        "hwm": None,
        "subtag": None,
        "source": None,
    }
    if intent is not None:
        data["position_intent"] = intent
    if mleg_leg:
        data["ratio_qty"] = fmt_number(spec.ratio_qty, "ratio_qty")
    terminal_field = TERMINAL_FIELD.get(spec.status)
    if terminal_field is not None and terminal_field != "filled_at":
        data[terminal_field] = when(terminal)
    return OrderRecord(data=data, listed_ns=submitted, key=str(data["id"]))


def _asset_class(symbol: str, asset_class: str | None) -> str:
    if asset_class is None:
        return "crypto" if is_crypto_symbol(symbol) else "us_equity"
    return choice(asset_class, ASSET_CLASSES, "asset_class")
