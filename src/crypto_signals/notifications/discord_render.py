"""Render reconciler alert sections into Discord webhook payloads.

Everything here is pure (no I/O, no clock, no environment) so it can be
property-tested exhaustively. Two public entry points:

* :func:`render_messages` turns :class:`AlertSection` objects into one or more
  webhook payloads that are guaranteed to respect Discord's documented message
  and embed limits, whatever the input.
* :func:`validate_payload` (and the structured :func:`find_violations`) checks a
  payload against those same limits. The local Discord sink and the tests use
  it too, so the limit rules live in exactly one place.

Lengths are counted in Unicode code points (``len`` of a ``str``), which is how
Discord counts them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

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


class Severity(StrEnum):
    """How bad a section is; drives the embed colour."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"
    RESOLVED = "resolved"


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


@dataclass(frozen=True)
class AlertSection:
    """A titled group of findings; one line per finding."""

    title: str
    severity: Severity
    lines: tuple[str, ...]


# --- validation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LimitViolation:
    """One broken rule, located like Discord does in its ``errors`` object."""

    path: tuple[str | int, ...]  # e.g. ("embeds", 0, "description"); () = the payload itself
    code: str  # Discord's form error code, e.g. "BASE_TYPE_MAX_LENGTH"
    message: str

    def __str__(self) -> str:
        where = ".".join(str(part) for part in self.path) or "<payload>"
        return f"{where}: {self.message}"


def validate_payload(payload: object) -> list[str]:
    """Return human-readable limit violations of a webhook payload; ``[]`` means valid."""
    return [str(violation) for violation in find_violations(payload)]


