"""What stops heals that have evidence: another broker account, and the heal breaker.

The breaker (contract section 1, invariant 9) is a stop, not a rate limit: when more heals are
due in one run than the limit, none of them is applied and heals halt until an operator resets
the breaker or runs ``reconcile --force``. A limit that let N heals through per run would close
a whole book in a few scheduled runs when paper keys meet the live collection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from crypto_signals.domain.schemas import Position
from crypto_signals.domain.snapshots import BreakerState
from crypto_signals.engine.plan.actions import (
    Heal,
    RefusalReason,
    RefuseHeal,
    ResetBreaker,
    TripBreaker,
)
from crypto_signals.engine.policy import Policy


@dataclass
class Gate:
    accepted: list[Heal] = field(default_factory=list)
    refused: list[RefuseHeal] = field(default_factory=list)
    trip: TripBreaker | None = None
    reset: ResetBreaker | None = None


def gate_heals(
    heals: Sequence[Heal],
    positions: Sequence[Position],
    account_id: str,
    breaker: BreakerState,
    policy: Policy,
    *,
    force: bool,
) -> Gate:
    foreign = sorted(
        {
            p.account_id
            for p in positions
            if p.account_id and account_id and p.account_id != account_id
        }
    )
    if foreign:
        # A wrong key is never forced through: the positions are not this account's.
        return Gate(
            refused=[
                RefuseHeal(h, RefusalReason.ACCOUNT_MISMATCH, foreign_accounts=len(foreign))
                for h in heals
            ]
        )
    if force:
        return Gate(accepted=list(heals), reset=ResetBreaker() if breaker.tripped else None)
    due, limit = len(heals), policy.heal_limit
    if breaker.tripped:
        return Gate(
            refused=[RefuseHeal(h, RefusalReason.BREAKER_TRIPPED, due, limit) for h in heals]
        )
    if due > limit:
        return Gate(
            refused=[RefuseHeal(h, RefusalReason.HEAL_LIMIT, due, limit) for h in heals],
            trip=TripBreaker(due, limit),
        )
    return Gate(accepted=list(heals))
