"""Realistic position documents and broker scenarios for the demo, tests and benchmarks.

``position_doc`` writes a document the way the existing signal job does (contract section 1),
with Firestore types, so the reconciler is exercised on the real shape and not on its own model.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from google.cloud import firestore

from crypto_signals.sandbox.alpaca_sim import AlpacaSimulator


def position_doc(
    position_id: str,
    symbol: str,
    qty: float,
    entry_fill_price: float,
    *,
    created_at: datetime,
    side: str = "buy",
    status: str = "OPEN",
    account_id: str | None = None,
    trade_type: str | None = "EXECUTED",
    alpaca_order_id: str | None = None,
    tp_order_id: str | None = None,
    sl_order_id: str | None = None,
    filled: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    crypto = "/" in symbol
    doc: dict[str, Any] = {
        "position_id": position_id,
        "signal_id": position_id,
        "account_id": account_id,
        "symbol": symbol,
        "asset_class": "CRYPTO" if crypto else "EQUITY",
        "status": status,
        "side": side,
        "qty": qty,
        "entry_fill_price": entry_fill_price,
        "current_stop_loss": round(entry_fill_price * (0.95 if side == "buy" else 1.05), 6),
        "commission": 0.0,
        "alpaca_order_id": alpaca_order_id or str(uuid.uuid5(uuid.NAMESPACE_URL, position_id)),
        "entry_order_id": alpaca_order_id or str(uuid.uuid5(uuid.NAMESPACE_URL, position_id)),
        "tp_order_id": tp_order_id,
        "sl_order_id": sl_order_id,
        "trade_type": trade_type,
        "filled_at": created_at if filled else None,
        "created_at": created_at,
        "updated_at": created_at,
        "exit_fill_price": None,
        "exit_time": None,
        "exit_reason": None,
        "exit_order_id": None,
        "realized_pnl_usd": 0.0,
        "realized_pnl_pct": 0.0,
        "trade_duration_seconds": None,
        "ds": created_at.strftime("%Y-%m-%d"),
        "delete_at": created_at + timedelta(days=365),
        # A field the reconciler does not know: heals must leave it alone.
        "strategy_meta": {"pattern": "BULL_FLAG", "confidence": 0.82},
    }
    doc.update(extra)
    return doc


def entry_order_id(position_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, position_id))


@dataclass
class World:
    """Seed helper: writes positions to Firestore and broker state to the simulator."""

    db: firestore.Client
    sim: AlpacaSimulator
    collection: str = "test_positions"
    written: list[str] = field(default_factory=list)

    def position(self, doc: Mapping[str, Any], *, entry: bool = True) -> str:
        """Write a position document and, unless ``entry=False``, its filled entry order at
        the broker (:meth:`enter`): a real account has it, and the reconciler checks that its
        order listing does."""
        pid = str(doc["position_id"])
        self.db.collection(self.collection).document(pid).set(dict(doc))
        self.written.append(pid)
        if entry:
            self.enter(doc)
        return pid

    def enter(self, doc: Mapping[str, Any]) -> None:
        """The entry order the signal job placed for ``doc``, filled at its ``filled_at``.

        Nothing for a THEORETICAL position (it never reached the broker), one whose entry did
        not fill (``filled_at`` null: the test seeds what happened to its order), or one
        without an entry order id (an adopted holding).
        """
        order_id = doc.get("alpaca_order_id") or doc.get("entry_order_id")
        if doc.get("trade_type") == "THEORETICAL" or not order_id or doc.get("filled_at") is None:
            return
        qty = doc.get("qty")
        if isinstance(qty, bool) or not isinstance(qty, int | float) or qty <= 0:
            return  # a malformed document under test: no order could have that quantity
        self.sim.add_fill(
            str(doc["symbol"]),
            "buy" if doc.get("side", "buy") == "buy" else "sell",
            str(doc["qty"]),
            price=str(doc.get("entry_fill_price") or "100"),
            at=doc["filled_at"],
            id=str(order_id),
            client_order_id=str(doc["position_id"]),
        )

    def positions(self, docs: Iterable[Mapping[str, Any]], *, entry: bool = True) -> None:
        items = list(docs)
        if entry:
            for doc in items:
                self.enter(doc)
        for start in range(0, len(items), 400):
            batch = self.db.batch()
            for doc in items[start : start + 400]:
                batch.set(
                    self.db.collection(self.collection).document(str(doc["position_id"])), dict(doc)
                )
            batch.commit()

    def read(self, position_id: str) -> dict[str, Any]:
        snap = self.db.collection(self.collection).document(position_id).get()
        return snap.to_dict() or {}


def seed_demo(world: World, now: datetime) -> None:
    """The README's scenario: each kind of drift the reconciler exists for, once."""
    sim, hours = world.sim, timedelta(hours=1)
    account = sim.account_id

    # Matching: open in both places.
    world.position(
        position_doc(
            "sig-btc-001", "BTC/USD", 0.5, 61000.0, created_at=now - 6 * hours, account_id=account
        )
    )
    sim.add_position("BTC/USD", "0.5", avg_entry_price="61000", current_price="62500")
    world.position(
        position_doc(
            "sig-aapl-001", "AAPL", 10, 190.0, created_at=now - 30 * hours, account_id=account
        )
    )
    sim.add_position("AAPL", "10", avg_entry_price="190", current_price="195.5")

    # Zombie: closed by a person in the Alpaca app (a manual market sell), never written back.
    eth = "sig-eth-001"
    world.position(
        position_doc(eth, "ETH/USD", 2.0, 3000.0, created_at=now - 5 * hours, account_id=account)
    )
    sim.add_fill("ETH/USD", "sell", "2", price="3150.25", at=now - 1 * hours)

    # Zombie whose entry order was canceled before any fill: closes with P&L 0.
    ltc = "sig-ltc-001"
    world.position(
        position_doc(
            ltc, "LTC/USD", 30.0, 85.0, created_at=now - 3 * hours, account_id=account, filled=False
        )
    )
    sim.add_order(
        symbol="LTC/USD",
        side="buy",
        qty="30",
        status="canceled",
        id=entry_order_id(ltc),
        client_order_id=ltc,
        submitted_at=now - 3 * hours,
        order_type="limit",
    )

    # Open in Firestore, gone at the broker, and no evidence why: kept OPEN and alerted.
    world.position(
        position_doc(
            "sig-avax-001", "AVAX/USD", 100.0, 35.0, created_at=now - 8 * hours, account_id=account
        )
    )

    # Orphan: bought at the broker by hand, unknown to Firestore.
    sim.add_position("SOL/USD", "40", avg_entry_price="150", current_price="152.3")
    # Dust: fee residue worth cents; ignored.
    sim.add_position("DOGE/USD", "1.5", avg_entry_price="0.2", current_price="0.21")

    # Too young to judge: the broker may not list it yet.
    world.position(
        position_doc(
            "sig-link-001",
            "LINK/USD",
            50.0,
            14.0,
            created_at=now - timedelta(minutes=1),
            account_id=account,
        )
    )
    # THEORETICAL: never reached the broker; never touched.
    world.position(
        position_doc(
            "sig-xrp-001",
            "XRP/USD",
            1000.0,
            0.6,
            created_at=now - 9 * hours,
            trade_type="THEORETICAL",
        )
    )
