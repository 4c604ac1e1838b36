"""terraform/*.tf against the google provider's real schema (a stand-in for `terraform validate`).

`terraform validate` needs the provider plugin, which cannot be downloaded here. The schema of
the resource types terraform/ uses is extracted from the provider's prebuilt CDKTF bindings by
scripts/extract_provider_schema.py into google_provider_schema.json next to this file (committed;
this test reads nothing outside the repository). Every `resource` and `data` block is checked
for unknown types, unknown arguments and nested blocks at any depth, attributes written as
blocks (and the reverse), single blocks given twice, and missing required arguments or blocks.
`dynamic "x" { content { ... } }` counts as nested block `x`.

The checker is tested on broken copies of a real resource too, so a checker that silently
accepts everything cannot pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

REPO = Path(__file__).resolve().parents[2]
TF_DIR = REPO / "terraform"
SCHEMA_FILE = Path(__file__).resolve().with_name("google_provider_schema.json")
REGENERATE = ".venv/bin/python scripts/extract_provider_schema.py"

# Terraform's own meta-arguments: valid at the top level of every resource / data block and
# never part of a provider schema. (Inside nested blocks they are ordinary schema names, e.g.
# `trigger { count = 1 }` on an alert policy condition.)
RESOURCE_META = frozenset(
    {"count", "for_each", "provider", "depends_on", "lifecycle", "provisioner", "connection"}
)
DATA_META = frozenset({"count", "for_each", "provider", "depends_on", "lifecycle"})
DYNAMIC_KEYS = frozenset({"for_each", "iterator", "labels", "content"})

_BLOCK_MARK = "__is_block__"
Schema = Mapping[str, Any]
Arguments = Mapping[str, Any]


# --------------------------------------------------------------------------- schema file


@cache
def schema() -> Schema:
    loaded: Schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return loaded


# --------------------------------------------------------------------------- HCL shape


def _unquote(text: str) -> str:
    """python-hcl2 >= 8 keeps the quotes of labels; older versions drop them."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1]
    return text


@cache
def _parser_marks_blocks() -> bool:
    """python-hcl2 >= 7 tags every block body with __is_block__; older versions don't."""
    return _BLOCK_MARK in json.dumps(hcl2.loads("probe {\n}\n"))


def _block_bodies(value: Any) -> list[dict[str, Any]] | None:
    """The bodies when ``value`` is how python-hcl2 renders one or more blocks, else None.

    A block is a list of dicts; with a parser that marks blocks, each must carry
    __is_block__, which tells `x { a = 1 }` from the attribute `x = [{ a = 1 }]`.
    """
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(item, dict) for item in value):
        return None
    if _parser_marks_blocks() and not all(item.get(_BLOCK_MARK) is True for item in value):
        return None
    return value


def _is_meta_key(key: str) -> bool:
    return key.startswith("__") and key.endswith("__")


# --------------------------------------------------------------------------- checker


def _check_body(
    body: Mapping[str, Any], arguments: Arguments, where: str, meta: frozenset[str]
) -> list[str]:
    """Problems of one block body against its schema ``arguments`` (recursively)."""
    problems: list[str] = []
    present: set[str] = set()
    for raw_key, value in body.items():
        key = _unquote(str(raw_key))
        if _is_meta_key(key):
            continue
        if key in meta:
            present.add(key)
            continue
        if key == "dynamic" and key not in arguments and isinstance(value, list):
            present |= _check_dynamic(value, arguments, where, problems)
            continue
        spec = arguments.get(key)
        path = f"{where}.{key}"
        if spec is None:
            what = "nested block" if _block_bodies(value) is not None else "argument"
            problems.append(f"{path}: unknown {what}")
            continue
        present.add(key)
        bodies = _block_bodies(value)
        if spec["kind"] == "attribute":
            if bodies is not None:
                problems.append(f"{path}: is an argument, write `{key} = ...`, not a block")
            continue
        if bodies is None:
            problems.append(f"{path}: is a nested block, write `{key} {{ ... }}`")
            continue
        if spec["max_items"] is not None and len(bodies) > spec["max_items"]:
            problems.append(f"{path}: at most {spec['max_items']} block(s), found {len(bodies)}")
        for index, nested in enumerate(bodies):
            label = path if len(bodies) == 1 else f"{path}[{index}]"
            problems += _check_body(nested, spec["nested"], label, frozenset())
    for name, spec in sorted(arguments.items()):
        if spec["required"] and name not in present:
            what = "block" if spec["kind"] == "block" else "argument"
            problems.append(f"{where}.{name}: missing required {what}")
    return problems


