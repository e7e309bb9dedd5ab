"""alert deliveries: the webhook's durable outbox

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_deliveries",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("deployment_id", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_alert_deliveries_state_deployment", "alert_deliveries", ["state", "deployment_id", "id"]
    )
    op.create_index("ix_alert_deliveries_created", "alert_deliveries", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_alert_deliveries_created", table_name="alert_deliveries")
    op.drop_index("ix_alert_deliveries_state_deployment", table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
