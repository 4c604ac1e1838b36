"""Alert deduplication as data: findings + stored states + now -> owed notices and writes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto_signals.engine.alerts import (
    AlertDecision,
    AlertState,
    Finding,
    FindingKind,
    Notice,
    OwedNotice,
    decide_alerts,
    delivered,
)

NOW = datetime(2024, 5, 2, 12, 0, tzinfo=UTC)
REALERT = timedelta(hours=6)

ORPHAN = Finding(FindingKind.ORPHAN, "BTCUSD", "long:1", "BTC/USD long 1: no open position")
ORPHAN_BIGGER = replace(ORPHAN, fingerprint="long:2", line="BTC/USD long 2: no open position")
ZOMBIE = Finding(FindingKind.UNVERIFIED_ZOMBIE, "pos-1", "no fill", "ETH/USD pos-1 kept OPEN")


def ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


def state(
    finding: Finding,
    *,
    active: bool = True,
    first_seen: datetime | None = None,
    last_alerted: datetime | None = None,
    pending: Notice | None = None,
) -> AlertState:
    return AlertState(
        finding_id=finding.finding_id,
        kind=finding.kind,
        key=finding.key,
        fingerprint=finding.fingerprint,
        line=finding.line,
        active=active,
        first_seen_at=first_seen or ago(48),
        last_alerted_at=last_alerted,
        pending=pending,
    )


def owed(finding: Finding, notice: Notice) -> OwedNotice:
    return OwedNotice(finding.finding_id, finding.kind, notice, finding.line)


@dataclass(frozen=True)
class Row:
    findings: tuple[Finding, ...]
    states: tuple[AlertState, ...]
    owed: tuple[OwedNotice, ...]
    writes: tuple[AlertState, ...]


def decide(findings: tuple[Finding, ...], states: tuple[AlertState, ...]) -> AlertDecision:
    return decide_alerts(findings, {s.finding_id: s for s in states}, NOW, REALERT)


ANNOUNCED = state(ORPHAN, first_seen=ago(30), last_alerted=ago(1))

ROWS = [
    pytest.param(
        Row(
            findings=(ORPHAN,),
            states=(),
            owed=(owed(ORPHAN, Notice.NEW),),
            writes=(state(ORPHAN, first_seen=NOW, pending=Notice.NEW),),
        ),
        id="new finding: NEW owed and written with first_seen=now",
    ),
    pytest.param(
        Row(findings=(ORPHAN,), states=(ANNOUNCED,), owed=(), writes=()),
        id="same finding again before the interval: nothing owed, nothing written",
    ),
    pytest.param(
        Row(
            findings=(ORPHAN_BIGGER,),
            states=(ANNOUNCED,),
            owed=(owed(ORPHAN_BIGGER, Notice.CHANGED),),
            writes=(
                state(
                    ORPHAN_BIGGER, first_seen=ago(30), last_alerted=ago(1), pending=Notice.CHANGED
                ),
            ),
        ),
        id="changed fingerprint: CHANGED with the new line, first_seen kept",
    ),
    pytest.param(
        Row(
            findings=(ORPHAN,),
            states=(replace(ANNOUNCED, last_alerted_at=ago(6)),),
            owed=(owed(ORPHAN, Notice.REMINDER),),
            writes=(
                state(ORPHAN, first_seen=ago(30), last_alerted=ago(6), pending=Notice.REMINDER),
            ),
        ),
        id="re-alert interval elapsed exactly: REMINDER",
    ),
    pytest.param(
        Row(
            findings=(ORPHAN,),
            states=(replace(ANNOUNCED, last_alerted_at=ago(5.9)),),
            owed=(),
            writes=(),
        ),
        id="just before the interval: nothing",
    ),
    pytest.param(
        Row(
            findings=(),
            states=(ANNOUNCED,),
            owed=(owed(ORPHAN, Notice.RESOLVED),),
            writes=(replace(ANNOUNCED, active=False, pending=Notice.RESOLVED),),
        ),
        id="finding gone after delivery: RESOLVED owed, state inactive",
    ),
    pytest.param(
        Row(
            findings=(),
            states=(state(ORPHAN, first_seen=ago(1), pending=Notice.NEW),),
            owed=(),
            writes=(state(ORPHAN, active=False, first_seen=ago(1)),),
        ),
        id="gone before ever delivered: no resolved notice, state inactive",
    ),
    pytest.param(
        Row(
            findings=(ORPHAN,),
            states=(state(ORPHAN, first_seen=ago(1), pending=Notice.NEW),),
            owed=(owed(ORPHAN, Notice.NEW),),
            writes=(state(ORPHAN, first_seen=ago(1), pending=Notice.NEW),),
        ),
        id="NEW pending from a previous run (undelivered) is owed again",
    ),
    pytest.param(
        Row(
            findings=(ORPHAN_BIGGER,),
            states=(
                state(
                    ORPHAN_BIGGER, first_seen=ago(30), last_alerted=ago(2), pending=Notice.CHANGED
                ),
            ),
            owed=(owed(ORPHAN_BIGGER, Notice.CHANGED),),
            writes=(
                state(
                    ORPHAN_BIGGER, first_seen=ago(30), last_alerted=ago(2), pending=Notice.CHANGED
                ),
            ),
        ),
        id="CHANGED pending from a previous run is owed again, not downgraded",
    ),
    pytest.param(
        Row(
            findings=(),
            states=(replace(ANNOUNCED, active=False, pending=Notice.RESOLVED),),
            owed=(owed(ORPHAN, Notice.RESOLVED),),
            writes=(),
        ),
        id="RESOLVED pending from a previous run is owed again, nothing rewritten",
    ),
    pytest.param(
        Row(findings=(), states=(replace(ANNOUNCED, active=False),), owed=(), writes=()),
        id="resolved and delivered, still gone: nothing",
    ),
    pytest.param(
        Row(
            findings=(ORPHAN,),
            states=(replace(ANNOUNCED, active=False, last_alerted_at=ago(1)),),
            owed=(owed(ORPHAN, Notice.NEW),),
            writes=(state(ORPHAN, first_seen=NOW, last_alerted=ago(1), pending=Notice.NEW),),
        ),
        id="resolved then reappearing: NEW again, first_seen reset",
    ),
    pytest.param(
        Row(
            findings=(ORPHAN,),
            states=(replace(ANNOUNCED, active=False, pending=Notice.RESOLVED),),
            owed=(owed(ORPHAN, Notice.NEW),),
            writes=(state(ORPHAN, first_seen=NOW, last_alerted=ago(1), pending=Notice.NEW),),
        ),
        id="reappearing before its RESOLVED was delivered: NEW replaces the RESOLVED",
    ),
    pytest.param(
        Row(
            findings=(),
            states=(
                # An earlier episode was announced and resolved (last_alerted_at 2h ago); it came
                # back an hour ago, but that NEW notice never reached Discord.
                state(ORPHAN, first_seen=ago(1), last_alerted=ago(2), pending=Notice.NEW),
            ),
            owed=(),
            writes=(state(ORPHAN, active=False, first_seen=ago(1), last_alerted=ago(2)),),
        ),
        id="reappearance never announced, gone again: no second resolved notice",
    ),
    pytest.param(
        Row(
            findings=(ZOMBIE, ORPHAN),
            states=(ANNOUNCED,),
            owed=(owed(ZOMBIE, Notice.NEW),),
            writes=(state(ZOMBIE, first_seen=NOW, pending=Notice.NEW),),
        ),
        id="one new, one known: only the new one is owed",
    ),
    pytest.param(
        Row(
            findings=(ZOMBIE,),
            states=(ANNOUNCED,),
            owed=(owed(ORPHAN, Notice.RESOLVED), owed(ZOMBIE, Notice.NEW)),
            writes=(
                state(ZOMBIE, first_seen=NOW, pending=Notice.NEW),
                replace(ANNOUNCED, active=False, pending=Notice.RESOLVED),
            ),
        ),
        id="one appears, another resolves: both owed, ordered by finding id",
    ),
]


@pytest.mark.parametrize("row", ROWS)
def test_decide_alerts(row: Row) -> None:
    decision = decide(row.findings, row.states)
    assert decision.owed == row.owed
    assert decision.writes == row.writes


def test_finding_id_is_kind_and_key_without_slashes() -> None:
    drift = Finding(FindingKind.DRIFT, "BTC/USD", "1:0.5", "drift")
    assert drift.finding_id == "drift:BTC_USD"
    assert ORPHAN.finding_id == "orphan:BTCUSD"


def test_delivered_clears_pending_and_stamps_the_time() -> None:
    pending = state(ORPHAN, first_seen=ago(1), pending=Notice.NEW)
    after = delivered(pending, NOW)
    assert after == replace(pending, pending=None, last_alerted_at=NOW)


def test_a_full_lifecycle_announces_each_step_once() -> None:
    states: dict[str, AlertState] = {}
    told: list[Notice] = []
    timeline = [
        (ago(20), (ORPHAN,)),
        (ago(19), (ORPHAN,)),
        (ago(13), (ORPHAN,)),
        (ago(12), (ORPHAN_BIGGER,)),
        (ago(11), ()),
        (ago(10), ()),
        (ago(9), (ORPHAN,)),
    ]
    for at, findings in timeline:
        decision = decide_alerts(findings, states, at, REALERT)
        states.update({w.finding_id: w for w in decision.writes})
        for notice in decision.owed:
            told.append(notice.notice)
            states[notice.finding_id] = delivered(states[notice.finding_id], at)
    assert told == [Notice.NEW, Notice.REMINDER, Notice.CHANGED, Notice.RESOLVED, Notice.NEW]


def replay(
    timeline: list[tuple[datetime, tuple[Finding, ...], bool]],
) -> list[list[tuple[str, Notice]]]:
    """Run decide_alerts over a timeline; the bool says whether that run's delivery succeeded."""
    states: dict[str, AlertState] = {}
    owed_per_run: list[list[tuple[str, Notice]]] = []
    for at, findings, delivery_ok in timeline:
        decision = decide_alerts(findings, states, at, REALERT)
        states.update({w.finding_id: w for w in decision.writes})
        owed_per_run.append([(n.line, n.notice) for n in decision.owed])
        if delivery_ok:
            for n in decision.owed:
                states[n.finding_id] = delivered(states[n.finding_id], at)
    return owed_per_run


