"""Cold start of the HTTP function: process start to first successful response.

Two processes are timed the same way, alternately, ``repeats`` times each (after one discarded
warm-up of each, so that both read their files from the page cache):

* ``ours``: ``functions-framework --target reconcile_http --source functions/main.py`` with the
  environment pointed at the stand-ins; the first response is a 200 to ``POST {"dry_run":
  true}`` on a tiny world (so it includes building the clients and one dry run);
* ``bare``: a functions-framework app written into a temporary directory whose module only
  imports ``google.cloud.firestore``, ``alpaca.trading.client`` and ``functions_framework`` and
  answers 200 -- the reference of issue 5's target;
* ``bare, pandas deferred``: the same, importing alpaca-py the way the reconciler does
  (``crypto_signals.broker.alpaca_sdk``, which defers pandas). Ours against this one is the
  reconciler's own overhead (configuration, clients, the first dry run), with the deferral's
  saving taken out.

The clock starts just before ``Popen`` and stops when the first 200 arrives; until the port is
bound, requests are retried every 10 ms.

    .venv/bin/python benchmarks/cold_start.py        # starts its own stand-ins
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
FUNCTION_SOURCE = ROOT / "functions" / "main.py"
BIN = Path(sys.executable).parent
POLL_SECONDS = 0.01
START_TIMEOUT_SECONDS = 90.0

BARE_APP = '''\
"""A bare function: the same heavy imports as the reconciler, no work."""

import alpaca.trading.client  # noqa: F401
import functions_framework
import google.cloud.firestore  # noqa: F401


@functions_framework.http
def bare(request):
    return "ok", 200
'''

BARE_DEFERRED_APP = BARE_APP.replace(
    "import alpaca.trading.client  # noqa: F401",
    "import crypto_signals.broker.alpaca_sdk  # noqa: F401  (alpaca-py, pandas deferred)",
)


@dataclass(frozen=True)
class ColdStartResult:
    ours: tuple[float, ...]
    bare: tuple[float, ...]
    bare_deferred: tuple[float, ...]

    @property
    def ours_median(self) -> float:
        return statistics.median(self.ours)

    @property
    def bare_median(self) -> float:
        return statistics.median(self.bare)

    @property
    def bare_deferred_median(self) -> float:
        return statistics.median(self.bare_deferred)

    @property
    def ratio(self) -> float:
        """Issue 5's measure: ours against the bare process."""
        return self.ours_median / self.bare_median

    @property
    def overhead_ratio(self) -> float:
        """Ours against a bare process that defers pandas too: the reconciler's own cost."""
        return self.ours_median / self.bare_deferred_median


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def time_to_first_response(
    target: str, source: Path, env: Mapping[str, str], *, log_path: Path | None = None
) -> float:
    """Seconds from process start to the first 200 to ``POST {"dry_run": true}``."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [
        str(BIN / "functions-framework"),
        "--target",
        target,
        "--source",
        str(source),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
    ]
    log = open(log_path or os.devnull, "ab")  # noqa: SIM115 - closed in finally
    started = time.perf_counter()
    proc = subprocess.Popen(
        command,
        env=dict(env),
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: gunicorn's worker goes with it
    )
    try:
        with requests.Session() as session:
            while True:
                if time.perf_counter() - started > START_TIMEOUT_SECONDS:
                    raise RuntimeError(f"{target}: no answer after {START_TIMEOUT_SECONDS:.0f}s")
                if proc.poll() is not None:
                    raise RuntimeError(f"{target}: exited with status {proc.returncode}")
                try:
                    response = session.post(url, json={"dry_run": True}, timeout=60)
                except requests.ConnectionError:
                    time.sleep(POLL_SECONDS)
                    continue
                if response.status_code != 200:
                    raise RuntimeError(f"{target}: first response was HTTP {response.status_code}")
                return time.perf_counter() - started
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def measure_cold_start(env: Mapping[str, str], *, repeats: int = 7) -> ColdStartResult:
    """``env``: the reconciler's environment, pointed at stand-ins that hold a tiny world."""
    if not FUNCTION_SOURCE.exists():
        raise FileNotFoundError(f"{FUNCTION_SOURCE} does not exist yet")
    ours_env = {**os.environ, **env}
    bare_env = ours_env  # the same environment; the bare app ignores it
    ours: list[float] = []
    bare: list[float] = []
    bare_deferred: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bare-function-") as tmp:
        bare_source = Path(tmp) / "bare" / "main.py"
        deferred_source = Path(tmp) / "deferred" / "main.py"
        for path, text in ((bare_source, BARE_APP), (deferred_source, BARE_DEFERRED_APP)):
            path.parent.mkdir()
            path.write_text(text, encoding="utf-8")
        # One discarded warm-up each: all then read their files from the page cache.
        time_to_first_response("reconcile_http", FUNCTION_SOURCE, ours_env)
        time_to_first_response("bare", bare_source, bare_env)
        time_to_first_response("bare", deferred_source, bare_env)
        for _ in range(repeats):
            ours.append(time_to_first_response("reconcile_http", FUNCTION_SOURCE, ours_env))
            bare.append(time_to_first_response("bare", bare_source, bare_env))
            bare_deferred.append(time_to_first_response("bare", deferred_source, bare_env))
    return ColdStartResult(tuple(ours), tuple(bare), tuple(bare_deferred))


def main() -> int:
    if __package__ in (None, ""):
        sys.path.insert(0, str(ROOT))
    from datetime import UTC, datetime

    from benchmarks.reconcile.stands import Stands
    from benchmarks.reconcile.world import build_world, seed_broker

    stands = Stands.start()
    try:
        spec = build_world(10, datetime.now(UTC).replace(microsecond=0), stands.sim.account_id)
        seed_broker(stands.sim, spec)
        stands.fresh_world(spec)
        result = measure_cold_start(stands.env())
    finally:
        stands.stop()
    print(f"ours  (reconcile_http, first dry run): {result.ours_median * 1000:.0f} ms median")
    print(f"bare  (imports only):                  {result.bare_median * 1000:.0f} ms median")
    print(
        f"bare, pandas deferred:                 {result.bare_deferred_median * 1000:.0f} ms median"
    )
    print(f"ratio ours/bare: {result.ratio:.2f}")
    print(f"ratio ours/bare with pandas deferred: {result.overhead_ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