def _check_dynamic(
    value: list[Any], arguments: Arguments, where: str, problems: list[str]
) -> set[str]:
    """Check `dynamic "name" { ... content { ... } }` blocks; return the block names they make."""
    made: set[str] = set()
    for entry in value:
        if not isinstance(entry, dict):
            problems.append(f'{where}.dynamic: expected `dynamic "name" {{ ... }}` blocks')
            continue
        for raw_label, dynamic in entry.items():
            label = _unquote(str(raw_label))
            if _is_meta_key(label):
                continue
            path = f"{where}.dynamic.{label}"
            spec = arguments.get(label)
            if spec is None or spec["kind"] != "block":
                problems.append(f"{path}: unknown nested block {label!r} (dynamic)")
                continue
            if not isinstance(dynamic, dict):
                problems.append(f"{path}: expected a block body")
                continue
            made.add(label)
            keys = {_unquote(str(k)) for k in dynamic if not _is_meta_key(str(k))}
            problems += [f"{path}.{k}: not allowed in a dynamic block" for k in keys - DYNAMIC_KEYS]
            if "for_each" not in keys:
                problems.append(f"{path}.for_each: missing required argument")
            contents = _block_bodies(dynamic.get("content"))
            if contents is None or len(contents) != 1:
                problems.append(f"{path}: needs exactly one content block")
                continue
            problems += _check_body(contents[0], spec["nested"], f"{path}.content", frozenset())
    return made


def check_document(doc: Mapping[str, Any], provider_schema: Schema) -> list[str]:
    """Problems of every resource and data block of one parsed .tf file."""
    problems: list[str] = []
    sections = (
        ("resource", "resources", RESOURCE_META, ""),
        ("data", "data_sources", DATA_META, "data."),
    )
    for kind, section, meta, prefix in sections:
        known: Mapping[str, Any] = provider_schema[section]
        for entry in doc.get(kind, []):
            for raw_type, by_name in entry.items():
                rtype = _unquote(str(raw_type))
                if _is_meta_key(rtype):
                    continue
                for raw_name, body in by_name.items():
                    name = _unquote(str(raw_name))
                    if _is_meta_key(name):
                        continue
                    address = f"{prefix}{rtype}.{name}"
                    if rtype not in known:
                        problems.append(
                            f"{address}: unknown {kind} type {rtype!r} (not in "
                            f"{SCHEMA_FILE.name}; add it with `{REGENERATE}`)"
                        )
                        continue
                    problems += _check_body(body, known[rtype]["arguments"], address, meta)
    return problems


def check_hcl(text: str, provider_schema: Schema) -> list[str]:
    """Problems of HCL source text (one file's worth)."""
    return check_document(hcl2.loads(text), provider_schema)


# --------------------------------------------------------------------------- helpers


def _tf_files() -> list[Path]:
    files = sorted(TF_DIR.glob("*.tf"))
    assert files, f"no .tf files in {TF_DIR}"
    return files


def _used_types(kind: str) -> set[str]:
    found: set[str] = set()
    for path in _tf_files():
        doc = hcl2.loads(path.read_text(encoding="utf-8"))
        for entry in doc.get(kind, []):
            found |= {_unquote(str(k)) for k in entry if not _is_meta_key(str(k))}
    return found


