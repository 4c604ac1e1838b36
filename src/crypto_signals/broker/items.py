"""Alpaca's JSON items, parsed one by one with the project's own models.

alpaca-py's models are stricter than the API in places that matter to the reconciler: an IPO
order (``asset_class: "ipo"``, not in alpaca-py's enum) or an order with ``submitted_at: null``
(the spec's schema allows it) fails the whole listing it is part of. So the adapter takes the raw
JSON from alpaca-py's transport and parses each item here:

* **lenient** about every field the reconciler does not use (unknown fields, unknown enum
  values of ``asset_class``, ``order_class``, ``type``, ``time_in_force``...);
* **strict** about those it does: ``id``, ``symbol``, ``side``, ``status``, ``qty``,
  ``filled_qty``, ``filled_avg_price``, the timestamps and ``legs``. A number is a finite
  decimal (a string, as Alpaca sends them, or a JSON number), a timestamp is RFC 3339.

An item that does not parse becomes an :class:`UnreadableItem` naming the field and the rule it
broke -- never its value, never the payload -- and the rest of the listing is used.

A multi-leg options order (``order_class: "mleg"``) has empty ``symbol`` and ``side`` at the top
level (the spec's example): it is a container, read through its legs, each an order of its own
(an option contract) whose ``parent_id`` is the container.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from crypto_signals.domain.snapshots import BrokerOrder, BrokerPosition, UnreadableItem

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})?$"
)
_MAX_TEXT = 128  # client_order_id's documented maxLength; also bounds what an issue repeats


# -- field types ------------------------------------------------------------------------------


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("not a decimal number")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("not a decimal number") from None
    if not number.is_finite():
        raise ValueError("not a finite number")
    return number


def _timestamp(value: Any) -> datetime | None:
    """RFC 3339, any number of fractional digits (Alpaca sends nanoseconds: truncated to
    microseconds), with ``Z`` or an offset; a timestamp without one is read as UTC."""
    if value is None or value == "":
        return None
    match = _RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("not an RFC 3339 timestamp")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    shift = timedelta(0)
    if offset not in (None, "Z", "z"):
        shift = timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
        if offset[0] == "-":
            shift = -shift
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros
        )
    except ValueError:
        raise ValueError("not a valid date and time") from None
    return (moment - shift).replace(tzinfo=UTC)


Dec = Annotated[Decimal | None, BeforeValidator(_decimal)]
Timestamp = Annotated[datetime | None, BeforeValidator(_timestamp)]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class _Item(BaseModel):
    # Fields the reconciler does not read are ignored, whatever they hold.
    model_config = ConfigDict(extra="ignore", frozen=True)


class RawAccount(_Item):
    id: NonEmpty


class RawPosition(_Item):
    symbol: NonEmpty
    qty: Dec
    side: str
    market_value: Dec = None
    asset_class: NonEmpty
    avg_entry_price: Dec = None

    @model_validator(mode="after")
    def _check(self) -> RawPosition:
        if self.qty is None:
            raise ValueError("qty: missing")
        if self.side not in ("long", "short"):
            raise ValueError("side: not 'long' or 'short'")
        return self


class RawOrder(_Item):
    id: NonEmpty
    client_order_id: str | None = None
    symbol: str | None = None
    side: str | None = None
    status: NonEmpty
    order_class: str | None = None
    qty: Dec = None
    filled_qty: Dec = None
    filled_avg_price: Dec = None
    submitted_at: Timestamp = None
    created_at: Timestamp = None
    filled_at: Timestamp = None
    canceled_at: Timestamp = None
    expired_at: Timestamp = None
    failed_at: Timestamp = None
    updated_at: Timestamp = None
    legs: list[Any] | None = None

    @property
    def is_multi_leg(self) -> bool:
        return self.order_class == "mleg"

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> RawOrder:
        for name in ("qty", "filled_qty", "filled_avg_price"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name}: negative")
        is_leg = bool(info.context and info.context.get("leg"))
        if self.is_multi_leg and not is_leg:
            # A container: its legs are the orders (each checked as a leg).
            if not self.legs:
                raise ValueError("legs: a multi-leg (mleg) order without legs")
            return self
        if not self.symbol:
            raise ValueError("symbol: missing or empty")
        if self.side not in ("buy", "sell"):
            raise ValueError("side: not 'buy' or 'sell'")
        if self.submitted_at is None and self.created_at is None:
            raise ValueError("submitted_at: null, and no created_at to stand in for it")
        return self


# -- parsing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedItem:
    """One top-level item of an order listing, parsed."""

    key: str  # identity across pages: the order id, or a digest of an item without one
    orders: tuple[BrokerOrder, ...]  # the order and its legs (a multi-leg order: its legs)
    unreadable: tuple[UnreadableItem, ...]
    # The server's sort key (submitted_at) when it is readable: the paging cursor. Never the
    # created_at stand-in: it comes after submitted_at, and a cursor too late could skip orders.
    listed_at: datetime | None
    size: int  # 1 + its legs: what it may count toward ``limit``


def parse_account(payload: Any) -> RawAccount:
    """Raises ValueError (with the rule broken) when the account is unreadable."""
    if not isinstance(payload, dict):
        raise ValueError(f"expected an object, got {_kind(payload)}")
    try:
        return RawAccount.model_validate(payload)
    except ValidationError as exc:
        raise ValueError(describe(exc)) from None


def parse_position(endpoint: str, item: Any) -> BrokerPosition | UnreadableItem:
    if not isinstance(item, dict):
        return _unreadable(
            endpoint, item, f"item: expected an object, got {_kind(item)}", id_=False
        )
    try:
        raw = RawPosition.model_validate(item)
    except ValidationError as exc:
        return _unreadable(endpoint, item, describe(exc), id_=False)
    assert raw.qty is not None  # checked by the model
    return BrokerPosition(
        symbol=raw.symbol,
        qty=abs(raw.qty) if raw.side == "long" else -abs(raw.qty),
        market_value=abs(raw.market_value) if raw.market_value is not None else None,
        is_crypto=raw.asset_class == "crypto",
        avg_entry_price=raw.avg_entry_price,
    )


def parse_order_item(endpoint: str, item: Any) -> ParsedItem:
    listed_at = _lenient_timestamp(item.get("submitted_at")) if isinstance(item, dict) else None
    legs = item.get("legs") if isinstance(item, dict) else None
    size = 1 + (len(legs) if isinstance(legs, list) else 0)
    key = _identity(item)
    if not isinstance(item, dict):
        detail = f"item: expected an object, got {_kind(item)}"
        return ParsedItem(key, (), (_unreadable(endpoint, item, detail),), None, 1)
    try:
        raw = RawOrder.model_validate(item)
    except ValidationError as exc:
        detail = describe(exc)
        if isinstance(legs, list) and legs:
            detail += f" (with its {len(legs)} leg(s))"
        return ParsedItem(key, (), (_unreadable(endpoint, item, detail),), listed_at, size)
    orders: list[BrokerOrder] = [] if raw.is_multi_leg else [_order(raw)]
    unreadable: list[UnreadableItem] = []
    for index, leg in enumerate(raw.legs or ()):
        converted = _leg(endpoint, leg, index, raw)
        if isinstance(converted, UnreadableItem):
            unreadable.append(converted)
        else:
            orders.append(converted)
    return ParsedItem(key, tuple(orders), tuple(unreadable), listed_at, size)


def _leg(endpoint: str, leg: Any, index: int, parent: RawOrder) -> BrokerOrder | UnreadableItem:
    try:
        if not isinstance(leg, dict):
            raise ValueError(f"legs[{index}]: expected an object, got {_kind(leg)}")
        # A leg is one instrument on one side (an mleg leg too); its own legs are ignored
        # (the spec: "legs are not nested beyond one level").
        raw = RawOrder.model_validate(leg, context={"leg": True})
    except (ValueError, ValidationError) as exc:
        detail = f"legs[{index}].{describe(exc)}" if isinstance(exc, ValidationError) else str(exc)
        item = _unreadable(endpoint, leg, detail)
        # What the leg does not say, its parent does: a bracket's legs trade its symbol, and
        # the leg belongs to the position whose entry the parent is.
        return UnreadableItem(
            endpoint=endpoint,
            item_id=item.item_id or parent.id,
            symbol=item.symbol or parent.symbol or None,
            client_order_id=item.client_order_id or parent.client_order_id,
            detail=detail,
        )
    return _order(raw, parent_id=parent.id, parent_client_order_id=parent.client_order_id)


def _order(
    raw: RawOrder, *, parent_id: str | None = None, parent_client_order_id: str | None = None
) -> BrokerOrder:
    # submitted_at may be null (the spec's schema says so); created_at then stands in for it.
    # In the spec's examples the two are a few milliseconds apart, created_at usually later.
    submitted = raw.submitted_at or raw.created_at
    # Checked by the model; repeated for the type checker.
    assert submitted is not None
    assert raw.symbol
    return BrokerOrder(
        id=raw.id,
        client_order_id=raw.client_order_id,
        symbol=raw.symbol,
        side="buy" if raw.side == "buy" else "sell",
        status=raw.status,
        qty=raw.qty,
        filled_qty=raw.filled_qty,
        filled_avg_price=raw.filled_avg_price,
        submitted_at=submitted,
        filled_at=raw.filled_at,
        ended_at=raw.canceled_at or raw.expired_at or raw.failed_at or raw.updated_at,
        parent_id=parent_id,
        parent_client_order_id=parent_client_order_id,
    )


def describe(exc: ValidationError) -> str:
    """The first broken rule as ``field: rule`` (pydantic's message, never the input)."""
    errors = exc.errors(include_input=False, include_url=False)
    if not errors:
        return "invalid"
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    text = f"{where}: {message}" if where else message
    more = len(errors) - 1
    return text + (f" (+{more} more)" if more else "")


def _unreadable(endpoint: str, item: Any, detail: str, *, id_: bool = True) -> UnreadableItem:
    def text(name: str) -> str | None:
        value = item.get(name) if isinstance(item, dict) else None
        return value[:_MAX_TEXT] if isinstance(value, str) and value else None

    return UnreadableItem(
        endpoint=endpoint,
        item_id=text("id") if id_ else None,
        symbol=text("symbol"),
        client_order_id=text("client_order_id"),
        detail=detail,
    )


def _identity(item: Any) -> str:
    if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]:
        return str(item["id"])
    # No id: a digest of the item, so the same item served on two pages is one item.
    canonical = json.dumps(item, sort_keys=True, default=str).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def _lenient_timestamp(value: Any) -> datetime | None:
    try:
        return _timestamp(value)
    except ValueError:
        return None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )
