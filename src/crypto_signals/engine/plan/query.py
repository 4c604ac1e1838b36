"""Which evidence the plan needs: one listing for the fresh candidates, look-ups for old ones.

The shared closed-orders listing starts at the oldest *fresh* candidate's entry (minus a
look-back for an entry order submitted a little before its document), so a zombie from 40 days
ago does not make every run list 40 days of orders, oldest first, until the page cap cuts off
the newest closes. Old candidates (and those without any timestamp) are rechecked by targeted
look-ups of their own orders (entry, legs): a bounded number per run, rotating with the
schedule, so each is rechecked every few runs and the broker calls stay a small constant.
"""

from __future__ import annotations

from datetime import datetime

from crypto_signals.domain.schemas import Position
from crypto_signals.domain.snapshots import BrokerState, EvidenceQuery, ExpectedEntry, StoreState
from crypto_signals.engine.plan.book import Book, Holding, classify
from crypto_signals.engine.policy import Policy


def evidence_candidates(
    store: StoreState,
    broker: BrokerState,
    policy: Policy,
    now: datetime,
    *,
    book: Book | None = None,
) -> list[Position]:
    """Settled positions on symbols the broker no longer holds, or holds less of.

    ``book`` is ``classify(store, broker, policy, now)`` when the caller has it already.
    """
    if book is None:
        book = classify(store, broker, policy, now)
    return [p for b in book.with_holding(Holding.NOT_HELD, Holding.EXCESS) for p in b.settled]


def _is_fresh(position: Position, policy: Policy, now: datetime) -> bool:
    known = [t for t in (position.created_at, position.filled_at) if t is not None]
    return bool(known) and min(known) >= now - policy.evidence_horizon


def _rotation(old: list[Position], policy: Policy, now: datetime) -> list[Position]:
    """The old candidates this run looks up: ``old_lookups_per_run`` of them, the next ones
    each schedule period (deterministic in ``now``: the core reads no clock)."""
    ranked = sorted(old, key=lambda p: p.position_id)
    k = min(policy.old_lookups_per_run, len(ranked))
    if k == 0:
        return []
    period = max(policy.rotation_period.total_seconds(), 1.0)
    start = (int(now.timestamp() // period) * k) % len(ranked)
    return [ranked[(start + i) % len(ranked)] for i in range(k)]


def evidence_query(
    store: StoreState,
    broker: BrokerState,
    policy: Policy,
    now: datetime,
    *,
    book: Book | None = None,
) -> EvidenceQuery | None:
    """The evidence the plan needs, or None when no position needs any.

    ``book`` is ``classify(store, broker, policy, now)`` when the caller has it already (the
    shell classifies once for this and :func:`plan_reconciliation`).
    """
    candidates = evidence_candidates(store, broker, policy, now, book=book)
    if not candidates:
        return None
    fresh = [p for p in candidates if _is_fresh(p, policy, now)]
    old = [p for p in candidates if not _is_fresh(p, policy, now)]
    looked_up = _rotation(old, policy, now)
    known = [t for p in fresh for t in (p.created_at, p.filled_at) if t is not None]
    after = min(known) - policy.order_lookback if known else now - policy.evidence_horizon
    return EvidenceQuery(
        symbols=tuple(sorted({p.symbol for p in fresh})),
        after=after,
        expected=tuple(
            ExpectedEntry(p.position_id, p.entry_order_ids, p.symbol)
            for p in sorted(fresh, key=lambda p: p.position_id)
            if p.entry_order_ids
        ),
        lookup_positions=tuple(p.position_id for p in looked_up),
        lookup_order_ids=tuple(
            sorted(
                {
                    i
                    for p in looked_up
                    for i in (*p.entry_order_ids, p.tp_order_id, p.sl_order_id)
                    if i
                }
            )
        ),
    )
