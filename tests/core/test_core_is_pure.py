"""The functional core does no I/O and reads no clock: checked on its source, not on trust."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import crypto_signals

PACKAGE = Path(crypto_signals.__file__).resolve().parent
CORE_FILES = sorted(
    [
        *(PACKAGE / "engine" / "plan").glob("*.py"),
        PACKAGE / "engine" / "policy.py",
        PACKAGE / "engine" / "alerts.py",
        PACKAGE / "engine" / "findings.py",
        PACKAGE / "notifications" / "discord_render.py",
        *(PACKAGE / "domain").glob("*.py"),
    ]
)
CORE_MODULES = [
    "crypto_signals." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts) for p in CORE_FILES
]
FORBIDDEN_MODULES = frozenset(
    {"alpaca", "google", "requests", "os", "time", "socket", "subprocess", "random"}
)
# Reading the clock: datetime.now(), datetime.utcnow(), date.today(), datetime.datetime.now().
CLOCK_READS = frozenset({"now", "utcnow", "today"})
CLOCK_OWNERS = frozenset({"datetime", "date"})


def _clock_read(node: ast.Call) -> str | None:
    """'datetime.now' for a call like datetime.now() or datetime.datetime.now(), else None."""
    func = node.func
    if not isinstance(func, ast.Attribute) or func.attr not in CLOCK_READS:
        return None
    owner = func.value
    name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
    return f"{name}.{func.attr}" if name in CLOCK_OWNERS else None


def offences(source: str, filename: str) -> list[str]:
    """Every forbidden import or clock read in ``source``, as 'file:line: what'."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        imported: list[str] = []
        if isinstance(node, ast.Import):
            imported = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported = [node.module]
        elif isinstance(node, ast.Call):
            clock = _clock_read(node)
            if clock:
                found.append(f"{filename}:{node.lineno}: calls {clock}()")
            if isinstance(node.func, ast.Name) and node.func.id == "__import__":
                found.append(f"{filename}:{node.lineno}: calls __import__()")
            continue
        else:
            continue
        lineno = node.lineno
        found += [
            f"{filename}:{lineno}: imports {name}"
            for name in imported
            if name.split(".")[0] in FORBIDDEN_MODULES
        ]
    return found


def test_core_file_list_is_real() -> None:
    names = {p.relative_to(PACKAGE).as_posix() for p in CORE_FILES}
    assert {
        "engine/plan/__init__.py",
        "engine/plan/allocation.py",
        "engine/plan/planner.py",
        "domain/schemas.py",
        "domain/snapshots.py",
    } <= names
    assert all(p.is_file() for p in CORE_FILES)


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_core_module_imports_no_io_and_reads_no_clock(path: Path) -> None:
    problems = offences(path.read_text(encoding="utf-8"), path.relative_to(PACKAGE).as_posix())
    assert not problems, "the pure core must not do I/O or read the clock:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("import os\n", ["m.py:1: imports os"], id="import os"),
        pytest.param("import os.path as p\n", ["m.py:1: imports os.path"], id="import os.path"),
        pytest.param(
            "from google.cloud import firestore\n",
            ["m.py:1: imports google.cloud"],
            id="from google.cloud",
        ),
        pytest.param(
            "def f():\n    import requests\n", ["m.py:2: imports requests"], id="nested import"
        ),
        pytest.param("from alpaca.trading import X\n", ["m.py:1: imports alpaca.trading"]),
        pytest.param("import random, time\n", ["m.py:1: imports random", "m.py:1: imports time"]),
        pytest.param(
            "from datetime import datetime\nx = datetime.now()\n",
            ["m.py:2: calls datetime.now()"],
            id="datetime.now()",
        ),
        pytest.param(
            "import datetime\nx = datetime.datetime.utcnow()\n",
            ["m.py:2: calls datetime.utcnow()"],
            id="datetime.datetime.utcnow()",
        ),
        pytest.param(
            "from datetime import date\nx = date.today()\n",
            ["m.py:2: calls date.today()"],
            id="date.today()",
        ),
        pytest.param(
            "from datetime import datetime\nx = datetime.fromisoformat('2024-01-01')\n",
            [],
            id="datetime parsing is fine",
        ),
        pytest.param("import ostools\nimport timeit_x\n", [], id="prefix-named modules are fine"),
        pytest.param("from . import sibling\n", [], id="relative import is fine"),
    ],
)
def test_the_checker_names_the_offence(source: str, expected: list[str]) -> None:
    assert offences(source, "m.py") == expected


def test_importing_the_core_loads_no_vendor_client() -> None:
    """Transitively too: importing the core must not pull in a broker, cloud or HTTP client."""
    vendors = ("alpaca", "google", "requests", "urllib3", "grpc", "functions_framework")
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        + "".join(f"import {m}\n" for m in CORE_MODULES)
        + "loaded = set(sys.modules) - before\n"
        + f"print(sorted(m for m in loaded if m.split('.')[0] in {vendors!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]", f"importing the core loaded {result.stdout.strip()}"


def test_the_engine_does_not_import_an_adapter() -> None:
    """The shell and the core talk to adapters through the ports only: nothing under engine/
    imports the broker, the repositories, the notifications or the sandbox."""
    adapters = ("broker", "repository", "notifications", "sandbox", "bootstrap")
    found = []
    for path in sorted((PACKAGE / "engine").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            found += [
                f"{path.relative_to(PACKAGE)}: {name}"
                for name in names
                if any(name.startswith(f"crypto_signals.{a}") for a in adapters)
            ]
    assert found == []
