"""The parts of alpaca-py the adapter uses, imported without pandas (see deferred_pandas).

Import alpaca-py through this module, never directly, so that the deferral happens wherever
alpaca-py is first imported in a process. (A ruff rule, TID251 in ``pyproject.toml``, keeps
``import alpaca`` out of the rest of the package.) alpaca-py is the transport only: the
adapter parses the raw JSON with its own models (``broker/items.py``).
"""

from __future__ import annotations

from crypto_signals.broker.deferred_pandas import pandas_deferred

with pandas_deferred():
    from alpaca.common.enums import Sort
    from alpaca.common.exceptions import APIError
    from alpaca.trading.client import TradingClient
    from alpaca.trading.enums import QueryOrderStatus
    from alpaca.trading.requests import GetOrdersRequest

__all__ = [
    "APIError",
    "GetOrdersRequest",
    "QueryOrderStatus",
    "Sort",
    "TradingClient",
]
