"""``_both`` and ``all_of``: independent calls at once, and nothing left running behind the run."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from crypto_signals.concurrency import all_of
from crypto_signals.engine.ports import BrokerUnavailable, StoreUnavailable
from crypto_signals.engine.reconciler import _both
from crypto_signals.logging_setup import _ContextFilter, run_context


def test_the_two_calls_overlap() -> None:
    # Each call waits for the other to arrive: sequential calls would break the barrier.
    barrier = threading.Barrier(2, timeout=5)
    assert _both(lambda: barrier.wait() >= 0, lambda: barrier.wait() >= 0, name="t") == (
        True,
        True,
    )


def test_a_failing_first_call_still_waits_for_the_second() -> None:
    finished = threading.Event()

    def slow() -> str:
        time.sleep(0.2)
        finished.set()
        return "done"

    def fail() -> str:
        raise StoreUnavailable("firestore down")

    with pytest.raises(StoreUnavailable, match="firestore down"):
        _both(fail, slow, name="t")
    assert finished.is_set()  # the broker call was not abandoned mid-flight


def test_the_first_calls_failure_wins_and_a_second_failure_is_not_swallowed() -> None:
    def store() -> None:
        raise StoreUnavailable("store")

    def broker() -> None:
        raise BrokerUnavailable("broker")

    with pytest.raises(StoreUnavailable):
        _both(store, broker, name="t")
    with pytest.raises(BrokerUnavailable):
        _both(lambda: 1, broker, name="t")


def test_the_second_call_logs_under_the_runs_id() -> None:
    # Log lines from the worker thread must carry the run id like the caller's do.
    seen: list[object] = []

    def log_something() -> None:
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "x", None, None)
        _ContextFilter().filter(record)
        seen.append(getattr(record, "run_id", None))

    with run_context("run-42"):
        _both(lambda: None, log_something, name="t")
    assert seen == ["run-42"]


# -- all_of: any number of calls (the broker's state, a listing's windows) -------------------


def test_all_of_runs_every_call_at_once_and_keeps_their_order() -> None:
    barrier = threading.Barrier(3, timeout=5)

    def call(value: int) -> Callable[[], int]:
        return lambda: value + 0 * barrier.wait()

    assert all_of([call(1), call(2), call(3)], name="t") == [1, 2, 3]


def test_all_of_names_the_first_failure_in_order_not_in_time() -> None:
    finished: list[str] = []

    def late_failure() -> None:
        time.sleep(0.2)
        finished.append("second")
        raise BrokerUnavailable("second call")

    def early_failure() -> None:
        finished.append("third")
        raise BrokerUnavailable("third call")

    with pytest.raises(BrokerUnavailable, match="second call"):
        all_of([lambda: None, late_failure, early_failure], name="t")
    assert sorted(finished) == ["second", "third"]  # both ran to their end


def test_all_of_a_failing_first_call_waits_for_the_rest() -> None:
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.2)
        finished.set()

    def fail() -> None:
        raise StoreUnavailable("first")

    with pytest.raises(StoreUnavailable, match="first"):
        all_of([fail, slow, slow], name="t")
    assert finished.is_set()


def test_all_of_with_one_call_or_none() -> None:
    assert all_of([lambda: 7], name="t") == [7]
    assert all_of([], name="t") == []
