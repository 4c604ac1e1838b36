"""``crypto-signals sandbox demo``: the whole reconciler on a laptop, no cloud account needed.

Starts the real Firestore emulator, the Alpaca simulator and the Discord sink, seeds the
scenario of :func:`crypto_signals.sandbox.scenarios.seed_demo`, runs the reconciler exactly as
the CLI does (same settings, same builder), prints the report and the Discord message, then
runs again to show that a second run heals nothing twice and says nothing twice. Then it does
what the person reading the alert would do about the orphan -- ``crypto-signals adopt SOL/USD``,
through the same operator commands the CLI runs -- and shows the run after it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from crypto_signals.bootstrap import build_operator, build_reconciler
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

        print("\n--- An operator adopts the orphan (what the alert line says to run) ---")
        print('$ crypto-signals adopt SOL/USD --reason "bought by hand in the Alpaca app"')
        operator = build_operator(settings, actor="demo-operator", client=db)
        adopted = operator.adopt(
            "SOL/USD", reason="bought by hand in the Alpaca app", dry_run=False
        )
        print(f"{adopted.message} (audit {adopted.audit_id})")
        posted = len(sink.messages)
        third = reconciler.reconcile()
        print("\n--- The run after it ---")
        print(
            f"status={third.status.value} orphans={third.orphans or 'none'} "
            f"unverified zombies={third.unverified_zombies or 'none'}"
        )
        for payload in sink.messages[posted:]:
            print(format_discord(payload))
        ok = first.status.value != "failed" and second.reconciled_count == 0 and third.orphans == []
        return 0 if ok else 2
