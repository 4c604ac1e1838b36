"""Import alpaca-py without importing pandas until something actually uses it.

alpaca-py's ``TradingClient`` imports ``alpaca.trading.requests``, whose only use of pandas is
``pd.Timestamp`` in the validator of ``GetCorporateAnnouncementsRequest`` -- a request the
reconciler never builds. Yet ``import pandas`` (and numpy with it) is the largest single cost
of a cold start: about 0.45 s of a 1.3 s bare start and 45 MB of resident memory on the
benchmark machine (``benchmarks/cold_start.py``). alpaca-py requires pandas outright; its
issue alpacahq/alpaca-py#269 ("Avoid locking pandas to v1") is about the version of that
requirement (it pinned pandas to v1), not about making pandas optional.

:func:`pandas_deferred` puts a stand-in module under the name ``pandas`` while alpaca-py is
imported, and removes it afterwards. alpaca-py keeps the stand-in as its ``pd``; the first
attribute read from it imports the real pandas (the normal way) and forwards to it, so alpaca-py
behaves exactly as before, only later. Everyone else who imports pandas -- during or after the
block -- gets the real module, because the stand-in only lives in ``sys.modules`` inside the
block and forwards every attribute.

If pandas is already imported (say the signal job imported it first), nothing is deferred.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_NAME = "pandas"
# The first attribute read imports pandas; two threads must not both start that import
# through the stand-in (the import system's own module lock covers the rest).
_lock = threading.Lock()


class DeferredModule(types.ModuleType):
    """Stands in for a module; its first attribute read imports the real one and forwards."""

    def __getattr__(self, name: str) -> Any:
        if name == "__path__" and sys.modules.get(self.__name__) is self:
            # The import system asks a parent for __path__ to import a submodule
            # ("import pandas.api"). Importing pandas here would make it import the submodule a
            # second time, so inside the block that is refused loudly instead.
            raise AttributeError(
                f"{self.__name__} is deferred while alpaca-py is imported; "
                f"import {self.__name__} before crypto_signals.broker.alpaca_sdk to use it there"
            )
        return getattr(self._load_real(), name)

    def _load_real(self) -> types.ModuleType:
        # Underscored: a public method here would shadow a pandas attribute of the same name.
        with _lock:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
            return importlib.import_module(self.__name__)


@contextmanager
def pandas_deferred() -> Iterator[None]:
    """While the block runs, ``import pandas`` yields a stand-in; afterwards, the real thing."""
    if _NAME in sys.modules:
        yield  # already paid for: nothing to save
        return
    stand_in = DeferredModule(_NAME, "Deferred: imports pandas at first attribute use.")
    sys.modules[_NAME] = stand_in
    try:
        yield
    finally:
        with _lock:
            if sys.modules.get(_NAME) is stand_in:
                del sys.modules[_NAME]
