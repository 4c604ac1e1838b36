"""The Cloud Function ``reconcile_http`` end to end: functions-framework in front, the Firestore
emulator, the Alpaca simulator and the Discord sink behind, nothing patched.

Contract tests go through ``functions_framework.create_app(...).test_client()``; one test builds
the deployable zip with ``scripts/package_function.py``, extracts it and serves it with the
``functions-framework`` server, then calls it the way Cloud Scheduler does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import functions_framework
import pytest
import requests
from flask.testing import FlaskClient
from google.cloud import firestore

from crypto_signals.sandbox.alpaca_sim import AlpacaSimulator, Fault
from crypto_signals.sandbox.discord_sink import DiscordSink
from crypto_signals.sandbox.firestore_emulator import free_port
from crypto_signals.sandbox.scenarios import World, position_doc

ROOT = Path(__file__).resolve().parents[2]
FUNCTION_SOURCE = ROOT / "functions" / "main.py"
PACKAGER = ROOT / "scripts" / "package_function.py"
TARGET = "reconcile_http"

REPORT_FIELDS = {
    "zombies",
    "orphans",
    "reconciled_count",
    "timestamp",
    "duration_seconds",
    "critical_issues",
    "run_id",
    "status",
    "dry_run",
    "environment",
    "healed",
    "unverified_zombies",
    "pending",
    "drift",
    "errors",
    "stats",
}
STATS_FIELDS = {"broker_calls", "firestore_reads", "firestore_writes", "notifications_sent"}

ZOMBIE_ID = "sig-eth-001"
EXIT_PRICE = 3150.25


@dataclass(frozen=True)
class Function:
    client: FlaskClient
    module: ModuleType  # functions/main.py as functions-framework loaded it


@pytest.fixture
def function(
    env: dict[str, str], db: firestore.Client, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Function]:
    # The function reads its configuration from the process environment, as in the cloud.
    # create_app also sets FUNCTION_TARGET; setting it here first lets monkeypatch undo it.
    for name, value in {**env, "FUNCTION_TARGET": TARGET}.items():
        monkeypatch.setenv(name, value)
    app = functions_framework.create_app(  # type: ignore[no-untyped-call]
        target=TARGET, source=str(FUNCTION_SOURCE)
    )
    # functions-framework registers the source module under its file name.
    module = sys.modules["main"]
    yield Function(app.test_client(), module)
    module.reset_for_tests()


def seed_zombie(world: World, now: datetime) -> str:
    """Open in Firestore, sold by hand at the broker: the closing fill is the evidence."""
    sim = world.sim
    opened, closed = now - timedelta(hours=5), now - timedelta(hours=1)
    world.position(
        position_doc(
            ZOMBIE_ID, "ETH/USD", 2.0, 3000.0, created_at=opened, account_id=sim.account_id
        )
    )
    sim.add_fill("ETH/USD", "sell", "2", price=str(EXIT_PRICE), at=closed)
    return ZOMBIE_ID


def post(function: Function, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    response = function.client.post("/", data=body, headers={"Content-Type": "application/json"})
    assert response.mimetype == "application/json"
    return response.status_code, response.get_json()


# -- contract --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [pytest.param(b"", id="empty body"), pytest.param(b"{}", id="empty object")],
)
def test_post_runs_and_returns_the_report(
    function: Function, world: World, now: datetime, body: bytes
) -> None:
    seed_zombie(world, now)
    status, report = post(function, body)
    assert status == 200
    assert report.keys() >= REPORT_FIELDS
    assert report["stats"].keys() >= STATS_FIELDS
    assert report["status"] == "ok"
    assert report["dry_run"] is False
    assert report["environment"] == "DEV"
    assert report["zombies"] == ["ETH/USD"]
    assert report["reconciled_count"] == 1
    assert world.read(ZOMBIE_ID)["status"] == "CLOSED"


def test_dry_run_reports_the_heal_and_writes_nothing(
    function: Function, world: World, sink: DiscordSink, now: datetime
) -> None:
    seed_zombie(world, now)
    status, report = post(function, b'{"dry_run": true}')
    assert status == 200
    assert report["dry_run"] is True
    assert [h["position_id"] for h in report["healed"]] == [ZOMBIE_ID]
    assert report["reconciled_count"] == 0
    assert report["stats"]["firestore_writes"] == 0
    doc = world.read(ZOMBIE_ID)
    assert doc["status"] == "OPEN"
    assert doc["exit_reason"] is None
    assert sink.messages == []


@pytest.mark.parametrize(
    ("body", "named"),
    [
        pytest.param(b'{"dry_run": tru', "not valid JSON", id="truncated JSON"),
        pytest.param(b"dry_run=true", "not valid JSON", id="form encoding"),
        pytest.param(b"\xff\xfe", "not valid UTF-8", id="binary"),
        pytest.param(b"[true]", "must be a JSON object, got an array", id="array"),
        pytest.param(b"null", "must be a JSON object, got null", id="null"),
        pytest.param(b'{"dry_run": false, "force": true}', "'force'", id="unknown key"),
        pytest.param(b'{"dry_run": "yes"}', "dry_run must be a JSON boolean", id="string flag"),
        pytest.param(b'{"dry_run": 1}', "got a number", id="number flag"),
        pytest.param(b'{"dry_run": null}', "got null", id="null flag"),
    ],
)
def test_bad_body_is_400_naming_the_problem(
    function: Function, world: World, now: datetime, body: bytes, named: str
) -> None:
    seed_zombie(world, now)
    status, answer = post(function, body)
    assert status == 400
    assert named in answer["error"]
    # A refused request must not run the reconciliation.
    assert world.read(ZOMBIE_ID)["status"] == "OPEN"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_405_with_allow(function: Function, method: str) -> None:
    response = function.client.open("/", method=method)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert "POST" in response.get_json()["error"]


def test_broker_failure_is_503_with_the_report_and_heals_nothing(
    function: Function, world: World, sim: AlpacaSimulator, now: datetime
) -> None:
    seed_zombie(world, now)
    sim.inject_fault("positions", Fault(kind="status", status=500))
    status, report = post(function, b'{"dry_run": false}')
    # 503, not 500: Cloud Scheduler retries it, and the body still is the report.
    assert status == 503
    assert report.keys() >= REPORT_FIELDS
    assert report["status"] == "failed"
    assert report["healed"] == []
    assert report["reconciled_count"] == 0
    assert report["errors"]
    assert world.read(ZOMBIE_ID)["status"] == "OPEN"


def test_reconciler_is_built_once_and_reused_by_warm_requests(function: Function) -> None:
    first_status, first = post(function)
    reconciler = function.module.get_reconciler()
    second_status, second = post(function)
    assert (first_status, second_status) == (200, 200)
    assert first["run_id"] != second["run_id"]
    assert function.module.get_reconciler() is reconciler


def test_configuration_error_is_500_without_secrets(
    function: Function, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALPACA_TIMEOUT_SECONDS", "600")
    response = function.client.post("/", json={})
    assert response.status_code == 500
    error = response.get_json()["error"]
    assert "ALPACA_TIMEOUT_SECONDS" in error
    for secret in (env["ALPACA_API_KEY"], env["ALPACA_SECRET_KEY"], env["DISCORD_WEBHOOK_URL"]):
        assert secret not in response.get_data(as_text=True)
    # A failed build is not cached: once the configuration is fixed the next request runs.
    monkeypatch.setenv("ALPACA_TIMEOUT_SECONDS", env["ALPACA_TIMEOUT_SECONDS"])
    assert function.client.post("/", json={}).status_code == 200


def test_loading_the_function_defers_the_heavy_imports() -> None:
    # A fresh interpreter: this test process already imported everything via conftest.
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('main', {str(FUNCTION_SOURCE)!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted(m for m in ('alpaca', 'google.cloud.firestore', 'grpc') "
        "if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- packaging -------------------------------------------------------------------------------


def package(out: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(PACKAGER), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert str(out) in result.stdout
    assert digest in result.stdout
    return digest


def test_package_is_deterministic_and_holds_only_the_function(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "function.zip", tmp_path / "b" / "function.zip"
    assert package(first) == package(second)
    names = zipfile.ZipFile(first).namelist()
    assert names == sorted(names)
    assert {"main.py", "requirements.txt", "crypto_signals/__init__.py"} <= set(names)
    assert "crypto_signals/bootstrap.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith("crypto_signals/sandbox/")]


def test_requirements_match_the_package_dependencies() -> None:
    # Cloud Build installs functions/requirements.txt; CI tests with pyproject's ranges.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    lines = (ROOT / "functions" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    required = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert required == set(pyproject["project"]["dependencies"])


# -- the deployable zip, served and called like Cloud Scheduler does --------------------------


def wait_until_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"functions-framework exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"functions-framework did not listen on {port}:\n{log.read_text()}")


def test_packaged_function_heals_and_alerts_when_scheduler_calls(
    tmp_path: Path,
    env: dict[str, str],
    world: World,
    sim: AlpacaSimulator,
    sink: DiscordSink,
    now: datetime,
) -> None:
    source = tmp_path / "source"
    package(tmp_path / "function-source.zip")
    zipfile.ZipFile(tmp_path / "function-source.zip").extractall(source)
    seed_zombie(world, now)
    sim.add_position("SOL/USD", "40", avg_entry_price="150", current_price="152.3")

    # As on Cloud Functions: the extracted source is the only place crypto_signals comes from
    # ahead of site-packages (src/ is on the venv's path only through the editable install,
    # which PYTHONPATH precedes); the venv provides what requirements.txt would install.
    child_env = {**os.environ, **env, "PYTHONPATH": str(source), "LOG_FORMAT": "json"}
    where = subprocess.run(
        [sys.executable, "-c", "import crypto_signals; print(crypto_signals.__file__)"],
        cwd=source,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(source)

    port = free_port()
    log = tmp_path / "function.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "functions_framework"),
                *("--target", TARGET, "--source", str(source / "main.py")),
                *("--host", "127.0.0.1", "--port", str(port)),
            ],
            cwd=source,
            env=child_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_listening(proc, port, log)
        response = requests.post(
            f"http://127.0.0.1:{port}/",
            data=b'{"dry_run":false}',
            headers={
                "Content-Type": "application/json",
                "User-Agent": "Google-Cloud-Scheduler",
                "Authorization": "Bearer test-oidc-token",
            },
            timeout=30,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    assert response.status_code == 200, log.read_text()
    report = response.json()
    assert report["status"] == "issues"  # the orphan needs a person
    assert report["orphans"] == ["SOL/USD"]
    assert [h["position_id"] for h in report["healed"]] == [ZOMBIE_ID]

    doc = world.read(ZOMBIE_ID)
    assert doc["status"] == "CLOSED"
    assert doc["exit_reason"] == "CLOSED_EXTERNALLY"
    assert doc["exit_fill_price"] == pytest.approx(EXIT_PRICE)
    assert doc["realized_pnl_usd"] == pytest.approx((EXIT_PRICE - 3000.0) * 2)

    posted = json.dumps(sink.messages)
    assert "ETH/USD" in posted
    assert "SOL/USD" in posted

    # Cloud Logging reads one JSON object per line; the metrics count run_finished events.
    events = [
        json.loads(line)
        for line in log.read_text().splitlines()
        if re.match(r"^\{.*\}$", line.strip())
    ]
    finished = [e for e in events if e.get("event") == "run_finished"]
    assert [e["status"] for e in finished] == ["issues"]
    assert finished[0]["run_id"] == report["run_id"]
