"""A network with latency: a TCP proxy that delays every chunk by half the RTT each way.

Loopback has no latency, which hides what round trips cost. :class:`Network` says where the
reconcilers reach the stand-ins: directly, or through one :class:`DelayProxy` per service.
"""

from __future__ import annotations

import argparse
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from google.cloud import firestore

if TYPE_CHECKING:
    from benchmarks.reconcile.stands import Stands

SERVICES = ("firestore", "alpaca", "discord")


class DelayProxy:
    """Forwards TCP to ``upstream``, delaying each chunk by ``rtt / 2`` in each direction.

    Chunks are pipelined (a chunk is not held up by the one before it beyond its own delay),
    so a request/response exchange costs one RTT and a stream costs one RTT plus transfer:
    the shape of a real network path, which loopback does not have.
    """

    def __init__(self, upstream: tuple[str, int], rtt_seconds: float) -> None:
        self._upstream = upstream
        self._delay = rtt_seconds / 2
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stopping = threading.Event()
        threading.Thread(target=self._accept, name="delay-proxy", daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=10)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._pipe(client, upstream)
            self._pipe(upstream, client)

    def _pipe(self, source: socket.socket, dest: socket.socket) -> None:
        chunks: queue.Queue[tuple[float, bytes]] = queue.Queue()

        def read() -> None:
            while True:
                try:
                    data = source.recv(65536)
                except OSError:
                    data = b""
                chunks.put((time.monotonic() + self._delay, data))
                if not data:
                    return

        def write() -> None:
            while True:
                due, data = chunks.get()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    if not data:
                        dest.shutdown(socket.SHUT_WR)
                        return
                    dest.sendall(data)
                except OSError:
                    return

        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=write, daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


@dataclass(frozen=True)
class Rtt:
    """Modelled round-trip time to each service, in milliseconds."""

    firestore: float
    alpaca: float
    discord: float

    @classmethod
    def parse(cls, text: str) -> Rtt:
        """``20`` (every service) or ``firestore=10,alpaca=50,discord=80`` (unnamed: 0)."""
        try:
            if "=" not in text:
                each = float(text)
                return cls(each, each, each)
            parts = dict(item.split("=", 1) for item in text.split(",") if item.strip())
            unknown = set(parts) - set(SERVICES)
            if unknown:
                raise ValueError(f"unknown service(s): {', '.join(sorted(unknown))}")
            ms = dict.fromkeys(SERVICES, 0.0)
            ms.update((k, float(v)) for k, v in parts.items())
            return cls(**ms)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(
                f"--rtt-ms {text!r}: {exc}; use e.g. 20 or firestore=10,alpaca=50,discord=80"
            ) from None

    def __bool__(self) -> bool:
        return any((self.firestore, self.alpaca, self.discord))

    @property
    def label(self) -> str:
        if self.firestore == self.alpaca == self.discord:
            return f"{self.firestore:g} ms each"
        return f"Firestore {self.firestore:g}, Alpaca {self.alpaca:g}, Discord {self.discord:g} ms"

    @property
    def option(self) -> str:
        """As ``--rtt-ms`` takes it."""
        return f"firestore={self.firestore:g},alpaca={self.alpaca:g},discord={self.discord:g}"


NO_RTT = Rtt(0.0, 0.0, 0.0)
# The round trips measured from production (issue 12): the latency run's default, and the
# latencies the headline's second target is stated at.
PRODUCTION_RTT = Rtt(firestore=10.0, alpaca=40.0, discord=80.0)


@dataclass
class Network:
    """Where the reconcilers reach the stand-ins: directly, or through delay proxies."""

    rtt: Rtt
    firestore_host: str
    broker_url: str
    webhook_url: str
    proxies: list[DelayProxy] = field(default_factory=list)

    @classmethod
    def direct(cls, stands: Stands) -> Network:
        return cls(NO_RTT, stands.emulator.address, stands.sim.base_url, stands.sink.webhook_url)

    @classmethod
    def delayed(cls, stands: Stands, rtt: Rtt) -> Network:
        fs = DelayProxy(host_port(stands.emulator.address), rtt.firestore / 1000)
        sim = DelayProxy(host_port(urlsplit(stands.sim.base_url).netloc), rtt.alpaca / 1000)
        sink_parts = urlsplit(stands.sink.webhook_url)
        sink = DelayProxy(host_port(sink_parts.netloc), rtt.discord / 1000)
        return cls(
            rtt,
            fs.address,
            f"http://{sim.address}",
            sink_parts._replace(netloc=sink.address).geturl(),
            [fs, sim, sink],
        )

    def client(self, project: str) -> firestore.Client:
        previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = self.firestore_host
        try:
            return firestore.Client(project=project)
        finally:
            if previous is not None:
                os.environ["FIRESTORE_EMULATOR_HOST"] = previous

    def stop(self) -> None:
        for proxy in self.proxies:
            proxy.stop()
