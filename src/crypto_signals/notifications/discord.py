"""Deliver rendered alert payloads to a Discord webhook.

The client posts payloads in order with ``?wait=true`` (so Discord confirms each message
was created), retries only what is worth retrying, and never blocks a reconciler run for
long: every call has a (connect, read) timeout, 429s are honoured only up to
``max_retry_after_seconds`` and each payload gets at most ``max_attempts`` HTTP attempts.
Failures come back as a :class:`DeliveryResult` rather than exceptions, so the caller can
keep the alert pending for the next run.

The webhook URL is a credential (anyone holding it can post to the channel). It is kept in
a redacting wrapper, never formatted into errors, log records or ``repr``; ``requests``
exceptions, which embed the URL in their message, are reduced to their class name; and a
log filter (the one redactor, ``crypto_signals.redaction``) scrubs webhook paths from
urllib3's own DEBUG/WARNING records.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from crypto_signals.engine.messages import AlertBatch, Delivery, DeliveryOutcome
from crypto_signals.notifications.discord_render import DEFAULT_USERNAME, render_batches
from crypto_signals.redaction import (
    REDACTED,
    install_on_transport_loggers,
    redact,
    register_secrets,
)

__all__ = [
    "REDACTED",
    "DeliveryOutcome",
    "DeliveryResult",
    "DiscordNotifier",
    "DiscordWebhookClient",
]

logger = logging.getLogger(__name__)

_MAX_ERROR_DETAILS: Final = 3
_MAX_ERROR_CHARS: Final = 500


@dataclass(frozen=True)
class DeliveryResult:
    """What happened to a batch of payloads.

    ``messages_sent`` < number of payloads with ``FAILED`` means a partial delivery: the
    first ``messages_sent`` payloads reached Discord, the rest did not.
    """

    outcome: DeliveryOutcome
    messages_sent: int
    attempts: int
    error: str | None  # never contains the webhook URL or its token


class _Secret:
    """Holds a secret string; every implicit string conversion is redacted."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__


def _with_wait(url: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "wait"]
    query.append(("wait", "true"))
    return urlunsplit(parts._replace(query=urlencode(query)))


