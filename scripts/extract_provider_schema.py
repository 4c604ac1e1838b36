"""Extract the google provider's schema for the resource types terraform/ uses.

    .venv/bin/python scripts/extract_provider_schema.py           # pip-downloads the wheel
    .venv/bin/python scripts/extract_provider_schema.py --wheel PATH   # a wheel you already have
    .venv/bin/python scripts/extract_provider_schema.py --check   # exit 1 if the file is stale

(PATH: ``cdktf_cdktf_provider_google-16.12.1-py3-none-any.whl``, e.g. from
``pip download --no-deps cdktf-cdktf-provider-google==16.12.1``.)

writes ``tests/terraform/google_provider_schema.json``, which
``tests/terraform/test_provider_schema.py`` checks every ``resource``/``data`` block in
``terraform/*.tf`` against. Regenerate it after adding a resource type to terraform/ or after
moving the provider pin in ``terraform/versions.tf`` (then change ``WHEEL_VERSION`` here to the
CDKTF bindings built from that provider version).

Why this source: ``terraform providers schema -json`` needs the provider plugin, which cannot be
downloaded here. The prebuilt CDKTF bindings on PyPI (``cdktf-cdktf-provider-google`` 16.12.1)
are generated from the provider's own schema (hashicorp/google 6.50.0) and ship it in the wheel.

How, and why the jsii assembly rather than the Python signatures: the wheel carries the jsii
assembly ``_jsii/provider-google@<version>.jsii.tgz`` (an npm tarball with ``package/.jsii``, a
JSON type system, and ``package/lib/**.js``, the code CDKTF runs to emit Terraform). It is read
three ways, and the script fails if they disagree:

* structure and ``required``: each resource's ``...Config`` interface in ``.jsii`` lists its
  arguments as typed properties; a property without ``optional: true`` is required in the
  provider schema; a property typed as another struct of the assembly (alone: a block with
  max_items 1, in an array: a repeatable block) is a nested block, anything else an attribute.
* Terraform names: every property's docs end with a registry link ``{@link .../docs/resources/
  <type>#<terraform_name> <Class>#<terraform_name>}``, the provider's own argument name.
* cross-check: the generated ``...ToHclTerraform`` function / ``synthesizeHclAttributes()``
  method in the JS writes each argument under its Terraform name with ``isBlock: true|false``;
  for every extracted struct the set of (name, is_block) there must equal the one derived from
  ``.jsii``, and the class's ``terraformResourceType`` must be the resource type.

The Python modules are only a rendering of the same assembly and lose information:
jsii-pacmak snake-cases the camelCase names without knowing the originals
(``detect_md5hash``, an argument of google_storage_bucket_object, becomes ``detect_md5_hash``;
``enable_k8s_beta_apis`` becomes ``enable_k8_s_beta_apis``), CDKTF renames arguments that clash
with its own members (``build`` -> ``build_attribute``, ``geth_details`` -> ``fetchh_details``),
Python keywords get a trailing underscore (``from`` -> ``from_``), and blocks and attributes can
only be told apart there through type annotations. The registry links in ``.jsii`` carry the
original names: over the whole 16.12.1 assembly, 24,917 linked properties were compared with the
JS and none disagreed, nor did any block/attribute kind. (About 190 properties carry no link,
nearly all on the provider block; this script fails rather than guess if it meets one.)
``package/.jsii`` may also be a jsii file-redirect to a gzip-compressed assembly; that is
followed.

Terraform meta-arguments (count, for_each, provider, depends_on, lifecycle, and provisioner /
connection on resources) come from cdktf's ``TerraformMetaArguments`` interface, which lives in
another assembly: they are not in the file; the test allows them on every resource itself.

The output is deterministic (sorted keys, no timestamps) so a regeneration shows only real
schema changes in the diff.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import hcl2

ROOT = Path(__file__).resolve().parent.parent
TF_DIR = ROOT / "terraform"
DEFAULT_OUT = ROOT / "tests" / "terraform" / "google_provider_schema.json"

PACKAGE = "cdktf-cdktf-provider-google"
WHEEL_VERSION = "16.12.1"
ASSEMBLY = "@cdktf/provider-google"
REGENERATE = ".venv/bin/python scripts/extract_provider_schema.py"

Kind = Literal["resource", "data"]
JsonObject = dict[str, Any]

_REGISTRY = r"https://registry\.terraform\.io/providers/hashicorp/google/(?P<version>[^/\s]+)/docs"
# Class summary:
#   "Represents a {@link <registry>/resources/secret_manager_secret google_secret_manager_secret}."
_CLASS_LINK = re.compile(
    _REGISTRY + r"/(?P<section>resources|data-sources)/(?P<page>\w+) (?P<type>\w+)\}"
)
# Property docs (summary, remarks or a custom tag such as @pattern):
#   "Docs at Terraform Registry: {@link <registry>/resources/<page>#secret_id Class#secret_id}"
_PROPERTY_LINK = re.compile(
    _REGISTRY + r"/(?:resources|data-sources)/\w+#(?P<anchor>\w+) \w+#(?P<label>\w+)\}"
)
_METADATA_PROVIDER = re.compile(r"bindings for hashicorp/google provider version (\S+)")
# One entry of a generated `const attrs = { name: { value: ..., isBlock: true, ... }, ... }`.
_JS_ATTR = re.compile(
    r"^\s+[\"']?(?P<name>\w+)[\"']?: \{\n\s+value: .*\n\s+isBlock: (?P<block>true|false),",
    re.MULTILINE,
)
_KINDS: dict[str, Kind] = {"resources": "resource", "data-sources": "data"}


class SchemaError(RuntimeError):
    """The assembly does not look the way this script expects: fix the script, never guess."""


@dataclass(frozen=True)
class Assembly:
    """The parts of the wheel this script reads."""

    jsii: JsonObject
    js_files: Mapping[str, str]  # "package/lib/<module>/index.js" -> source
    provider_version: str
    wheel_sha256: str


# --------------------------------------------------------------------------- terraform side


def _unquote(text: str) -> str:
    """python-hcl2 >= 8 keeps the quotes of labels; older versions drop them."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1]
    return text


