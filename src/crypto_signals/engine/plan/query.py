"""Which closed orders the plan needs: one listing for every position that needs evidence."""

from __future__ import annotations

from datetime import datetime

from crypto_signals.domain.schemas import Position
from crypto_signals.domain.snapshots import BrokerState, EvidenceQuery, StoreState
from crypto_signals.engine.plan.book import Holding, classify
from crypto_signals.engine.policy import Policy


def evidence_candidates(
    store: StoreState, broker: BrokerState, policy: Policy, now: datetime
) -> list[Position]:
    """Settled positions on symbols the broker no longer holds, or holds less of."""
    book = classify(store, broker, policy, now)
    return [p for b in book.with_holding(Holding.NOT_HELD, Holding.EXCESS) for p in b.settled]


def evidence_query(
    store: StoreState, broker: BrokerState, policy: Policy, now: datetime
) -> EvidenceQuery | None:
    """The closed-orders listing the plan needs, or None when no position needs evidence."""
    candidates = evidence_candidates(store, broker, policy, now)
    if not candidates:
        return None
    symbols = tuple(sorted({p.symbol for p in candidates}))
    known = [t for p in candidates for t in (p.created_at, p.filled_at) if t is not None]
    after = min(known) - policy.order_lookback if known else now - policy.max_order_history
    return EvidenceQuery(symbols=symbols, after=after)
