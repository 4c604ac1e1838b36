"""``python -m crypto_signals.main``: the signal job's entry point.

Its first step is the reconciliation (:func:`crypto_signals.startup.reconcile_at_startup`);
then the signal step runs. The signal step is pluggable: ``CRYPTO_SIGNALS_SIGNAL_STEP`` names a
``module:function`` taking no argument (the existing signal pipeline), so this package does not
depend on the pipeline and the pipeline does not copy the reconciler's start-up logic.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable

from crypto_signals.logging_setup import configure_from_env
from crypto_signals.startup import reconcile_at_startup

log = logging.getLogger(__name__)

SignalStep = Callable[[], object]


def load_signal_step(spec: str | None) -> SignalStep | None:
    if not spec:
        return None
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError("CRYPTO_SIGNALS_SIGNAL_STEP must look like 'package.module:function'")
    step = getattr(importlib.import_module(module_name), attr)
    if not callable(step):
        raise ValueError(f"{spec} is not callable")
    return step  # type: ignore[no-any-return]


def run_job(signal_step: SignalStep | None) -> int:
    decision = reconcile_at_startup()
    if not decision.proceed:
        log.error("signal job stopped before trading: %s", decision.reason)
        return 3
    if signal_step is None:
        log.info("no signal step configured (CRYPTO_SIGNALS_SIGNAL_STEP): reconciliation only")
        return 0
    signal_step()
    return 0


def main() -> int:
    configure_from_env()
    try:
        step = load_signal_step(os.environ.get("CRYPTO_SIGNALS_SIGNAL_STEP"))
    except (ImportError, AttributeError, ValueError) as exc:
        log.error("cannot load the signal step: %s", exc)
        return 2
    return run_job(step)


if __name__ == "__main__":
    sys.exit(main())