def used_types(tf_dir: Path = TF_DIR) -> dict[Kind, set[str]]:
    """Resource and data source types declared in ``tf_dir/*.tf``."""
    found: dict[Kind, set[str]] = {"resource": set(), "data": set()}
    files = sorted(tf_dir.glob("*.tf"))
    if not files:
        raise SchemaError(f"no .tf files in {tf_dir}")
    for path in files:
        with path.open(encoding="utf-8") as handle:
            doc: JsonObject = hcl2.load(handle)
        for kind in found:
            for entry in doc.get(kind, []):
                found[kind].update(_unquote(str(key)) for key in entry if not key.startswith("__"))
    return found


# --------------------------------------------------------------------------- the wheel


def download_wheel(dest: Path) -> Path:
    """``pip download --no-deps`` the pinned wheel into ``dest``."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(dest),
        f"{PACKAGE}=={WHEEL_VERSION}",
    ]
    subprocess.run(command, check=True)
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise SchemaError(f"expected one wheel in {dest}, found {[w.name for w in wheels]}")
    return wheels[0]


def _load_jsii(files: Mapping[str, bytes]) -> JsonObject:
    """``package/.jsii``, following jsii's file redirect to a compressed assembly if present."""
    data: JsonObject = json.loads(files["package/.jsii"])
    if data.get("schema") == "jsii/file-redirect":
        target = "package/" + str(data["filename"])
        raw = files[target]
        if data.get("compression") == "gzip":
            raw = gzip.decompress(raw)
        data = json.loads(raw)
    return data


def read_wheel(wheel: Path) -> Assembly:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        tarballs = [n for n in names if re.search(r"/_jsii/[^/]+\.jsii\.tgz$", n)]
        metadata = [n for n in names if n.endswith(".dist-info/METADATA")]
        if len(tarballs) != 1 or len(metadata) != 1:
            raise SchemaError(f"{wheel.name}: expected one _jsii/*.jsii.tgz and one METADATA")
        tarball = archive.read(tarballs[0])
        meta_text = archive.read(metadata[0]).decode("utf-8")

    files: dict[str, bytes] = {}
    with tempfile.TemporaryFile() as buffer:
        buffer.write(tarball)
        buffer.seek(0)
        with tarfile.open(fileobj=buffer, mode="r:gz") as tar:
            for member in tar.getmembers():
                wanted = member.name.startswith("package/.jsii") or (
                    member.name.startswith("package/lib/") and member.name.endswith(".js")
                )
                if member.isfile() and wanted:
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        files[member.name] = extracted.read()

    jsii = _load_jsii(files)
    if jsii.get("name") != ASSEMBLY or jsii.get("version") != WHEEL_VERSION:
        raise SchemaError(
            f"assembly is {jsii.get('name')}@{jsii.get('version')}, "
            f"expected {ASSEMBLY}@{WHEEL_VERSION}"
        )
    match = _METADATA_PROVIDER.search(meta_text)
    if match is None:
        raise SchemaError("wheel METADATA does not name the hashicorp/google version")
    js_files = {
        name: content.decode("utf-8") for name, content in files.items() if name.endswith(".js")
    }
    return Assembly(jsii, js_files, match.group(1), digest)


# --------------------------------------------------------------------------- jsii walk


