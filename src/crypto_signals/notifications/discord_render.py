"""Render reconciler alert sections into Discord webhook payloads.

Everything here is pure (no I/O, no clock, no environment) so it can be property-tested
exhaustively. :func:`render_batches` turns alert sections into one or more webhook payloads
that respect Discord's documented message and embed limits, whatever the input, and says
which items (line keys) each payload carries, so a partial delivery owes only the rest.
:func:`render_messages` is the same without the keys.

The limits are the documented ones, below. Checking a payload against them the way Discord's
server does is the local sink's job (``sandbox/discord_limits.py``), not the product's.

Lengths are counted in Unicode code points (``len`` of a ``str``), which is how Discord counts
them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from crypto_signals.engine.messages import AlertSection, Severity

__all__ = ["AlertSection", "RenderedMessage", "Severity", "render_batches", "render_messages"]

# --- Discord's documented limits -------------------------------------------------------------
# https://discord.com/developers/docs/resources/message#embed-object-embed-limits
# https://discord.com/developers/docs/resources/webhook#execute-webhook
CONTENT_MAX_CHARS: Final = 2000
EMBEDS_MAX_COUNT: Final = 10
EMBED_TITLE_MAX_CHARS: Final = 256
EMBED_DESCRIPTION_MAX_CHARS: Final = 4096
EMBED_FIELDS_MAX_COUNT: Final = 25
EMBED_FIELD_NAME_MAX_CHARS: Final = 256
EMBED_FIELD_VALUE_MAX_CHARS: Final = 1024
EMBED_FOOTER_TEXT_MAX_CHARS: Final = 2048
EMBED_AUTHOR_NAME_MAX_CHARS: Final = 256
EMBEDS_TOTAL_MAX_CHARS: Final = 6000
USERNAME_MAX_CHARS: Final = 80
# Webhook names must not contain these (case-insensitive); Discord answers 400 otherwise.
USERNAME_FORBIDDEN_SUBSTRINGS: Final = ("clyde", "discord")
EMBED_COLOR_MAX: Final = 0xFFFFFF

# Pseudo error code for "neither content nor embeds". Discord does not report this as a form
# error (50035) but as a distinct JSON error code 50006, so callers need to tell it apart.
EMPTY_MESSAGE_CODE: Final = "EMPTY_MESSAGE"

ELLIPSIS: Final = "…"
CONTINUATION_SUFFIX: Final = " (cont.)"
UNTITLED_SECTION: Final = "(untitled)"
OVERFLOW_TITLE: Final = "Not shown: Discord message limit reached"
DEFAULT_USERNAME: Final = "crypto-signals reconciler"
DEFAULT_MAX_MESSAGES: Final = 5

# Characters of the per-message embed budget kept back, in the last allowed message, for the
# "not shown" summary embed. Big enough for a handful of per-section lines plus the aggregate
# line; the summary builder never exceeds it.
_SUMMARY_RESERVE_CHARS: Final = 1200
# Section titles are shortened inside summary lines so that several sections fit.
_SUMMARY_TITLE_MAX_CHARS: Final = 100
# Upper bound for the aggregate "... from N other sections" line, kept free while listing.
_SUMMARY_AGGREGATE_MAX_CHARS: Final = 100


SEVERITY_COLORS: Final[Mapping[Severity, int]] = {
    Severity.INFO: 0x3498DB,  # blue
    Severity.WARNING: 0xF39C12,  # amber
    Severity.CRITICAL: 0xE74C3C,  # red
    Severity.RESOLVED: 0x2ECC71,  # green
}

# Used to colour the overflow summary after the worst section it hides.
_SEVERITY_RANK: Final[Mapping[Severity, int]] = {
    Severity.RESOLVED: 0,
    Severity.INFO: 1,
    Severity.WARNING: 2,
    Severity.CRITICAL: 3,
}


# --- rendering -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    """A non-empty section with its titles and lines already made to fit."""

    title: str
    cont_title: str
    severity: Severity
    lines: tuple[str, ...]
    keys: tuple[str | None, ...]


@dataclass
class _Embed:
    title: str
    severity: Severity
    lines: list[str] = field(default_factory=list)
    footer: str = ""
    keys: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        embed: dict[str, Any] = {
            "title": self.title,
            "description": "\n".join(self.lines),
            "color": SEVERITY_COLORS[self.severity],
        }
        if self.footer:
            embed["footer"] = {"text": self.footer}
        return embed


def truncate(text: str, limit: int) -> str:
    """Shorten ``text`` to at most ``limit`` characters, marking the cut with an ellipsis."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if len(text) <= limit:
        return text
    return text[: limit - 1] + ELLIPSIS


