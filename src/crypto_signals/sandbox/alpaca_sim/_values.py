"""Value helpers of the simulator: numbers, instants, symbols, choices.

Instants are kept as integer nanoseconds since the Unix epoch (UTC): Alpaca's backend stores and
serves nanosecond timestamps, and a client that reads them into microsecond datetimes truncates
them, which is exactly the kind of wire-level detail the simulator has to get right.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

Number = str | int | float | Decimal
JSONDict = dict[str, Any]

NS_PER_SECOND = 1_000_000_000
NS_PER_MICROSECOND = 1_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})?$"
)
CRYPTO_QUOTES = ("USDT", "USDC", "USD", "BTC")


def to_decimal(value: Number, name: str = "value") -> Decimal:
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


def fmt(value: Decimal) -> str:
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def fmt_number(value: Number | None, name: str) -> str | None:
    return None if value is None else fmt(to_decimal(value, name))


def ratio(numerator: Decimal, denominator: Decimal) -> str:
    if denominator == 0:
        return "0"
    return fmt((numerator / denominator).quantize(Decimal("1e-10")))


# -- instants ----------------------------------------------------------------------------------


def to_ns(value: datetime | str, name: str) -> int:
    """An instant as nanoseconds since the epoch; naive datetimes and strings are taken as UTC.

    Strings are RFC 3339 with up to nine fractional digits (what Alpaca serves).
    """
    if isinstance(value, datetime):
        aware = value.replace(tzinfo=UTC) if value.utcoffset() is None else value
        delta = aware - _EPOCH
        seconds = delta.days * 86_400 + delta.seconds
        return seconds * NS_PER_SECOND + delta.microseconds * NS_PER_MICROSECOND
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a datetime or an RFC 3339 string, got {value!r}")
    match = _RFC3339.match(value.strip())
    if match is None:
        raise ValueError(f"{name} is not an RFC 3339 timestamp: {value!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        base = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError as exc:
        raise ValueError(f"{name} is not a valid timestamp: {value!r}") from exc
    ns = to_ns(base, name) + int((fraction or "").ljust(9, "0"))
    if offset and offset not in ("Z", "z"):
        sign = -1 if offset[0] == "-" else 1
        minutes = int(offset[1:3]) * 60 + int(offset[4:6])
        ns -= sign * minutes * 60 * NS_PER_SECOND
    return ns


def iso(ns: int, offset: timedelta = timedelta(0)) -> str:
    """RFC 3339 the way Alpaca's (Go) backend writes it: ``time.RFC3339Nano``.

    Nanosecond precision with trailing zeros dropped (no fraction at all on a whole second) and
    ``Z`` for UTC, as in the spec's examples (``...51.313261061Z``, ``...53.694Z``,
    ``...21:00:00Z``); an offset (``-04:00``) when the simulator is told to serve one.
    """
    seconds, fraction = divmod(ns, NS_PER_SECOND)
    moment = _EPOCH + timedelta(seconds=seconds) + offset
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    if not offset:
        return text + "Z"
    total = int(offset.total_seconds()) // 60
    sign = "-" if total < 0 else "+"
    return f"{text}{sign}{abs(total) // 60:02d}:{abs(total) % 60:02d}"


# -- symbols and ids ---------------------------------------------------------------------------


def compact_symbol(symbol: str) -> str:
    return symbol.replace("/", "").strip().upper()


def is_crypto_symbol(symbol: str) -> bool:
    upper = symbol.strip().upper()
    return "/" in upper or (len(upper) > 5 and upper.endswith(CRYPTO_QUOTES))


def slash_symbol(symbol: str) -> str:
    upper = symbol.strip().upper()
    if "/" in upper:
        return upper
    for quote in CRYPTO_QUOTES:
        if upper.endswith(quote) and len(upper) > len(quote):
            return f"{upper[: -len(quote)]}/{quote}"
    return upper


def asset_id(symbol: str) -> str:
    # Deterministic so a position and the orders for the same asset share an asset_id.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"alpaca-sim:asset:{compact_symbol(symbol)}"))


def check_uuid(value: str, name: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError as exc:
        raise ValueError(f"{name} must be a UUID, got {value!r}") from exc


def choice(value: str, allowed: frozenset[str], name: str) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")
    return value


def json_value(key: str, value: Any, numeric_keys: frozenset[str], offset: timedelta) -> Any:
    """A seeding value as it is served: instants in RFC 3339, numbers as decimal strings."""
    if isinstance(value, datetime):
        return iso(to_ns(value, key), offset)
    if key in numeric_keys and value is not None:
        return fmt(to_decimal(value, key))
    if isinstance(value, Decimal):
        return fmt(value)
    json.dumps(value)  # fail at set-up time, not inside a request handler
    return value
