"""``python -m benchmarks.reconcile``: the same as ``benchmarks/bench_reconcile.py``."""

import sys

from benchmarks.reconcile.cli import main

sys.exit(main())
