"""Settings from the environment (contract section 2), read only by entry points.

Secrets are ``SecretStr``: their repr is ``'**********'``, so a settings object can be logged or
shown in an exception without leaking them. Configuration errors are rendered by field name and
rule only, never with the offending value.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from crypto_signals.engine.policy import Policy


class ConfigError(Exception):
    """The configuration is invalid; the message names the variables, never their values."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    # Contract section 2 (names fixed).
    environment: str = "DEV"
    reconciler_enabled: bool | None = None
    alpaca_api_key: SecretStr
    alpaca_secret_key: SecretStr
    alpaca_paper_trading: bool = True
    alpaca_base_url: str | None = None
    google_cloud_project: str = Field(min_length=1)
    firestore_emulator_host: str | None = None
    discord_webhook_url: SecretStr | None = None

    # Tunables (README, "Configuration").
    reconciler_min_position_age_seconds: int = Field(default=300, ge=0)
    reconciler_dust_threshold_usd: Decimal = Field(default=Decimal("1"), ge=0)
    reconciler_qty_abs_tolerance: Decimal = Field(default=Decimal("0.00000001"), ge=0)
    reconciler_qty_rel_tolerance: Decimal = Field(default=Decimal("0.003"), ge=0, le=Decimal("0.1"))
    reconciler_heal_limit: int = Field(default=25, ge=0)
    reconciler_realert_hours: float = Field(default=24.0, gt=0)
    reconciler_lease_seconds: int = Field(default=600, ge=2)
    reconciler_run_retention_days: int = Field(default=30, ge=1)
    reconciler_strict_startup: bool = False
    alpaca_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    alpaca_max_retries: int = Field(default=2, ge=0, le=5)
    discord_timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    firestore_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    log_format: str | None = None  # "json" or "text"; default json on Cloud Run/Functions
    log_level: str = "INFO"

    @field_validator("environment")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.strip().upper() or "DEV"

    @field_validator(
        "alpaca_base_url",
        "discord_webhook_url",
        "firestore_emulator_host",
        "reconciler_enabled",
        "log_format",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @property
    def enabled(self) -> bool:
        if self.reconciler_enabled is not None:
            return self.reconciler_enabled
        return self.environment == "PROD"

    @property
    def positions_collection(self) -> str:
        return "live_positions" if self.environment == "PROD" else "test_positions"

    def policy(self) -> Policy:
        return Policy(
            min_position_age=timedelta(seconds=self.reconciler_min_position_age_seconds),
            dust_threshold_usd=self.reconciler_dust_threshold_usd,
            qty_abs_tolerance=self.reconciler_qty_abs_tolerance,
            qty_rel_tolerance=self.reconciler_qty_rel_tolerance,
            heal_limit=self.reconciler_heal_limit,
        )

    def secret_values(self) -> list[str]:
        values = [self.alpaca_api_key.get_secret_value(), self.alpaca_secret_key.get_secret_value()]
        if self.discord_webhook_url is not None:
            values.append(self.discord_webhook_url.get_secret_value())
        return values


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``environ`` (default: the process environment)."""
    try:
        if environ is None:
            return Settings()
        lowered = {k.lower(): v for k, v in environ.items()}
        return Settings.model_validate(
            {k: v for k, v in lowered.items() if k in Settings.model_fields}
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper() or '?'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
