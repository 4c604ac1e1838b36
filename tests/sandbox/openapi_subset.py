"""A validator for the subset of OpenAPI 3.0 schema objects the Alpaca fixtures use.

``jsonschema`` is not a dependency of the project, and OpenAPI 3.0 schemas are not quite JSON
Schema anyway: ``nullable: true`` is how 3.0 admits ``null`` (a schema without it rejects null,
whatever its ``type``). Supported: ``$ref`` (into ``#/definitions``), ``type``, ``nullable``,
``enum``, ``format`` (``uuid``, ``date-time``, ``decimal``; others are not checked),
``properties``, ``required``, ``items``, ``additionalProperties``, ``minLength``, ``maxLength``,
``minimum``, ``maximum``, ``anyOf``, ``oneOf``, ``allOf``. Any other keyword is an error, so a
regenerated fixture that needs more fails loudly instead of validating less.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

_KNOWN = frozenset(
    {
        "$ref",
        "type",
        "nullable",
        "enum",
        "format",
        "properties",
        "required",
        "items",
        "additionalProperties",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "anyOf",
        "oneOf",
        "allOf",
    }
)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# RFC 3339 date-time: an offset is required.
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class UnsupportedSchema(Exception):
    """The schema uses a keyword this validator does not implement."""


def validate(value: Any, schema: Mapping[str, Any], definitions: Mapping[str, Any]) -> list[str]:
    """Every violation, as ``path: what``; an empty list means ``value`` conforms."""
    errors: list[str] = []
    _check(value, schema, definitions, "$", errors)
    return errors


def _check(
    value: Any, schema: Mapping[str, Any], defs: Mapping[str, Any], path: str, errors: list[str]
) -> None:
    unknown = set(schema) - _KNOWN
    if unknown:
        raise UnsupportedSchema(f"{path}: unsupported keyword(s) {sorted(unknown)}")
    if "$ref" in schema:
        name = str(schema["$ref"]).removeprefix("#/definitions/")
        _check(value, defs[name], defs, path, errors)
        return
    for key in ("anyOf", "oneOf"):
        if key in schema:
            passing = sum(1 for sub in schema[key] if not validate(value, sub, defs))
            if passing == 0 or (key == "oneOf" and passing > 1):
                errors.append(f"{path}: matches {passing} of the {key} alternatives")
    if value is None:
        alternatives = "anyOf" in schema or "oneOf" in schema
        if not schema.get("nullable", False) and not alternatives and _constrains(schema):
            errors.append(f"{path}: null where the schema is not nullable")
        return
    for sub in schema.get("allOf", ()):
        _check(value, sub, defs, path, errors)
    kind = schema.get("type")
    if kind is not None and not _is_type(value, str(kind)):
        errors.append(f"{path}: expected {kind}, got {type(value).__name__}")
        return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        _check_string(value, schema, path, errors)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} < minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} > maximum {schema['maximum']}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            _check(item, schema["items"], defs, f"{path}[{index}]", errors)
    if isinstance(value, dict):
        _check_object(value, schema, defs, path, errors)


def _constrains(schema: Mapping[str, Any]) -> bool:
    # An empty schema ({}) accepts anything, null included.
    return bool(set(schema) - {"nullable"})


def _check_string(value: str, schema: Mapping[str, Any], path: str, errors: list[str]) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{path}: shorter than {schema['minLength']}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{path}: longer than {schema['maxLength']}")
    fmt = schema.get("format")
    if fmt == "uuid" and not _UUID.match(value):
        errors.append(f"{path}: not a uuid")
    elif fmt == "date-time" and not _DATE_TIME.match(value):
        errors.append(f"{path}: not an RFC 3339 date-time")
    elif fmt == "decimal":
        try:
            ok = Decimal(value).is_finite()
        except InvalidOperation:
            ok = False
        if not ok:
            errors.append(f"{path}: not a decimal")


def _check_object(
    value: dict[str, Any],
    schema: Mapping[str, Any],
    defs: Mapping[str, Any],
    path: str,
    errors: list[str],
) -> None:
    properties: Mapping[str, Any] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            errors.append(f"{path}: missing required {name!r}")
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            _check(item, properties[name], defs, f"{path}.{name}", errors)
        elif extra is False:
            errors.append(f"{path}: unexpected property {name!r}")
        elif isinstance(extra, Mapping):
            _check(item, extra, defs, f"{path}.{name}", errors)


def _is_type(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    raise UnsupportedSchema(f"unsupported type {kind!r}")
