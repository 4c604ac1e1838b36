"""Rendering alert sections into Discord payloads that always respect Discord's limits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto_signals.notifications.discord_render import (
    CONTENT_MAX_CHARS,
    EMBED_DESCRIPTION_MAX_CHARS,
    EMBED_TITLE_MAX_CHARS,
    EMBEDS_MAX_COUNT,
    EMBEDS_TOTAL_MAX_CHARS,
    OVERFLOW_TITLE,
    SEVERITY_COLORS,
    USERNAME_MAX_CHARS,
    AlertSection,
    Severity,
    render_batches,
    render_messages,
    truncate,
)
from crypto_signals.sandbox.discord_limits import find_violations, validate_payload

ORPHAN = "Orphan positions at the broker"
_OMITTED = re.compile(r"^… and ([\d,]+) more lines? not shown from ")


def section(
    title: str, n: int, *, width: int = 40, severity: Severity = Severity.WARNING
) -> AlertSection:
    return AlertSection(
        title, severity, tuple(f"{title[:8]} #{i:05d} ".ljust(width, ".") for i in range(n))
    )


def embeds_of(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [embed for payload in payloads for embed in payload["embeds"]]


def shown_lines(payloads: list[dict[str, Any]]) -> int:
    return sum(
        embed["description"].count("\n") + 1
        for embed in embeds_of(payloads)
        if embed["title"] != OVERFLOW_TITLE
    )


def omitted_lines(payloads: list[dict[str, Any]]) -> int:
    total = 0
    for embed in embeds_of(payloads):
        if embed["title"] == OVERFLOW_TITLE:
            for line in embed["description"].split("\n"):
                match = _OMITTED.match(line)
                assert match, line
                total += int(match.group(1).replace(",", ""))
    return total


# --- validate_payload: one row per rule -------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"content": "hi"}, []),
        ({"embeds": [{"title": "t"}]}, []),
        ({"content": "x" * 2000, "username": "u" * 80}, []),
        ({"content": "x" * 2001}, ["content: Must be 2000 or fewer in length."]),
        ({}, ["<payload>: Cannot send an empty message"]),
        ({"content": "  \n"}, ["<payload>: Cannot send an empty message"]),
        ({"content": "", "embeds": []}, ["<payload>: Cannot send an empty message"]),
        (
            {"content": "hi", "username": "u" * 81},
            ["username: Must be between 1 and 80 in length."],
        ),
        ({"content": "hi", "username": " "}, ["username: Must be between 1 and 80 in length."]),
        ({"content": "hi", "username": "my Clyde"}, ['username: Username cannot contain "clyde"']),
        ({"embeds": [{"title": "t"}] * 11}, ["embeds: Must be 10 or fewer in length."]),
        ({"embeds": [{"title": "x" * 257}]}, ["embeds.0.title: Must be 256 or fewer in length."]),
        (
            {"embeds": [{"description": "x" * 4097}]},
            ["embeds.0.description: Must be 4096 or fewer in length."],
        ),
        (
            {"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]},
            ["embeds.0.fields: Must be 25 or fewer in length."],
        ),
        (
            {"embeds": [{"fields": [{"name": "x" * 257, "value": "v"}]}]},
            ["embeds.0.fields.0.name: Must be 256 or fewer in length."],
        ),
        (
            {"embeds": [{"fields": [{"name": "n", "value": "x" * 1025}]}]},
            ["embeds.0.fields.0.value: Must be 1024 or fewer in length."],
        ),
        (
            {"embeds": [{"fields": [{"name": "n"}]}]},
            ["embeds.0.fields.0.value: This field is required"],
        ),
        (
            {"embeds": [{"footer": {"text": "x" * 2049}}]},
            ["embeds.0.footer.text: Must be 2048 or fewer in length."],
        ),
        (
            {"embeds": [{"author": {"name": "x" * 257}}]},
            ["embeds.0.author.name: Must be 256 or fewer in length."],
        ),
        (
            {
                "embeds": [
                    {"title": "t" * 256, "description": "d" * 4096, "footer": {"text": "f" * 1648}}
                ]
            },
            [],
        ),
        (
            {
                "embeds": [
                    {"title": "t" * 256, "description": "d" * 4096, "footer": {"text": "f" * 1649}}
                ]
            },
            ["embeds: Embed size exceeds maximum size of 6000"],
        ),
        (
            {
                "embeds": [
                    {"description": "d" * 3000},
                    {"fields": [{"name": "n" * 1, "value": "v" * 1000}] * 3},
                ]
            },
            ["embeds: Embed size exceeds maximum size of 6000"],
        ),
        (
            {"embeds": [{"title": "t", "color": 0x1000000}]},
            ["embeds.0.color: Must be an integer between 0 and 16777215."],
        ),
        ({"content": 5}, ["content: Must be a string.", "<payload>: Cannot send an empty message"]),
        (
            {"embeds": "nope"},
            [
                "embeds: Only iterables may be used in a ListType",
                "<payload>: Cannot send an empty message",
            ],
        ),
        (["content"], ["<payload>: Only dictionaries may be used in a DictType"]),
    ],
)
def test_validate_payload(payload: Any, expected: list[str]) -> None:
    assert validate_payload(payload) == expected


def test_violations_carry_discord_paths_and_codes() -> None:
    (violation,) = find_violations({"embeds": [{"title": "ok"}, {"title": "x" * 300}]})
    assert violation.path == ("embeds", 1, "title")
    assert violation.code == "BASE_TYPE_MAX_LENGTH"


# --- render_messages: table-driven cases -------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    sections: list[AlertSection]
    messages: int
    titles: list[str]
    header: str = "**Reconciler run**"
    footer: str = ""
    max_messages: int = 5


CASES = [
    Case("single", [section(ORPHAN, 3)], 1, [ORPHAN]),
    Case(
        "empty-sections-skipped",
        [
            AlertSection("nothing", Severity.INFO, ()),
            section("A", 1),
            AlertSection("blank", Severity.INFO, ("", "  ")),
        ],
        1,
        ["A"],
    ),
    Case(
        "section-continues-in-second-embed",
        # ~125 lines of 40 chars fill one 4096-char description.
        [section(ORPHAN, 130)],
        1,
        [ORPHAN, f"{ORPHAN} (cont.)"],
    ),
    Case(
        "spills-into-second-message",
        # 200 lines x 41 chars = 8200 chars > 6000 per message.
        [section(ORPHAN, 200)],
        2,
        [ORPHAN, f"{ORPHAN} (cont.)", f"{ORPHAN} (cont.)"],
    ),
    Case(
        "eleven-small-sections",
        [section(f"S{i}", 1) for i in range(11)],
        2,
        [f"S{i}" for i in range(11)],
    ),
    Case(
        "overflow-summary",
        [section(ORPHAN, 2000), section("Missing in Firestore", 10)],
        5,
        # Two embeds per message (4096 + the rest of the 6000), the summary at the end.
        [ORPHAN] + [f"{ORPHAN} (cont.)"] * 9 + [OVERFLOW_TITLE],
    ),
    Case(
        "overflow-with-one-message",
        [section(ORPHAN, 500)],
        1,
        [ORPHAN, f"{ORPHAN} (cont.)", OVERFLOW_TITLE],
        max_messages=1,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_render_cases(case: Case) -> None:
    payloads = render_messages(
        case.sections, header=case.header, footer=case.footer, max_messages=case.max_messages
    )
    assert len(payloads) == case.messages
    assert [embed["title"] for embed in embeds_of(payloads)] == case.titles
    for index, payload in enumerate(payloads):
        assert validate_payload(payload) == []
        assert payload["allowed_mentions"] == {"parse": []}
        assert payload["username"] == "crypto-signals reconciler"
        assert payload["content"] == (case.header if index == 0 else "")
    total = sum(len([line for line in s.lines if line.strip()]) for s in case.sections)
    assert shown_lines(payloads) + omitted_lines(payloads) == total


def test_single_section_payload_shape() -> None:
    lines = (
        "BTC/USD long 0.5 (market value $31,250.00)",
        "ETH/USD long 2 (market value $6,400.00)",
    )
    payloads = render_messages(
        [AlertSection(ORPHAN, Severity.CRITICAL, lines)], header="Run 7", footer="reconciler v1"
    )
    assert payloads == [
        {
            "username": "crypto-signals reconciler",
            "content": "Run 7",
            "embeds": [
                {
                    "title": ORPHAN,
                    "description": "\n".join(lines),
                    "color": SEVERITY_COLORS[Severity.CRITICAL],
                    "footer": {"text": "reconciler v1"},
                }
            ],
            "allowed_mentions": {"parse": []},
        }
    ]


def test_all_severities_have_distinct_colors() -> None:
    assert len({SEVERITY_COLORS[severity] for severity in Severity}) == len(Severity)


def test_all_empty_returns_nothing() -> None:
    assert render_messages([], header="h") == []
    assert render_messages([AlertSection("x", Severity.INFO, ())], header="h", footer="f") == []


def test_single_huge_line_is_truncated_with_ellipsis() -> None:
    payloads = render_messages([AlertSection("Giant", Severity.INFO, ("z" * 10_000,))], header="h")
    (embed,) = embeds_of(payloads)
    assert embed["description"].endswith("…")
    assert len(embed["description"]) == EMBED_DESCRIPTION_MAX_CHARS


def test_line_breaks_inside_a_finding_are_folded() -> None:
    payloads = render_messages([AlertSection("A", Severity.INFO, ("one\ntwo",))], header="h")
    assert embeds_of(payloads)[0]["description"] == "one two"


def test_overflow_summary_counts_what_was_left_out() -> None:
    payloads = render_messages(
        [section("Stale orders", 5), section(ORPHAN, 2000), section("Drift", 7)],
        header="h",
        footer="run 42",
        max_messages=2,
    )
    assert len(payloads) == 2
    summary = payloads[-1]["embeds"][-1]
    assert summary["title"] == OVERFLOW_TITLE
    assert summary["footer"] == {"text": "run 42"}
    lines = summary["description"].split("\n")
    assert re.fullmatch(rf"… and [\d,]+ more lines not shown from “{ORPHAN}”", lines[0])
    assert lines[1] == "… and 7 more lines not shown from “Drift”"
    assert shown_lines(payloads) + omitted_lines(payloads) == 2012


def test_summary_of_many_sections_is_aggregated() -> None:
    payloads = render_messages([section(f"Section {i}", 50) for i in range(500)], header="h")
    assert len(payloads) == 5
    summary_lines = payloads[-1]["embeds"][-1]["description"].split("\n")
    assert re.fullmatch(
        r"… and [\d,]+ more lines not shown from [\d,]+ other sections", summary_lines[-1]
    )
    assert shown_lines(payloads) + omitted_lines(payloads) == 500 * 50


def test_oversized_header_title_footer_and_username_are_cut() -> None:
    payloads = render_messages(
        [AlertSection("T" * 1000, Severity.INFO, ("a",) * 200)],
        header="H" * 5000,
        footer="F" * 5000,
        username="U" * 200,
    )
    first = payloads[0]
    assert len(first["content"]) == CONTENT_MAX_CHARS
    assert first["content"].endswith("…")
    assert len(first["username"]) == USERNAME_MAX_CHARS
    titles = [embed["title"] for embed in embeds_of(payloads)]
    assert all(len(title) <= EMBED_TITLE_MAX_CHARS for title in titles)
    assert titles[0].endswith("…")
    assert all(validate_payload(payload) == [] for payload in payloads)


@pytest.mark.parametrize("username", ["", "   ", "Discord bridge", "clyde"])
def test_unusable_username_falls_back_to_the_webhook_name(username: str) -> None:
    (payload,) = render_messages([section("A", 1)], header="h", username=username)
    assert "username" not in payload
    assert validate_payload(payload) == []


def test_max_messages_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_messages"):
        render_messages([section("A", 1)], header="h", max_messages=0)


def test_truncate() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("abcd", 3) == "ab…"
    with pytest.raises(ValueError, match="limit"):
        truncate("abc", 0)


# --- property: whatever the input, every payload is valid ------------------------------------

_text = st.text(max_size=60)
# Long strings are built by repetition: generating 10,000 random characters is slow.
_long_text = st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=8), st.integers(0, 1500))
_line = st.one_of(_text, _text, _text, _long_text)
_lines = st.one_of(
    st.lists(_line, max_size=30),
    # Many identical lines: the cheap way to get huge line counts.
    st.builds(lambda line, n: [line] * n, _line, st.integers(0, 1000)),
).map(tuple)
_section = st.builds(
    AlertSection,
    title=st.one_of(_text, _long_text),
    severity=st.sampled_from(Severity),
    lines=_lines,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sections=st.lists(_section, max_size=30),
    header=st.one_of(_text, _long_text),
    footer=st.one_of(_text, _long_text),
    username=st.one_of(_text, _long_text),
    max_messages=st.integers(1, 6),
)
def test_every_payload_respects_every_limit(
    sections: list[AlertSection], header: str, footer: str, username: str, max_messages: int
) -> None:
    payloads = render_messages(
        sections, header=header, footer=footer, username=username, max_messages=max_messages
    )
    for payload in payloads:
        assert validate_payload(payload) == []
        assert len(payload["embeds"]) <= EMBEDS_MAX_COUNT
        assert (
            sum(len(e["title"]) + len(e["description"]) for e in payload["embeds"])
            <= EMBEDS_TOTAL_MAX_CHARS
        )
    assert len(payloads) <= max_messages
    total = sum(1 for s in sections for line in s.lines if " ".join(line.splitlines()).strip())
    if total == 0:
        assert payloads == []
    else:
        # Nothing is lost silently: every finding is either shown or counted in the summary.
        assert shown_lines(payloads) + omitted_lines(payloads) == total


# --- which items each message carries (partial delivery owes only the rest) -------------------


def keyed(title: str, n: int, *, prefix: str, width: int = 200) -> AlertSection:
    lines = tuple(f"{prefix}{i} " + "x" * width for i in range(n))
    return AlertSection(title, Severity.CRITICAL, lines, tuple(f"{prefix}{i}" for i in range(n)))


@pytest.mark.parametrize("max_messages", [5, 2])
def test_each_message_names_the_items_it_carries_and_none_is_lost_or_doubled(
    max_messages: int,
) -> None:
    sections = [keyed("Orphans", 40, prefix="o"), keyed("Unverified", 40, prefix="u")]
    rendered = render_batches(sections, header="h", max_messages=max_messages)
    assert 1 < len(rendered) <= max_messages
    if max_messages == 2:
        assert OVERFLOW_TITLE in str(rendered[-1].payload)
    seen: list[str] = [k for m in rendered for k in m.keys]
    assert sorted(seen) == sorted([f"o{i}" for i in range(40)] + [f"u{i}" for i in range(40)])
    for message in rendered:
        text = str(message.payload)
        shown = {k for k in message.keys if f"'{k} " in text or f"\\n{k} " in text}
        summarized = message.keys - shown
        # A key not shown in a message is one its "not shown" summary counts.
        assert not summarized or OVERFLOW_TITLE in text


def test_lines_without_keys_render_as_before() -> None:
    plain = AlertSection("Plain", Severity.INFO, ("a", "b"))
    [message] = render_batches([plain], header="h")
    assert message.keys == frozenset()
    assert message.payload == render_messages([plain], header="h")[0]
