"""alpaca-py as transport: its URLs, authentication headers and session, configured once here.

The adapter uses alpaca-py's public ``RESTClient.get(path, params)``, which returns the decoded
JSON of a 2xx answer as it is (alpaca-py's models are not involved: ``broker/items.py`` parses
it). Every call made through :class:`AlpacaTransport` has a timeout, a bounded retry and, when
given, a deadline; a rate limit (HTTP 429) is waited out until Alpaca's ``X-RateLimit-Reset``
(and ``Retry-After`` when present) if that falls within the deadline, else it fails at once.

This is the only module that touches alpaca-py's private attributes. ``TradingClient`` exposes
neither a timeout nor its retry settings (``RESTClient.__init__`` takes ``retry_attempts`` and
``retry_wait_seconds`` but ``TradingClient.__init__`` does not pass them through), and its
``RESTClient._request`` reads these attributes on every call (checked against alpaca-py 0.44,
the version ``pyproject.toml`` pins):

* ``_session`` -- the ``requests.Session`` every request goes through. Replaced by
  :class:`~crypto_signals.broker.http.TimeoutSession`: without it a hung broker hangs the run
  (alpaca-py passes no timeout); it also retries 502/503/504 and connection errors (bounded).
* ``_retry`` -- how many times alpaca-py itself retries a 429/504 (3 by default), sleeping
  ``_retry_wait`` seconds between tries. Set to 0: a fixed sleep ignores the rate limit's reset
  and the run's deadline; 429 is handled below and 504 by the session.
* ``_retry_wait`` -- the fixed sleep of that retry (3 s by default); 0, as it is unused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from crypto_signals.broker.alpaca_sdk import APIError, TradingClient
from crypto_signals.broker.http import DeadlineExceeded, TimeoutSession
from crypto_signals.engine.ports import BrokerDeadline, BrokerUnavailable

log = logging.getLogger(__name__)

# Alpaca's quota is per minute: a reset further away than that is not a rate limit to wait for.
MAX_RATE_LIMIT_WAIT_SECONDS = 61.0
# A reset already past (clock skew between us and Alpaca) still waits a little.
MIN_RATE_LIMIT_WAIT_SECONDS = 0.2
# No X-RateLimit-Reset and no Retry-After: wait as alpaca-py would have.
DEFAULT_RATE_LIMIT_WAIT_SECONDS = 1.0
# A timeout this close to the deadline is the deadline's (timers are not exact).
_DEADLINE_SLACK = 0.05


def build_trading_client(
    *,
    api_key: str,
    secret_key: str,
    paper: bool,
    base_url: str | None,
    timeout_seconds: float,
    retries: int,
) -> TradingClient:
    """A TradingClient whose every call is bounded (see the module docstring for each attribute)."""
    client = TradingClient(api_key, secret_key, paper=paper, url_override=base_url or None)
    client._session = TimeoutSession(
        connect_timeout=min(5.0, timeout_seconds), read_timeout=timeout_seconds, retries=retries
    )
    client._retry = 0
    client._retry_wait = 0
    return client


class AlpacaTransport:
    """GETs through alpaca-py with the adapter's error and rate-limit policy.

    Every failure becomes :class:`BrokerUnavailable` with a message naming the endpoint
    (``"GET /v2/orders?status=closed: HTTP 500: ..."``), never a credential.
    """

    def __init__(
        self,
        client: TradingClient,
        *,
        rate_limit_waits: int = 2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._rate_limit_waits = rate_limit_waits
        self._sleep = sleep
        self._lock = threading.Lock()
        self.calls = 0  # requests made (a rate-limited request and its retry count as two)
        self.rate_limited = 0  # 429 answers received

    def get(
        self,
        path: str,
        params: Mapping[str, Any] | None,
        *,
        endpoint: str,
        deadline: float | None,
        missing_ok: bool = False,
    ) -> Any:
        """The decoded JSON body of ``GET /v2{path}``; ``None`` for a 404 when ``missing_ok``
        (a look-up of an order that does not exist: an answer, not a failure)."""
        waits = 0
        while True:
            try:
                return self._get_once(path, params, deadline)
            except DeadlineExceeded:
                raise BrokerDeadline(
                    f"{endpoint}: the run's deadline passed before the call"
                ) from None
            except APIError as exc:
                if exc.status_code == 404 and missing_ok:
                    return None
                if exc.status_code != 429:
                    raise BrokerUnavailable(f"{endpoint}: {describe_api_error(exc)}") from None
                with self._lock:
                    self.rate_limited += 1
                wait = rate_limit_wait(_headers(exc), now=time.time())
                verdict = _give_up(wait, waits, self._rate_limit_waits, deadline)
                if verdict is not None:
                    reason, past_deadline = verdict
                    kind = BrokerDeadline if past_deadline else BrokerUnavailable
                    raise kind(f"{endpoint}: HTTP 429: rate limit exceeded; {reason}") from None
                log.warning("%s: rate limited; waiting %.1f s for the reset", endpoint, wait)
                self._sleep(wait)
                waits += 1
            except requests.exceptions.Timeout:
                if deadline is not None and time.monotonic() >= deadline - _DEADLINE_SLACK:
                    # The call's timeout was cut to the deadline, and the deadline came.
                    raise BrokerDeadline(f"{endpoint}: timed out at the run's deadline") from None
                raise BrokerUnavailable(f"{endpoint}: timed out") from None
            except (requests.exceptions.JSONDecodeError, json.JSONDecodeError):
                raise BrokerUnavailable(f"{endpoint}: malformed response (not JSON)") from None
            except requests.exceptions.RequestException as exc:
                raise BrokerUnavailable(f"{endpoint}: {type(exc).__name__}") from None

    def _get_once(self, path: str, params: Mapping[str, Any] | None, deadline: float | None) -> Any:
        session = self._client._session
        with self._lock:
            self.calls += 1
        if isinstance(session, TimeoutSession):
            with session.deadline(deadline):
                return self._client.get(path, dict(params) if params is not None else None)
        return self._client.get(path, dict(params) if params is not None else None)


def rate_limit_wait(headers: Mapping[str, str], *, now: float) -> float:
    """Seconds until a 429 may be retried: until ``X-RateLimit-Reset`` (a Unix epoch second, per
    the spec) and ``Retry-After`` (seconds or an HTTP date) have both passed."""
    waits: list[float] = []
    reset = _number(headers.get("X-RateLimit-Reset"))
    if reset is not None:
        waits.append(reset - now)
    retry_after = headers.get("Retry-After")
    seconds = _number(retry_after)
    if seconds is not None:
        waits.append(seconds)
    elif retry_after:
        with contextlib.suppress(TypeError, ValueError, IndexError):
            waits.append(parsedate_to_datetime(retry_after).timestamp() - now)
    if not waits:
        return DEFAULT_RATE_LIMIT_WAIT_SECONDS
    return max(max(waits), MIN_RATE_LIMIT_WAIT_SECONDS)


def _give_up(
    wait: float, waits: int, allowed: int, deadline: float | None
) -> tuple[str, bool] | None:
    """None to wait and retry; else why not, and whether the run's deadline is the reason."""
    if waits >= allowed:
        return f"still limited after {waits} wait(s) for the reset", False
    if wait > MAX_RATE_LIMIT_WAIT_SECONDS:
        return f"the limit resets in {wait:.0f} s, more than a minute away", False
    if deadline is not None and time.monotonic() + wait >= deadline:
        left = max(deadline - time.monotonic(), 0.0)
        reason = f"the limit resets in {wait:.1f} s, after the run's deadline ({left:.1f} s left)"
        return reason, True
    return None

    return None


def _headers(exc: APIError) -> Mapping[str, str]:
    response = exc.response
    headers = getattr(response, "headers", None)
    return headers if headers is not None else {}


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def describe_api_error(exc: APIError) -> str:
    status = exc.status_code
    try:
        message = str(json.loads(str(exc))["message"])
    except (ValueError, KeyError, TypeError):
        message = "non-JSON error body"
    return f"HTTP {status}: {message[:200]}"