class Extractor:
    def __init__(self, assembly: Assembly) -> None:
        self.types: Mapping[str, JsonObject] = assembly.jsii["types"]
        self.js_files = assembly.js_files
        self.provider_version = assembly.provider_version
        self.classes = self._index_classes()

    def _index_classes(self) -> dict[tuple[Kind, str], JsonObject]:
        """(kind, terraform type) -> jsii class, from each class's "Represents a {@link ...}"."""
        classes: dict[tuple[Kind, str], JsonObject] = {}
        for jsii_type in self.types.values():
            if jsii_type.get("kind") != "class":
                continue
            match = _CLASS_LINK.search(jsii_type.get("docs", {}).get("summary", ""))
            if match is None or not match.group("type").startswith("google"):
                continue
            self._check_version(match.group("version"), jsii_type["fqn"])
            key = (_KINDS[match.group("section")], match.group("type"))
            if key in classes:
                raise SchemaError(f"two classes represent {key}: {jsii_type['fqn']}")
            classes[key] = jsii_type
        return classes

    def _check_version(self, version: str, where: str) -> None:
        if version != self.provider_version:
            raise SchemaError(
                f"{where} links provider docs {version}, METADATA says {self.provider_version}"
            )

    def extract(self, kind: Kind, tf_type: str) -> JsonObject:
        jsii_class = self.classes.get((kind, tf_type))
        if jsii_class is None:
            raise SchemaError(f"no {kind} {tf_type} in {ASSEMBLY}@{WHEEL_VERSION}")
        params = jsii_class.get("initializer", {}).get("parameters", [])
        config = [p["type"]["fqn"] for p in params if p["name"] == "config"]
        if len(config) != 1:
            raise SchemaError(f"{jsii_class['fqn']}: no config parameter")
        self._check_js_class(jsii_class, tf_type)
        return self._struct(config[0], jsii_class=jsii_class)

    def _struct_of(self, type_ref: JsonObject) -> tuple[str, bool] | None:
        """(struct fqn, is a list) when ``type_ref`` is a nested block, else None."""
        candidates: list[JsonObject] = [type_ref, *type_ref.get("union", {}).get("types", [])]
        found: list[tuple[str, bool]] = []
        for candidate in candidates:
            collection = candidate.get("collection")
            if collection is not None:
                element = collection["elementtype"]
                if self._is_struct(element):
                    if collection["kind"] != "array":
                        raise SchemaError(f"struct in a {collection['kind']}: {type_ref}")
                    found.append((element["fqn"], True))
            elif self._is_struct(candidate):
                found.append((candidate["fqn"], False))
        if len(found) > 1:
            raise SchemaError(f"ambiguous block type {type_ref}")
        return found[0] if found else None

    def _is_struct(self, type_ref: JsonObject) -> bool:
        fqn = type_ref.get("fqn")
        if not isinstance(fqn, str) or not fqn.startswith(ASSEMBLY + "."):
            return False
        target = self.types[fqn]
        return target.get("kind") == "interface" and bool(target.get("datatype"))

    def _terraform_name(self, struct_fqn: str, prop: JsonObject) -> str:
        docs = prop.get("docs", {})
        texts = [docs.get("summary", ""), docs.get("remarks", "")]
        texts += [str(value) for value in docs.get("custom", {}).values()]
        names: set[str] = set()
        for text in texts:
            for match in _PROPERTY_LINK.finditer(text):
                self._check_version(match.group("version"), f"{struct_fqn}.{prop['name']}")
                if match.group("anchor") != match.group("label"):
                    raise SchemaError(f"{struct_fqn}.{prop['name']}: link {match.group(0)}")
                names.add(match.group("anchor"))
        if len(names) != 1:
            raise SchemaError(f"{struct_fqn}.{prop['name']}: registry links name {names or '-'}")
        return names.pop()

    def _struct(self, fqn: str, jsii_class: JsonObject | None = None) -> JsonObject:
        struct = self.types[fqn]
        own = [i for i in struct.get("interfaces", []) if i.startswith(ASSEMBLY + ".")]
        if own:
            raise SchemaError(f"{fqn} extends {own}: inherited properties are not handled")
        arguments: JsonObject = {}
        for prop in struct.get("properties", []):
            name = self._terraform_name(fqn, prop)
            if name in arguments:
                raise SchemaError(f"{fqn}: two properties map to {name}")
            entry: JsonObject = {"required": not prop.get("optional", False)}
            block = self._struct_of(prop["type"])
            if block is None:
                entry["kind"] = "attribute"
            else:
                nested_fqn, is_list = block
                entry["kind"] = "block"
                entry["max_items"] = None if is_list else 1
                entry["nested"] = self._struct(nested_fqn)
            arguments[name] = entry
        self._check_js_struct(fqn, struct, arguments, jsii_class)
        return dict(sorted(arguments.items()))

    # ----------------------------------------------------------------------- JS cross-check

    def _js_source(self, jsii_type: JsonObject) -> str:
        filename = str(jsii_type["locationInModule"]["filename"])
        if not filename.startswith("src/") or not filename.endswith(".ts"):
            raise SchemaError(f"{jsii_type['fqn']}: unexpected source file {filename}")
        path = "package/lib/" + filename[len("src/") : -len(".ts")] + ".js"
        if path not in self.js_files:
            raise SchemaError(f"{jsii_type['fqn']}: {path} is not in the tarball")
        return self.js_files[path]

    @staticmethod
    def _body(source: str, header: str, indent: str, where: str) -> str:
        """The text of a generated function/method, from ``header`` to its closing brace."""
        start = source.find(header)
        if start < 0:
            raise SchemaError(f"{where}: `{header.strip()}` not found in the generated JS")
        closing = "\n" + indent + "}\n"
        end = source.find(closing, start)
        if end < 0:
            raise SchemaError(f"{where}: end of `{header.strip()}` not found")
        return source[start : end + len(closing)]

    def _check_js_class(self, jsii_class: JsonObject, tf_type: str) -> None:
        source = self._js_source(jsii_class)
        body = self._body(source, f"\nclass {jsii_class['name']} extends ", "", jsii_class["fqn"])
        if not re.search(rf"terraformResourceType: [\"']{re.escape(tf_type)}[\"']", body):
            raise SchemaError(f"{jsii_class['fqn']}: terraformResourceType is not {tf_type}")

    def _check_js_struct(
        self,
        fqn: str,
        struct: JsonObject,
        arguments: Mapping[str, JsonObject],
        jsii_class: JsonObject | None,
    ) -> None:
        if jsii_class is not None:
            source = self._js_source(jsii_class)
            body = self._body(
                source, f"\nclass {jsii_class['name']} extends ", "", jsii_class["fqn"]
            )
            body = self._body(body, "\n    synthesizeHclAttributes() {", "    ", fqn)
        else:
            name = str(struct["name"])
            header = f"\nfunction {name[0].lower()}{name[1:]}ToHclTerraform(struct) {{"
            body = self._body(self._js_source(struct), header, "", fqn)
        from_js = {m.group("name"): m.group("block") == "true" for m in _JS_ATTR.finditer(body)}
        from_jsii = {name: entry["kind"] == "block" for name, entry in arguments.items()}
        if from_js != from_jsii:
            raise SchemaError(
                f"{fqn}: generated JS and .jsii disagree\n  js:   {sorted(from_js.items())}"
                f"\n  jsii: {sorted(from_jsii.items())}"
            )


