"""prediction records (association ids, actuals), alert rules and alerts

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _id() -> sa.Column[Any]:
    return sa.Column(
        "id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), autoincrement=True, nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "prediction_records",
        _id(),
        sa.Column("deployment_id", sa.String(length=40), nullable=False),
        sa.Column("association_id", sa.String(length=200), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("predicted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("probabilities", _json(), nullable=True),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("actual_label", sa.String(length=200), nullable=True),
        sa.Column("actual_value", sa.Double(), nullable=True),
        sa.Column("actual_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("was_acted_on", sa.Boolean(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("prediction_records") as batch:
        batch.create_index("uq_prediction_records_key", ["deployment_id", "association_id"], unique=True)
        batch.create_index("ix_prediction_records_time", ["deployment_id", "predicted_at"], unique=False)
        batch.create_index("ix_prediction_records_age", ["predicted_at"], unique=False)
    op.create_table(
        "alert_rules",
        _id(),
        sa.Column("deployment_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=True),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("clear_threshold", sa.Double(), nullable=False),
        sa.Column("window_minutes", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("bad_streak", sa.Integer(), nullable=False),
        sa.Column("good_streak", sa.Integer(), nullable=False),
        sa.Column("last_window", sa.BigInteger(), nullable=True),
        sa.Column("last_value", sa.Double(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alert_rules") as batch:
        batch.create_index("uq_alert_rules_key", ["deployment_id", "name"], unique=True)
    op.create_table(
        "alerts",
        _id(),
        sa.Column("deployment_id", sa.String(length=40), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alerts") as batch:
        batch.create_index("ix_alerts_deployment_state", ["deployment_id", "state", "id"], unique=False)
        batch.create_index("ix_alerts_state", ["state", "id"], unique=False)


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("alert_rules")
    op.drop_table("prediction_records")
