"""How long a 429 asks to wait: X-RateLimit-Reset (an epoch second) and Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from crypto_signals.broker.alpaca_transport import (
    DEFAULT_RATE_LIMIT_WAIT_SECONDS,
    MIN_RATE_LIMIT_WAIT_SECONDS,
    rate_limit_wait,
)

NOW = 1_790_000_000.25


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"X-RateLimit-Reset": "1790000002"}, 1.75),
        ({"X-RateLimit-Reset": "1790000002", "Retry-After": "3"}, 3.0),  # both must pass
        ({"X-RateLimit-Reset": "1790000009", "Retry-After": "3"}, 8.75),
        ({"Retry-After": "0.5"}, 0.5),
        ({"X-RateLimit-Reset": "1789999990"}, MIN_RATE_LIMIT_WAIT_SECONDS),  # clock skew
        ({}, DEFAULT_RATE_LIMIT_WAIT_SECONDS),
        ({"X-RateLimit-Reset": "soon", "Retry-After": "later"}, DEFAULT_RATE_LIMIT_WAIT_SECONDS),
    ],
)
def test_rate_limit_wait(headers: dict[str, str], wait: float) -> None:
    assert rate_limit_wait(headers, now=NOW) == pytest.approx(wait)


def test_retry_after_as_an_http_date() -> None:
    when = datetime.fromtimestamp(NOW + 10.75, tz=UTC).replace(microsecond=0)
    assert rate_limit_wait({"Retry-After": format_datetime(when, usegmt=True)}, now=NOW) == (
        pytest.approx(10.75)
    )
