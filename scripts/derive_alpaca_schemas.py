"""Derive the JSON schemas (and examples) of the Alpaca responses the simulator serves.

Source: Alpaca's published OpenAPI 3.0 specification of the Trading API (title "Trading API",
version 2.0.1), as synced from Alpaca's documentation site into the public repository
alpacahq/alpaca-mcp-server, file ``src/alpaca_mcp_server/specs/trading-api.json`` at commit
88722ce (2026-06-29). That repository is under the MIT licence, Copyright 2025-2026 Alpaca; the
derived files carry the same notice.

What it writes (committed; tests read only these, never the spec itself):

* ``tests/fixtures/alpaca/schemas.json`` -- the response schemas of the routes the simulator
  serves (``GET /v2/account``, ``/v2/positions``, ``/v2/orders``, ``/v2/orders/{order_id}``,
  ``/v2/orders:by_client_order_id``, ``/v2/account/activities/FILL``), with every component
  they reference (``definitions``), the 429 rate-limit headers, and the few *relaxations*
  listed in :data:`RELAXATIONS`: places where the spec's own examples (or, once, alpaca-py)
  contradict its schema, each with its evidence. Descriptions and examples are dropped from
  the schemas; only validation keywords are kept.
* ``tests/fixtures/alpaca/examples.json`` -- the spec's examples of those responses, by the
  definition they illustrate (``Order``: crypto, equity, IPO, option, multi-leg option;
  ``Account``; ``Position``; ``TradingActivities``).

Rerun (from the repository root), after replacing the spec with a newer copy::

    .venv/bin/python scripts/derive_alpaca_schemas.py [path/to/trading-api.json]

The path defaults to ``../shared/reference/alpaca-trading-api.json`` (the team's copy).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = ROOT.parent / "shared" / "reference" / "alpaca-trading-api.json"
OUT_DIR = ROOT / "tests" / "fixtures" / "alpaca"

SOURCE = {
    "title": "Alpaca Trading API (OpenAPI 3.0), version 2.0.1",
    "repository": "https://github.com/alpacahq/alpaca-mcp-server",
    "path": "src/alpaca_mcp_server/specs/trading-api.json",
    "commit": "88722ce",
    "licence": "MIT, Copyright 2025-2026 Alpaca",
    "derived_by": "scripts/derive_alpaca_schemas.py",
}

# (path, method) of each route the simulator serves -> the name tests use.
ROUTES: dict[str, tuple[str, str]] = {
    "GET /v2/account": ("/v2/account", "get"),
    "GET /v2/positions": ("/v2/positions", "get"),
    "GET /v2/orders": ("/v2/orders", "get"),
    "GET /v2/orders/{order_id}": ("/v2/orders/{order_id}", "get"),
    "GET /v2/orders:by_client_order_id": ("/v2/orders:by_client_order_id", "get"),
    "GET /v2/account/activities/FILL": ("/v2/account/activities/{activity_type}", "get"),
}

# Keywords kept in the derived schemas; anything else the spec uses here is an annotation.
VALIDATION_KEYWORDS = frozenset(
    {
        "$ref",
        "type",
        "nullable",
        "enum",
        "format",
        "properties",
        "required",
        "items",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "anyOf",
        "oneOf",
        "allOf",
        "additionalProperties",
    }
)
ANNOTATIONS = frozenset(
    {"description", "example", "examples", "x-examples", "title", "deprecated", "x-deprecation"}
)

# Where the spec's schema and its own examples disagree, the examples (what Alpaca sends) win.
RELAXATIONS: tuple[dict[str, str], ...] = (
    {
        "where": "Order.symbol",
        "allow": "",
        "evidence": 'MultilegOptionsOrderResponse has "symbol": "" at the top level; the schema '
        'itself says "required for all order classes except for mleg" but sets minLength 1',
    },
    {
        "where": "Order.side",
        "allow": "",
        "evidence": 'MultilegOptionsOrderResponse has "side": ""; OrderSide says "Required for '
        'all order classes except for mleg" but its enum has no ""',
    },
    {
        "where": "Order.asset_class",
        "allow": "",
        "evidence": 'MultilegOptionsOrderResponse has "asset_class": "" at the top level',
    },
    {
        "where": "Order.asset_id",
        "allow": "",
        "evidence": 'MultilegOptionsOrderResponse has "asset_id": "" (the schema says uuid)',
    },
    {
        "where": "OrderLeg.type",
        "allow": "",
        "evidence": 'the legs of MultilegOptionsOrderResponse have "type": ""',
    },
    {
        "where": "OrderLeg.order_type",
        "allow": "",
        "evidence": 'the legs of MultilegOptionsOrderResponse have "order_type": ""',
    },
    {
        "where": "Order.type",
        "allow": "",
        "evidence": 'the legs of MultilegOptionsOrderResponse have "type": ""; without nested=true '
        "a listing serves legs as top-level Orders (inferred: the spec has no such example)",
    },
    {
        "where": "Order.order_type",
        "allow": "",
        "evidence": 'as Order.type ("order_type": "" on the legs of MultilegOptionsOrderResponse)',
    },
    {
        "where": "Position.asset_marginable",
        "optional": "yes",
        "evidence": "Position's example-1 has no asset_marginable; the schema requires it",
    },
    {
        "where": "ExchangeForPosition",
        "allow": "CRYPTO",
        "evidence": "the enum has no exchange for crypto positions, which the same API serves; "
        "alpaca-py 0.44 (Alpaca's SDK) validates Position.exchange against AssetExchange, "
        "which lists CRYPTO",
    },
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    raw = args.spec.read_bytes()
    spec = json.loads(raw)
    schemas, examples = derive(spec)
    source = {**SOURCE, "sha256": hashlib.sha256(raw).hexdigest()}
    args.out.mkdir(parents=True, exist_ok=True)
    write(args.out / "schemas.json", {"source": source, **schemas})
    write(args.out / "examples.json", {"source": source, "examples": examples})
    print(f"wrote {args.out / 'schemas.json'} and {args.out / 'examples.json'}")
    return 0


def derive(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    components = spec["components"]
    responses: dict[str, Any] = {}
    examples: dict[str, dict[str, Any]] = {}
    wanted: set[str] = set()
    for name, (path, method) in ROUTES.items():
        content = spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]
        schema = content["schema"]
        if name.endswith("/FILL"):
            # "Will be one of a TradingActivity or NonTradeActivity based on activity_type used
            # in path": for FILL, the TradingActivities branch.
            schema = {"type": "array", "items": {"$ref": "#/components/schemas/TradingActivities"}}
        responses[name] = clean(schema)
        wanted |= set(refs(schema))
        # The examples of a listing are single items (the spec shows one Order per example).
        item = schema.get("items", schema)
        illustrated = next(refs(item), None)
        if illustrated is not None:
            for label, example in route_examples(content, components):
                examples.setdefault(illustrated, {}).setdefault(label, example)
    definitions: dict[str, Any] = {}
    pending = sorted(wanted)
    while pending:
        ref = pending.pop()
        if ref in definitions:
            continue
        schema = components["schemas"][ref]
        definitions[ref] = clean(schema)
        pending.extend(r for r in refs(schema) if r not in definitions)
    relax(definitions)
    for name in ("Account", "Position", "TradingActivities"):
        for key, value in sorted((components["schemas"][name].get("x-examples") or {}).items()):
            examples.setdefault(name, {}).setdefault(key, value)
    headers = {
        header: clean(components["headers"][ref.rsplit("/", 1)[-1]]["schema"])
        for header, ref in (
            ("X-RateLimit-Limit", "ratelimit_limit"),
            ("X-RateLimit-Remaining", "ratelimit_remaining"),
            ("X-RateLimit-Reset", "ratelimit_reset"),
        )
    }
    schemas = {
        "relaxations": list(RELAXATIONS),
        "responses": responses,
        "rate_limit_headers": headers,
        "definitions": dict(sorted(definitions.items())),
    }
    return schemas, examples


def route_examples(
    content: dict[str, Any], components: dict[str, Any]
) -> Iterator[tuple[str, Any]]:
    if "example" in content:
        yield "response", content["example"]
    for label, example in sorted((content.get("examples") or {}).items()):
        if "$ref" in example:
            example = components["examples"][example["$ref"].rsplit("/", 1)[-1]]
        yield label, example["value"]


def clean(schema: Any) -> Any:
    """Validation keywords only; ``$ref``s point into ``#/definitions``."""
    if isinstance(schema, list):
        return [clean(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ANNOTATIONS or key.startswith("x-"):
            continue
        if key not in VALIDATION_KEYWORDS:
            raise SystemExit(f"unexpected schema keyword {key!r}: extend the derivation")
        if key == "$ref":
            out[key] = "#/definitions/" + value.rsplit("/", 1)[-1]
        elif key == "properties":
            out[key] = {name: clean(sub) for name, sub in value.items()}
        else:
            out[key] = clean(value)
    return out


def refs(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str):
                yield value.rsplit("/", 1)[-1]
            else:
                yield from refs(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from refs(item)


def relax(definitions: dict[str, Any]) -> None:
    """Each relaxation admits one more string value (``allow``) where the spec's schema has none
    for it, or makes a required property optional (``optional``)."""
    for relaxation in RELAXATIONS:
        name, _, prop = relaxation["where"].partition(".")
        target = definitions[name]
        if "optional" in relaxation:
            target["required"] = [r for r in target["required"] if r != prop]
            continue
        extra = relaxation["allow"]
        if not prop:
            target["enum"] = [*target["enum"], extra]
            continue
        original = target["properties"][prop]
        allowed = {"type": "string", "enum": [extra]}
        target["properties"][prop] = {"anyOf": [copy.deepcopy(original), allowed]}


def write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
