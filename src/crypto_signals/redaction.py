"""The one secret redactor: API keys, the webhook URL and its token never reach a log line.

Secrets are registered once (bootstrap registers the settings' secrets; the Discord client its
webhook token); :func:`redact` replaces any registered value, and any Discord webhook path
(``/webhooks/<id>/<token>``, registered or not), with ``[redacted]``. :class:`RedactingFilter`
applies it to a log record's message, its ``extra`` fields and its exception text. It sits on
the project's log handler and on urllib3's loggers, whose DEBUG lines carry request paths.

This is the second line: code never formats a secret in the first place.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any, Final

REDACTED: Final = "[redacted]"
# Shorter values would make redaction eat ordinary words; real keys and tokens are far longer.
MIN_SECRET_CHARS: Final = 8
# ".../webhooks/<id>/<token>" as it appears in URLs, paths and reprs of requests/urllib3.
_WEBHOOK_PATH = re.compile(r"(/webhooks/)[^/\s?#'\"<>]+/[^/\s?#'\"<>),]+")
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "run_id"}

_lock = threading.Lock()
_secrets: set[str] = set()
_ordered: tuple[str, ...] = ()


def register_secrets(values: Iterable[str | None]) -> None:
    """Values that must never be written anywhere (a webhook URL registers its token too)."""
    global _ordered
    with _lock:
        for value in values:
            if not value or len(value) < MIN_SECRET_CHARS:
                continue
            _secrets.add(value)
            if "/webhooks/" in value:
                token = value.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
                if len(token) >= MIN_SECRET_CHARS:
                    _secrets.add(token)
        _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def redact(text: str) -> str:
    text = _WEBHOOK_PATH.sub(rf"\1{REDACTED}", text)
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return type(value)(_clean(v) for v in value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


class RedactingFilter(logging.Filter):
    """Redacts a record in place: message (with its arguments), ``extra`` values, traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record must not break logging
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD:
                record.__dict__[key] = _clean(value)
        if record.exc_info and record.exc_info[0] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            cleaned_text = redact(text)
            if cleaned_text != text:
                # The traceback carried a secret: keep the redacted text, drop the objects.
                record.exc_text = cleaned_text
                record.exc_info = None
                record.msg = f"{record.getMessage()}\n{cleaned_text}"
                record.args = None
                record.exc_text = None
        return True


FILTER: Final = RedactingFilter()
_URLLIB3_LOGGERS: Final = (
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
)


def install_on_transport_loggers() -> None:
    """urllib3 formats request URLs into its own records: redact those too (idempotent)."""
    for name in _URLLIB3_LOGGERS:
        target = logging.getLogger(name)
        if FILTER not in target.filters:
            target.addFilter(FILTER)