class DiscordWebhookClient:
    """Posts payloads to one Discord webhook with bounded, rate-limit-aware retries."""

    def __init__(
        self,
        webhook_url: str | None,
        *,
        timeout_seconds: float = 5.0,
        max_attempts: int = 4,
        max_retry_after_seconds: float = 10.0,
        backoff_seconds: float = 0.5,
        session: requests.Session | None = None,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if max_retry_after_seconds < 0 or backoff_seconds < 0:
            raise ValueError("max_retry_after_seconds and backoff_seconds must not be negative")
        url = (webhook_url or "").strip()
        self._url: _Secret | None = None
        if url:
            self._url = _Secret(_with_wait(url))
            register_secrets([url])  # the URL and its token
            install_on_transport_loggers()
        self._timeout = timeout_seconds
        self._max_attempts = max_attempts
        self._max_retry_after = max_retry_after_seconds
        self._backoff = backoff_seconds
        self._session = session

    @property
    def configured(self) -> bool:
        return self._url is not None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(configured={self.configured}, "
            f"timeout_seconds={self._timeout}, max_attempts={self._max_attempts}, "
            f"max_retry_after_seconds={self._max_retry_after}, "
            f"backoff_seconds={self._backoff})"
        )

    def send(self, payloads: Sequence[Mapping[str, Any]]) -> DeliveryResult:
        """Post ``payloads`` in order, stopping at the first one that cannot be delivered."""
        if self._url is None:
            return DeliveryResult(DeliveryOutcome.NOT_CONFIGURED, 0, 0, None)
        url = self._url.reveal()
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https") or not urlsplit(url).netloc:
            return DeliveryResult(
                DeliveryOutcome.FAILED, 0, 0, "webhook URL is not a valid http(s) URL"
            )

        session = self._session or requests.Session()
        sent = attempts = 0
        try:
            for index, payload in enumerate(payloads):
                label = f"message {index + 1}/{len(payloads)}"
                try:
                    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
                except (TypeError, ValueError) as exc:
                    # A caller bug; retrying cannot help.
                    problem = f"{label} is not JSON-serialisable ({type(exc).__name__})"
                    return DeliveryResult(DeliveryOutcome.FAILED, sent, attempts, problem)
                used, error = self._deliver_one(session, url, body, label)
                attempts += used
                if error is not None:
                    return DeliveryResult(DeliveryOutcome.FAILED, sent, attempts, redact(error))
                sent += 1
        finally:
            if self._session is None:
                session.close()
        return DeliveryResult(DeliveryOutcome.DELIVERED, sent, attempts, None)

    def _deliver_one(
        self, session: requests.Session, url: str, body: bytes, label: str
    ) -> tuple[int, str | None]:
        """Post one payload with retries; return (attempts used, error or None)."""
        error = "not attempted"
        for attempt in range(1, self._max_attempts + 1):
            delay: float | None  # None = do not retry
            try:
                response = session.post(
                    url,
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=(self._timeout, self._timeout),
                    allow_redirects=False,
                )
            except requests.Timeout as exc:
                # Note: Discord may still have posted the message; a duplicate alert is
                # preferable to a lost one, so timeouts are retried.
                error = f"{type(exc).__name__}: no response within {self._timeout}s"
                delay = self._backoff_delay(attempt)
            except requests.ConnectionError as exc:
                error = f"{type(exc).__name__}: could not reach Discord"
                delay = self._backoff_delay(attempt)
            except requests.RequestException as exc:
                # Invalid URL and the like: deterministic, so not retried. str(exc) would
                # contain the URL, hence only the class name.
                error = f"{type(exc).__name__}: request could not be sent"
                delay = None
            else:
                with response:
                    status = response.status_code
                    if 200 <= status < 300:
                        logger.debug("Discord accepted %s (HTTP %d)", label, status)
                        return attempt, None
                    detail = _describe_error(response)
                    error = f"HTTP {status}{detail}"
                    if status == 429:
                        retry_after = _retry_after(response)
                        if retry_after is None:
                            delay = self._backoff_delay(attempt)
                        elif retry_after > self._max_retry_after:
                            error += (
                                f" (asked to retry after {retry_after:g}s, more than the "
                                f"{self._max_retry_after:g}s this client waits)"
                            )
                            delay = None
                        else:
                            delay = retry_after
                    elif status >= 500:
                        delay = self._backoff_delay(attempt)
                    else:
                        delay = None  # other 4xx: the request itself is wrong

            logger.warning(
                "Discord webhook attempt %d/%d for %s failed: %s",
                attempt,
                self._max_attempts,
                label,
                redact(error),
            )
            if delay is None:
                return attempt, f"{label} rejected: {error}"
            if attempt < self._max_attempts:
                time.sleep(delay)
        return self._max_attempts, f"{label} failed after {self._max_attempts} attempts: {error}"

    def _backoff_delay(self, attempt: int) -> float:
        # Exponential, capped so that a retry never waits longer than a rate limit would.
        return float(min(self._backoff * 2 ** (attempt - 1), self._max_retry_after))


def _json_body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:  # not JSON (e.g. an HTML/plain-text page from a proxy or CDN)
        return None


def _retry_after(response: requests.Response) -> float | None:
    """Seconds Discord asks us to wait: JSON ``retry_after``, else the Retry-After header."""
    body = _json_body(response)
    candidates: list[object] = []
    if isinstance(body, dict):
        candidates.append(body.get("retry_after"))
    candidates.append(response.headers.get("Retry-After"))
    for candidate in candidates:
        if isinstance(candidate, bool) or not isinstance(candidate, int | float | str):
            continue
        try:
            seconds = float(candidate)
        except ValueError:
            continue
        if seconds >= 0 and seconds == seconds:  # reject NaN
            return seconds
    return None


def _describe_error(response: requests.Response) -> str:
    """Discord's error code and message (plus the first form errors), never the raw body."""
    body = _json_body(response)
    if not isinstance(body, dict):
        return ""
    parts: list[str] = []
    code, message = body.get("code"), body.get("message")
    if code is not None:
        parts.append(f"code {code}")
    if message is not None:
        parts.append(str(message))
    details = list(_flatten_form_errors(body.get("errors")))
    if details:
        shown = "; ".join(details[:_MAX_ERROR_DETAILS])
        more = len(details) - _MAX_ERROR_DETAILS
        parts.append(f"({shown}{f'; +{more} more' if more > 0 else ''})")
    if not parts:
        return ""
    text = ": " + " ".join(parts)
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


def _flatten_form_errors(errors: object, path: str = "") -> list[str]:
    """Turn Discord's nested ``errors`` object into "embeds.0.title: message" strings."""
    if not isinstance(errors, dict):
        return []
    out: list[str] = []
    for key, value in errors.items():
        if key == "_errors" and isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    out.append(f"{path or '<payload>'}: {item.get('message', item.get('code'))}")
        else:
            out.extend(_flatten_form_errors(value, f"{path}.{key}" if path else str(key)))
    return out


class DiscordNotifier:
    """The notifier port on Discord: renders a batch within Discord's limits, posts it, and
    says which items reached the channel (the keys of the messages Discord accepted)."""

    def __init__(self, client: DiscordWebhookClient, *, username: str = DEFAULT_USERNAME):
        self._client = client
        self._username = username

    @property
    def configured(self) -> bool:
        return self._client.configured

    def send(self, batch: AlertBatch) -> Delivery:
        rendered = render_batches(
            batch.sections, header=batch.header, footer=batch.footer, username=self._username
        )
        if not rendered:
            return Delivery(DeliveryOutcome.DELIVERED)
        result = self._client.send([m.payload for m in rendered])
        delivered = frozenset(k for m in rendered[: result.messages_sent] for k in m.keys)
        return Delivery(result.outcome, result.messages_sent, delivered, result.error)
