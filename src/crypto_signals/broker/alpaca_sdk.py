"""The parts of alpaca-py the adapter uses, imported without pandas (see deferred_pandas).

Import alpaca-py through this module, never directly, so that the deferral happens wherever
alpaca-py is first imported in a process.
"""

from __future__ import annotations

from crypto_signals.broker.deferred_pandas import pandas_deferred

with pandas_deferred():
    from alpaca.common.enums import Sort
    from alpaca.common.exceptions import APIError
    from alpaca.trading.client import TradingClient
    from alpaca.trading.enums import QueryOrderStatus
    from alpaca.trading.models import Order, Position, TradeAccount
    from alpaca.trading.requests import GetOrdersRequest

__all__ = [
    "APIError",
    "GetOrdersRequest",
    "Order",
    "Position",
    "QueryOrderStatus",
    "Sort",
    "TradeAccount",
    "TradingClient",
]