def resource_source(filename: str, rtype: str, name: str) -> str:
    """The text of one resource block, cut from a real file (`terraform fmt` layout)."""
    text = (TF_DIR / filename).read_text(encoding="utf-8")
    start = text.find(f'resource "{rtype}" "{name}" {{')
    assert start >= 0, f"{rtype}.{name} not found in {filename}"
    end = text.find("\n}\n", start)
    assert end >= 0, f"end of {rtype}.{name} not found in {filename}"
    return text[start : end + 3]


# --------------------------------------------------------------------------- the real files


def test_schema_file_header() -> None:
    header = schema()
    assert header["source"]["package"] == "cdktf-cdktf-provider-google"
    assert header["source"]["version"] == "16.12.1"
    assert header["provider"] == {"source": "hashicorp/google", "version": "6.50.0"}
    assert header["regenerate"] == REGENERATE


@pytest.mark.parametrize(("kind", "section"), [("resource", "resources"), ("data", "data_sources")])
def test_schema_file_covers_exactly_the_types_terraform_uses(kind: str, section: str) -> None:
    assert set(schema()[section]) == _used_types(kind), (
        f"{SCHEMA_FILE.name} is stale for {kind} types; regenerate with `{REGENERATE}`"
    )


def test_provider_pin_matches_schema_version() -> None:
    major, minor, _ = schema()["provider"]["version"].split(".")
    versions_tf = (TF_DIR / "versions.tf").read_text(encoding="utf-8")
    pins = re.findall(r'^\s*version\s*=\s*"([^"]+)"', versions_tf, re.MULTILINE)
    assert pins == [f"~> {major}.{minor}.0"], (
        f"terraform/versions.tf must pin google to the schema's {major}.{minor} line; found {pins}"
    )


@pytest.mark.parametrize("path", _tf_files(), ids=lambda p: p.name)
def test_terraform_matches_provider_schema(path: Path) -> None:
    problems = check_hcl(path.read_text(encoding="utf-8"), schema())
    assert problems == [], "\n".join(problems)


# --------------------------------------------------------------------------- the checker fails

FUNCTION = ("function.tf", "google_cloudfunctions2_function", "reconciler")
FN = "google_cloudfunctions2_function.reconciler"
STORAGE_SOURCE = "      storage_source {\n"
DISCORD_SECRET_ENV = (
    "    secret_environment_variables {\n"
    '      key        = "DISCORD_WEBHOOK_URL"\n'
    "      project_id = var.project_id\n"
    "      secret     = google_secret_manager_secret.discord_webhook_url.secret_id\n"
    '      version    = "latest"\n'
    "    }\n"
)

