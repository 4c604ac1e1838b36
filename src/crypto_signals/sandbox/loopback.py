"""Loopback HTTP stand-ins served on a background thread: the plumbing the Alpaca simulator and
the Discord sink share.

A :class:`LoopbackService` owns one stdlib ``ThreadingHTTPServer`` bound to loopback and the
daemon thread that serves it. Handler threads are daemons too, so a hanging request never keeps
the process alive or blocks :meth:`LoopbackService.stop`: ``stop`` first sets
:attr:`LoopbackService._stopping` (handlers that wait on it wake up), then shuts the server down
and closes the socket. A stopped service can be started again.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self

__all__ = ["LoopbackService"]

_POLL_INTERVAL_SECONDS = 0.05
_JOIN_TIMEOUT_SECONDS = 5.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    quiet_disconnects = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, reset) mid-answer is an expected test scenario.
        if self.quiet_disconnects and isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class LoopbackService:
    """Start/stop, context manager, port and base URL of a stand-in served on loopback.

    Subclasses provide :meth:`_handler_class` and may override :meth:`_after_stop`.
    """

    _service_name: ClassVar[str] = "server"
    # Whether tracebacks of clients that disconnected mid-answer are silenced.
    _quiet_disconnects: ClassVar[bool] = False

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle_lock = threading.Lock()

    # -- to override ------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def _after_stop(self) -> None:
        """Called once the server is shut down, before :meth:`stop` returns."""

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in a daemon thread; returns ``self`` for chaining."""
        with self._lifecycle_lock:
            if self._server is not None:
                raise RuntimeError(f"{self._service_name} already started")
            self._stopping.clear()
            server = _Server((self._host, self._port), self._handler_class())
            server.quiet_disconnects = self._quiet_disconnects
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": _POLL_INTERVAL_SECONDS},
                name=f"{self._service_name}:{server.server_address[1]}",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; wakes any hanging request first. Idempotent."""
        with self._lifecycle_lock:
            server, thread = self._server, self._thread
            if server is None:
                return
            # Set first so hanging/delayed handlers wake up instead of pinning shutdown.
            self._stopping.set()
            server.shutdown()
            server.server_close()
            if thread is not None:
                thread.join(timeout=_JOIN_TIMEOUT_SECONDS)
            self._after_stop()
            self._server, self._thread = None, None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        server = self._server
        if server is None:
            raise RuntimeError(f"{self._service_name} not started")
        return int(server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running service."""
        server = self._server
        if server is None:
            raise RuntimeError(f"{self._service_name} is not running; call start() first")
        return f"http://{server.server_address[0]!s}:{server.server_address[1]}"
