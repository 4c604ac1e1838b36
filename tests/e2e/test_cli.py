"""The command line as an operator uses it: a real process, real stand-ins, real exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta

from crypto_signals.sandbox.alpaca_sim import Fault
from crypto_signals.sandbox.discord_sink import DiscordSink, SinkFault
from crypto_signals.sandbox.scenarios import World, position_doc
from tests.conftest import API_KEY, SECRET_KEY

H = timedelta(hours=1)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crypto_signals.cli", "reconcile", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_json_prints_exactly_one_object_and_exit_1_for_an_orphan(
    world: World, env: dict[str, str]
) -> None:
    world.sim.add_position("SOL/USD", "40", current_price="150")
    done = cli(env, "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert isinstance(report, dict)
    assert report["orphans"] == ["SOL/USD"]
    assert report["status"] == "issues"
    assert "reconciliation finished" in done.stderr  # logs went to stderr


def test_clean_book_exits_0(world: World, env: dict[str, str], now: datetime) -> None:
    world.position(position_doc("c-1", "BTC/USD", 0.5, 60000.0, created_at=now - 5 * H))
    world.sim.add_position("BTC/USD", "0.5", current_price="60000")
    done = cli(env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Reconciliation OK" in done.stdout


def test_text_summary_lists_what_needs_a_person(
    world: World, env: dict[str, str], now: datetime
) -> None:
    world.position(position_doc("u-1", "AVAX/USD", 10.0, 35.0, created_at=now - 5 * H))
    done = cli(env, "--dry-run")
    assert done.returncode == 1
    assert "NEEDS A PERSON" in done.stdout
    assert "AVAX/USD position u-1 kept OPEN" in done.stdout
    assert "DRY RUN" in done.stdout


def test_broker_failure_exits_2_and_changes_nothing(
    world: World, env: dict[str, str], now: datetime
) -> None:
    world.position(position_doc("z-1", "ETH/USD", 1.0, 100.0, created_at=now - 5 * H))
    world.sim.inject_fault("positions", Fault(kind="status", status=500))
    done = cli(env, "--json")
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report["status"] == "failed"
    assert any("HTTP 500" in e for e in report["errors"])
    assert world.read("z-1")["status"] == "OPEN"


def test_invalid_configuration_exits_2_naming_the_variable(env: dict[str, str]) -> None:
    broken = {k: v for k, v in env.items() if k != "ALPACA_SECRET_KEY"}
    broken["ALPACA_TIMEOUT_SECONDS"] = "forever"
    done = subprocess.run(
        [sys.executable, "-m", "crypto_signals.cli", "reconcile"],
        env={k: v for k, v in os.environ.items() if k != "ALPACA_SECRET_KEY"} | broken,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "ALPACA_SECRET_KEY" in done.stderr
    assert "ALPACA_TIMEOUT_SECONDS" in done.stderr
    assert API_KEY not in done.stderr


def test_secrets_never_appear_in_any_output_of_a_failing_run(
    world: World, sink: DiscordSink, env: dict[str, str], now: datetime
) -> None:
    """Broker failing after a first good run, Discord failing, debug logs on: grep everything."""
    token = sink.webhook_url.rstrip("/").rsplit("/", 1)[-1]
    secrets = [API_KEY, SECRET_KEY, sink.webhook_url, token]
    world.position(position_doc("s-1", "ETH/USD", 1.0, 100.0, created_at=now - 5 * H))
    world.sim.add_fill("ETH/USD", "sell", "1", price="110", at=now - H)
    world.sim.add_position("SOL/USD", "40", current_price="150")
    sink.inject_fault(SinkFault(kind="status", status=500, times=None))
    debug = {**env, "LOG_LEVEL": "DEBUG"}

    outputs = []
    for log_format in ("json", "text"):
        outputs.append(cli({**debug, "LOG_FORMAT": log_format}, "--json"))
    world.sim.inject_fault("positions", Fault(kind="status", status=401))
    outputs.append(cli({**debug, "LOG_FORMAT": "json"}, "--json"))
    sink.inject_fault(SinkFault(kind="hang", seconds=5, times=None))
    outputs.append(cli({**debug, "LOG_FORMAT": "text"}))

    assert outputs[-2].returncode == 2  # the failing run really failed
    everything = "\n".join(o.stdout + o.stderr for o in outputs)
    assert "Discord delivery failed" in everything  # the Discord failures really happened
    for secret in secrets:
        assert secret not in everything
    # Nor in what the run stored.
    stored = json.dumps(
        [
            d.to_dict()
            for c in ("test_positions", "reconciler_runs", "reconciler_alerts")
            for d in world.db.collection(c).stream()
        ],
        default=str,
    )
    for secret in secrets:
        assert secret not in stored


def test_json_logs_carry_severity_message_and_run_id_on_every_line(
    world: World, env: dict[str, str], now: datetime
) -> None:
    world.position(position_doc("j-1", "ETH/USD", 1.0, 100.0, created_at=now - 5 * H))
    world.sim.add_fill("ETH/USD", "sell", "1", price="110", at=now - H)
    world.sim.add_position("SOL/USD", "40", current_price="150")

    done = cli({**env, "LOG_FORMAT": "json"}, "--json")

    run_id = json.loads(done.stdout)["run_id"]
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert lines
    for line in lines:
        assert line["severity"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        assert line["message"]
        assert line["run_id"] == run_id
    events = {line.get("event") for line in lines}
    assert {"position_healed", "orphan_detected", "run_finished"} <= events
    [finished] = [line for line in lines if line.get("event") == "run_finished"]
    assert finished["status"] == "issues"
    assert finished["healed_count"] == 1


def test_bad_log_level_exits_2(env: dict[str, str]) -> None:
    done = cli({**env, "LOG_LEVEL": "LOUD"})
    assert done.returncode == 2
    assert "LOG_LEVEL" in done.stderr


def test_unreadable_document_exits_1(world: World, env: dict[str, str], now: datetime) -> None:
    bad = position_doc("bad-cli", "BTC/USD", 1.0, 100.0, created_at=now - 5 * H)
    bad["qty"] = -3
    world.position(bad)
    done = cli(env, "--json")
    assert done.returncode == 1
    assert any("bad-cli" in e for e in json.loads(done.stdout)["errors"])
