"""Settings of the control-plane service, typed and documented.

Built once by the entry point (``shipmate server``) or a test and handed to
``create_app``; nothing here is read at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({"changeme", "change-me", "secret", "password", "token", "admin"})


class ServerSettings(BaseSettings):
    """Everything the service needs to start; environment variables use the ``SHIPMATE_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="SHIPMATE_", extra="ignore")

    data_dir: Path = Field(default=Path("./shipmate-data"))
    """Directory for the SQLite database, the artifact store and the generated admin token."""

    database_url: str | None = None
    """SQLAlchemy URL; ``None`` means ``sqlite:///<data_dir>/shipmate.db``.
    Production: ``postgresql+psycopg://user@host:5432/db``."""

    admin_token: SecretStr | None = None
    """An admin token ensured to exist at start (stored hashed). With none given and none in the
    store, one is generated and written to ``<data_dir>/admin-token`` (mode 0600)."""

    max_upload_bytes: int = Field(default=4 * 1024**3, gt=0)
    """Largest model package accepted, in bytes; larger uploads get 413."""

    feed_poll_interval: float = Field(default=0.025, gt=0, le=5)
    """Seconds between database checks for new events while a long poll waits; this is what
    wakes a follower connected to another replica."""

    max_wait: float = Field(default=30.0, ge=0)
    """Longest long-poll wait a client may ask for, in seconds."""

    max_page_size: int = Field(default=1000, gt=0)
    """Largest page of deployments or events returned by one request."""

    console_session_s: float = Field(default=8 * 3600, gt=0)
    """How long a web console sign-in lasts (``SHIPMATE_CONSOLE_SESSION_S``)."""

    database_pool_size: int = Field(default=10, gt=0)
    """Connections kept open per server process (PostgreSQL)."""

    monitoring_minute_retention_hours: float = Field(default=48.0, gt=0)
    """Monitoring buckets keep minute resolution (and the ids of their records, which make a
    record delivered twice count once) this long; then they are rolled up to hours, and records
    for those minutes are refused."""

    monitoring_hour_retention_days: float = Field(default=400.0, gt=0)
    """Hour buckets older than this are deleted (bounded growth)."""

    monitoring_drift_slot_retention_days: float = Field(default=7.0, gt=0)
    """Drift's 15-minute slots of bin counts keep that resolution this long; then they are added
    into hour slots (exactly: counts add), which expire with the hour buckets."""

    monitoring_max_future_minutes: int = Field(default=10, ge=0)
    """Records stamped further ahead of the service's clock are refused (clock skew)."""

    monitoring_prediction_retention_days: float = Field(default=90.0, gt=0)
    """Predictions with association ids (and their actuals) are kept this long, by prediction time."""

    monitoring_max_predictions: int = Field(default=2_000_000, gt=0)
    """At most this many predictions with association ids are kept per deployment (oldest go first)."""

    actuals_max_age_days: float = Field(default=30.0, gt=0)
    """Actuals are accepted for predictions made at most this long ago (late actuals)."""

    alert_interval_seconds: float = Field(default=60.0, ge=0)
    """How often the server evaluates the alert rules (0: never, e.g. in tests that call it)."""

    alert_webhook_url: str | None = None
    """When set, every alert opened or cleared is POSTed here as JSON (retried with back-off)."""

    alert_webhook_secret: SecretStr | None = None
    """Sent as ``Authorization: Bearer …`` with every webhook call; logged only masked."""

    alert_webhook_retention_hours: float = Field(default=168.0, gt=0)
    """An alert change the webhook has not taken this long after it happened is dropped (one log
    line; counted in ``/health``); delivered ones are forgotten after the same time."""

    alert_webhook_backoff_seconds: float = Field(default=1.0, gt=0)
    """The first wait after a failed webhook call; it doubles per failure up to
    ``alert_webhook_backoff_max_seconds``."""

    alert_webhook_backoff_max_seconds: float = Field(default=300.0, gt=0)

    alert_webhook_poll_seconds: float = Field(default=5.0, gt=0)
    """How often the webhook's outbox is looked at when nothing woke it (another process's alert
    changes, rows whose back-off has passed)."""

    @field_validator("admin_token")
    @classmethod
    def _not_a_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            secret = value.get_secret_value()
            if secret.strip().lower() in PLACEHOLDER_SECRETS or len(secret) < 16:
                raise ValueError(
                    "admin token is a placeholder or shorter than 16 characters; set a real secret"
                )
        return value

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'shipmate.db').resolve()}"

    @property
    def artifact_dir(self) -> Path:
        return self.data_dir / "artifacts"
