"""The service's tables (SQLAlchemy 2). Every change to them goes through an Alembic migration."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shipmate.common.vocabulary import DesiredState

# BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite, so ids autoincrement on both.
EventId = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")
JsonDoc = JSON().with_variant(postgresql.JSONB(), "postgresql")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Platform(enum.StrEnum):
    FILESYSTEM = "filesystem"
    DOCKER = "docker"
    KUBERNETES = "kubernetes"
    COMMAND = "command"


class TokenKind(enum.StrEnum):
    ADMIN = "admin"
    AGENT = "agent"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as the value strings (the same ones the API shows), checked by a constraint.
    return Enum(
        cls,
        name=name,
        values_callable=lambda members: [m.value for m in members],
        native_enum=False,
        create_constraint=True,
        length=32,
    )


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JsonDoc}


class ModelPackage(Base):
    __tablename__ = "model_packages"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100))
    framework: Mapped[str | None] = mapped_column(String(40))
    target_type: Mapped[str | None] = mapped_column(String(40))
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    manifest: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("uq_model_packages_name_version", "name", "version", unique=True),)


class Environment(Base):
    __tablename__ = "environments"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    platform: Mapped[Platform] = mapped_column(_enum(Platform, "platform"))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    plugin_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    health_status: Mapped[str] = mapped_column(String(16), default="unknown")
    health_message: Mapped[str | None] = mapped_column(Text)
    health_data: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    health_updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    agent_version: Mapped[str | None] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Deployment(Base):
    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="RESTRICT"))
    model_package_id: Mapped[str] = mapped_column(ForeignKey("model_packages.id", ondelete="RESTRICT"))
    key_value_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    desired_state: Mapped[DesiredState] = mapped_column(_enum(DesiredState, "desired_state"))
    relaunch_generation: Mapped[int] = mapped_column(Integer, default=0)
    force: Mapped[bool] = mapped_column(Boolean, default=False)
    observed_state: Mapped[str] = mapped_column(String(32), default="unknown")
    observed_generation: Mapped[int] = mapped_column(Integer, default=0)
    observed_status: Mapped[str] = mapped_column(String(16), default="unknown")
    observed_message: Mapped[str | None] = mapped_column(Text)
    observed_action: Mapped[str | None] = mapped_column(String(64))
    observed_phase: Mapped[str | None] = mapped_column(String(16))
    observed_duration: Mapped[float | None]
    observed_model_package_id: Mapped[str | None] = mapped_column(String(40))
    observed_updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    prediction_url: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    model_package: Mapped[ModelPackage] = relationship(lazy="joined", innerjoin=True)

    __table_args__ = (
        Index("ix_deployments_env_created", "environment_id", "created_at", "id"),
        Index("ix_deployments_env_state", "environment_id", "observed_state"),
        Index("ix_deployments_desired_created", "desired_state", "created_at", "id"),
        Index("ix_deployments_name", "name"),
        Index("ix_deployments_model_package", "model_package_id"),
    )


class Event(Base):
    """Append-only log; ``id`` order is commit order (writers serialise, see ``db.write_session``)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(64))
    timestamp: Mapped[dt.datetime] = mapped_column(default=utcnow)
    environment_id: Mapped[str | None] = mapped_column(String(40))
    deployment_id: Mapped[str | None] = mapped_column(String(40))
    generation: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(100))
    message: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(String(16))
    data: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)

    __table_args__ = (
        Index("ix_events_environment_id", "environment_id", "id"),
        Index("ix_events_deployment_id", "deployment_id", "id"),
        Index("ix_events_type_id", "type", "id"),
        Index("ix_events_timestamp", "timestamp"),
        {"sqlite_autoincrement": True},
    )


