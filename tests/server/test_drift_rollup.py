"""Drift slots roll up from 15 minutes to hours after their retention: exactly (the drift of
ranges of whole hours is the same before and after), idempotently, safely from two processes at
once on PostgreSQL, and from a database migrated from revision 0004 with slots in it; on SQLite
and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import select, text

from shipmate.monitoring.records import BinCounts, MinuteAggregate
from shipmate.server.db import MIGRATIONS_DIR, Database
from shipmate.server.models import Deployment, DesiredState, DriftSlot, Environment, ModelPackage, Platform
from shipmate.server.services import drift as drift_store
from shipmate.server.services import monitoring as store

EDGES = [float(i) for i in range(11)]
MANIFEST = {
    "features": [{"name": "x", "type": "numeric"}, {"name": "c", "type": "categorical"}],
    "baseline": {
        "x": {"bins": {"type": "numeric", "edges": EDGES, "counts": [0, *[100] * 10, 0, 0]}},
        "c": {"bins": {"type": "categorical", "values": ["a", "b"], "counts": [600, 400, 0, 0]}},
    },
    "predictionBaseline": {"value": {"type": "numeric", "edges": EDGES, "counts": [0, *[100] * 10, 0, 0]}},
    "featureImportance": {"x": 1.0, "c": 0.1},
}
NOW = 1_800_000_000.0
START = int(NOW // 60) - int(NOW // 60) % 60 - 5 * 60  # an hour boundary, 5 hours before NOW
RETENTION = store.Retention(minute_hours=48, hour_days=400, max_future_minutes=10, drift_slot_days=7)
LATER = NOW + 8 * 86400  # past the drift slot retention, well before the hour buckets expire


def new_db(tmp_path: Path, database_url: str | None) -> Database:
    db = Database(database_url or f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate()
    return db


def add_deployment(db: Database) -> None:
    with db.write() as session:
        session.add(Environment(id="e-1", name="e", platform=Platform.FILESYSTEM, created_by="t"))
        session.add(
            ModelPackage(
                id="p-1", name="p", version="1", filename="f", sha256="0" * 64, size=1,
                manifest=MANIFEST, created_by="t",
            )
        )  # fmt: skip
        session.flush()
        session.add(
            Deployment(
                id="d-1", name="d", environment_id="e-1", model_package_id="p-1",
                desired_state=DesiredState.RUNNING, created_by="t",
            )
        )  # fmt: skip


def record(minute: int, shift: int, model_id: str = "m-1") -> dict[str, Any]:
    """A minute of 10 + (minute % 7) rows, drifting to the top bins as ``shift`` grows."""
    rows = 10 + minute % 7
    x = [0] * 13
    for i in range(rows):
        x[1 + min(9, (i + shift) % 10 + shift // 3)] += 1
    aggregate = MinuteAggregate(deployment_id="d-1", minute=minute, model_id=model_id, rows=rows)
    aggregate.features = {
        "x": BinCounts(counts=x, count=rows),
        "c": BinCounts(counts=[rows - minute % 3, minute % 3, 0, 0], count=rows),
    }
    aggregate.predictions = {"value": BinCounts(counts=x, count=rows)}
    return aggregate.to_json()


def ingest(db: Database, minutes: range, now: float = NOW) -> None:
    docs = [record(m, (m - START) // 20, "m-1" if m % 5 else "m-2") for m in minutes]
    with db.write() as session:
        assert store.ingest(session, docs, environment_id=None, retention=RETENTION, now=now).stored == len(
            docs
        )


def at(minute: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(minute * 60, dt.UTC)


RANGES = [(START, START + 240), (START, START + 60), (START + 60, START + 180), (START + 120, START + 240)]


def drift_of(db: Database, since: int, until: int, **options: Any) -> dict[str, Any]:
    with db.read() as session:
        deployment = session.get(Deployment, "d-1")
        assert deployment is not None
        result = drift_store.compute(session, deployment, at(since), at(until), **options)
    answer = dataclasses.asdict(result)
    answer.pop("windows")
    answer.pop("series")
    return answer


def slot_widths(db: Database) -> list[tuple[int, int]]:
    with db.read() as session:
        return sorted(session.execute(select(DriftSlot.width, DriftSlot.minute)).tuples())


def test_rolled_up_slots_give_the_same_drift_and_a_second_pass_changes_nothing(
    tmp_path: Path, database_url: str | None
):
    db = new_db(tmp_path, database_url)
    add_deployment(db)
    ingest(db, range(START, START + 240))  # four hours, two models
    before = {r: drift_of(db, *r) for r in RANGES}
    before_js = drift_of(db, START, START + 240, metric=drift_store.drift.Metric.JS, model_id="m-1")
    assert before[RANGES[0]]["status"] != before[RANGES[1]]["status"]  # the data does drift
    assert len(slot_widths(db)) == 2 * 16  # two models x 16 quarters

    with db.write() as session:  # within the retention: nothing rolls
        assert store.maintain(session, retention=RETENTION, now=NOW + 6 * 86400).rolled_up_drift_slots == 0
    with db.write() as session:
        done = store.maintain(session, retention=RETENTION, now=LATER)
    assert done.rolled_up_drift_slots == 32 and done.expired_drift_slots == 0
    assert slot_widths(db) == sorted((60, START + 60 * h) for h in range(4) for _ in range(2))
    for r in RANGES:
        assert drift_of(db, *r) == before[r], r
    assert drift_of(db, START, START + 240, metric=drift_store.drift.Metric.JS, model_id="m-1") == before_js

    with db.write() as session:  # idempotent
        assert store.maintain(session, retention=RETENTION, now=LATER).rolled_up_drift_slots == 0
    assert drift_of(db, *RANGES[0]) == before[RANGES[0]]

    # a range that cuts an hour slot is widened to the whole hour
    cut = drift_of(db, START + 75, START + 90)
    assert (cut["since"], cut["until"]) == (at(START + 60), at(START + 120))
    assert (
        cut["rows"]
        == before[(START + 60, START + 180)]["rows"] - drift_of(db, START + 120, START + 180)["rows"]
    )
    db.dispose()


def test_a_slot_written_late_into_a_rolled_up_hour_counts_once_and_rolls_up_too(
    tmp_path: Path, database_url: str | None
):
    db = new_db(tmp_path, database_url)
    add_deployment(db)
    ingest(db, range(START, START + 60, 2))
    with db.write() as session:
        assert store.maintain(session, retention=RETENTION, now=LATER).rolled_up_drift_slots == 8
    late = drift_store.counts_of(MinuteAggregate.from_json(record(START + 31, 0)))
    with db.write() as session:  # as ingest would, had the minute retention been longer
        drift_store.add_counts(session, [late])
    expected_rows = sum(10 + m % 7 for m in range(START, START + 60, 2)) + 10 + (START + 31) % 7
    assert drift_of(db, START, START + 60)["rows"] == expected_rows
    with db.write() as session:
        assert store.maintain(session, retention=RETENTION, now=LATER).rolled_up_drift_slots == 1
    assert slot_widths(db) == [(60, START), (60, START)]
    assert drift_of(db, START, START + 60)["rows"] == expected_rows
    db.dispose()


@pytest.mark.postgres
def test_two_processes_rolling_up_at_once_on_postgres_count_everything_once(pg_url: str):
    first, second = Database(pg_url), Database(pg_url)  # two engines: two service processes
    first.migrate()
    add_deployment(first)
    ingest(first, range(START, START + 240))
    before = drift_of(first, START, START + 240)
    barrier = threading.Barrier(2)
    results: list[int] = []
    errors: list[BaseException] = []

    def run(db: Database) -> None:
        try:
            barrier.wait()
            with db.write() as session:
                results.append(store.maintain(session, retention=RETENTION, now=LATER).rolled_up_drift_slots)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(db,)) for db in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and sorted(results) == [0, 32]
    assert drift_of(second, START, START + 240) == before
    first.dispose()
    second.dispose()


def test_upgrade_from_0004_keeps_the_slots_as_15_minute_ones(tmp_path: Path, database_url: str | None):
    db = Database(database_url or f"sqlite:///{tmp_path / 'm.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")  # the PostgreSQL copy comes migrated to the newest
        command.upgrade(config, "0004")
    add_deployment(db)
    blob = drift_store.encode({"x": [0, *[3] * 10, 0, 0]}, {})
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO drift_slots (deployment_id, model_id, minute, rows, counts) "
                "VALUES ('d-1', 'm-1', :minute, 30, :counts)"
            ),
            {"minute": START, "counts": blob},
        )
    db.migrate()
    assert slot_widths(db) == [(15, START)]
    assert drift_of(db, START, START + 15)["rows"] == 30
    with db.write() as session:
        assert store.maintain(session, retention=RETENTION, now=LATER).rolled_up_drift_slots == 1
    assert slot_widths(db) == [(60, START)] and drift_of(db, START, START + 60)["rows"] == 30
    db.dispose()


def test_a_roll_up_cut_into_small_passes_adds_up_to_the_same(tmp_path: Path, database_url: str | None):
    db = new_db(tmp_path, database_url)
    add_deployment(db)
    ingest(db, range(START, START + 120))
    before = drift_of(db, START, START + 120)
    passes = []
    while not passes or passes[-1]:
        with db.write() as session:  # a pass may stop half-way through an hour
            passes.append(drift_store.roll_up(session, START + 120, limit=3))
    assert passes == [3, 3, 3, 3, 3, 1, 0]
    assert slot_widths(db) == [(60, START), (60, START), (60, START + 60), (60, START + 60)]
    assert drift_of(db, START, START + 120) == before
    db.dispose()