def _one_line(text: str) -> str:
    # A finding is displayed as one description line and counted as one line in the
    # overflow summary, so embedded line breaks are folded into spaces.
    return " ".join(text.splitlines())


@dataclass(frozen=True)
class RenderedMessage:
    """One webhook payload, and the keys of the items it announces (shown, or counted in the
    "not shown" summary)."""

    payload: dict[str, Any]
    keys: frozenset[str]


def render_messages(
    sections: Sequence[AlertSection],
    *,
    header: str,
    footer: str = "",
    username: str = DEFAULT_USERNAME,
    max_messages: int = DEFAULT_MAX_MESSAGES,
) -> list[dict[str, Any]]:
    """The payloads of :func:`render_batches`."""
    rendered = render_batches(
        sections, header=header, footer=footer, username=username, max_messages=max_messages
    )
    return [m.payload for m in rendered]


def render_batches(
    sections: Sequence[AlertSection],
    *,
    header: str,
    footer: str = "",
    username: str = DEFAULT_USERNAME,
    max_messages: int = DEFAULT_MAX_MESSAGES,
) -> list[RenderedMessage]:
    """Render alert sections into at most ``max_messages`` webhook payloads.

    One embed per section (continued as ``"<title> (cont.)"`` when it does not fit), the
    header as the first message's content and the footer on the very last embed. Blank
    lines are dropped and sections without findings are skipped; if nothing is left the
    result is ``[]``. When everything does not fit in ``max_messages`` messages, the last
    message ends with a summary embed counting what was left out, per section.
    """
    if max_messages < 1:
        raise ValueError("max_messages must be at least 1")
    footer_text = truncate(footer, EMBED_FOOTER_TEXT_MAX_CHARS) if footer.strip() else ""
    # Every message keeps room for the footer: simpler than predicting which message is last,
    # and footers are short in practice.
    budget = EMBEDS_TOTAL_MAX_CHARS - len(footer_text)
    prepared = _prepare(sections, budget)
    if not prepared:
        return []

    pages: list[list[_Embed]] = []
    cursor = (0, 0)
    while cursor[0] < len(prepared):
        if len(pages) == max_messages - 1:
            embeds, end = _pack_message(prepared, cursor, budget, EMBEDS_MAX_COUNT)
            if end[0] < len(prepared):
                # Overflow: re-pack the last message leaving room for the summary embed.
                embeds, end = _pack_message(
                    prepared, cursor, budget - _SUMMARY_RESERVE_CHARS, EMBEDS_MAX_COUNT - 1
                )
                embeds.append(_summary_embed(prepared, end))
                end = (len(prepared), 0)
        else:
            embeds, end = _pack_message(prepared, cursor, budget, EMBEDS_MAX_COUNT)
            if not embeds:  # pragma: no cover - _prepare caps lines so a fresh message fits one
                raise AssertionError("renderer made no progress")
        pages.append(embeds)
        cursor = end

    pages[-1][-1].footer = footer_text
    content = truncate(header, CONTENT_MAX_CHARS) if header else ""
    name = truncate(username.strip(), USERNAME_MAX_CHARS) if username.strip() else ""
    # An invalid name would get the whole alert rejected; the webhook's own name is a fine
    # fallback, so drop the override instead.
    name_ok = bool(name) and not any(f in name.lower() for f in USERNAME_FORBIDDEN_SUBSTRINGS)

    payloads: list[RenderedMessage] = []
    for index, embeds in enumerate(pages):
        payload: dict[str, Any] = {}
        if name_ok:
            payload["username"] = name
        payload["content"] = content if index == 0 else ""
        payload["embeds"] = [embed.to_json() for embed in embeds]
        # Alert text quotes symbols and user-supplied strings; never let it ping anyone.
        payload["allowed_mentions"] = {"parse": []}
        payloads.append(RenderedMessage(payload, frozenset(k for e in embeds for k in e.keys)))
    return payloads