# id -> (text to find in the real resource, replacement, problem the checker must report)
BROKEN: dict[str, tuple[str, str, str]] = {
    "unknown top-level argument": (
        "  project     = var.project_id\n",
        "  project     = var.project_id\n  bogus_argument = true\n",
        f"{FN}.bogus_argument: unknown argument",
    ),
    "unknown argument deep down": (
        STORAGE_SOURCE,
        STORAGE_SOURCE + "        bukcet = 1\n",
        f"{FN}.build_config.source.storage_source.bukcet: unknown argument",
    ),
    "unknown nested block deep down": (
        STORAGE_SOURCE,
        STORAGE_SOURCE + "        generation_policy {\n          keep = true\n        }\n",
        f"{FN}.build_config.source.storage_source.generation_policy: unknown nested block",
    ),
    "required argument removed": (
        "  name        = var.function_name\n",
        "",
        f"{FN}.name: missing required argument",
    ),
    "required nested argument removed": (
        '      key        = "ALPACA_SECRET_KEY"\n',
        "",
        f"{FN}.service_config.secret_environment_variables[1].key: missing required argument",
    ),
    "block written as an argument": (
        STORAGE_SOURCE,
        "      storage_source = {\n",
        f"{FN}.build_config.source.storage_source: is a nested block, write "
        "`storage_source { ... }`",
    ),
    "argument written as a block": (
        "    environment_variables = {\n",
        "    environment_variables {\n",
        f"{FN}.service_config.environment_variables: is an argument, write "
        "`environment_variables = ...`, not a block",
    ),
    "single block given twice": (
        "  service_config {\n",
        "  build_config {\n    runtime = var.function_runtime\n  }\n\n  service_config {\n",
        f"{FN}.build_config: at most 1 block(s), found 2",
    ),
    "meta-argument inside a nested block": (
        STORAGE_SOURCE,
        STORAGE_SOURCE + "        count = 1\n",
        f"{FN}.build_config.source.storage_source.count: unknown argument",
    ),
    "unknown argument in dynamic content": (
        DISCORD_SECRET_ENV,
        '    dynamic "secret_environment_variables" {\n'
        "      for_each = toset([var.project_id])\n"
        "      content {\n"
        '        key        = "DISCORD_WEBHOOK_URL"\n'
        "        project_id = secret_environment_variables.value\n"
        "        secret     = google_secret_manager_secret.discord_webhook_url.secret_id\n"
        '        version    = "latest"\n'
        "        not_here   = 1\n"
        "      }\n"
        "    }\n",
        f"{FN}.service_config.dynamic.secret_environment_variables.content.not_here: "
        "unknown argument",
    ),
    "dynamic block of an unknown name": (
        "  service_config {\n",
        '  dynamic "build_steps" {\n    for_each = []\n    content {}\n  }\n\n  service_config {\n',
        f"{FN}.dynamic.build_steps: unknown nested block 'build_steps' (dynamic)",
    ),
    "unknown resource type": (
        'resource "google_cloudfunctions2_function"',
        'resource "google_cloudfunctions3_function"',
        "google_cloudfunctions3_function.reconciler: unknown resource type",
    ),
}


def _break(find: str, replace: str) -> str:
    original = resource_source(*FUNCTION)
    assert find in original, f"{find!r} is no longer in {FN}: update this test"
    return original.replace(find, replace, 1)


def test_unmodified_copy_is_clean() -> None:
    assert check_hcl(resource_source(*FUNCTION), schema()) == []


@pytest.mark.parametrize(("find", "replace", "expected"), BROKEN.values(), ids=list(BROKEN))
def test_checker_reports_broken_copy(find: str, replace: str, expected: str) -> None:
    broken = _break(find, replace)
    assert broken != resource_source(*FUNCTION)
    problems = check_hcl(broken, schema())
    assert any(problem.startswith(expected) for problem in problems), (
        f"expected {expected!r}, got {problems}"
    )


def test_valid_dynamic_block_counts_as_the_block() -> None:
    """A required block supplied through `dynamic` is present; its content is checked."""
    secret = resource_source("secrets.tf", "google_secret_manager_secret", "alpaca_api_key")
    replication = "  replication {\n    auto {}\n  }\n"
    assert replication in secret
    dynamic = (
        '  dynamic "replication" {\n    for_each = [1]\n    content {\n      auto {}\n    }\n  }\n'
    )
    assert check_hcl(secret.replace(replication, dynamic), schema()) == []
    assert check_hcl(secret.replace(replication, ""), schema()) == [
        "google_secret_manager_secret.alpaca_api_key.replication: missing required block"
    ]


def test_meta_arguments_are_allowed_on_resources() -> None:
    secret = resource_source("secrets.tf", "google_secret_manager_secret", "alpaca_api_key")
    labels = "  labels = local.common_labels\n"
    assert labels in secret
    meta = "  count    = 1\n  provider = google\n  lifecycle {\n    prevent_destroy = true\n  }\n"
    assert check_hcl(secret.replace(labels, labels + meta), schema()) == []


def test_data_sources_are_checked_too() -> None:
    problems = check_hcl('data "google_project" "this" {\n}\n', schema())
    assert problems == [
        "data.google_project.this: unknown data type 'google_project' (not in "
        f"{SCHEMA_FILE.name}; add it with `{REGENERATE}`)"
    ]
