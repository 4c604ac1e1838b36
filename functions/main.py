"""Cloud Function (gen2) entry point: ``reconcile_http``, called by Cloud Scheduler.

Contract (section 4): POST with an optional JSON body ``{"dry_run": bool}``.

* 200 + the report JSON when the run completed (status ``ok``, ``issues`` or ``skipped``);
* 503 + the report JSON when the run failed (state unreadable), so Cloud Scheduler retries;
* 400 + ``{"error": ...}`` for a body that is not a JSON object with only known, typed keys;
* 405 for any method but POST; 500 + ``{"error": ...}`` for an invalid configuration, whose
  message names variables, never their values.

The reconciler (and with it the Firestore, Alpaca and Discord clients) is built once per
instance, at the first request, and reused by warm invocations. The heavy imports live behind
that first build, so loading this module costs only pydantic-settings and Flask.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any

import flask
import functions_framework

from crypto_signals.config import ConfigError, load_settings
from crypto_signals.domain.schemas import RunStatus
from crypto_signals.logging_setup import configure_from_env

if TYPE_CHECKING:
    from crypto_signals.engine.reconciler import StateReconciler

# Cloud Logging parses one JSON object per line into jsonPayload; the log-based metrics in
# terraform/ count on its fields. A bad LOG_LEVEL does not stop the cold start: like any invalid
# configuration, load_settings refuses it and each request gets a 500 naming it.
configure_from_env(default_json=True)
log = logging.getLogger("crypto_signals.function")

_ALLOWED_KEYS = frozenset({"dry_run"})
_JSON_TYPES: dict[type, str] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}

_lock = threading.Lock()
_reconciler: StateReconciler | None = None


class BadRequest(ValueError):
    """The body is not what the contract accepts; the message says what was wrong."""


def parse_dry_run(raw: bytes) -> bool:
    """``dry_run`` from a request body: empty, ``{}`` or ``{"dry_run": true|false}``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is not valid UTF-8") from None
    if not text.strip():
        return False
    try:
        body: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(body, dict):
        raise BadRequest(f"body must be a JSON object, got {_JSON_TYPES.get(type(body), '?')}")
    unknown = sorted(set(body) - _ALLOWED_KEYS)
    if unknown:
        names = ", ".join(repr(key[:64]) for key in unknown[:5])
        raise BadRequest(f"unknown key(s) in body: {names}; the only key accepted is 'dry_run'")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        got = _JSON_TYPES.get(type(dry_run), "?")
        raise BadRequest(f"dry_run must be a JSON boolean (true or false), got {got}")
    return dry_run


def get_reconciler() -> StateReconciler:
    """The instance's reconciler, built at first use; a failed build is retried next time.

    Not at import: functions-framework's gunicorn loads this module in the master process and
    forks the worker, and gRPC channels (Firestore) must not be created before a fork.
    """
    global _reconciler
    if _reconciler is None:
        with _lock:  # concurrent first requests must not build two sets of clients
            if _reconciler is None:
                # Imported here: google.cloud.firestore and alpaca are the slow imports.
                from crypto_signals.bootstrap import build_reconciler

                _reconciler = build_reconciler(load_settings())
    return _reconciler


def reset_for_tests() -> None:
    """Forget the cached reconciler, so the next request builds one from the current env."""
    global _reconciler
    with _lock:
        _reconciler = None


def _json(payload: object, status: int, **headers: str) -> flask.Response:
    return flask.Response(
        json.dumps(payload), status=status, mimetype="application/json", headers=headers
    )


@functions_framework.http
def reconcile_http(request: flask.Request) -> flask.Response:
    if request.method != "POST":
        return _json({"error": f"method {request.method} not allowed; use POST"}, 405, Allow="POST")
    try:
        dry_run = parse_dry_run(request.get_data(cache=False))
        reconciler = get_reconciler()
    except BadRequest as exc:
        return _json({"error": str(exc)}, 400)
    except ConfigError as exc:
        log.error("reconciler not built: %s", exc, extra={"event": "config_error"})
        return _json({"error": str(exc)}, 500)
    except Exception as exc:  # noqa: BLE001 - e.g. no Google credentials: answer JSON, not HTML
        from crypto_signals.bootstrap import describe_build_error

        reason = describe_build_error(exc)
        log.error("reconciler not built: %s", reason, extra={"event": "build_error"})
        return _json({"error": reason}, 500)
    report = reconciler.reconcile(dry_run=dry_run)
    # Only a failed run asks for a retry: "issues" is a completed run a person must look at.
    return _json(report.model_dump(mode="json"), 503 if report.status is RunStatus.FAILED else 200)
