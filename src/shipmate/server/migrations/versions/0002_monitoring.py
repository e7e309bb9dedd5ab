"""monitoring buckets

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "monitoring_buckets",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("deployment_id", sa.String(length=40), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("user_errors", sa.BigInteger(), nullable=False),
        sa.Column("server_errors", sa.BigInteger(), nullable=False),
        sa.Column("dropped", sa.BigInteger(), nullable=False),
        sa.Column("response_ms", _json(), nullable=False),
        sa.Column("execution_ms", _json(), nullable=False),
        sa.Column("consumers", _json(), nullable=False),
        sa.Column("consumers_overflow", sa.BigInteger(), nullable=False),
        sa.Column("features", _json(), nullable=False),
        sa.Column("predictions", _json(), nullable=False),
        sa.Column("record_ids", _json(), nullable=False),
        sa.Column("lag_total", sa.Double(), nullable=False),
        sa.Column("lag_max", sa.Double(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("monitoring_buckets") as batch:
        batch.create_index(
            "uq_monitoring_buckets_key", ["deployment_id", "model_id", "width", "minute"], unique=True
        )
        batch.create_index("ix_monitoring_buckets_width_minute", ["width", "minute"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("monitoring_buckets") as batch:
        batch.drop_index("ix_monitoring_buckets_width_minute")
        batch.drop_index("uq_monitoring_buckets_key")
    op.drop_table("monitoring_buckets")
