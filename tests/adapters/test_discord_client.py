"""The Discord webhook client, exercised over real HTTP against the local Discord sink."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from crypto_signals.notifications.discord import (
    REDACTED,
    DeliveryOutcome,
    DeliveryResult,
    DiscordWebhookClient,
)
from crypto_signals.sandbox.discord_sink import (
    NO_ANSWER_STATUS,
    WEBHOOK_TOKEN,
    DiscordSink,
    SinkFault,
)

PAYLOADS: list[dict[str, Any]] = [
    {"content": f"message {i}", "allowed_mentions": {"parse": []}} for i in range(3)
]


@pytest.fixture
def sink() -> Iterator[DiscordSink]:
    with DiscordSink() as running:
        yield running


def fast_client(url: str | None, **overrides: Any) -> DiscordWebhookClient:
    options: dict[str, Any] = {
        "timeout_seconds": 2.0,
        "max_attempts": 3,
        "backoff_seconds": 0.01,
        "max_retry_after_seconds": 2.0,
    }
    options.update(overrides)
    return DiscordWebhookClient(url, **options)


def closed_port_url() -> str:
    # Bind then release a port so that nothing is listening on it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/webhooks/1234567890/{WEBHOOK_TOKEN}"


def test_delivers_all_payloads_in_order_with_wait(sink: DiscordSink) -> None:
    result = fast_client(sink.webhook_url).send(PAYLOADS)
    assert result == DeliveryResult(DeliveryOutcome.DELIVERED, 3, 3, None)
    assert sink.messages == PAYLOADS
    # 200 (not 204) proves ?wait=true was sent, so Discord confirmed each message.
    assert [status for status, _ in sink.attempts] == [200, 200, 200]


def test_existing_query_parameters_are_kept(sink: DiscordSink) -> None:
    result = fast_client(sink.webhook_url + "?wait=false&thread_id=42").send(PAYLOADS[:1])
    assert result.outcome is DeliveryOutcome.DELIVERED
    assert sink.attempts[0][0] == 200


def test_empty_batch_is_trivially_delivered(sink: DiscordSink) -> None:
    assert fast_client(sink.webhook_url).send([]) == DeliveryResult(
        DeliveryOutcome.DELIVERED, 0, 0, None
    )


@pytest.mark.parametrize("url", [None, "", "   "])
def test_missing_url_is_not_configured(url: str | None) -> None:
    client = DiscordWebhookClient(url)
    assert not client.configured
    assert client.send(PAYLOADS) == DeliveryResult(DeliveryOutcome.NOT_CONFIGURED, 0, 0, None)


def test_non_http_url_fails_without_echoing_it() -> None:
    result = fast_client(f"ftp://example.invalid/api/webhooks/1/{WEBHOOK_TOKEN}").send(PAYLOADS)
    assert result.outcome is DeliveryOutcome.FAILED
    assert result.attempts == 0
    assert WEBHOOK_TOKEN not in (result.error or "")


def test_server_error_is_retried_with_backoff(sink: DiscordSink) -> None:
    sink.inject_fault(SinkFault(kind="status", status=502))
    result = fast_client(sink.webhook_url).send(PAYLOADS[:1])
    assert result == DeliveryResult(DeliveryOutcome.DELIVERED, 1, 2, None)
    assert [status for status, _ in sink.attempts] == [502, 200]


def test_persistent_server_error_fails_after_max_attempts(sink: DiscordSink) -> None:
    sink.inject_fault(SinkFault(kind="status", status=500, times=None))
    started = time.monotonic()
    result = fast_client(sink.webhook_url, max_attempts=4, backoff_seconds=0.05).send(PAYLOADS)
    elapsed = time.monotonic() - started
    assert result.outcome is DeliveryOutcome.FAILED
    assert (result.messages_sent, result.attempts) == (0, 4)
    assert "HTTP 500" in (result.error or "")
    assert len(sink.attempts) == 4
    # Exponential backoff between attempts: 0.05 + 0.1 + 0.2, none after the last one.
    assert 0.3 <= elapsed < 2


def test_rate_limit_waits_for_retry_after_from_body(sink: DiscordSink) -> None:
    sink.inject_fault(SinkFault(kind="rate_limit", retry_after=0.3))
    started = time.monotonic()
    result = fast_client(sink.webhook_url).send(PAYLOADS[:2])
    assert time.monotonic() - started >= 0.3
    assert result == DeliveryResult(DeliveryOutcome.DELIVERED, 2, 3, None)
    assert [status for status, _ in sink.attempts] == [429, 200, 200]


def test_rate_limit_without_json_uses_retry_after_header(sink: DiscordSink) -> None:
    sink.inject_fault(SinkFault(kind="status", status=429, retry_after=1))
    started = time.monotonic()
    result = fast_client(sink.webhook_url).send(PAYLOADS[:1])
    assert time.monotonic() - started >= 1
    assert result == DeliveryResult(DeliveryOutcome.DELIVERED, 1, 2, None)


def test_rate_limit_longer_than_cap_fails_fast(sink: DiscordSink) -> None:
    sink.inject_fault(SinkFault(kind="rate_limit", retry_after=30))
    started = time.monotonic()
    result = fast_client(sink.webhook_url, max_retry_after_seconds=1).send(PAYLOADS)
    assert time.monotonic() - started < 1
    assert result.outcome is DeliveryOutcome.FAILED
    assert (result.messages_sent, result.attempts) == (0, 1)
    assert "429" in (result.error or "")
    assert "30s" in (result.error or "")
    assert sink.messages == []


def test_client_error_is_not_retried_and_reports_discord_code(sink: DiscordSink) -> None:
    too_long = {"content": "x" * 2001}
    result = fast_client(sink.webhook_url).send([too_long])
    assert result.outcome is DeliveryOutcome.FAILED
    assert result.attempts == 1
    error = result.error or ""
    assert "HTTP 400" in error
    assert "code 50035" in error
    assert "content: Must be 2000 or fewer in length." in error


def test_partial_delivery_reports_messages_sent(sink: DiscordSink) -> None:
    payloads = [PAYLOADS[0], {"content": ""}, PAYLOADS[2]]
    result = fast_client(sink.webhook_url).send(payloads)
    assert result.outcome is DeliveryOutcome.FAILED
    assert (result.messages_sent, result.attempts) == (1, 2)
    assert "message 2/3" in (result.error or "")
    assert "code 50006" in (result.error or "")
    # Delivery stops at the failing payload: the third one is never attempted.
    assert sink.messages == [PAYLOADS[0]]


def test_hang_times_out_then_retry_succeeds(sink: DiscordSink) -> None:
    sink.inject_fault(SinkFault(kind="hang", seconds=5))
    result = fast_client(sink.webhook_url, timeout_seconds=0.2).send(PAYLOADS[:1])
    assert result == DeliveryResult(DeliveryOutcome.DELIVERED, 1, 2, None)
    assert [status for status, _ in sink.attempts] == [NO_ANSWER_STATUS, 200]


def test_connection_refused_fails(sink: DiscordSink) -> None:
    result = fast_client(closed_port_url(), max_attempts=2).send(PAYLOADS)
    assert result.outcome is DeliveryOutcome.FAILED
    assert (result.messages_sent, result.attempts) == (0, 2)
    assert "ConnectionError" in (result.error or "")


def test_unserialisable_payload_fails_without_sending(sink: DiscordSink) -> None:
    result = fast_client(sink.webhook_url).send([{"content": object()}])
    assert result.outcome is DeliveryOutcome.FAILED
    assert result.attempts == 0
    assert sink.attempts == []


@pytest.mark.parametrize(
    "options",
    [
        {"timeout_seconds": 0},
        {"max_attempts": 0},
        {"backoff_seconds": -1},
        {"max_retry_after_seconds": -1},
    ],
)
def test_invalid_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must") as excinfo:
        DiscordWebhookClient(f"http://127.0.0.1:1/api/webhooks/1/{WEBHOOK_TOKEN}", **options)
    assert WEBHOOK_TOKEN not in str(excinfo.value)


def test_webhook_token_never_leaks(
    sink: DiscordSink, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Failing deliveries of every kind: the token must appear in no log, error or repr."""
    caplog.set_level(logging.DEBUG)  # includes urllib3's request lines, which carry the path
    # urllib3's own level too: configure_logging (run by an earlier test) quiets it to WARNING.
    caplog.set_level(logging.DEBUG, logger="urllib3")
    results: list[DeliveryResult] = []
    clients: list[DiscordWebhookClient] = []

    hang = fast_client(sink.webhook_url, timeout_seconds=0.2, max_attempts=2)
    sink.inject_fault(SinkFault(kind="hang", seconds=5, times=2))
    results.append(hang.send(PAYLOADS))
    clients.append(hang)

    refused = fast_client(closed_port_url(), max_attempts=2)
    results.append(refused.send(PAYLOADS))
    clients.append(refused)

    errors = fast_client(sink.webhook_url, max_attempts=2)
    sink.inject_fault(SinkFault(kind="status", status=500, times=2))
    results.append(errors.send(PAYLOADS))
    results.append(errors.send([{"content": "x" * 3000}]))  # 400
    sink.inject_fault(SinkFault(kind="rate_limit", retry_after=60))
    results.append(errors.send(PAYLOADS))
    results.append(errors.send(PAYLOADS))  # and a success, for urllib3's DEBUG lines
    clients.append(errors)

    outcomes = [result.outcome for result in results]
    assert outcomes == [DeliveryOutcome.FAILED] * 5 + [DeliveryOutcome.DELIVERED]
    assert any(record.name.startswith("urllib3") for record in caplog.records), (
        "urllib3 DEBUG records should have been captured, or this test proves nothing"
    )
    assert any(record.levelno == logging.WARNING for record in caplog.records)
    assert f"/api/webhooks/{REDACTED}" in caplog.text  # the urllib3 request line, scrubbed

    captured = capsys.readouterr()
    haystacks = [
        caplog.text,
        *(record.getMessage() for record in caplog.records),
        captured.out,
        captured.err,
        *(repr(result) for result in results),
        *(result.error or "" for result in results),
        *(repr(client) for client in clients),
        *(repr(vars(client)) for client in clients),
    ]
    for text in haystacks:
        assert WEBHOOK_TOKEN not in text
        assert sink.webhook_url not in text
