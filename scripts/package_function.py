"""Build the Cloud Function source zip that terraform uploads (``dist/function-source.zip``).

    python scripts/package_function.py [--out PATH]

The zip holds what Cloud Functions gen2 builds from: ``main.py`` and ``requirements.txt`` at
the root (from ``functions/``) and the ``crypto_signals`` package source next to them (from
``src/``), so ``import crypto_signals`` resolves to the copied source and requirements.txt
lists only third-party dependencies.

Only source files are taken (``.py``, ``py.typed``, ``.json``), so caches, compiled files and
editor leftovers never change the zip. ``crypto_signals/sandbox`` (the local stand-ins) is left
out: nothing the function imports depends on it, and the e2e test runs the function from this
zip to prove it.

The zip is deterministic (sorted entries, fixed timestamps and permissions): terraform names the
uploaded object after the zip's md5, so the function redeploys only when the code changes.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "dist" / "function-source.zip"
FUNCTION_FILES = ("main.py", "requirements.txt")
PACKAGE = "crypto_signals"
INCLUDED_SUFFIXES = frozenset({".py", ".typed", ".json"})
EXCLUDED_SUBPACKAGES = frozenset({"sandbox"})
# The earliest time a zip entry can carry; any fixed value works, this one is conventional.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def source_files(root: Path = ROOT) -> Iterator[tuple[str, Path]]:
    """(name in the zip, file on disk), sorted by name."""
    entries = [(name, root / "functions" / name) for name in FUNCTION_FILES]
    missing = [str(path) for _, path in entries if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"missing function source file(s): {', '.join(missing)}")
    package_dir = root / "src" / PACKAGE
    for path in package_dir.rglob("*"):
        relative = path.relative_to(package_dir)
        if not path.is_file() or path.suffix not in INCLUDED_SUFFIXES:
            continue
        if "__pycache__" in relative.parts or relative.parts[0] in EXCLUDED_SUBPACKAGES:
            continue
        entries.append((f"{PACKAGE}/{relative.as_posix()}", path))
    yield from sorted(entries)


def build_zip(out: Path, root: Path = ROOT) -> str:
    """Write the zip to ``out``; return its sha256 hex digest."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as archive:
        for name, path in source_files(root):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16  # regular file, rw-r--r--, whatever the umask
            info.create_system = 3  # Unix, so external_attr is read as a mode everywhere
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    # Replace in one step so a concurrent terraform plan never hashes a half-written zip.
    tmp.replace(out)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    digest = build_zip(out)
    print(f"{out}\nsha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
