"""Literal builders for the core's table tests: positions, broker positions, orders, and the
expected actions, with the defaults most rows share."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from crypto_signals.domain.schemas import Position, TradeStatus, TradeType
from crypto_signals.domain.snapshots import (
    BrokerOrder,
    BrokerPosition,
    ClosedPosition,
    Ledger,
    Posting,
    StoreState,
)
from crypto_signals.engine.plan import (
    Action,
    Evidence,
    Heal,
    Plan,
    RefusalReason,
    RefuseHeal,
    ReportDrift,
    Unverified,
    UnverifiedReason,
)
from crypto_signals.engine.policy import Policy

Side = Literal["buy", "sell"]

ACCOUNT = "acct-main"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=1)
POLICY = Policy()


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def d(value: str | int) -> Decimal:
    return Decimal(value)


# --------------------------------------------------------------------------------------------
# Literal builders.


def pos(
    pid: str,
    symbol: str = "BTC/USD",
    *,
    qty: float = 1.0,
    side: Side = "buy",
    entry: float | None = 100.0,
    created: datetime | None = T0,
    filled: datetime | None = T0,
    alpaca_order_id: str | None = None,
    entry_order_id: str | None = None,
    tp: str | None = None,
    sl: str | None = None,
    trade_type: TradeType | None = TradeType.EXECUTED,
    account: str | None = ACCOUNT,
    status: TradeStatus = TradeStatus.OPEN,
) -> Position:
    return Position(
        position_id=pid,
        signal_id=pid,
        account_id=account,
        symbol=symbol,
        asset_class="CRYPTO" if "/" in symbol else "EQUITY",
        status=status,
        side=side,
        qty=qty,
        entry_fill_price=entry,
        alpaca_order_id=alpaca_order_id,
        entry_order_id=entry_order_id,
        tp_order_id=tp,
        sl_order_id=sl,
        trade_type=trade_type,
        created_at=created,
        filled_at=filled,
    )


def bpos(
    symbol: str, qty: str, market_value: str | None = "50000", *, crypto: bool = True
) -> BrokerPosition:
    mv = Decimal(market_value) if market_value is not None else None
    return BrokerPosition(symbol=symbol, qty=Decimal(qty), market_value=mv, is_crypto=crypto)


def fill(
    oid: str,
    side: Side,
    qty: str,
    price: str,
    when: datetime,
    *,
    symbol: str = "BTC/USD",
    client_order_id: str | None = None,
    status: str = "filled",
) -> BrokerOrder:
    """A (possibly partially) filled order."""
    return BrokerOrder(
        id=oid,
        client_order_id=client_order_id,
        symbol=symbol,
        side=side,
        status=status,
        qty=Decimal(qty),
        filled_qty=Decimal(qty),
        filled_avg_price=Decimal(price),
        submitted_at=when - timedelta(seconds=5),
        filled_at=when,
        ended_at=when,
    )


def ended(
    oid: str,
    status: str,
    *,
    side: Side = "buy",
    symbol: str = "BTC/USD",
    submitted: datetime = T0,
    ended_at: datetime | None = None,
    filled_qty: str = "0",
    client_order_id: str | None = None,
) -> BrokerOrder:
    """An order that ended (canceled / expired / rejected) with ``filled_qty`` filled."""
    partial = Decimal(filled_qty) > 0
    return BrokerOrder(
        id=oid,
        client_order_id=client_order_id,
        symbol=symbol,
        side=side,
        status=status,
        qty=Decimal("1"),
        filled_qty=Decimal(filled_qty),
        filled_avg_price=Decimal("100") if partial else None,
        submitted_at=submitted,
        filled_at=submitted + timedelta(seconds=1) if partial else None,
        ended_at=ended_at,
    )


def working(
    oid: str,
    *,
    status: str = "new",
    client_order_id: str | None = None,
    symbol: str = "BTC/USD",
    side: Side = "buy",
) -> BrokerOrder:
    return BrokerOrder(
        id=oid,
        client_order_id=client_order_id,
        symbol=symbol,
        side=side,
        status=status,
        qty=Decimal("1"),
        filled_qty=Decimal("0"),
        filled_avg_price=None,
        submitted_at=T0,
        filled_at=None,
        ended_at=None,
    )


def healed(
    pid: str,
    order_id: str,
    price: str,
    minute: int,
    pnl: str | Decimal,
    pct: str | Decimal,
    duration: int | None,
    symbol: str = "BTC/USD",
    *,
    evidence: Evidence = Evidence.CLOSING_FILL,
    ids: tuple[str, ...] | None = None,
) -> Heal:
    """Expected heal from closing fills, exiting at ``at(minute)`` through ``order_id``."""
    return Heal(
        position_id=pid,
        symbol=symbol,
        exit_fill_price=Decimal(price),
        exit_time=at(minute),
        exit_order_id=order_id,
        realized_pnl_usd=Decimal(pnl),
        realized_pnl_pct=Decimal(pct),
        trade_duration_seconds=duration,
        evidence=evidence,
        evidence_order_ids=ids if ids is not None else (order_id,),
    )


def never_filled(pid: str, symbol: str, when: datetime, entry_id: str) -> Heal:
    return Heal(
        position_id=pid,
        symbol=symbol,
        exit_fill_price=None,
        exit_time=when,
        exit_order_id=None,
        realized_pnl_usd=Decimal(0),
        realized_pnl_pct=Decimal(0),
        trade_duration_seconds=None,
        evidence=Evidence.ENTRY_NEVER_FILLED,
        evidence_order_ids=(entry_id,),
    )


def unverified(
    pid: str,
    symbol: str = "BTC/USD",
    reason: UnverifiedReason = UnverifiedReason.NO_CLOSING_FILL,
) -> Unverified:
    """Expected Unverified (its rendering details are checked by dedicated tests)."""
    return Unverified(pid, symbol, reason)


def refused(h: Heal, reason: RefusalReason) -> RefuseHeal:
    """Expected RefuseHeal; the counts behind its words are checked by dedicated tests."""
    return RefuseHeal(h, reason)


def shape(action: Action) -> Action:
    """Blank out rendering details so table rows compare the decisions themselves; the
    allocation behind each heal is checked by the ledger tables (test_ledger_cases.py)."""
    if isinstance(action, Heal):
        return replace(action, allocation=())
    if isinstance(action, Unverified):
        return replace(action, covered_qty=None, listing_incomplete=False)
    if isinstance(action, RefuseHeal):
        return RefuseHeal(replace(action.heal, allocation=()), action.reason)
    if isinstance(action, ReportDrift):
        return replace(action, allocations=())
    return action


def leg(
    oid: str,
    parent: str,
    side: Side,
    qty: str,
    price: str,
    when: datetime,
    *,
    parent_client_order_id: str | None = None,
    symbol: str = "BTC/USD",
) -> BrokerOrder:
    """A filled bracket / OCO leg, nested under its parent entry order ``parent``."""
    return replace(
        fill(oid, side, qty, price, when, symbol=symbol),
        parent_id=parent,
        parent_client_order_id=parent_client_order_id,
    )


def canceled_after_partial(
    oid: str,
    side: Side,
    filled_qty: str,
    price: str,
    *,
    submitted: datetime,
    ended: datetime,
    qty: str = "1",
    status: str = "canceled",
    symbol: str = "BTC/USD",
) -> BrokerOrder:
    """An order that filled in part and was then canceled (or expired): no filled_at."""
    return BrokerOrder(
        id=oid,
        client_order_id=None,
        symbol=symbol,
        side=side,
        status=status,
        qty=Decimal(qty),
        filled_qty=Decimal(filled_qty),
        filled_avg_price=Decimal(price),
        submitted_at=submitted,
        filled_at=None,
        ended_at=ended,
    )


def after_heals(store: StoreState, ledger: Ledger, plan: Plan) -> tuple[StoreState, Ledger]:
    """What the next run reads after ``plan``'s heals were written: the healed positions are
    closed (their allocations posted to the ledger), the others still open. Mirrors what
    repository/firestore.py and repository/ledger.py persist."""
    healed_ids = {h.position_id for h in plan.heals}
    by_id = {p.position_id: p for p in store.positions}
    postings = list(ledger.postings)
    closed = list(ledger.closed)
    for heal in plan.heals:
        position = by_id[heal.position_id]
        postings += [Posting(a.order_id, heal.position_id, a.qty) for a in heal.allocation]
        closed.append(
            ClosedPosition(
                heal.position_id,
                position.symbol,
                position.qty,
                entry_order_ids=position.entry_order_ids,
                leg_order_ids=frozenset(
                    i for i in (position.tp_order_id, position.sl_order_id) if i
                ),
                exit_order_id=heal.exit_order_id,
                posted=True,
            )
        )
    still_open = tuple(p for p in store.positions if p.position_id not in healed_ids)
    return (
        StoreState(still_open, store.malformed, store.held),
        Ledger(tuple(postings), tuple(sorted(closed, key=lambda c: c.position_id))),
    )
