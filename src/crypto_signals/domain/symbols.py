"""Symbol identity across Firestore and the broker.

Firestore stores crypto as ``BTC/USD``; Alpaca positions say ``BTCUSD`` while Alpaca orders say
``BTC/USD``. The predecessor compared the raw strings and saw every crypto position as a zombie
and an orphan at once, so every comparison in this project goes through :func:`symbol_key`.
"""

from __future__ import annotations

# Quote currencies Alpaca lists crypto pairs against, longest first so "USDT" wins over "USD".
_CRYPTO_QUOTES = ("USDT", "USDC", "USD", "BTC")


def symbol_key(symbol: str) -> str:
    """The comparison key of a symbol: no slash, upper case (``BTC/USD`` -> ``BTCUSD``)."""
    return symbol.replace("/", "").strip().upper()


def display_symbol(broker_symbol: str, *, is_crypto: bool) -> str:
    """The Firestore (display) form of a broker symbol: ``BTCUSD`` -> ``BTC/USD`` for crypto."""
    if "/" in broker_symbol or not is_crypto:
        return broker_symbol
    upper = broker_symbol.upper()
    for quote in _CRYPTO_QUOTES:
        if upper.endswith(quote) and len(upper) > len(quote):
            return f"{upper[: -len(quote)]}/{quote}"
    return broker_symbol
