"""The simulator in a process of its own serves the world it was seeded with, and its log."""

from __future__ import annotations

from datetime import UTC, datetime

import requests
from benchmarks.reconcile.runs import calls_and_pages
from benchmarks.reconcile.sim_process import SimulatorProcess
from benchmarks.reconcile.world import build_world, seed_broker

from crypto_signals.domain.symbols import symbol_key

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
KEY, SECRET = "PKPROCTEST0123456789", "proc-test-secret-0123456789abcdef"


def test_a_seeded_simulator_process_serves_the_world_and_logs_the_requests() -> None:
    headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
    sim = SimulatorProcess.start(api_key=KEY, secret_key=SECRET)
    try:
        spec = build_world(10, NOW, sim.account_id)
        seed_broker(sim, spec)
        seed_broker(sim, spec)  # twice: reset, not refused as duplicate ids
        sim.clear_requests()
        positions = requests.get(f"{sim.base_url}/v2/positions", headers=headers, timeout=10)
        orders = requests.get(
            f"{sim.base_url}/v2/orders",
            params={"status": "all", "limit": "500"},
            headers=headers,
            timeout=10,
        )
        assert positions.status_code == orders.status_code == 200
        served = sorted(symbol_key(p["symbol"]) for p in positions.json())
        assert served == sorted(symbol_key(p["symbol"]) for p in spec.positions)
        assert len(orders.json()) == len(spec.orders)
        assert sim.count() == 2
        assert [r.endpoint for r in sim.requests] == ["positions", "orders"]
        assert calls_and_pages(sim) == (2, 0)
        sim.clear_requests()
        assert sim.count() == 0
    finally:
        sim.stop()
