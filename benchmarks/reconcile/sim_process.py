"""The Alpaca simulator in a process of its own, as the real broker is on another machine.

In the benchmark's own process the simulator's request handlers (building the JSON of every
listed order) share the interpreter's lock with the reconciler: at N = 1,000 they took about
a fifth of the process's CPU during a run, time the reconciler waited for although no
production broker spends it in the reconciler's process. The floor never calls the broker,
so that cost only ever counted against ours. Here the simulator runs in a child process;
the benchmark drives it through a pipe with the few calls it needs (seed, request log) and the
reconcilers reach it over HTTP as before.

    python -m benchmarks.reconcile.sim_process ADDRESS   # the child; started by SimulatorProcess
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from crypto_signals.sandbox.alpaca_sim import AlpacaSimulator
from crypto_signals.sandbox.alpaca_sim.simulator import RecordedRequest

ROOT = Path(__file__).resolve().parents[2]
_AUTHKEY_ENV = "BENCH_SIM_AUTHKEY"


class SimulatorProcess:
    """What the benchmark uses of :class:`AlpacaSimulator`, served by a child process."""

    def __init__(
        self, conn: Connection, proc: subprocess.Popen[bytes], base_url: str, account: str
    ):
        self._conn = conn
        self._proc = proc
        self.base_url = base_url
        self.account_id = account

    @classmethod
    def start(cls, *, api_key: str, secret_key: str) -> SimulatorProcess:
        authkey = secrets.token_bytes(16)
        address = os.path.join(tempfile.mkdtemp(prefix="bench-sim-"), "sock")
        with Listener(address, family="AF_UNIX", authkey=authkey) as listener:
            env = {**os.environ, _AUTHKEY_ENV: authkey.hex()}
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.reconcile.sim_process", address],
                env=env,
                cwd=ROOT,
            )
            conn = listener.accept()
        conn.send(("start", (api_key, secret_key), {}))
        base_url, account = _reply(conn)
        return cls(conn, proc, base_url, account)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self._conn.send((name, args, kwargs))
        return _reply(self._conn)

    def reset(self) -> None:
        self._call("reset")

    def seed(
        self, positions: Iterable[Mapping[str, Any]], orders: Iterable[Mapping[str, Any]]
    ) -> None:
        """Reset, then add the positions and orders: one message, not one per order."""
        self._call("seed", [dict(p) for p in positions], [dict(o) for o in orders])

    @property
    def requests(self) -> list[RecordedRequest]:
        result: list[RecordedRequest] = self._call("requests")
        return result

    def count(self, endpoint: str | None = None) -> int:
        result: int = self._call("count", endpoint)
        return result

    def clear_requests(self) -> None:
        self._call("clear_requests")

    def stop(self) -> None:
        with contextlib.suppress(EOFError, OSError):
            self._call("stop")
        self._conn.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)


def _reply(conn: Connection) -> Any:
    ok, value = conn.recv()
    if not ok:
        raise RuntimeError(f"simulator process: {value}")
    return value


def _serve(conn: Connection) -> None:
    sim: AlpacaSimulator | None = None
    while True:
        name, args, kwargs = conn.recv()
        try:
            if name == "start":
                api_key, secret_key = args
                sim = AlpacaSimulator(api_key=api_key, secret_key=secret_key).start()
                conn.send((True, (sim.base_url, sim.account_id)))
                continue
            if sim is None:
                raise RuntimeError("not started")
            if name == "stop":
                sim.stop()
                conn.send((True, None))
                return
            if name == "seed":
                positions, orders = args
                sim.reset()
                for position in positions:
                    sim.add_position(**position)
                for order in orders:
                    sim.add_order(**order)
                result: Any = None
            elif name == "requests":
                result = sim.requests
            elif name in ("reset", "count", "clear_requests"):
                result = getattr(sim, name)(*args, **kwargs)
            else:
                raise ValueError(f"unknown call {name!r}")
            conn.send((True, result))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
            conn.send((False, f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    with Client(
        sys.argv[1], family="AF_UNIX", authkey=bytes.fromhex(os.environ[_AUTHKEY_ENV])
    ) as c:
        _serve(c)
