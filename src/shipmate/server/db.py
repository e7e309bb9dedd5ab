"""Engine, sessions and migrations.

Write transactions are serialised on every backend, so event ids are handed out
in commit order and a follower that has seen id N can never later meet an id
below N: SQLite starts writes with ``BEGIN IMMEDIATE`` (one writer at a time),
PostgreSQL takes a transaction-scoped advisory lock before the first statement.
Reads run concurrently and never take that lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

WRITE_LOCK_KEY = 0x5348_4950  # "SHIP": the advisory lock that orders event ids on PostgreSQL
MIGRATION_LOCK_KEY = 0x5348_4951
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine tuned for the backend: WAL and a busy timeout on SQLite, a sized pool on PostgreSQL."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling cannot say BEGIN IMMEDIATE; take it over (SQLAlchemy recipe).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get("shipmate_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """The one handle on storage a server process holds; sessions come from here."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._after_commit: list[Callable[[], None]] = []
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(
            self.engine.execution_options(shipmate_write=True), expire_on_commit=False
        )

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every committed write (the change feed uses it to wake waiters)."""
        self._after_commit.append(callback)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries only; rolled back at the end."""
        with self._reader() as session:
            try:
                yield session
            finally:
                session.rollback()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction per change: committed on success, rolled back on any error."""
        with self._writer() as session:
            if self.is_postgres:
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK_KEY})
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
        for callback in self._after_commit:
            callback()

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision; safe when several replicas start at once."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.connect() as connection:
            if self.is_postgres:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                connection.commit()
            try:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                connection.commit()
            finally:
                if self.is_postgres:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                    connection.commit()

    def dispose(self) -> None:
        self.engine.dispose()
