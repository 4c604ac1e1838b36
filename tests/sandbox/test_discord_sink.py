"""The local Discord sink answers over real HTTP like Discord's Execute Webhook endpoint."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from crypto_signals.notifications.discord_render import (
    AlertSection,
    Severity,
    render_messages,
)
from crypto_signals.sandbox.discord_sink import (
    NO_ANSWER_STATUS,
    WEBHOOK_ID,
    WEBHOOK_TOKEN,
    DiscordSink,
    SinkFault,
)

VALID: dict[str, Any] = {"content": "hello", "embeds": [{"title": "t", "description": "d"}]}


@pytest.fixture
def sink() -> Iterator[DiscordSink]:
    with DiscordSink() as running:
        yield running


@pytest.fixture
def http() -> Iterator[requests.Session]:
    # Loopback only: ignore any proxy configured in the environment.
    with requests.Session() as session:
        session.trust_env = False
        yield session


def post(http: requests.Session, url: str, body: Any, **kwargs: Any) -> requests.Response:
    return http.post(url, json=body, timeout=5, **kwargs)


def test_webhook_url_shape(sink: DiscordSink) -> None:
    assert sink.webhook_url == (
        f"http://127.0.0.1:{sink.port}/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"
    )


def test_accepts_valid_payload_with_204(sink: DiscordSink, http: requests.Session) -> None:
    response = post(http, sink.webhook_url, VALID)
    assert response.status_code == 204
    assert response.content == b""
    assert sink.messages == [VALID]
    assert sink.attempts == [(204, VALID)]


def test_wait_true_returns_created_message(sink: DiscordSink, http: requests.Session) -> None:
    first = post(http, sink.webhook_url + "?wait=true", VALID)
    second = post(http, sink.webhook_url + "?wait=true", {"content": "again"})
    assert first.status_code == 200
    message = first.json()
    assert message["content"] == "hello"
    assert message["embeds"] == VALID["embeds"]
    assert message["webhook_id"] == WEBHOOK_ID
    assert message["id"] != second.json()["id"]
    assert [status for status, _ in sink.attempts] == [200, 200]


def test_messages_and_attempts_are_copies(sink: DiscordSink, http: requests.Session) -> None:
    post(http, sink.webhook_url, VALID)
    sink.messages.clear()
    sink.attempts.clear()
    assert len(sink.messages) == 1
    assert len(sink.attempts) == 1


@pytest.mark.parametrize("raw", [b"{not json", b"", "\u00e9".encode("latin-1")])
def test_invalid_json_is_rejected_with_50109(
    sink: DiscordSink, http: requests.Session, raw: bytes
) -> None:
    response = http.post(
        sink.webhook_url, data=raw, headers={"Content-Type": "application/json"}, timeout=5
    )
    assert response.status_code == 400
    assert response.json() == {
        "code": 50109,
        "message": "The request body contains invalid JSON.",
    }
    assert sink.messages == []
    assert sink.attempts == [(400, None)]


LONG_EMBED_TEXT = "x" * 1500


@pytest.mark.parametrize(
    ("payload", "error_path"),
    [
        ({"content": "x" * 2001}, ["content"]),
        ({"content": "ok", "username": "u" * 81}, ["username"]),
        ({"content": "ok", "username": "Discord alerts"}, ["username"]),
        ({"embeds": [{"title": "t"}] * 11}, ["embeds"]),
        ({"embeds": [{"title": "x" * 257}]}, ["embeds", "0", "title"]),
        ({"embeds": [{"description": "x" * 4097}]}, ["embeds", "0", "description"]),
        (
            {"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]},
            ["embeds", "0", "fields"],
        ),
        (
            {"embeds": [{"fields": [{"name": "x" * 257, "value": "v"}]}]},
            ["embeds", "0", "fields", "0", "name"],
        ),
        (
            {"embeds": [{"fields": [{"name": "n", "value": "x" * 1025}]}]},
            ["embeds", "0", "fields", "0", "value"],
        ),
        ({"embeds": [{"footer": {"text": "x" * 2049}}]}, ["embeds", "0", "footer", "text"]),
        ({"embeds": [{"author": {"name": "x" * 257}}]}, ["embeds", "0", "author", "name"]),
        (
            # Each embed is fine on its own; together they exceed 6000 characters.
            {"embeds": [{"description": LONG_EMBED_TEXT}] * 4 + [{"title": "t"}]},
            ["embeds"],
        ),
        ([1, 2, 3], []),
    ],
    ids=[
        "content",
        "username-length",
        "username-word",
        "embed-count",
        "title",
        "description",
        "field-count",
        "field-name",
        "field-value",
        "footer",
        "author",
        "total-6000",
        "not-an-object",
    ],
)
def test_limit_violations_are_rejected_like_discord(
    sink: DiscordSink, http: requests.Session, payload: Any, error_path: list[str]
) -> None:
    response = post(http, sink.webhook_url, payload)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 50035
    assert body["message"] == "Invalid Form Body"
    node = body["errors"]
    for key in error_path:
        node = node[key]
    assert node["_errors"], body
    assert sink.messages == []
    assert sink.attempts[0][0] == 400


@pytest.mark.parametrize("payload", [{}, {"content": ""}, {"content": "   ", "embeds": []}])
def test_empty_message_is_rejected_with_50006(
    sink: DiscordSink, http: requests.Session, payload: dict[str, Any]
) -> None:
    response = post(http, sink.webhook_url, payload)
    assert response.status_code == 400
    assert response.json()["code"] == 50006
    assert sink.messages == []


def test_limits_can_be_disabled(http: requests.Session) -> None:
    with DiscordSink(enforce_limits=False) as lax:
        response = post(http, lax.webhook_url, {"content": "x" * 5000})
        assert response.status_code == 204
        assert len(lax.messages) == 1


def test_wrong_token_unknown_webhook_and_route(sink: DiscordSink, http: requests.Session) -> None:
    base = f"http://127.0.0.1:{sink.port}"
    wrong_token = post(http, f"{base}/api/webhooks/{WEBHOOK_ID}/nope", VALID)
    unknown = post(http, f"{base}/api/webhooks/999/{WEBHOOK_TOKEN}", VALID)
    route = post(http, f"{base}/elsewhere", VALID)
    assert (wrong_token.status_code, wrong_token.json()["code"]) == (401, 50027)
    assert (unknown.status_code, unknown.json()["code"]) == (404, 10015)
    assert route.status_code == 404
    assert http.get(sink.webhook_url, timeout=5).status_code == 405
    assert sink.messages == []


def test_status_fault_answers_once_then_recovers(sink: DiscordSink, http: requests.Session) -> None:
    sink.inject_fault(SinkFault(kind="status", status=503))
    failed = post(http, sink.webhook_url, VALID)
    ok = post(http, sink.webhook_url, VALID)
    assert failed.status_code == 503
    assert failed.json() == {"code": 0, "message": "503: Service Unavailable"}
    assert ok.status_code == 204
    assert sink.attempts == [(503, VALID), (204, VALID)]
    assert sink.messages == [VALID]


def test_rate_limit_fault_mimics_discord(sink: DiscordSink, http: requests.Session) -> None:
    sink.inject_fault(SinkFault(kind="rate_limit", retry_after=1.5))
    response = post(http, sink.webhook_url, VALID)
    assert response.status_code == 429
    assert response.json() == {
        "message": "You are being rate limited.",
        "retry_after": 1.5,
        "global": False,
    }
    assert response.headers["Retry-After"] == "2"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert float(response.headers["X-RateLimit-Reset-After"]) == 1.5
    assert "X-RateLimit-Bucket" in response.headers
    assert sink.messages == []


def test_plain_429_status_fault_has_only_retry_after_header(
    sink: DiscordSink, http: requests.Session
) -> None:
    sink.inject_fault(SinkFault(kind="status", status=429, retry_after=3))
    response = post(http, sink.webhook_url, VALID)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert "json" not in response.headers["Content-Type"]


def test_faults_are_fifo_and_respect_times(sink: DiscordSink, http: requests.Session) -> None:
    sink.inject_fault(SinkFault(kind="status", status=500, times=2))
    sink.inject_fault(SinkFault(kind="status", status=502))
    statuses = [post(http, sink.webhook_url, VALID).status_code for _ in range(4)]
    assert statuses == [500, 500, 502, 204]


def test_unlimited_fault_lasts_until_cleared(sink: DiscordSink, http: requests.Session) -> None:
    sink.inject_fault(SinkFault(kind="status", status=500, times=None))
    assert [post(http, sink.webhook_url, VALID).status_code for _ in range(3)] == [500] * 3
    sink.clear_faults()
    assert post(http, sink.webhook_url, VALID).status_code == 204


def test_invalid_times_is_refused(sink: DiscordSink) -> None:
    with pytest.raises(ValueError, match="times"):
        sink.inject_fault(SinkFault(kind="status", times=0))


def test_hang_times_out_the_client_and_is_recorded(
    sink: DiscordSink, http: requests.Session
) -> None:
    sink.inject_fault(SinkFault(kind="hang", seconds=5))
    with pytest.raises(requests.ReadTimeout):
        http.post(sink.webhook_url, json=VALID, timeout=(1, 0.2))
    assert sink.attempts == [(NO_ANSWER_STATUS, VALID)]
    # Other requests are served while the first one still hangs.
    assert post(http, sink.webhook_url, VALID).status_code == 204


def test_elapsed_hang_drops_the_connection(sink: DiscordSink, http: requests.Session) -> None:
    sink.inject_fault(SinkFault(kind="hang", seconds=0.1))
    with pytest.raises(requests.ConnectionError):
        http.post(sink.webhook_url, json=VALID, timeout=5)


def test_stop_returns_promptly_during_a_hang(http: requests.Session) -> None:
    sink = DiscordSink().start()
    sink.inject_fault(SinkFault(kind="hang"))  # default: 60 s
    errors: list[BaseException] = []

    def hanging_post() -> None:
        try:
            http.post(sink.webhook_url, json=VALID, timeout=30)
        except requests.RequestException as exc:
            errors.append(exc)

    client = threading.Thread(target=hanging_post)
    client.start()
    deadline = time.monotonic() + 5
    while not sink.attempts and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.attempts, "request never reached the sink"
    started = time.monotonic()
    sink.stop()
    assert time.monotonic() - started < 2
    client.join(timeout=5)
    assert not client.is_alive()
    assert errors, "hanging request should fail once the sink stops"


def test_reset_forgets_everything(sink: DiscordSink, http: requests.Session) -> None:
    post(http, sink.webhook_url, VALID)
    sink.inject_fault(SinkFault(kind="status", status=500, times=None))
    sink.reset()
    assert sink.messages == []
    assert sink.attempts == []
    assert post(http, sink.webhook_url, VALID).status_code == 204


def test_concurrent_posts_are_all_recorded(sink: DiscordSink) -> None:
    def worker(n: int) -> None:
        with requests.Session() as session:
            session.trust_env = False
            for i in range(5):
                response = post(session, sink.webhook_url, {"content": f"{n}-{i}"})
                assert response.status_code == 204

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    contents = sorted(message["content"] for message in sink.messages)
    assert contents == sorted(f"{n}-{i}" for n in range(8) for i in range(5))


def test_stop_is_idempotent_and_restartable() -> None:
    sink = DiscordSink()
    sink.stop()  # never started: nothing to do
    sink.start()
    with pytest.raises(RuntimeError):
        sink.start()
    sink.stop()
    sink.stop()
    with pytest.raises(RuntimeError):
        _ = sink.webhook_url


def test_rendered_alerts_are_accepted(sink: DiscordSink, http: requests.Session) -> None:
    sections = [
        AlertSection(
            "Orphan positions at the broker",
            Severity.CRITICAL,
            tuple(f"BTC/USD long 0.{i} (market value ${i * 1000:,}.00)" for i in range(400)),
        ),
        AlertSection("Giant line", Severity.WARNING, ("z" * 10_000,)),
    ]
    payloads = render_messages(sections, header="**Reconciler run**", footer="run 42")
    for payload in payloads:
        response = post(http, sink.webhook_url + "?wait=true", payload)
        assert response.status_code == 200, response.text
    assert sink.messages == payloads
