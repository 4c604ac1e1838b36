"""``crypto-signals sandbox demo``: the whole reconciler on a laptop, no cloud account needed.

Starts the real Firestore emulator, the Alpaca simulator and the Discord sink, seeds the
scenario of :func:`crypto_signals.sandbox.scenarios.seed_demo`, runs the reconciler exactly as
the CLI does (same settings, same builder), prints the report and the Discord message, then
runs again to show that a second run heals nothing twice and says nothing twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from crypto_signals.bootstrap import build_reconciler
from crypto_signals.config import load_settings
from crypto_signals.report_text import render_text
from crypto_signals.sandbox.alpaca_sim import AlpacaSimulator
from crypto_signals.sandbox.discord_sink import DiscordSink
from crypto_signals.sandbox.firestore_emulator import FirestoreEmulator
from crypto_signals.sandbox.scenarios import World, seed_demo

DEMO_KEY_ID = "demo-key-id"
DEMO_SECRET = "demo-secret-key"  # noqa: S105 - the simulator's own fake credential


def format_discord(payload: Mapping[str, Any]) -> str:
    """A Discord message as a person would read it in the channel."""
    out = []
    if payload.get("content"):
        out.append(str(payload["content"]))
    for embed in payload.get("embeds", []):
        out.append(f"  ┃ {embed.get('title', '')}")
        for line in str(embed.get("description", "")).splitlines():
            out.append(f"  ┃   {line}")
        footer = (embed.get("footer") or {}).get("text")
        if footer:
            out.append(f"  ┃ — {footer}")
    return "\n".join(out)


def run_demo(*, json_output: bool = False) -> int:
    with (
        FirestoreEmulator() as emulator,
        AlpacaSimulator(api_key=DEMO_KEY_ID, secret_key=DEMO_SECRET) as sim,
        DiscordSink() as sink,
    ):
        os.environ.update(
            {
                "ENVIRONMENT": "DEV",
                "RECONCILER_ENABLED": "true",
                "GOOGLE_CLOUD_PROJECT": emulator.project,
                "FIRESTORE_EMULATOR_HOST": emulator.address,
                "ALPACA_API_KEY": DEMO_KEY_ID,
                "ALPACA_SECRET_KEY": DEMO_SECRET,
                "ALPACA_BASE_URL": sim.base_url,
                "DISCORD_WEBHOOK_URL": sink.webhook_url,
            }
        )
        settings = load_settings()
        db = emulator.client()
        seed_demo(World(db, sim, settings.positions_collection), datetime.now(UTC))
        reconciler = build_reconciler(settings, client=db)

        first = reconciler.reconcile()
        if json_output:
            print(json.dumps(first.model_dump(mode="json"), indent=2))
        else:
            print("=" * 100)
            print("First run (emulator + Alpaca simulator + Discord sink)")
            print("=" * 100)
            print(render_text(first))
        print("\n--- Discord messages posted to the sink ---")
        for payload in sink.messages:
            print(format_discord(payload))
        posted = len(sink.messages)

        second = reconciler.reconcile()
        print("\n--- Second run (same state) ---")
        print(
            f"status={second.status.value} healed={second.reconciled_count} "
            f"new Discord messages={len(sink.messages) - posted} "
            "(findings already announced are not repeated)"
        )
        ok = first.status.value != "failed" and second.reconciled_count == 0
        return 0 if ok else 2
