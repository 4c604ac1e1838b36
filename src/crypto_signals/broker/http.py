"""A requests session with a default timeout, a deadline, and a bounded retry for transient
failures.

alpaca-py's ``RESTClient`` sends every request through ``self._session`` with no timeout, so a
hung broker would hang the run (and a Cloud Function instance) until the platform kills it.
This session gives every request a (connect, read) timeout -- never longer than what is left
before the deadline set with :meth:`TimeoutSession.deadline` -- and retries connection failures
and 502/503/504 answers a bounded number of times. 429 is not retried here: the adapter waits
for the rate limit's reset itself (``broker/alpaca_transport.py``), within the run's deadline.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

# A call that has less than this left before its deadline is not started.
MIN_CALL_SECONDS = 0.05


class DeadlineExceeded(Exception):
    """Less than :data:`MIN_CALL_SECONDS` is left before the deadline: no request was sent."""


class TimeoutSession(requests.Session):
    def __init__(self, *, connect_timeout: float, read_timeout: float, retries: int) -> None:
        super().__init__()
        self._timeout = (connect_timeout, read_timeout)
        # Per thread and per call: the run may read the broker from a worker thread.
        self._deadline: ContextVar[float | None] = ContextVar("broker_deadline", default=None)
        retry = Retry(
            total=retries,
            connect=retries,
            # A read timeout means the broker may be hung: retrying it would multiply the wait.
            # False (not 0) re-raises the timeout itself, so it surfaces as a requests Timeout.
            read=False,
            status=retries,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"GET"}),
            backoff_factor=0.3,
            raise_on_status=False,  # hand the last answer to alpaca-py, which raises APIError
            # urllib3 would sleep up to 6 h on a Retry-After; the run has a lease to keep.
            respect_retry_after_header=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    @contextmanager
    def deadline(self, deadline: float | None) -> Iterator[None]:
        """Requests made in the block time out no later than ``deadline`` (time.monotonic())."""
        token = self._deadline.set(deadline)
        try:
            yield
        finally:
            self._deadline.reset(token)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        connect, read = self._timeout
        deadline = self._deadline.get()
        if deadline is not None:
            left = deadline - time.monotonic()
            if left < MIN_CALL_SECONDS:
                raise DeadlineExceeded
            connect, read = min(connect, left), min(read, left)
        kwargs.setdefault("timeout", (connect, read))
        return super().request(method, url, *args, **kwargs)
