"""The one secret redactor: message, ``extra`` fields and tracebacks, one mask everywhere."""

from __future__ import annotations

import io
import json
import logging

from crypto_signals.logging_setup import JsonFormatter, TextFormatter
from crypto_signals.redaction import REDACTED, RedactingFilter, redact, register_secrets

KEY = "PKREDACTIONTEST123456"
HOOK = "https://discord.com/api/webhooks/111/redaction-token-abcdefgh"


def emit(formatter: logging.Formatter, **extra: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.redaction")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        try:
            raise RuntimeError(f"boom with {KEY}")
        except RuntimeError:
            logger.exception("calling %s with key %s", HOOK, KEY, extra=extra)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_registered_secrets_and_webhook_paths_are_redacted_with_one_mask() -> None:
    register_secrets([KEY, HOOK])
    assert redact(f"key={KEY}") == f"key={REDACTED}"
    assert redact("POST /api/webhooks/222/other-unregistered-token HTTP/1.1") == (
        f"POST /api/webhooks/{REDACTED} HTTP/1.1"
    )
    assert redact("token redaction-token-abcdefgh alone") == f"token {REDACTED} alone"


def test_short_values_are_not_registered() -> None:
    register_secrets(["abc"])
    assert redact("abc abc") == "abc abc"


def test_json_lines_redact_message_extra_fields_and_traceback() -> None:
    register_secrets([KEY, HOOK])
    line = emit(JsonFormatter(), url=HOOK, nested={"key": KEY, "list": [KEY]})
    payload = json.loads(line)
    assert KEY not in line
    assert "redaction-token-abcdefgh" not in line
    assert payload["url"] == f"https://discord.com/api/webhooks/{REDACTED}"
    assert payload["nested"] == {"key": REDACTED, "list": [REDACTED]}


def test_text_lines_redact_the_traceback() -> None:
    register_secrets([KEY])
    text = emit(TextFormatter())
    assert "RuntimeError" in text
    assert KEY not in text
