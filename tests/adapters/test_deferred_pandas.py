"""alpaca-py without pandas: deferred, never broken.

Each case runs in a fresh interpreter: this test process has long imported pandas (the
simulator tests import alpaca-py directly), and an import cannot be undone in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime

from crypto_signals.sandbox.scenarios import World, seed_demo


def run_fresh(code: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """Run ``code`` in a new interpreter; it prints one JSON object as its last line."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def test_a_full_run_never_imports_pandas_or_numpy(
    world: World, env: dict[str, str], now: datetime
) -> None:
    # The whole deployed path: configuration, clients, and a reconcile of the demo book
    # (zombies with closing fills, an orphan, ...) against the stand-ins.
    seed_demo(world, now)
    seen = run_fresh(
        """
        import json, sys
        from crypto_signals.bootstrap import build_reconciler
        from crypto_signals.config import load_settings
        report = build_reconciler(load_settings()).reconcile(dry_run=True)
        print(json.dumps({
            "status": report.status.value,
            "broker_calls": report.stats.broker_calls,
            "would_heal": len(report.healed),
            "loaded": sorted(m for m in ("pandas", "numpy") if m in sys.modules),
        }))
        """,
        env,
    )
    assert seen["status"] == "issues"
    # Account, positions, open orders (one empty page), closed orders (a page, and the page
    # that proves the listing complete by bringing nothing new).
    assert seen["broker_calls"] == 5
    assert isinstance(seen["would_heal"], int)
    assert seen["would_heal"] >= 2
    assert seen["loaded"] == []


def test_alpaca_py_still_gets_real_pandas_when_it_needs_it() -> None:
    # The one place alpaca-py's trading side uses pandas: a validator calling pd.Timestamp.
    seen = run_fresh(
        """
        import datetime, json, sys
        from crypto_signals.broker import alpaca_sdk  # noqa: F401
        from alpaca.trading import requests as trading_requests
        before = "pandas" in sys.modules
        from alpaca.trading.requests import GetCorporateAnnouncementsRequest
        request = GetCorporateAnnouncementsRequest(
            ca_types=["dividend"],
            since=datetime.date(2024, 1, 1),
            until=datetime.date(2024, 2, 1),
        )
        try:  # the validator's 90-day rule, computed with pandas
            GetCorporateAnnouncementsRequest(
                ca_types=["dividend"],
                since=datetime.date(2024, 1, 1),
                until=datetime.date(2024, 6, 1),
            )
            too_long = "accepted"
        except ValueError as exc:
            too_long = "refused"
        import pandas
        print(json.dumps({
            "before": before,
            "since": request.since.isoformat(),
            "too_long": too_long,
            "real_in_sys_modules": type(sys.modules["pandas"]).__name__,
            "import_gives_real": hasattr(pandas, "DataFrame") and type(pandas).__name__,
            "same_timestamp": trading_requests.pd.Timestamp is pandas.Timestamp,
        }))
        """
    )
    assert seen == {
        "before": False,
        "since": "2024-01-01",
        "too_long": "refused",
        "real_in_sys_modules": "module",
        "import_gives_real": "module",
        "same_timestamp": True,
    }


def test_pandas_imported_first_is_left_alone() -> None:
    # The signal job may import pandas before the reconciler: then there is nothing to defer.
    seen = run_fresh(
        """
        import json, sys
        import pandas
        from crypto_signals.broker import alpaca_sdk  # noqa: F401
        from alpaca.trading import requests as trading_requests
        print(json.dumps({"same_module": trading_requests.pd is pandas}))
        """
    )
    assert seen == {"same_module": True}


def test_others_importing_pandas_inside_the_block_get_the_real_module() -> None:
    seen = run_fresh(
        """
        import json, sys
        from crypto_signals.broker.deferred_pandas import pandas_deferred
        with pandas_deferred():
            import pandas
            frame = pandas.DataFrame({"a": [1, 2]})  # first use: the real import, forwarded
            inside = type(sys.modules["pandas"]).__name__
        import pandas as after
        print(json.dumps({
            "sum": int(frame["a"].sum()),
            "inside": inside,
            "after_is_real": type(after).__name__ == "module" and after.DataFrame is type(frame),
        }))
        """
    )
    assert seen == {"sum": 3, "inside": "module", "after_is_real": True}


def test_a_submodule_import_inside_the_block_fails_loudly() -> None:
    # Importing pandas.api through the stand-in would import it twice; it is refused by name.
    seen = run_fresh(
        """
        import json, sys
        from crypto_signals.broker.deferred_pandas import pandas_deferred
        try:
            with pandas_deferred():
                import pandas.api.types  # noqa: F401
            outcome = "imported"
        except ImportError as exc:
            outcome = str(exc)
        import pandas.api.types as types_after
        print(json.dumps({
            "outcome": outcome,
            "after": types_after.is_integer_dtype("int64"),
        }))
        """
    )
    assert "pandas" in str(seen["outcome"])
    assert "not a package" in str(seen["outcome"])
    assert seen["after"] is True