@pytest.mark.parametrize(
    ("timeline", "last_run_owes"),
    [
        pytest.param(
            [(ago(3), (ORPHAN,), False), (ago(2), (), True)],
            [],
            id="NEW never delivered, then gone: no resolved",
        ),
        pytest.param(
            [(ago(3), (ORPHAN,), False), (ago(2), (ORPHAN_BIGGER,), False), (ago(1), (), True)],
            [],
            id="NEW never delivered, changed (never delivered), then gone: no resolved",
        ),
        pytest.param(
            [
                (ago(9), (ORPHAN,), True),
                (ago(8), (), True),
                (ago(3), (ORPHAN,), False),
                (ago(2), (ORPHAN_BIGGER,), False),
                (ago(1), (), True),
            ],
            [],
            id="announced and resolved; back, changed, never delivered, gone: no 2nd resolved",
        ),
        pytest.param(
            [(ago(3), (ORPHAN,), True), (ago(2), (ORPHAN_BIGGER,), False), (ago(1), (), True)],
            [(ORPHAN_BIGGER.line, Notice.RESOLVED)],
            id="NEW delivered, change undelivered, then gone: resolved is owed",
        ),
        pytest.param(
            [(ago(3), (ORPHAN,), False), (ago(2), (ORPHAN,), False), (ago(1), (ORPHAN,), True)],
            [(ORPHAN.line, Notice.NEW)],
            id="failed deliveries: the NEW is still owed on the third run",
        ),
    ],
)
def test_delivery_failures_never_announce_what_nobody_was_told(
    timeline: list[tuple[datetime, tuple[Finding, ...], bool]],
    last_run_owes: list[tuple[str, Notice]],
) -> None:
    assert replay(timeline)[-1] == last_run_owes