# --------------------------------------------------------------------------- output


def build_schema(assembly: Assembly, wanted: Mapping[Kind, Iterable[str]]) -> JsonObject:
    extractor = Extractor(assembly)
    sections: dict[Kind, str] = {"resource": "resources", "data": "data_sources"}
    schema: JsonObject = {
        "_comment": (
            "Generated by scripts/extract_provider_schema.py; do not edit. Arguments of the "
            "google provider resource types terraform/ uses. Terraform meta-arguments are not "
            "listed (they are allowed on every resource)."
        ),
        "regenerate": REGENERATE,
        "source": {
            "package": PACKAGE,
            "version": WHEEL_VERSION,
            "wheel_sha256": assembly.wheel_sha256,
            "jsii_assembly": f"{ASSEMBLY}@{WHEEL_VERSION}",
        },
        "provider": {"source": "hashicorp/google", "version": assembly.provider_version},
    }
    for kind, section in sections.items():
        schema[section] = {
            tf_type: {"arguments": extractor.extract(kind, tf_type)}
            for tf_type in sorted(wanted.get(kind, ()))
        }
    return schema


def render(schema: JsonObject) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--wheel", type=Path, help=f"local {PACKAGE}=={WHEEL_VERSION} wheel")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--terraform-dir", type=Path, default=TF_DIR)
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if --out is out of date"
    )
    args = parser.parse_args(argv)

    wanted = used_types(args.terraform_dir)
    with tempfile.TemporaryDirectory(prefix="provider-schema-") as tmp:
        wheel = args.wheel if args.wheel is not None else download_wheel(Path(tmp))
        assembly = read_wheel(wheel)
    text = render(build_schema(assembly, wanted))

    out: Path = args.out
    if args.check:
        current = out.read_text(encoding="utf-8") if out.exists() else ""
        if current != text:
            print(f"{out} is out of date; regenerate with: {REGENERATE}", file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    counts = ", ".join(f"{len(wanted[k])} {k}" for k in ("resource", "data"))
    print(f"wrote {out} ({counts} types; hashicorp/google {assembly.provider_version})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
