"""The tunables the planning core decides with, frozen and passed in (never read from env)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal


@dataclass(frozen=True)
class Policy:
    # A position younger than this may not have reached the broker's position list yet.
    min_position_age: timedelta = timedelta(minutes=5)
    # Broker positions worth less than this are fee residue, not positions: never orphans, and
    # they do not keep a Firestore position alive (a heal still needs a closing fill).
    dust_threshold_usd: Decimal = Decimal("1")
    # Quantities match when |a - b| <= max(abs, rel * max(|a|, |b|)). The relative part covers
    # Alpaca's crypto fees, which are taken in the received asset (<= 0.25% taker).
    qty_abs_tolerance: Decimal = Decimal("0.00000001")
    qty_rel_tolerance: Decimal = Decimal("0.003")
    # More heals than this in one run smells of a misconfiguration (paper keys on the live
    # collection); the rest are refused unless the operator forces the run.
    heal_limit: int = 25
    # Closing and entry orders are searched from this long before the oldest candidate's entry,
    # so an entry order submitted a little before its Firestore document is still found.
    order_lookback: timedelta = timedelta(hours=1)
    # When no candidate has any timestamp, search this far back.
    max_order_history: timedelta = timedelta(days=30)
    # The shared listing covers candidates whose entry is this recent ("fresh"); older ones do
    # not drag it back (40 days of orders every run), they are rechecked by targeted look-ups
    # of their own orders, this many per run, in turn.
    evidence_horizon: timedelta = timedelta(days=7)
    old_lookups_per_run: int = 5
    # A fill younger than this may be the close the signal job is writing right now: the
    # positions it could explain wait a run instead of being healed twice over.
    min_fill_age: timedelta = timedelta(minutes=2)
    # The schedule's period: which old candidates a run looks up rotates with it.
    rotation_period: timedelta = timedelta(minutes=15)

    def qty_close(self, a: Decimal, b: Decimal) -> bool:
        scale = max(abs(a), abs(b))
        return abs(a - b) <= max(self.qty_abs_tolerance, self.qty_rel_tolerance * scale)
