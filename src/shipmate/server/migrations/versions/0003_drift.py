"""drift slots and per-deployment drift settings

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "drift_slots",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("deployment_id", sa.String(length=40), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("counts", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("drift_slots") as batch:
        batch.create_index("uq_drift_slots_key", ["deployment_id", "model_id", "minute"], unique=True)
        batch.create_index("ix_drift_slots_minute", ["minute"], unique=False)
    op.create_table(
        "drift_settings",
        sa.Column("deployment_id", sa.String(length=40), nullable=False),
        sa.Column("metric", sa.String(length=16), nullable=False),
        sa.Column("min_rows", sa.Integer(), nullable=False),
        sa.Column("reference_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reference_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("starred", _json(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("deployment_id"),
    )


def downgrade() -> None:
    op.drop_table("drift_settings")
    with op.batch_alter_table("drift_slots") as batch:
        batch.drop_index("ix_drift_slots_minute")
        batch.drop_index("uq_drift_slots_key")
    op.drop_table("drift_slots")