class ApiToken(Base):
    """A token is stored only as the SHA-256 of its secret, plus a short prefix to recognise it."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[TokenKind] = mapped_column(_enum(TokenKind, "token_kind"))
    environment_id: Mapped[str | None] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class MonitoringBucket(Base):
    """One deployment's traffic for one model over ``width`` minutes from ``minute`` (epoch minutes).

    Minute buckets (width 1) are rolled up into hour buckets (width 60) after the retention set
    in the settings; every field adds up (see ``shipmate.monitoring.records``). ``model_id`` is
    ``""`` when the producer named no model, so the unique key works on every backend.
    """

    __tablename__ = "monitoring_buckets"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(String(40))
    model_id: Mapped[str] = mapped_column(String(200))
    width: Mapped[int] = mapped_column(Integer)
    minute: Mapped[int] = mapped_column(BigInteger)
    records: Mapped[int] = mapped_column(BigInteger, default=0)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    user_errors: Mapped[int] = mapped_column(BigInteger, default=0)
    server_errors: Mapped[int] = mapped_column(BigInteger, default=0)
    dropped: Mapped[int] = mapped_column(BigInteger, default=0)
    response_ms: Mapped[dict[str, Any]] = mapped_column(default=dict)
    execution_ms: Mapped[dict[str, Any]] = mapped_column(default=dict)
    consumers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    consumers_overflow: Mapped[int] = mapped_column(BigInteger, default=0)
    features: Mapped[dict[str, Any]] = mapped_column(default=dict)
    predictions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    record_ids: Mapped[list[str]] = mapped_column(JsonDoc, default=list)
    """Ids of the records added into this minute bucket, so a record delivered twice counts once.
    Dropped when the bucket is rolled up; records for minutes rolled up already are refused."""
    lag_total: Mapped[float] = mapped_column(default=0.0)
    """Sum over the records of (received at the service - flushed by the producer), in seconds."""
    lag_max: Mapped[float] = mapped_column(default=0.0)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    """When the newest record of this bucket arrived."""

    __table_args__ = (
        Index("uq_monitoring_buckets_key", "deployment_id", "model_id", "width", "minute", unique=True),
        Index("ix_monitoring_buckets_width_minute", "width", "minute"),
    )


class PredictionRecord(Base):
    """One prediction that carried an association id, and the actual reported for it later.

    Kept for ``SHIPMATE_MONITORING_PREDICTION_RETENTION_DAYS`` and at most
    ``SHIPMATE_MONITORING_MAX_PREDICTIONS`` per deployment (the oldest go first); an id is stored
    once per deployment, the first prediction wins."""

    __tablename__ = "prediction_records"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(String(40))
    association_id: Mapped[str] = mapped_column(String(200))
    model_id: Mapped[str] = mapped_column(String(200), default="")
    predicted_at: Mapped[dt.datetime] = mapped_column()
    """The minute the prediction was made (the prediction server records minutes)."""
    label: Mapped[str | None] = mapped_column(String(200))
    probabilities: Mapped[list[float] | None] = mapped_column(JsonDoc)
    value: Mapped[float | None] = mapped_column()
    actual_label: Mapped[str | None] = mapped_column(String(200))
    actual_value: Mapped[float | None] = mapped_column()
    actual_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    was_acted_on: Mapped[bool | None] = mapped_column(Boolean)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("uq_prediction_records_key", "deployment_id", "association_id", unique=True),
        Index("ix_prediction_records_time", "deployment_id", "predicted_at"),
        Index("ix_prediction_records_age", "predicted_at"),
    )


class AlertRule(Base):
    """A deployment's alert rule, created from the defaults on first evaluation or by an edit; it
    also holds the rule's evaluation state (streaks and the last window judged)."""

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    metric: Mapped[str | None] = mapped_column(String(32))
    threshold: Mapped[float] = mapped_column()
    clear_threshold: Mapped[float] = mapped_column()
    window_minutes: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    bad_streak: Mapped[int] = mapped_column(Integer, default=0)
    good_streak: Mapped[int] = mapped_column(Integer, default=0)
    last_window: Mapped[int | None] = mapped_column(BigInteger)
    """Index (start minute // window) of the last window judged."""
    last_value: Mapped[float | None] = mapped_column()
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("uq_alert_rules_key", "deployment_id", "name", unique=True),)


class Alert(Base):
    """One alert: opened when its rule saw two bad windows in a row, cleared with hysteresis."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(String(40))
    rule: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    cleared_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    message: Mapped[str] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column()
    threshold: Mapped[float] = mapped_column()

    __table_args__ = (
        Index("ix_alerts_deployment_state", "deployment_id", "state", "id"),
        Index("ix_alerts_state", "state", "id"),
    )


class AlertDelivery(Base):
    """One alert change waiting for (or done with) the webhook: the outbox. Written in the
    transaction that opens or clears the alert, so a change is never lost to a restart; posted in
    id order per deployment (only a deployment's oldest pending row is ever sent).

    ``state`` is ``pending``, ``delivered`` or ``dropped`` (older than the retention, never
    delivered); ``body`` is the exact JSON posted; ``claimed_until`` is SQLite's claim (PostgreSQL
    locks the row instead)."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(BigInteger)
    deployment_id: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_alert_deliveries_state_deployment", "state", "deployment_id", "id"),
        Index("ix_alert_deliveries_created", "created_at"),
    )


class DriftSlot(Base):
    """One deployment's bin counts for one model over ``width`` minutes (15, or 60 once rolled up)
    from ``minute`` (epoch minutes): what drift reads, so a day of 1,000 features is 96 small rows
    instead of 1,440 large ones, and an older day 24.

    ``counts`` is the bin counts of every feature and output, in the layout of the package's
    bins, in the binary form of ``shipmate.server.services.drift.encode`` (names once, int64 counts).
    """

    __tablename__ = "drift_slots"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(String(40))
    model_id: Mapped[str] = mapped_column(String(200))
    width: Mapped[int] = mapped_column(Integer, default=15, server_default="15")
    minute: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    counts: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (
        Index("uq_drift_slots_key", "deployment_id", "model_id", "width", "minute", unique=True),
        Index("ix_drift_slots_minute", "minute"),
    )


class DriftSettings(Base):
    """A deployment's drift settings (absent: the defaults of ``shipmate.monitoring.drift``)."""

    __tablename__ = "drift_settings"

    deployment_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    metric: Mapped[str] = mapped_column(String(16))
    min_rows: Mapped[int] = mapped_column(Integer)
    reference_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    reference_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    starred: Mapped[list[str]] = mapped_column(JsonDoc, default=list)
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
