"""A requests session with a default timeout and a bounded retry for transient failures.

alpaca-py's ``RESTClient`` sends every request through ``self._session`` with no timeout, so a
hung broker would hang the run (and a Cloud Function instance) until the platform kills it.
This session gives every request a (connect, read) timeout and retries connection failures and
502/503 answers a bounded number of times; 429 and 504 are retried by alpaca-py itself.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry


class TimeoutSession(requests.Session):
    def __init__(self, *, connect_timeout: float, read_timeout: float, retries: int) -> None:
        super().__init__()
        self._timeout = (connect_timeout, read_timeout)
        retry = Retry(
            total=retries,
            connect=retries,
            # A read timeout means the broker may be hung: retrying it would multiply the wait.
            # False (not 0) re-raises the timeout itself, so it surfaces as a requests Timeout.
            read=False,
            status=retries,
            status_forcelist=(502, 503),
            allowed_methods=frozenset({"GET"}),
            backoff_factor=0.3,
            raise_on_status=False,  # hand the last answer to alpaca-py, which raises APIError
            # urllib3 would sleep up to 6 h on a Retry-After; the run has a lease to keep.
            respect_retry_after_header=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)
