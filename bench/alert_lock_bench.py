#!/usr/bin/env python3
"""How long one alert evaluation pass holds the service's write lock, before and after the split.

``--deployments`` deployments (default 100) of one package with ``--features`` numeric features
(10 bins each) and an output baseline, each with the last two hours of minute buckets (service
health: the error-rate and latency rules) and of 15-minute drift slots (the drift rule), on SQLite
(a scratch file; the default) or on a scratch PostgreSQL database (``--postgres``). Then
``--repeat`` passes of each, every rule due each time (the rules' windows are reset before a pass):

* ``before``  the whole pass in one write transaction, as the server ran it: the signals read
              (drift of every deployment, service health, accuracy) and the changes written while
              SQLite's ``BEGIN IMMEDIATE`` (PostgreSQL: the advisory write lock) is held.
* ``after``   ``alerts.gather`` in a read session, then ``alerts.apply`` in a short write: only
              the latter holds the lock.

Reported: the lock's hold per pass (wall and this process's CPU time), and the pass's total, as
medians of the repeats. Ingest, token use and every other write wait for as long as the lock is held.

    python3 bench/alert_lock_bench.py                       # SQLite, 100 deployments x 100 features
    python3 bench/alert_lock_bench.py --postgres
    # the code before the split: a copy of an older commit's src/ with this bench beside it
    old=$(mktemp -d) && git archive c1c3c57 src bench | tar -x -C "$old"
    cp bench/alert_lock_bench.py "$old/bench/"
    python3 "$old/bench/alert_lock_bench.py" --only before
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scratch_pg import baseline_manifest, log, minute_counts, scratch_database  # noqa: E402


def populate(db: Any, deployments: int, features: int, now_minute: int) -> None:
    import numpy as np

    from shipmate.common.vocabulary import DesiredState
    from shipmate.monitoring.records import MinuteAggregate
    from shipmate.server.models import Deployment, Environment, ModelPackage, Platform
    from shipmate.server.services import drift as slots
    from shipmate.server.services import monitoring as buckets

    names = [f"f{i:04d}" for i in range(features)]
    manifest = {"formatVersion": 1, "name": "bench", "version": "1", "framework": "custom",
                "targetType": "regression", **baseline_manifest(names),
                "createdAt": "2026-01-01T00:00:00+00:00", "modelPath": "model", "files": {}}  # fmt: skip
    with db.write() as session:
        session.add(Environment(id="e-1", name="bench", platform=Platform.FILESYSTEM, created_by="bench"))
        session.add(ModelPackage(id="p-1", name="bench", version="1", filename="x.mlpkg", sha256="0" * 64,
                                 size=1, manifest=manifest, created_by="bench"))  # fmt: skip
        session.flush()
        for d in range(deployments):
            session.add(Deployment(id=f"d-{d:04d}", name=f"bench-{d}", environment_id="e-1",
                                   model_package_id="p-1", desired_state=DesiredState.RUNNING,
                                   created_by="bench"))  # fmt: skip
    rng = np.random.default_rng(1)
    start = now_minute - 120
    retention = buckets.Retention(minute_hours=48, hour_days=400, max_future_minutes=10)
    zeros = np.zeros((features, 1), dtype=np.int64)
    for d in range(deployments):
        records = []
        for minute in range(start, now_minute):
            record = MinuteAggregate(deployment_id=f"d-{d:04d}", minute=minute)
            record.model_id = "m-1"
            for ms in (10.0, 20.0, 30.0):
                record.response_ms.observe(ms)
                record.execution_ms.observe(ms / 2)
            record.requests, record.rows, record.flushed_at = 3, 30, minute * 60.0
            records.append(record.to_json())
        stored = []
        for slot in range(start - start % 15, now_minute, 15):
            full = np.hstack([zeros, minute_counts(rng, 15 * 30, features), zeros, zeros]).tolist()
            stored.append(slots.Counts(key=(f"d-{d:04d}", "m-1", slot), rows=15 * 30,
                                       features={n: full[i] for i, n in enumerate(names)},
                                       predictions={"value": full[0]}))  # fmt: skip
        with db.write() as session:
            buckets.ingest(session, records, environment_id=None, retention=retention, now=now_minute * 60.0)
            slots.add_counts(session, stored)


def reset_rules(db: Any) -> None:
    from sqlalchemy import update

    from shipmate.server.models import AlertRule

    with db.write() as session:
        session.execute(update(AlertRule).values(last_window=None, bad_streak=0, good_streak=0))


@contextmanager
def clock(into: list[tuple[float, float]]) -> Iterator[None]:
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    into.append((time.perf_counter() - wall, time.process_time() - cpu))


def median_ms(samples: list[tuple[float, float]]) -> dict[str, float]:
    return {
        "wallMs": round(statistics.median(w for w, _ in samples) * 1000, 1),
        "cpuMs": round(statistics.median(c for _, c in samples) * 1000, 1),
    }


def measure(db: Any, repeat: int, now: dt.datetime, only: str | None) -> dict[str, Any]:
    from shipmate.server.services import alerts

    with db.write() as session:  # the default rules stored, as after the first pass
        alerts.evaluate(session, now=now)
    passes: dict[str, Callable[[list[tuple[float, float]]], int]] = {}

    def before(held: list[tuple[float, float]]) -> int:
        with clock(held), db.write() as session:
            return len(alerts.evaluate(session, now=now))

    def after(held: list[tuple[float, float]]) -> int:
        with db.read() as session:
            judged = alerts.gather(session, now=now)
        with clock(held), db.write() as session:
            return len(alerts.apply(session, judged, now=now))

    passes = {"before": before, "after": after}
    result: dict[str, Any] = {}
    for name, run in passes.items():
        if only and name != only:
            continue
        held: list[tuple[float, float]] = []
        total: list[tuple[float, float]] = []
        for _ in range(repeat):
            reset_rules(db)
            with clock(total):
                run(held)
        result[name] = {"lockHeld": median_ms(held), "pass": median_ms(total)}
        log(f"{name}: lock held {result[name]['lockHeld']}, whole pass {result[name]['pass']}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument(
        "--only", choices=["before", "after"], help="one of the two (`before` also runs on older code)"
    )
    args = parser.parse_args()
    from shipmate.server.db import Database

    now_minute = (int(time.time() // 60) // 60) * 60 + 1  # every rule's latest window is filled
    now = dt.datetime.fromtimestamp(now_minute * 60 + 5, dt.UTC)

    def run(url: str) -> dict[str, Any]:
        db = Database(url)
        db.migrate()
        log(f"populating {args.deployments} deployments x {args.features} features")
        populate(db, args.deployments, args.features, now_minute)
        try:
            return measure(db, args.repeat, now, args.only)
        finally:
            db.dispose()

    if args.postgres:
        with scratch_database(f"alert_lock_bench_{int(time.time())}") as url:
            result = run(url)
    else:
        with tempfile.TemporaryDirectory() as work:
            result = run(f"sqlite:///{work}/bench.db")
    print(
        json.dumps({"store": "postgresql" if args.postgres else "sqlite", **vars(args), **result}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
