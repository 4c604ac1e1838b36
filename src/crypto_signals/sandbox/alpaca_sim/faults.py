"""Injected misbehaviour of the simulator (see the package docstring for each kind)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

FaultKind = Literal[
    "status", "rate_limit", "hang", "delay", "malformed", "truncated", "wrong_shape", "short_page"
]

DEFAULT_SHORT_PAGE_SIZE = 2


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour.

    * ``status``: HTTP ``status`` with an Alpaca JSON error body.
    * ``rate_limit``: 429 with ``X-RateLimit-Limit/Remaining/Reset`` as the spec documents them
      (``Reset`` is a Unix epoch second, ``reset_after`` seconds from now, rounded up; it
      defaults to ``retry_after`` or 1 s). The spec documents no ``Retry-After``: it is sent
      only when ``retry_after`` is given. Like Alpaca's quota (per key), the limit holds for
      every route until the reset (and the Retry-After) has passed: each use of the fault starts
      such an episode; requests during it answer 429 without consuming the fault.
    * ``hang``: no answer; the connection is closed after ``seconds`` (120 s if 0) or when the
      simulator stops.
    * ``delay``: sleeps ``seconds``, then answers normally.
    * ``malformed``: 200 whose body is not JSON.
    * ``truncated``: 200 whose JSON body is cut in half (Content-Length matches the cut body).
    * ``wrong_shape``: 200 with valid JSON of the wrong shape: lists come back wrapped in an
      object, objects lose required fields.
    * ``short_page``: ``orders`` only: each page holds at most ``page_size`` orders (default 2),
      whatever ``limit`` asks for, with no error: a server that pages shorter than asked.

    ``times`` is how many matching requests the fault applies to (``None``: until cleared).
    ``query``, when given, narrows the matching requests to those whose query string has these
    values (``{"status": "closed"}``: the closed-order listings only, not the open ones).
    """

    kind: FaultKind
    status: int = 500
    retry_after: float | None = None
    seconds: float = 0.0
    times: int | None = None
    reset_after: float | None = None
    page_size: int | None = None
    query: Mapping[str, str] | None = field(default=None, hash=False)

    def matches(self, query: Mapping[str, list[str]]) -> bool:
        """Whether a request with this (parsed) query string is one the fault applies to."""
        if not self.query:
            return True
        return all(query.get(name, [None])[-1] == value for name, value in self.query.items())

    def __post_init__(self) -> None:
        if self.kind not in get_args(FaultKind):
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if not 400 <= self.status <= 599:
            raise ValueError("Fault.status must be an HTTP error status (400-599)")
        for name in ("retry_after", "reset_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"Fault.{name} must be >= 0")
        if self.seconds < 0:
            raise ValueError("Fault.seconds must be >= 0")
        if self.times is not None and self.times < 1:
            raise ValueError("Fault.times must be >= 1 or None")
        if self.page_size is not None and self.page_size < 2:
            # One order per page cannot be told from the end of a listing by an overlapping
            # cursor (the page that re-serves the last order seen brings nothing new).
            raise ValueError("Fault.page_size must be >= 2")

    @property
    def seconds_to_reset(self) -> float:
        if self.reset_after is not None:
            return self.reset_after
        return self.retry_after if self.retry_after is not None else 1.0

    @property
    def short_page_size(self) -> int:
        return self.page_size if self.page_size is not None else DEFAULT_SHORT_PAGE_SIZE
