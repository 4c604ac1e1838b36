"""The benchmark's world: a book of N = 10 has the mix it claims, and seeds the simulator."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
import requests
from benchmarks.reconcile.world import MIX, WorldSpec, build_world, mix_counts, seed_broker

from crypto_signals.domain.symbols import symbol_key
from crypto_signals.sandbox.alpaca_sim import AlpacaSimulator

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
ACCOUNT = "11111111-2222-3333-4444-555555555555"
KEY, SECRET = "PKWORLDTEST0123456789", "world-test-secret-0123456789abcdef"
PREFIXES = {
    "sig-match-": "matching",
    "sig-zfill-": "zombie_fill",
    "sig-zunf-": "zombie_unfilled",
    "sig-zunv-": "zombie_unverified",
    "sig-young-": "young",
    "sig-theo-": "theoretical",
    "sig-drift-": "drift",
    "sig-closed-": "closed_history",
}


def _kind(position_id: str) -> str:
    return next(kind for prefix, kind in PREFIXES.items() if position_id.startswith(prefix))


@pytest.fixture(scope="module")
def spec() -> WorldSpec:
    return build_world(10, NOW, ACCOUNT)


def test_mix_counts_add_up_to_n_with_at_least_one_of_each_kind() -> None:
    for n in (10, 100, 1000, 10_000):
        counts = mix_counts(n)
        assert sum(counts[kind] for kind, _ in MIX) + counts["matching"] == n
        assert min(counts.values()) >= 1
    assert mix_counts(1000)["zombie_fill"] == 100
    with pytest.raises(ValueError, match="too small"):
        mix_counts(5)


def test_a_world_of_ten_has_the_documents_it_claims(spec: WorldSpec) -> None:
    counts = spec.counts
    by_kind = Counter(_kind(d["position_id"]) for d in spec.docs)
    assert by_kind == {kind: counts[kind] for kind in PREFIXES.values()}
    assert spec.open_count == 10  # N counts the open positions; the closed history is extra
    assert all(
        d["status"] == "CLOSED" for d in spec.docs if _kind(d["position_id"]) == "closed_history"
    )
    assert spec.expected_heals == counts["zombie_fill"] + counts["zombie_unfilled"]
    assert spec.zombie_candidates == spec.expected_heals + counts["zombie_unverified"]
    assert spec.young_ids == {
        d["position_id"] for d in spec.docs if _kind(d["position_id"]) == "young"
    }
    theoretical = [d for d in spec.docs if _kind(d["position_id"]) == "theoretical"]
    assert all(d["trade_type"] == "THEORETICAL" for d in theoretical)
    assert all(d["account_id"] == ACCOUNT for d in spec.docs)


def test_a_world_of_ten_has_the_broker_state_it_claims(spec: WorldSpec) -> None:
    counts = spec.counts
    held = {p["symbol"] for p in spec.positions}
    open_symbols = {d["symbol"] for d in spec.docs if d["status"] == "OPEN"}
    kinds_by_symbol = {d["symbol"]: _kind(d["position_id"]) for d in spec.docs}
    # Zombies, THEORETICAL and working young entries are not held; orphans and dust are
    # held without a document; matching, drift and filled young positions are held with one.
    orphans_and_dust = held - open_symbols - {d["symbol"] for d in spec.docs}
    assert len(orphans_and_dust) == counts["orphans"] + counts["dust"]
    matching_symbols = {d["symbol"] for d in spec.docs if _kind(d["position_id"]) == "matching"}
    # Counter equality counts a missing kind as zero (N = 10 has one young position, working).
    assert Counter(kinds_by_symbol[s] for s in held & open_symbols) == Counter(
        matching=len(matching_symbols), drift=counts["drift"], young=counts["young"] // 2
    )
    assert len(matching_symbols) < counts["matching"]  # every fourth symbol holds two
    for kind in ("zombie_fill", "zombie_unfilled", "zombie_unverified", "theoretical"):
        assert not any(kinds_by_symbol.get(s) == kind for s in held), kind
    # Every position in Firestore but THEORETICAL has its entry order at the broker.
    clients = {o.get("client_order_id") for o in spec.orders}
    executed = {d["position_id"] for d in spec.docs if d["trade_type"] != "THEORETICAL"}
    assert executed <= clients
    ids = [o["id"] for o in spec.orders if o.get("id")]
    assert len(set(ids)) == len(ids)


def test_the_world_is_the_same_every_time() -> None:
    first, second = build_world(100, NOW, ACCOUNT), build_world(100, NOW, ACCOUNT)
    assert first.docs == second.docs
    assert first.orders == second.orders
    assert first.positions == second.positions


def test_seeding_the_simulator_serves_the_world(spec: WorldSpec) -> None:
    headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
    with AlpacaSimulator(account_id=ACCOUNT, api_key=KEY, secret_key=SECRET) as sim:
        sim.add_position("OLD/USD", "1")  # seeding replaces what was there
        seed_broker(sim, spec)
        positions = requests.get(f"{sim.base_url}/v2/positions", headers=headers, timeout=10)
        orders = requests.get(
            f"{sim.base_url}/v2/orders",
            params={"status": "all", "limit": "500"},
            headers=headers,
            timeout=10,
        )
        seed_broker(sim, spec)  # twice: the simulator is reset, not refused as duplicate ids
    assert positions.status_code == orders.status_code == 200
    served = sorted(symbol_key(p["symbol"]) for p in positions.json())
    assert served == sorted(symbol_key(p["symbol"]) for p in spec.positions)
    assert len(orders.json()) == len(spec.orders)