def find_violations(payload: object) -> list[LimitViolation]:
    """Check a webhook payload against Discord's documented limits.

    Also rejects wrong JSON types where a limit could not otherwise be checked, so the
    sink never has to trust the shape of what it receives.
    """
    if not isinstance(payload, Mapping):
        return [
            LimitViolation((), "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        ]
    out: list[LimitViolation] = []

    content = payload.get("content")
    has_content = False
    if (
        content is not None
        and _check_str(content, ("content",), CONTENT_MAX_CHARS, out) is not None
    ):
        # Discord trims content, so whitespace alone does not make a message non-empty.
        has_content = bool(str(content).strip())

    username = payload.get("username")
    if username is not None:
        _check_username(username, out)

    embeds = payload.get("embeds")
    has_embeds = False
    if embeds is not None:
        if not isinstance(embeds, list):
            out.append(
                LimitViolation(
                    ("embeds",), "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType"
                )
            )
        else:
            has_embeds = bool(embeds)
            if len(embeds) > EMBEDS_MAX_COUNT:
                out.append(_too_long(("embeds",), EMBEDS_MAX_COUNT))
            total = sum(_check_embed(embed, ("embeds", i), out) for i, embed in enumerate(embeds))
            if total > EMBEDS_TOTAL_MAX_CHARS:
                out.append(
                    LimitViolation(
                        ("embeds",),
                        "MAX_EMBED_SIZE_EXCEEDED",
                        f"Embed size exceeds maximum size of {EMBEDS_TOTAL_MAX_CHARS}",
                    )
                )

    if not has_content and not has_embeds:
        out.append(LimitViolation((), EMPTY_MESSAGE_CODE, "Cannot send an empty message"))
    return out


def _too_long(path: tuple[str | int, ...], limit: int) -> LimitViolation:
    return LimitViolation(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def _check_str(
    value: object,
    path: tuple[str | int, ...],
    limit: int,
    out: list[LimitViolation],
) -> int | None:
    """Validate one string field; return its length (``None`` when it is not a string)."""
    if not isinstance(value, str):
        out.append(LimitViolation(path, "STRING_TYPE_CONVERT", "Must be a string."))
        return None
    if len(value) > limit:
        out.append(_too_long(path, limit))
    return len(value)


def _check_username(username: object, out: list[LimitViolation]) -> None:
    path: tuple[str | int, ...] = ("username",)
    if not isinstance(username, str):
        out.append(LimitViolation(path, "STRING_TYPE_CONVERT", "Must be a string."))
        return
    # Discord trims names, so whitespace alone counts as empty.
    if not username.strip() or len(username) > USERNAME_MAX_CHARS:
        out.append(
            LimitViolation(
                path,
                "BASE_TYPE_BAD_LENGTH",
                f"Must be between 1 and {USERNAME_MAX_CHARS} in length.",
            )
        )
    lowered = username.lower()
    for forbidden in USERNAME_FORBIDDEN_SUBSTRINGS:
        if forbidden in lowered:
            out.append(
                LimitViolation(
                    path, "USERNAME_INVALID_CONTAINS", f'Username cannot contain "{forbidden}"'
                )
            )


def _check_embed(embed: object, path: tuple[str | int, ...], out: list[LimitViolation]) -> int:
    """Validate one embed; return the characters it contributes to the 6000 total."""
    if not isinstance(embed, Mapping):
        out.append(
            LimitViolation(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        )
        return 0
    total = 0
    for key, limit in (
        ("title", EMBED_TITLE_MAX_CHARS),
        ("description", EMBED_DESCRIPTION_MAX_CHARS),
    ):
        if embed.get(key) is not None:
            total += _check_str(embed[key], (*path, key), limit, out) or 0

    color = embed.get("color")
    if color is not None and (
        isinstance(color, bool) or not isinstance(color, int) or not 0 <= color <= EMBED_COLOR_MAX
    ):
        out.append(
            LimitViolation(
                (*path, "color"),
                "NUMBER_TYPE_MAX",
                f"Must be an integer between 0 and {EMBED_COLOR_MAX}.",
            )
        )

    for key, inner, limit in (
        ("footer", "text", EMBED_FOOTER_TEXT_MAX_CHARS),
        ("author", "name", EMBED_AUTHOR_NAME_MAX_CHARS),
    ):
        if embed.get(key) is not None:
            total += _check_child(embed[key], (*path, key), inner, limit, out)

    fields = embed.get("fields")
    if fields is not None:
        if not isinstance(fields, list):
            out.append(
                LimitViolation(
                    (*path, "fields"),
                    "LIST_TYPE_CONVERT",
                    "Only iterables may be used in a ListType",
                )
            )
        else:
            if len(fields) > EMBED_FIELDS_MAX_COUNT:
                out.append(_too_long((*path, "fields"), EMBED_FIELDS_MAX_COUNT))
            for j, fld in enumerate(fields):
                fpath = (*path, "fields", j)
                total += _check_child(fld, fpath, "name", EMBED_FIELD_NAME_MAX_CHARS, out)
                if isinstance(fld, Mapping):  # a non-object field is reported once, above
                    total += _check_child(fld, fpath, "value", EMBED_FIELD_VALUE_MAX_CHARS, out)
    return total


def _check_child(
    obj: object,
    path: tuple[str | int, ...],
    key: str,
    limit: int,
    out: list[LimitViolation],
) -> int:
    """Validate the required string ``obj[key]`` of a nested object; return its length."""
    if not isinstance(obj, Mapping):
        out.append(
            LimitViolation(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        )
        return 0
    if obj.get(key) is None:
        out.append(LimitViolation((*path, key), "BASE_TYPE_REQUIRED", "This field is required"))
        return 0
    return _check_str(obj[key], (*path, key), limit, out) or 0


# --- rendering -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    """A non-empty section with its titles and lines already made to fit."""

    title: str
    cont_title: str
    severity: Severity
    lines: tuple[str, ...]


@dataclass
class _Embed:
    title: str
    severity: Severity
    lines: list[str] = field(default_factory=list)
    footer: str = ""

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


def render_messages(
    sections: Sequence[AlertSection],
    *,
    header: str,
    footer: str = "",
    username: str = DEFAULT_USERNAME,
    max_messages: int = DEFAULT_MAX_MESSAGES,
) -> list[dict[str, Any]]:
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

    payloads: list[dict[str, Any]] = []
    for index, embeds in enumerate(pages):
        payload: dict[str, Any] = {}
        if name_ok:
            payload["username"] = name
        payload["content"] = content if index == 0 else ""
        payload["embeds"] = [embed.to_json() for embed in embeds]
        # Alert text quotes symbols and user-supplied strings; never let it ping anyone.
        payload["allowed_mentions"] = {"parse": []}
        payloads.append(payload)
    return payloads


def _prepare(sections: Sequence[AlertSection], budget: int) -> list[_Prepared]:
    prepared: list[_Prepared] = []
    for section in sections:
        lines = [line for line in map(_one_line, section.lines) if line.strip()]
        if not lines:
            continue
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
    for index in range(section_index, len(prepared)):
        section = prepared[index]
        skipped = len(section.lines) - (line_index if index == section_index else 0)
        if skipped:
            omitted.append((section, skipped))

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
    return _Embed(title=OVERFLOW_TITLE, severity=worst, lines=lines)
