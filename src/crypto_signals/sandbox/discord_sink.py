"""A local stand-in for a Discord webhook, served over real HTTP on loopback.

Tests and the sandbox point the webhook client at :attr:`DiscordSink.webhook_url` instead of
discord.com. The sink answers the way Discord's "Execute Webhook" endpoint does: 204 (or 200
plus the created message with ``?wait=true``), 400 with Discord's JSON error bodies for
invalid JSON or payloads over Discord's documented limits (the rules are shared with the
renderer via :func:`crypto_signals.sandbox.discord_limits.find_violations`), 401/404 for
a wrong token or an unknown route. Faults can be queued to script outages: arbitrary status
codes, 429 rate limits with Discord's body and headers, and hangs.

The server is a stdlib ``ThreadingHTTPServer`` running in a daemon thread
(:class:`crypto_signals.sandbox.loopback.LoopbackService`), so a hanging request never blocks
other requests or :meth:`DiscordSink.stop`.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Final, Literal
from urllib.parse import parse_qs, urlsplit

from crypto_signals.notifications.discord_render import EMPTY_MESSAGE_CODE
from crypto_signals.sandbox.discord_limits import LimitViolation, find_violations
from crypto_signals.sandbox.loopback import LoopbackService

WEBHOOK_ID: Final = "1234567890"
# A fake token, but treated as a secret by the client so tests can prove it never leaks.
WEBHOOK_TOKEN: Final = "sink-secret-token"  # noqa: S105
CHANNEL_ID: Final = "1122334455"
# Recorded in ``attempts`` for a request the sink never answered (a ``hang`` fault).
NO_ANSWER_STATUS: Final = 0
_DEFAULT_HANG_SECONDS: Final = 60.0
# Idle keep-alive connections are dropped after this long so handler threads do not pile up.
_IDLE_CONNECTION_TIMEOUT_SECONDS: Final = 5.0
# Discord's error codes (https://discord.com/developers/docs/topics/opcodes-and-status-codes).
_CODE_INVALID_JSON: Final = 50109
_CODE_INVALID_FORM_BODY: Final = 50035
_CODE_EMPTY_MESSAGE: Final = 50006
_CODE_INVALID_WEBHOOK_TOKEN: Final = 50027
_CODE_UNKNOWN_WEBHOOK: Final = 10015


@dataclass(frozen=True)
class SinkFault:
    """A scripted misbehaviour, answered instead of the normal response.

    ``status``: answer ``status`` with a Discord-style JSON error body (for 429, a
    Cloudflare-style plain-text body with only a ``Retry-After`` header, i.e. no JSON
    ``retry_after``). ``rate_limit``: Discord's 429 JSON body and ``X-RateLimit-*`` headers
    asking to wait ``retry_after`` seconds. ``hang``: read the request, then say nothing
    for ``seconds`` (60 when 0) or until the sink stops, and close the connection.
    ``pass``: answer normally (queued before another fault: "accept the first, refuse the
    second"). ``times`` is how many requests the fault applies to; ``None`` means until
    cleared.
    """

    kind: Literal["status", "rate_limit", "hang", "pass"]
    status: int = 500
    retry_after: float = 0.2
    seconds: float = 0.0
    times: int | None = 1


class DiscordSink(LoopbackService):
    """Local Discord webhook endpoint that records what it receives."""

    _service_name = "discord-sink"

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, enforce_limits: bool = True
    ) -> None:
        super().__init__(host=host, port=port)
        self.enforce_limits = enforce_limits
        self._lock = threading.Lock()
        self._messages: list[dict[str, Any]] = []
        self._attempts: list[tuple[int, dict[str, Any] | None]] = []
        # Each entry is [fault, remaining uses or None]; the head is consumed first.
        self._faults: deque[list[Any]] = deque()
        self._message_ids = itertools.count(1)

    # --- lifecycle (start, stop, context manager: LoopbackService) -----------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    # --- inspection and scripting --------------------------------------------------------

    @property
    def webhook_url(self) -> str:
        return f"http://{self._host}:{self.port}/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Accepted payloads, in arrival order (a copy)."""
        with self._lock:
            return list(self._messages)

    @property
    def attempts(self) -> list[tuple[int, dict[str, Any] | None]]:
        """Every POST to the webhook: (status answered, parsed JSON object or None)."""
        with self._lock:
            return list(self._attempts)

    def inject_fault(self, fault: SinkFault) -> None:
        """Queue a fault; faults are served first-in, first-out."""
        if fault.times is not None and fault.times < 1:
            raise ValueError("times must be at least 1 (or None for 'until cleared')")
        with self._lock:
            self._faults.append([fault, fault.times])

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Forget recorded messages, attempts and queued faults."""
        with self._lock:
            self._messages.clear()
            self._attempts.clear()
            self._faults.clear()

    # --- request handling (called from handler threads) ----------------------------------

    def _next_fault(self) -> SinkFault | None:
        with self._lock:
            if not self._faults:
                return None
            entry = self._faults[0]
            fault: SinkFault = entry[0]
            if entry[1] is not None:
                entry[1] -= 1
                if entry[1] == 0:
                    self._faults.popleft()
            return fault

    def _record(self, status: int, body: dict[str, Any] | None, *, accepted: bool) -> None:
        with self._lock:
            self._attempts.append((status, body))
            if accepted and body is not None:
                self._messages.append(body)

    def _hang(self, seconds: float) -> None:
        self._stopping.wait(seconds if seconds > 0 else _DEFAULT_HANG_SECONDS)

    def _new_message(self, body: dict[str, Any]) -> dict[str, Any]:
        message_id = str(1_000_000_000_000_000_000 + next(self._message_ids))
        return {
            "id": message_id,
            "type": 0,
            "channel_id": CHANNEL_ID,
            "webhook_id": WEBHOOK_ID,
            "author": {
                "id": WEBHOOK_ID,
                "username": body.get("username", "sink webhook"),
                "bot": True,
            },
            "content": body.get("content") or "",
            "embeds": body.get("embeds") or [],
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        }


@dataclass(frozen=True)
class _Reply:
    status: int
    body: dict[str, Any] | str | None = None
    headers: tuple[tuple[str, str], ...] = ()


def _error(status: int, code: int, message: str, **extra: Any) -> _Reply:
    return _Reply(status, {"code": code, "message": message, **extra})


def _form_errors(violations: list[LimitViolation]) -> dict[str, Any]:
    """Nest violations like Discord: {"embeds": {"0": {"title": {"_errors": [...]}}}}."""
    tree: dict[str, Any] = {}
    for violation in violations:
        node = tree
        for part in violation.path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append(
            {"code": violation.code, "message": violation.message}
        )
    return tree


def _fault_reply(fault: SinkFault) -> _Reply:
    if fault.kind == "rate_limit":
        retry_after = max(fault.retry_after, 0.0)
        headers = (
            # Retry-After is whole seconds (HTTP); the precise value is in the body and in
            # X-RateLimit-Reset-After, as with Discord.
            ("Retry-After", str(math.ceil(retry_after))),
            ("X-RateLimit-Limit", "5"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", f"{time.time() + retry_after:.3f}"),
            ("X-RateLimit-Reset-After", f"{retry_after:.3f}"),
            ("X-RateLimit-Bucket", "sink-webhook-bucket"),
            ("X-RateLimit-Scope", "shared"),
        )
        body = {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": False,
        }
        return _Reply(HTTPStatus.TOO_MANY_REQUESTS, body, headers)
    try:
        phrase = HTTPStatus(fault.status).phrase
    except ValueError:
        phrase = "Unknown"
    if fault.status == HTTPStatus.TOO_MANY_REQUESTS:
        # What an edge/Cloudflare 429 looks like: no JSON, only a Retry-After header.
        seconds = str(math.ceil(max(fault.retry_after, 0.0)))
        return _Reply(fault.status, "error code: 1015", (("Retry-After", seconds),))
    return _error(fault.status, 0, f"{fault.status}: {phrase}")


def _make_handler(sink: DiscordSink) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 so clients can keep connections alive, like with Discord.
        protocol_version = "HTTP/1.1"
        timeout = _IDLE_CONNECTION_TIMEOUT_SECONDS
        # Headers and body leave as separate small writes on a kept-alive connection: with
        # Nagle on, the second waits for the client's delayed ACK (about 40 ms per post).
        disable_nagle_algorithm = True
        server_version = "DiscordSink/1.0"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            # Silence per-request logging to stderr: it would print the webhook token.
            return

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            segments = parts.path.strip("/").split("/")
            raw = self._read_body()
            if len(segments) != 4 or segments[:2] != ["api", "webhooks"]:
                self._send(_error(HTTPStatus.NOT_FOUND, 0, "404: Not Found"))
                return
            if segments[2] != WEBHOOK_ID:
                self._send(_error(HTTPStatus.NOT_FOUND, _CODE_UNKNOWN_WEBHOOK, "Unknown Webhook"))
                return
            if segments[3] != WEBHOOK_TOKEN:
                self._send(
                    _error(
                        HTTPStatus.UNAUTHORIZED,
                        _CODE_INVALID_WEBHOOK_TOKEN,
                        "Invalid Webhook Token",
                    )
                )
                return

            parsed: Any
            try:
                parsed = json.loads(raw) if raw else None
                valid_json = raw != b""
            except ValueError:  # json.JSONDecodeError and UnicodeDecodeError both subclass it
                parsed, valid_json = None, False
            body = parsed if isinstance(parsed, dict) else None

            fault = sink._next_fault()
            if fault is not None and fault.kind != "pass":
                if fault.kind == "hang":
                    sink._record(NO_ANSWER_STATUS, body, accepted=False)
                    sink._hang(fault.seconds)
                    # Never answer: drop the connection, like a dead upstream.
                    self.close_connection = True
                    return
                reply = _fault_reply(fault)
                sink._record(reply.status, body, accepted=False)
                self._send(reply)
                return

            rejection: _Reply | None
            if not valid_json:
                rejection = _error(
                    HTTPStatus.BAD_REQUEST,
                    _CODE_INVALID_JSON,
                    "The request body contains invalid JSON.",
                )
            else:
                rejection = self._validate(parsed)
            if rejection is not None or body is None:
                reply = rejection or _error(HTTPStatus.BAD_REQUEST, 0, "400: Bad Request")
                sink._record(reply.status, body, accepted=False)
            else:
                wait = parse_qs(parts.query).get("wait", ["false"])[-1].lower() in ("true", "1")
                reply = (
                    _Reply(HTTPStatus.OK, sink._new_message(body))
                    if wait
                    else _Reply(HTTPStatus.NO_CONTENT)
                )
                sink._record(reply.status, body, accepted=True)
            self._send(reply)

        def do_GET(self) -> None:
            self._read_body()
            self._send(_error(HTTPStatus.METHOD_NOT_ALLOWED, 0, "405: Method Not Allowed"))

        do_PUT = do_DELETE = do_PATCH = do_GET

        def _validate(self, parsed: Any) -> _Reply | None:
            # Without limit enforcement only the shape (a JSON object) is still checked.
            if isinstance(parsed, dict) and not sink.enforce_limits:
                return None
            violations = find_violations(parsed)
            if not violations:
                return None
            if any(v.code == EMPTY_MESSAGE_CODE for v in violations):
                return _error(
                    HTTPStatus.BAD_REQUEST, _CODE_EMPTY_MESSAGE, "Cannot send an empty message"
                )
            return _error(
                HTTPStatus.BAD_REQUEST,
                _CODE_INVALID_FORM_BODY,
                "Invalid Form Body",
                errors=_form_errors(violations),
            )

        def _read_body(self) -> bytes:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = 0
            return self.rfile.read(length) if length > 0 else b""

        def _send(self, reply: _Reply) -> None:
            if isinstance(reply.body, dict):
                data = json.dumps(reply.body).encode()
                content_type = "application/json"
            elif isinstance(reply.body, str):
                data = reply.body.encode()
                content_type = "text/plain; charset=utf-8"
            else:
                data, content_type = b"", ""
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            if reply.status != HTTPStatus.NO_CONTENT:
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)

    return _Handler