# --------------------------------------------------------------------------------------------
# Property: once everything owed has been delivered, the same findings owe nothing.

KINDS = st.sampled_from(list(FindingKind))
KEYS = st.sampled_from(["BTCUSD", "ETHUSD", "pos-1", "pos-2"])
FINGERPRINTS = st.sampled_from(["a", "b", "c"])
TIMES = st.integers(0, 72).map(ago)


@st.composite
def findings_and_states(
    draw: st.DrawFn,
) -> tuple[list[Finding], dict[str, AlertState], timedelta]:
    pairs = draw(st.lists(st.tuples(KINDS, KEYS), unique=True, max_size=6))
    findings = [
        Finding(kind, key, draw(FINGERPRINTS), f"{kind} {key}")
        for kind, key in pairs
        if draw(st.booleans())
    ]
    states: dict[str, AlertState] = {}
    for kind, key in pairs:
        if not draw(st.booleans()):
            continue
        active = draw(st.booleans())
        pending_choices = (
            [None, Notice.NEW, Notice.CHANGED, Notice.REMINDER]
            if active
            else [None, Notice.RESOLVED]
        )
        fid = Finding(kind, key, "", "").finding_id
        states[fid] = AlertState(
            finding_id=fid,
            kind=kind,
            key=key,
            fingerprint=draw(FINGERPRINTS),
            line=f"old {kind} {key}",
            active=active,
            first_seen_at=ago(80),
            last_alerted_at=draw(st.one_of(st.none(), TIMES)),
            pending=draw(st.sampled_from(pending_choices)),
        )
    realert = timedelta(minutes=draw(st.integers(1, 24 * 60)))
    return findings, states, realert


@settings(max_examples=150, deadline=None)
@given(findings_and_states())
def test_after_delivering_everything_owed_nothing_is_owed(
    case: tuple[list[Finding], dict[str, AlertState], timedelta],
) -> None:
    findings, states, realert = case
    first = decide_alerts(findings, states, NOW, realert)
    after = dict(states)
    after.update({w.finding_id: w for w in first.writes})
    for notice in first.owed:
        after[notice.finding_id] = delivered(after[notice.finding_id], NOW)
    second = decide_alerts(findings, after, NOW, realert)
    assert second.owed == ()
    assert second.writes == ()
    # Every current finding ends up active with its latest fingerprint.
    for finding in findings:
        assert after[finding.finding_id].active
        assert after[finding.finding_id].fingerprint == finding.fingerprint
    gone = set(states) - {f.finding_id for f in findings}
    assert not any(after[fid].active for fid in gone)
