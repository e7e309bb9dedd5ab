"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "environments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column(
            "platform",
            sa.Enum(
                "filesystem",
                "docker",
                "kubernetes",
                "command",
                name="platform",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "plugin_config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("health_status", sa.String(length=16), nullable=False),
        sa.Column("health_message", sa.Text(), nullable=True),
        sa.Column(
            "health_data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("health_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("agent_version", sa.String(length=100), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=True),
        sa.Column("deployment_id", sa.String(length=40), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_deployment_id", ["deployment_id", "id"], unique=False)
        batch_op.create_index("ix_events_environment_id", ["environment_id", "id"], unique=False)
        batch_op.create_index("ix_events_timestamp", ["timestamp"], unique=False)
        batch_op.create_index("ix_events_type_id", ["type", "id"], unique=False)

    op.create_table(
        "model_packages",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("framework", sa.String(length=40), nullable=True),
        sa.Column("target_type", sa.String(length=40), nullable=True),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column(
            "manifest",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("model_packages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_packages_sha256"), ["sha256"], unique=False)
        batch_op.create_index("uq_model_packages_name_version", ["name", "version"], unique=True)

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "admin", "agent", name="token_kind", native_enum=False, create_constraint=True, length=32
            ),
            nullable=False,
        ),
        sa.Column("environment_id", sa.String(length=40), nullable=True),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["environment_id"], ["environments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("secret_hash"),
    )
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("model_package_id", sa.String(length=40), nullable=False),
        sa.Column(
            "key_value_config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column(
            "desired_state",
            sa.Enum(
                "running",
                "stopped",
                "deleted",
                name="desired_state",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("relaunch_generation", sa.Integer(), nullable=False),
        sa.Column("force", sa.Boolean(), nullable=False),
        sa.Column("observed_state", sa.String(length=32), nullable=False),
        sa.Column("observed_generation", sa.Integer(), nullable=False),
        sa.Column("observed_status", sa.String(length=16), nullable=False),
        sa.Column("observed_message", sa.Text(), nullable=True),
        sa.Column("observed_action", sa.String(length=64), nullable=True),
        sa.Column("observed_phase", sa.String(length=16), nullable=True),
        sa.Column("observed_duration", sa.Double(), nullable=True),
        sa.Column("observed_model_package_id", sa.String(length=40), nullable=True),
        sa.Column("observed_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("prediction_url", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["environment_id"], ["environments.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["model_package_id"], ["model_packages.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deployments_desired_created", ["desired_state", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_deployments_env_created", ["environment_id", "created_at", "id"], unique=False
        )
        batch_op.create_index("ix_deployments_env_state", ["environment_id", "observed_state"], unique=False)
        batch_op.create_index("ix_deployments_model_package", ["model_package_id"], unique=False)
        batch_op.create_index("ix_deployments_name", ["name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_index("ix_deployments_name")
        batch_op.drop_index("ix_deployments_model_package")
        batch_op.drop_index("ix_deployments_env_state")
        batch_op.drop_index("ix_deployments_env_created")
        batch_op.drop_index("ix_deployments_desired_created")

    op.drop_table("deployments")
    op.drop_table("api_tokens")
    with op.batch_alter_table("model_packages", schema=None) as batch_op:
        batch_op.drop_index("uq_model_packages_name_version")
        batch_op.drop_index(batch_op.f("ix_model_packages_sha256"))

    op.drop_table("model_packages")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_type_id")
        batch_op.drop_index("ix_events_timestamp")
        batch_op.drop_index("ix_events_environment_id")
        batch_op.drop_index("ix_events_deployment_id")

    op.drop_table("events")
    op.drop_table("environments")
