"""What the agent last applied, per deployment, kept in SQLite in the work directory.

Each write is one committed transaction, so a SIGKILL at any moment leaves
either the old record or the new one, never half of one. Together with the
plugin's ``deployment_list`` at start-up this is what lets a restarted agent
converge without starting anything twice.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from shipmate.agent.model import AppliedRecord, AppliedState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS applied (
    deployment_id TEXT PRIMARY KEY,
    generation INTEGER NOT NULL,
    state TEXT NOT NULL,
    model_package_id TEXT,
    relaunch_generation INTEGER NOT NULL DEFAULT 0,
    message TEXT,
    reported_state TEXT
);
"""


class AppliedStore:
    """A small thread-safe table of ``AppliedRecord``; all of it is also cached in memory."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._records = {r.deployment_id: r for r in self._load()}

    def _load(self) -> list[AppliedRecord]:
        rows = self._db.execute(
            "SELECT deployment_id, generation, state, model_package_id, relaunch_generation, message,"
            " reported_state FROM applied"
        ).fetchall()
        return [
            AppliedRecord(
                deployment_id=row[0],
                generation=int(row[1]),
                state=AppliedState(row[2]),
                model_package_id=row[3],
                relaunch_generation=int(row[4]),
                message=row[5],
                reported_state=row[6],
            )
            for row in rows
        ]

    def all(self) -> dict[str, AppliedRecord]:
        with self._lock:
            return dict(self._records)

    def get(self, deployment_id: str) -> AppliedRecord | None:
        with self._lock:
            return self._records.get(deployment_id)

    def put(self, record: AppliedRecord) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO applied VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.deployment_id,
                    record.generation,
                    record.state.value,
                    record.model_package_id,
                    record.relaunch_generation,
                    record.message,
                    record.reported_state,
                ),
            )
            self._records[record.deployment_id] = record

    def delete(self, deployment_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM applied WHERE deployment_id = ?", (deployment_id,))
            self._records.pop(deployment_id, None)

    def close(self) -> None:
        with self._lock:
            self._db.close()
