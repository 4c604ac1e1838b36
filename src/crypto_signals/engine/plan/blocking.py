"""Broker data that blocks the heals it could change (invariant 8): items the adapter could
not read, and a listing that lacks orders the reconciler knows are in it.

An unreadable item is named and the run goes on, unless it could change a decision: it is on
a symbol under reconciliation, or it may be a position's entry order (by id or client order
id). Then that symbol gets no decision this run. An item with neither a symbol nor an id could
be anything, so it blocks every heal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from crypto_signals.domain.schemas import Position
from crypto_signals.domain.snapshots import ExpectedEntry, UnreadableItem
from crypto_signals.domain.symbols import symbol_key
from crypto_signals.engine.plan.actions import BlockReason, BlockSymbol

ANY_SYMBOL = "*"


def blocked_symbols(
    items: Iterable[UnreadableItem], positions: Sequence[Position]
) -> dict[str, BlockSymbol]:
    """Symbol key (or ``*``) -> the block, for the open positions ``positions``."""
    keys = {symbol_key(p.symbol): p.symbol for p in positions}
    by_order: dict[str, str] = {}
    for p in positions:
        by_order[p.position_id] = symbol_key(p.symbol)
        for i in p.entry_order_ids:
            by_order[i] = symbol_key(p.symbol)
    hits: dict[str, list[UnreadableItem]] = {}
    for item in items:
        if item.key is not None:
            if item.key in keys:
                hits.setdefault(item.key, []).append(item)
            continue
        ids = [i for i in (item.item_id, item.client_order_id) if i]
        if not ids:
            hits.setdefault(ANY_SYMBOL, []).append(item)
            continue
        for key in sorted({by_order[i] for i in ids if i in by_order}):
            hits.setdefault(key, []).append(item)
    out: dict[str, BlockSymbol] = {}
    for key, found in sorted(hits.items()):
        affected = sorted(
            p.position_id for p in positions if key == ANY_SYMBOL or symbol_key(p.symbol) == key
        )
        symbol = ANY_SYMBOL if key == ANY_SYMBOL else keys[key]
        out[key] = BlockSymbol(symbol, tuple(found), tuple(affected))
    return out


def inconsistent_listing(
    missing: Sequence[ExpectedEntry], positions: Sequence[Position]
) -> dict[str, BlockSymbol]:
    """Entry orders missing from the listing: every heal would rest on a listing that is known
    to be incomplete in a way its pages did not show, so none happens (invariant 8)."""
    if not missing:
        return {}
    affected = tuple(sorted(p.position_id for p in positions))
    block = BlockSymbol(ANY_SYMBOL, (), affected, BlockReason.LISTING_INCONSISTENT, tuple(missing))
    return {ANY_SYMBOL: block}
