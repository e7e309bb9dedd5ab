"""Alembic: the migrations build exactly the schema the models describe, and run down and up again."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from shipmate.server.db import MIGRATIONS_DIR, Database
from shipmate.server.models import Base


def test_migrations_match_the_models_and_downgrade_cleanly(tmp_path: Path, database_url: str | None):
    db = Database(database_url or f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate()
    db.migrate()  # idempotent: a second start changes nothing
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    db.migrate()
    assert {"deployments", "events", "environments", "model_packages", "api_tokens"} <= set(
        inspect(db.engine).get_table_names()
    )
    db.dispose()
