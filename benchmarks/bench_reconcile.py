"""Benchmark of the reconciler: the entry point the README and docs/performance.md cite.

The benchmark itself is the package :mod:`benchmarks.reconcile` (see its docstring for the
modules); this script only makes ``benchmarks`` importable and runs its command line.

    .venv/bin/python benchmarks/bench_reconcile.py                # N = 10, 100, 1000, 10000
    .venv/bin/python benchmarks/bench_reconcile.py --quick        # N = 10, 100 (smoke run)
    .venv/bin/python benchmarks/bench_reconcile.py --sizes 10,1000 --repeat 3 --no-cold-start
    .venv/bin/python benchmarks/bench_reconcile.py --help
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.reconcile.cli import main

if __name__ == "__main__":
    sys.exit(main())
