"""The one way to build a reconciler from settings (used by the function, the CLI and the job).

Clients are created here and nowhere else, so tests build the same object graph against the
emulator, the simulator and the sink by setting the same environment variables.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from google.cloud import firestore

from crypto_signals.broker.alpaca import AlpacaBroker
from crypto_signals.config import Settings
from crypto_signals.engine.messages import Endpoints
from crypto_signals.engine.reconciler import StateReconciler
from crypto_signals.notifications.discord import DiscordNotifier, DiscordWebhookClient
from crypto_signals.operations.service import Operator
from crypto_signals.redaction import register_secrets
from crypto_signals.repository.firestore import FirestoreTimeouts, PositionRepository
from crypto_signals.repository.ledger import LedgerStore
from crypto_signals.repository.operator_store import OperatorStore
from crypto_signals.repository.reconciler_state import (
    AlertStateStore,
    BreakerStore,
    RunLease,
    RunLog,
)


def endpoints_of(settings: Settings) -> Endpoints:
    """Where this configuration reads from, in words a person can check (no secret)."""
    if settings.alpaca_base_url:
        # Host and port only: a proxy URL may carry credentials (user:password@host).
        parts = urlsplit(settings.alpaca_base_url)
        host = parts.hostname or "the host in ALPACA_BASE_URL"
        if parts.port:
            host = f"{host}:{parts.port}"
        broker = f"the broker at {host} (ALPACA_BASE_URL)"
    else:
        kind = "paper" if settings.alpaca_paper_trading else "live"
        broker = f"Alpaca's {kind} API (ALPACA_PAPER_TRADING={settings.alpaca_paper_trading})"
    if settings.firestore_emulator_host:
        store = (
            f"the Firestore emulator at {settings.firestore_emulator_host} "
            "(FIRESTORE_EMULATOR_HOST): is it running?"
        )
    else:
        store = (
            f"Firestore of project {settings.google_cloud_project} (GOOGLE_CLOUD_PROJECT) and "
            "the Google credentials (GOOGLE_APPLICATION_CREDENTIALS, or `gcloud auth "
            "application-default login`; the function's service account in the cloud)"
        )
    return Endpoints(broker=broker, firestore=store)


def describe_build_error(exc: Exception) -> str:
    """Why the reconciler (its clients) could not be built, and what to check; no secret."""
    name = type(exc).__name__
    if name == "DefaultCredentialsError":
        return (
            "no Google credentials found for Firestore: set GOOGLE_APPLICATION_CREDENTIALS, run "
            "`gcloud auth application-default login`, or point FIRESTORE_EMULATOR_HOST at the "
            "emulator"
        )
    return f"the reconciler's clients could not be built ({name})"


def _firestore(
    settings: Settings, client: firestore.Client | None
) -> tuple[firestore.Client, FirestoreTimeouts]:
    register_secrets(settings.secret_values())
    timeouts = FirestoreTimeouts(
        call_seconds=settings.firestore_timeout_seconds,
        retry_deadline_seconds=2 * settings.firestore_timeout_seconds,
    )
    return client or firestore.Client(project=settings.google_cloud_project), timeouts


def _broker(settings: Settings) -> AlpacaBroker:
    return AlpacaBroker.from_credentials(
        api_key=settings.alpaca_api_key.get_secret_value(),
        secret_key=settings.alpaca_secret_key.get_secret_value(),
        paper=settings.alpaca_paper_trading,
        base_url=settings.alpaca_base_url,
        timeout_seconds=settings.alpaca_timeout_seconds,
        retries=settings.alpaca_max_retries,
    )


# An operator's command holds the run lease for the seconds it writes; if it dies holding it,
# the next run waits this long, not a whole run's lease.
OPERATOR_LEASE = timedelta(seconds=60)


def build_operator(
    settings: Settings,
    *,
    actor: str,
    client: firestore.Client | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Operator:
    """The operator commands' object graph, from the same settings as the reconciler."""
    db, timeouts = _firestore(settings, client)
    scope = settings.positions_collection
    return Operator(
        store=OperatorStore(db, scope, timeouts),
        positions=PositionRepository(db, scope, timeouts=timeouts),
        alerts=AlertStateStore(db, scope, timeouts),
        breaker=BreakerStore(db, scope, timeouts),
        ledger=LedgerStore(db, scope, timeouts),
        lease=RunLease(db, scope, OPERATOR_LEASE, timeouts),
        broker=lambda: _broker(settings),
        policy=settings.policy(),
        actor=actor,
        clock=clock or (lambda: datetime.now(UTC)),
    )


def build_reconciler(
    settings: Settings,
    *,
    client: firestore.Client | None = None,
    clock: Callable[[], datetime] | None = None,
) -> StateReconciler:
    db, timeouts = _firestore(settings, client)
    scope = settings.positions_collection
    broker = _broker(settings)
    webhook = settings.discord_webhook_url
    notifier = DiscordNotifier(
        DiscordWebhookClient(
            webhook.get_secret_value() if webhook else None,
            timeout_seconds=settings.discord_timeout_seconds,
        )
    )
    lease = RunLease(db, scope, timedelta(seconds=settings.reconciler_lease_seconds), timeouts)
    retention = timedelta(days=settings.reconciler_run_retention_days)
    return StateReconciler(
        broker=broker,
        store=PositionRepository(db, scope, timeouts=timeouts),
        notifier=notifier,
        alert_store=AlertStateStore(db, scope, timeouts),
        lease=lease,
        # The run's record and the lease's release are one write (RunLog.record).
        run_log=RunLog(db, scope, retention, timeouts, lease=lease),
        ledger=LedgerStore(db, scope, timeouts),
        breaker=BreakerStore(db, scope, timeouts),
        policy=settings.policy(),
        environment=settings.environment,
        enabled=settings.enabled,
        realert_after=timedelta(hours=settings.reconciler_realert_hours),
        max_run_seconds=0.8 * settings.reconciler_lease_seconds,
        endpoints=endpoints_of(settings),
        clock=clock,
    )
