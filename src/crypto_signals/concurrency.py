"""Independent calls at the same time: a run waits for the slowest, not for the sum.

Used where latency, not CPU, is the cost: the reads of a run's step (Firestore and the broker),
the broker's account, positions and open orders, and the windows of a long order listing.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def all_of(calls: Sequence[Callable[[], T]], *, name: str) -> list[T]:
    """Run ``calls`` at the same time (the first in this thread) and return their results in
    order.

    Every call finishes before this returns (each has its own timeouts), so nothing is left
    running behind the caller; then the first failure in the order of ``calls`` is raised, so
    which error a caller sees does not depend on which call happened to finish first. Each
    worker runs in a copy of the caller's context (the run's logging context, a deadline).
    """
    if not calls:
        return []
    first, rest = calls[0], calls[1:]
    if not rest:
        return [first()]
    with ThreadPoolExecutor(max_workers=len(rest), thread_name_prefix=name) as pool:
        later: list[Future[T]] = [
            pool.submit(contextvars.copy_context().run, call) for call in rest
        ]
        try:
            result = first()
        except BaseException:
            for future in later:
                future.exception()  # wait for it; its own failure comes second
            raise
    return [result, *(future.result() for future in later)]
