"""The one way to build a reconciler from settings (used by the function, the CLI and the job).

Clients are created here and nowhere else, so tests build the same object graph against the
emulator, the simulator and the sink by setting the same environment variables.
"""

from __future__ import annotations

from datetime import timedelta

from google.cloud import firestore

from crypto_signals.broker.alpaca import AlpacaBroker
from crypto_signals.config import Settings
from crypto_signals.engine.reconciler import StateReconciler
from crypto_signals.notifications.discord import DiscordNotifier, DiscordWebhookClient
from crypto_signals.redaction import register_secrets
from crypto_signals.repository.firestore import FirestoreTimeouts, PositionRepository
from crypto_signals.repository.ledger import LedgerStore
from crypto_signals.repository.reconciler_state import (
    AlertStateStore,
    BreakerStore,
    RunLease,
    RunLog,
)


def build_reconciler(
    settings: Settings, *, client: firestore.Client | None = None
) -> StateReconciler:
    register_secrets(settings.secret_values())
    db = client or firestore.Client(project=settings.google_cloud_project)
    timeouts = FirestoreTimeouts(
        call_seconds=settings.firestore_timeout_seconds,
        retry_deadline_seconds=2 * settings.firestore_timeout_seconds,
    )
    scope = settings.positions_collection
    broker = AlpacaBroker.from_credentials(
        api_key=settings.alpaca_api_key.get_secret_value(),
        secret_key=settings.alpaca_secret_key.get_secret_value(),
        paper=settings.alpaca_paper_trading,
        base_url=settings.alpaca_base_url,
        timeout_seconds=settings.alpaca_timeout_seconds,
        retries=settings.alpaca_max_retries,
    )
    webhook = settings.discord_webhook_url
    notifier = DiscordNotifier(
        DiscordWebhookClient(
            webhook.get_secret_value() if webhook else None,
            timeout_seconds=settings.discord_timeout_seconds,
        )
    )
    return StateReconciler(
        broker=broker,
        store=PositionRepository(db, scope, timeouts=timeouts),
        notifier=notifier,
        alert_store=AlertStateStore(db, scope, timeouts),
        lease=RunLease(db, scope, timedelta(seconds=settings.reconciler_lease_seconds), timeouts),
        run_log=RunLog(db, scope, timedelta(days=settings.reconciler_run_retention_days), timeouts),
        ledger=LedgerStore(db, scope, timeouts),
        breaker=BreakerStore(db, scope, timeouts),
        policy=settings.policy(),
        environment=settings.environment,
        enabled=settings.enabled,
        realert_after=timedelta(hours=settings.reconciler_realert_hours),
        max_run_seconds=0.8 * settings.reconciler_lease_seconds,
    )
