"""Structured logging that Cloud Logging understands, with the run id on every line.

In JSON mode each line is one JSON object with ``severity``, ``message``, ``run_id`` and any
``extra`` fields (``event``, ``symbol``, ...); Cloud Logging turns it into ``jsonPayload`` and
the log-based metrics in ``terraform/`` count on those fields. Every record passes the one
secret redactor (:mod:`crypto_signals.redaction`), as a second line behind code that never logs
secrets in the first place.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from crypto_signals.redaction import FILTER, install_on_transport_loggers

_run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


@contextmanager
def run_context(run_id: str) -> Iterator[None]:
    token = _run_id.set(run_id)
    try:
        yield
    finally:
        _run_id.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = getattr(record, "run_id", None) or _run_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": record.getMessage(),
            "run_id": getattr(record, "run_id", None),
            "logger": record.name,
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in payload:
                payload[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        run = getattr(record, "run_id", None)
        prefix = f"{record.levelname:<7} [{run[:8]}] " if run else f"{record.levelname:<7} "
        text = prefix + record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            text += "\n" + self.formatException(record.exc_info)
        return text


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def configure_from_env(
    environ: Mapping[str, str] | None = None, *, default_json: bool = False
) -> None:
    """The one logging configuration of the function, the CLI and the main job.

    ``LOG_FORMAT`` (``json`` or ``text``; JSON by default on Cloud Run / Cloud Functions, where
    ``K_SERVICE`` is set, or when ``default_json``) and ``LOG_LEVEL``. It never fails: an
    unknown level logs at INFO here, and is refused as an invalid configuration by
    ``load_settings`` (exit 2 in the CLI and the job, HTTP 500 from the function), the same way
    in all three.
    """
    env = os.environ if environ is None else environ
    fmt = env.get("LOG_FORMAT", "").strip().lower()
    json_format = fmt == "json" or (not fmt and (default_json or "K_SERVICE" in env))
    level = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
    configure_logging(json_format=json_format, level=level if level in LEVELS else "INFO")


def configure_logging(*, json_format: bool, level: str = "INFO") -> None:
    """Send logs to stderr (stdout belongs to --json output), once per process."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_crypto_signals", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._crypto_signals = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if json_format else TextFormatter())
    handler.addFilter(_ContextFilter())
    handler.addFilter(FILTER)
    root.addHandler(handler)
    install_on_transport_loggers()
    root.setLevel(level.upper())
    # gRPC and urllib3 chatter is noise at INFO.
    for noisy in ("urllib3", "google", "grpc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
