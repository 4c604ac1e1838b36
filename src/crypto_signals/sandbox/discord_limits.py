"""Discord's server-side message limits, checked the way Discord checks them.

The local webhook sink (``sandbox/discord_sink.py``) uses this to answer 400 for a payload the
real Discord would refuse, and the tests use it to check the renderer. It is not shipped in
the function: the product only renders within the limits
(``notifications/discord_render.py``, whose constants it checks against).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from crypto_signals.notifications.discord_render import (
    CONTENT_MAX_CHARS,
    EMBED_AUTHOR_NAME_MAX_CHARS,
    EMBED_COLOR_MAX,
    EMBED_DESCRIPTION_MAX_CHARS,
    EMBED_FIELD_NAME_MAX_CHARS,
    EMBED_FIELD_VALUE_MAX_CHARS,
    EMBED_FIELDS_MAX_COUNT,
    EMBED_FOOTER_TEXT_MAX_CHARS,
    EMBED_TITLE_MAX_CHARS,
    EMBEDS_MAX_COUNT,
    EMBEDS_TOTAL_MAX_CHARS,
    EMPTY_MESSAGE_CODE,
    USERNAME_FORBIDDEN_SUBSTRINGS,
    USERNAME_MAX_CHARS,
)


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