def _prepare(sections: Sequence[AlertSection], budget: int) -> list[_Prepared]:
    prepared: list[_Prepared] = []
    for section in sections:
        kept = [
            (line, section.key_of(i))
            for i, line in enumerate(map(_one_line, section.lines))
            if line.strip()
        ]
        if not kept:
            continue
        lines = [line for line, _ in kept]
        base = _one_line(section.title).strip() or UNTITLED_SECTION
        title = truncate(base, EMBED_TITLE_MAX_CHARS)
        cont_title = (
            truncate(base, EMBED_TITLE_MAX_CHARS - len(CONTINUATION_SUFFIX)) + CONTINUATION_SUFFIX
        )
        # The longest line that fits a fresh embed in a fresh message; only lines longer than
        # that are cut, everything else moves to the next embed/message intact.
        line_cap = min(EMBED_DESCRIPTION_MAX_CHARS, budget - max(len(title), len(cont_title)))
        prepared.append(
            _Prepared(
                title=title,
                cont_title=cont_title,
                severity=section.severity,
                lines=tuple(truncate(line, line_cap) for line in lines),
                keys=tuple(key for _, key in kept),
            )
        )
    return prepared


def _pack_message(
    prepared: Sequence[_Prepared],
    cursor: tuple[int, int],
    char_budget: int,
    embed_slots: int,
) -> tuple[list[_Embed], tuple[int, int]]:
    """Greedily fill one message from ``cursor`` (section index, line index) onwards."""
    section_index, line_index = cursor
    embeds: list[_Embed] = []
    used = 0
    while section_index < len(prepared) and len(embeds) < embed_slots:
        section = prepared[section_index]
        title = section.title if line_index == 0 else section.cont_title
        room = min(EMBED_DESCRIPTION_MAX_CHARS, char_budget - used - len(title))
        embed = _Embed(title=title, severity=section.severity)
        description_len = 0
        while line_index < len(section.lines):
            line = section.lines[line_index]
            added = len(line) + (1 if embed.lines else 0)  # +1 for the joining newline
            if description_len + added > room:
                break
            embed.lines.append(line)
            key = section.keys[line_index]
            if key is not None:
                embed.keys.add(key)
            description_len += added
            line_index += 1
        if not embed.lines:
            break  # not even one more line fits this message
        embeds.append(embed)
        used += len(title) + description_len
        if line_index == len(section.lines):
            section_index, line_index = section_index + 1, 0
    return embeds, (section_index, line_index)


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def _summary_embed(prepared: Sequence[_Prepared], cursor: tuple[int, int]) -> _Embed:
    """Describe everything from ``cursor`` onwards that did not make it into a message."""
    section_index, line_index = cursor
    omitted: list[tuple[_Prepared, int]] = []
    keys: set[str] = set()
    for index in range(section_index, len(prepared)):
        section = prepared[index]
        first = line_index if index == section_index else 0
        skipped = len(section.lines) - first
        if skipped:
            omitted.append((section, skipped))
            keys.update(k for k in section.keys[first:] if k is not None)

    room = min(EMBED_DESCRIPTION_MAX_CHARS, _SUMMARY_RESERVE_CHARS - len(OVERFLOW_TITLE))
    lines: list[str] = []
    used = 0
    for position, (section, skipped) in enumerate(omitted):
        short_title = truncate(section.title, _SUMMARY_TITLE_MAX_CHARS)
        line = f"{ELLIPSIS} and {_plural(skipped, 'more line')} not shown from “{short_title}”"
        is_last = position == len(omitted) - 1
        needed = used + len(line) + 1 + (0 if is_last else _SUMMARY_AGGREGATE_MAX_CHARS + 1)
        if needed > room:
            rest = omitted[position:]
            rest_lines = sum(count for _, count in rest)
            lines.append(
                f"{ELLIPSIS} and {_plural(rest_lines, 'more line')} not shown from "
                f"{_plural(len(rest), 'other section')}"
            )
            break
        lines.append(line)
        used += len(line) + 1

    worst = max((section.severity for section, _ in omitted), key=_SEVERITY_RANK.__getitem__)
    # Counted in the summary is announced: what it stands for is not owed again.
    return _Embed(title=OVERFLOW_TITLE, severity=worst, lines=lines, keys=keys)
