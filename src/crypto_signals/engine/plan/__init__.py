"""The planning core: broker, Firestore and ledger snapshots in, a plan of typed actions out.

Pure: no I/O, no clock, no environment. ``now``, the :class:`Policy`, the ledger and the
breaker's state are passed in, so the same input always gives the same plan, and every rule
below is a table-driven test (tests/core/test_plan*.py cite these numbers).

Modules, one concern each: :mod:`.book` (the open book by symbol), :mod:`.ownership` (which
position an order belongs to; what is left of each fill), :mod:`.allocation` (the ledger's
allocation convention), :mod:`.evidence` (heals from allocations and unfilled entries),
:mod:`.symbols` (the decision for one symbol), :mod:`.blocking` (unreadable broker items),
:mod:`.limits` (account check and breaker), :mod:`.query` (which closed orders to list),
:mod:`.planner` (the whole plan), :mod:`.actions` (the decisions).

Invariants:

1. No heal without broker evidence: closing fills allocated to the position cover its quantity
   within tolerance, or every entry order of it ended without a fill in a complete listing.
2. A fill's quantity is used at most once: what the ledger posted to it (heals, operator closes,
   the signal job's closes) plus what this plan allocates never exceeds its filled quantity.
3. An order that belongs to a position (its entry; its own legs, by id or by parent entry) is
   never evidence for another position, and an entry is never evidence that anything closed.
4. A symbol is never both zombie and orphan: orphans are held symbols without any open
   Firestore position; zombies are positions on symbols that have one.
5. THEORETICAL positions are never healed, deferred or reported; positions an operator holds
   are never decided on (listed as ``held``), though they count in the symbol's quantity.
6. Pending positions (younger than the minimum age, or with an entry order still working) are
   never zombies; a held symbol with a pending position is neither healed nor checked for drift.
7. On a symbol the broker still holds, heals happen only when the open positions left
   afterwards account for the broker's quantity within tolerance; otherwise the drift is
   reported with what would explain it, and nothing changes ("fixing" drift is never done).
8. A broker item that could not be read blocks every decision it could change: no heal on
   its symbol (every symbol, when it names none), never a silent skip.
9. Heals are refused when positions belong to another broker account. More heals due than the
   limit trips the breaker: none is applied. While it is tripped no heal is applied, unless the
   run is forced (which applies them and resets it).
10. The plan is deterministic: the same snapshots in any order give the same plan.
"""

from __future__ import annotations

from crypto_signals.engine.plan.actions import (
    Action,
    AlertOrphan,
    Allocation,
    BlockReason,
    BlockSymbol,
    Defer,
    DeferReason,
    DriftKind,
    Evidence,
    Halted,
    Heal,
    IgnoreDust,
    OverAllocated,
    Plan,
    RefusalReason,
    RefuseHeal,
    ReportDrift,
    ResetBreaker,
    TripBreaker,
    Unverified,
    UnverifiedReason,
)
from crypto_signals.engine.plan.book import Book, classify
from crypto_signals.engine.plan.planner import plan_reconciliation
from crypto_signals.engine.plan.query import evidence_candidates, evidence_query

__all__ = [
    "Action",
    "AlertOrphan",
    "Allocation",
    "BlockReason",
    "BlockSymbol",
    "Book",
    "Defer",
    "DeferReason",
    "DriftKind",
    "Evidence",
    "Halted",
    "Heal",
    "IgnoreDust",
    "OverAllocated",
    "Plan",
    "RefusalReason",
    "RefuseHeal",
    "ReportDrift",
    "ResetBreaker",
    "TripBreaker",
    "Unverified",
    "UnverifiedReason",
    "classify",
    "evidence_candidates",
    "evidence_query",
    "plan_reconciliation",
]
