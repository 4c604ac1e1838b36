"""The naive baseline: reconciliation written the way the original design did it.

Per run: one ``get_all_positions``; one stream of the open positions; then, for every zombie
candidate (open in Firestore, not held at the broker), one ``get_orders`` call filtered on that
symbol and one ``document(id).get()``; one ``document.update()`` per heal; one Discord POST per
orphan. It uses the same simulator, emulator and sink as the real reconciler and heals the same
zombies (closing fills after the entry, or an entry order that ended without a fill), so the
two write the same number of healed documents. It is not meant to be correct beyond that: no
lease, no outbox, no drift, no pagination, no alert deduplication.

The broker client is alpaca-py's ``TradingClient`` with the same 10 s timeout session the real
adapter uses (its default session has no timeout at all), so the comparison is about the
access pattern, not about timeouts.

``sample_every=k`` (benchmark budget only) checks every k-th zombie candidate and skips the
others; the benchmark then scales the per-candidate time and counts to all candidates and
labels the figure as extrapolated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import requests
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest
from google.cloud import firestore

from crypto_signals.broker.http import TimeoutSession

log = logging.getLogger("benchmarks.naive")

_UNFILLED_END = frozenset({"canceled", "expired", "rejected", "done_for_day"})


def _key(symbol: str) -> str:
    # The original compared raw strings (and saw BTCUSD != BTC/USD); normalising here keeps the
    # baseline doing the same amount of work as the real reconciler, not more.
    return symbol.replace("/", "").strip().upper()


def _value(enum_or_str: Any) -> str:
    return str(getattr(enum_or_str, "value", enum_or_str))


@dataclass
class NaiveStats:
    broker_calls: int = 0
    firestore_reads: int = 0
    firestore_writes: int = 0
    firestore_round_trips: int = 0
    discord_posts: int = 0
    heals: int = 0
    zombie_candidates: int = 0
    orphans: int = 0
    # Candidates actually checked (all, unless sample_every > 1) and the time that took.
    checked: int = 0
    check_seconds: float = 0.0


class NaiveReconciler:
    """One broker query and one Firestore lookup per zombie, one write per heal."""

    def __init__(
        self,
        *,
        api_key: str,
        secret_key: str,
        base_url: str,
        db: firestore.Client,
        collection: str,
        webhook_url: str | None,
        min_position_age: timedelta = timedelta(minutes=5),
        dust_threshold_usd: Decimal = Decimal(1),
        timeout_seconds: float = 10.0,
        sample_every: int = 1,
    ) -> None:
        self._client = TradingClient(api_key, secret_key, paper=True, url_override=base_url)
        self._client._session = TimeoutSession(
            connect_timeout=min(5.0, timeout_seconds), read_timeout=timeout_seconds, retries=2
        )
        self._db = db
        self._collection = db.collection(collection)
        self._webhook_url = webhook_url
        self._http = requests.Session()
        self._min_age = min_position_age
        self._dust = dust_threshold_usd
        self._timeout = timeout_seconds
        self._sample_every = sample_every

    def reconcile(self, now: datetime) -> NaiveStats:
        stats = NaiveStats()

        stats.broker_calls += 1
        broker_positions = cast(list[Any], self._client.get_all_positions())
        held: dict[str, Any] = {_key(p.symbol): p for p in broker_positions}

        stats.firestore_round_trips += 1
        query = self._collection.where(filter=firestore.FieldFilter("status", "==", "OPEN"))
        docs: list[tuple[str, dict[str, Any]]] = []
        for snap in query.stream():
            stats.firestore_reads += 1
            docs.append((snap.id, snap.to_dict() or {}))

        open_keys: set[str] = set()
        for doc_id, doc in docs:
            if doc.get("trade_type") == "THEORETICAL":
                continue
            symbol = str(doc.get("symbol", ""))
            open_keys.add(_key(symbol))
            created = doc.get("created_at") or doc.get("filled_at")
            if isinstance(created, datetime) and now - created < self._min_age:
                continue
            if _key(symbol) in held:
                continue
            stats.zombie_candidates += 1
            if (stats.zombie_candidates - 1) % self._sample_every:
                continue  # benchmark cap: only every k-th candidate is checked, then scaled
            stats.checked += 1
            started = time.perf_counter()
            if self._check_zombie(doc_id, doc, stats, now):
                stats.heals += 1
            stats.check_seconds += time.perf_counter() - started

        for key, position in sorted(held.items()):
            value = abs(Decimal(str(position.market_value or 0)))
            if key in open_keys or value < self._dust:
                continue
            stats.orphans += 1
            self._post(
                {
                    "content": (
                        f"ORPHAN: {position.symbol} {_value(position.side)} {position.qty} "
                        f"(${value:.2f}) is open at Alpaca with no open position in Firestore"
                    ),
                    "allowed_mentions": {"parse": []},
                },
                stats,
            )
        return stats

    def _check_zombie(
        self, doc_id: str, doc: Mapping[str, Any], stats: NaiveStats, now: datetime
    ) -> bool:
        symbol = str(doc["symbol"])
        opened: datetime | None = doc.get("filled_at") or doc.get("created_at")
        since = (opened or now - timedelta(days=30)) - timedelta(hours=1)
        stats.broker_calls += 1
        orders = cast(
            list[Any],
            self._client.get_orders(
                GetOrdersRequest(
                    status=QueryOrderStatus.CLOSED, symbols=[symbol], after=since, limit=500
                )
            ),
        )
        # Re-read the document right before deciding, as the original did.
        stats.firestore_round_trips += 1
        stats.firestore_reads += 1
        snap = self._collection.document(doc_id).get()
        current = snap.to_dict() or {}
        if current.get("status") != "OPEN":
            return False

        entry_ids = {doc.get("alpaca_order_id"), doc.get("entry_order_id")} - {None}
        side = str(doc.get("side", "buy"))
        closing = "sell" if side == "buy" else "buy"
        need = Decimal(str(doc["qty"]))
        fields: dict[str, Any] | None = None
        for order in orders:
            is_entry = str(order.id) in entry_ids or order.client_order_id == doc_id
            unfilled = Decimal(str(order.filled_qty or 0)) == 0
            if is_entry and _value(order.status) in _UNFILLED_END and unfilled:
                fields = self._heal_fields(None, None, order.canceled_at or now, doc, now)
                break
        if fields is None:
            covered, notional = Decimal(0), Decimal(0)
            last: Any = None
            for order in sorted(orders, key=lambda o: o.filled_at or now):
                filled = Decimal(str(order.filled_qty or 0))
                if (
                    _value(order.side) != closing
                    or filled <= 0
                    or order.filled_at is None
                    or (opened is not None and order.filled_at <= opened)
                    or covered >= need
                ):
                    continue
                take = min(filled, need - covered)
                covered += take
                notional += take * Decimal(str(order.filled_avg_price))
                last = order
            if last is None or covered < need:
                log.warning("unverified zombie %s %s: no closing fill", symbol, doc_id)
                return False
            fields = self._heal_fields(notional / covered, last, last.filled_at, doc, now)

        stats.firestore_round_trips += 1
        self._collection.document(doc_id).update(fields)
        stats.firestore_writes += 1
        log.info("healed %s %s", symbol, doc_id)
        return True

    @staticmethod
    def _heal_fields(
        exit_price: Decimal | None,
        exit_order: Any,
        exit_time: datetime,
        doc: Mapping[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        entry = Decimal(str(doc.get("entry_fill_price") or 0))
        qty = Decimal(str(doc["qty"]))
        pnl = (exit_price - entry) * qty if exit_price is not None else Decimal(0)
        if doc.get("side") == "sell":
            pnl = -pnl
        basis = entry * qty
        opened = doc.get("filled_at") or doc.get("created_at")
        return {
            "status": "CLOSED",
            "exit_reason": "CLOSED_EXTERNALLY",
            "exit_fill_price": float(exit_price) if exit_price is not None else None,
            "exit_time": exit_time,
            "exit_order_id": str(exit_order.id) if exit_order is not None else None,
            "realized_pnl_usd": float(pnl),
            "realized_pnl_pct": float(pnl / basis * 100) if basis else 0.0,
            "trade_duration_seconds": (
                int((exit_time - opened).total_seconds())
                if isinstance(opened, datetime) and exit_price is not None
                else None
            ),
            "updated_at": now,
        }

    def _post(self, payload: dict[str, Any], stats: NaiveStats) -> None:
        if not self._webhook_url:
            return
        stats.discord_posts += 1
        try:
            self._http.post(self._webhook_url, json=payload, timeout=5)
        except requests.RequestException as exc:
            log.warning("discord post failed: %s", type(exc).__name__)

    def close(self) -> None:
        self._http.close()
