"""A stand-in for the existing signal pipeline, plugged in via CRYPTO_SIGNALS_SIGNAL_STEP.

It only leaves a marker file (path in ``SIGNAL_STEP_MARKER``), so a test of the main job can
tell from outside the process whether the job went on to the signal step or stopped before it.
"""

from __future__ import annotations

import os
from pathlib import Path

MARKER_ENV = "SIGNAL_STEP_MARKER"
SPEC = "tests.e2e.signal_step_fixture:run"


def run() -> None:
    Path(os.environ[MARKER_ENV]).write_text("signal step ran\n", encoding="utf-8")
