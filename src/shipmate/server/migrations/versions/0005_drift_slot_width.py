"""drift slots get a width (15 minutes, or 60 once rolled up to hours)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # every slot stored so far is a 15-minute one: the server default says so for existing rows
    with op.batch_alter_table("drift_slots") as batch:
        batch.add_column(sa.Column("width", sa.Integer(), server_default="15", nullable=False))
        batch.drop_index("uq_drift_slots_key")
        batch.create_index(
            "uq_drift_slots_key", ["deployment_id", "model_id", "width", "minute"], unique=True
        )


def downgrade() -> None:
    # an hour slot cannot be split back into quarters: the downgrade keeps only 15-minute slots
    op.execute(sa.text("DELETE FROM drift_slots WHERE width <> 15"))
    with op.batch_alter_table("drift_slots") as batch:
        batch.drop_index("uq_drift_slots_key")
        batch.create_index("uq_drift_slots_key", ["deployment_id", "model_id", "minute"], unique=True)
        batch.drop_column("width")
