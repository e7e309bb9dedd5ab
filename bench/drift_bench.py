#!/usr/bin/env python3
"""Drift benchmark: a day of per-minute traffic for 1,000 and for 20 features, on PostgreSQL.

For each size, a deployment of a package with that many numeric features (10 bins each), a model
output, and 24 hours of minute aggregates (``--rows-per-minute`` rows a minute, one feature in
twenty shifted) written through the service's own slot writer
(``shipmate.server.services.drift.add_counts``, what ingest calls; the minute buckets of service
health are not written, drift does not read them). Then:

* ``service``  ``drift.compute`` over the last 24 h in this process (read the slots, sum them,
               score every feature and output): wall time and CPU time, median of ``--repeat``.
* ``http``     ``GET /api/v1/deployments/{id}/drift`` of the real service (uvicorn in a thread of
               this process, on the same database): wall time, and this process's CPU time
               (client and server together), median of ``--repeat``.
* peer         Evidently's ``DataDriftPreset`` from raw rows (``--evidently-rows`` reference and
               as many current rows of the same features), run by ``--evidently-python`` (a
               separate virtual environment: Evidently is not a dependency of Shipmate); skipped
               with a message when that interpreter has no Evidently. Its wall and CPU time
               exclude generating the rows.

Targets (issue 17): 1,000 features under 1 s, 20 features under 100 ms.

    python3 bench/drift_bench.py                         # about a minute, plus the peer
    python3 -m venv /tmp/evidently-venv && /tmp/evidently-venv/bin/pip install evidently
    python3 bench/drift_bench.py --evidently-python /tmp/evidently-venv/bin/python --json /tmp/drift.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scratch_pg import (  # noqa: E402 (found through the path above, as serve_bench.py is)
    ADMIN_TOKEN,
    baseline_manifest,
    cpu_seconds,
    log,
    minute_counts,
    scratch_database,
)

EVIDENTLY_PYTHON = "/tmp/evidently-venv/bin/python"


def timed(repeat: int, work: Any) -> dict[str, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"wallMs": statistics.median(walls) * 1000, "cpuMs": statistics.median(cpus) * 1000,
            "bestWallMs": min(walls) * 1000}  # fmt: skip


def manifest(features: int) -> dict[str, Any]:
    return {
        "formatVersion": 1, "name": f"bench-{features}", "version": "1", "framework": "custom",
        "targetType": "regression", **baseline_manifest([f"f{i:04d}" for i in range(features)]),
        "createdAt": "2026-01-01T00:00:00+00:00", "modelPath": "model", "files": {},
    }  # fmt: skip


def populate(db: Any, features: int, rows_per_minute: int, now_minute: int) -> str:
    """A package, environment and deployment, and 24 h of slots; returns the deployment id."""
    import numpy as np

    from shipmate.common.vocabulary import DesiredState
    from shipmate.server.models import Deployment, Environment, ModelPackage, Platform
    from shipmate.server.services import drift as store

    suffix = secrets.token_hex(4)
    with db.write() as session:
        session.add(Environment(id=f"e-{suffix}", name=f"bench-{suffix}", platform=Platform.FILESYSTEM,
                                created_by="bench"))  # fmt: skip
        session.add(ModelPackage(id=f"p-{suffix}", name=f"bench-{features}-{suffix}", version="1",
                                 filename="x.mlpkg", sha256="0" * 64, size=1, manifest=manifest(features),
                                 created_by="bench"))  # fmt: skip
        session.flush()
        session.add(Deployment(id=f"d-{suffix}", name=f"bench-{features}", environment_id=f"e-{suffix}",
                               model_package_id=f"p-{suffix}", desired_state=DesiredState.RUNNING,
                               created_by="bench"))  # fmt: skip
    rng = np.random.default_rng(features)
    start = now_minute - 24 * 60
    for slot in range(start - start % 15, now_minute, 15):
        batch = []
        for _minute in range(max(slot, start), min(slot + 15, now_minute)):
            counts = minute_counts(rng, rows_per_minute, features)
            zeros = np.zeros((features, 1), dtype=np.int64)
            full = np.hstack([zeros, counts, zeros, zeros]).tolist()
            batch.append(store.Counts(
                key=(f"d-{suffix}", "m-1", slot), rows=rows_per_minute,
                features={f"f{i:04d}": full[i] for i in range(features)},
                predictions={"value": full[0]},
            ))  # fmt: skip
        with db.write() as session:
            store.add_counts(session, batch)
    return f"d-{suffix}"


EVIDENTLY = textwrap.dedent(
    """
    import json, sys, time, resource
    import numpy as np, pandas as pd
    features, rows = int(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(features)
    columns = [f"f{i:04d}" for i in range(features)]
    reference = pd.DataFrame(rng.uniform(0, 10, size=(rows, features)), columns=columns)
    current = pd.DataFrame(rng.uniform(0, 10, size=(rows, features)), columns=reference.columns)
    drifting = max(1, features // 20)
    current.iloc[:, :drifting] = rng.triangular(0, 10, 10, size=(rows, drifting))
    try:
        from evidently import Report
        from evidently.presets import DataDriftPreset
        legacy = False
    except ImportError:
        from evidently.report import Report
        from evidently.metric_preset import DataDriftPreset
        legacy = True
    import evidently
    cpu, wall = time.process_time(), time.perf_counter()
    report = Report([DataDriftPreset()])
    if legacy:
        result = report.run(reference_data=reference, current_data=current)
    else:
        result = report.run(current, reference)
    if legacy:
        report.as_dict()
    else:
        result.dict()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"wallMs": wall * 1000, "cpuMs": cpu * 1000, "version": evidently.__version__}))
    """
)


def peer(python: str, features: int, rows: int, timeout: float) -> dict[str, Any]:
    try:
        check = subprocess.run([python, "-c", "import evidently"], capture_output=True, text=True)
    except OSError:
        check = None
    if check is None or check.returncode != 0:
        return {"skipped": f"{python} has no evidently (python -m venv V && V/bin/pip install evidently)"}
    try:
        done = subprocess.run([python, "-c", EVIDENTLY, str(features), str(rows)], capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"skipped": f"did not finish within {timeout:.0f} s", "timeoutS": timeout}
    if done.returncode != 0:
        return {"skipped": f"failed: {done.stderr.strip().splitlines()[-1:]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["rows"] = rows
    return result


def measure(db: Any, base_url: str, features: int, args: argparse.Namespace, now: float) -> dict[str, Any]:
    import httpx
    from sqlalchemy import text

    from shipmate.server.models import Deployment
    from shipmate.server.services import drift as store

    until = dt.datetime.fromtimestamp(now, dt.UTC)
    since = until - dt.timedelta(hours=24)
    log(f"{features} features: writing 24 h of slots ...")
    started = time.perf_counter()
    dep_id = populate(db, features, args.rows_per_minute, int(now // 60))
    log(f"  written in {time.perf_counter() - started:.1f} s")
    answer: dict[str, Any] = {}

    postgres_ms: list[float] = []

    def in_process() -> None:
        with db.read() as session:
            pid = session.execute(text("select pg_backend_pid()")).scalar_one()
            before = cpu_seconds(pid)
            deployment = session.get(Deployment, dep_id)
            assert deployment is not None
            answer["result"] = store.compute(session, deployment, since, until)
            after = cpu_seconds(pid)
            if before is not None and after is not None:
                postgres_ms.append((after - before) * 1000)

    service = timed(args.repeat, in_process)
    if postgres_ms:
        service["postgresCpuMs"] = statistics.median(postgres_ms)
    result = answer["result"]
    at_risk = sum(c.status.value == "at_risk" for c in result.features)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    params = {"since": since.isoformat(), "until": until.isoformat()}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:

        def over_http() -> None:
            response = http.get(f"/api/v1/deployments/{dep_id}/drift", params=params)
            response.raise_for_status()
            answer["bytes"] = len(response.content)

        over = timed(args.repeat, over_http)
    rows = args.evidently_rows
    log(f"  peer: Evidently DataDriftPreset, {rows:,} + {rows:,} raw rows ...")
    evidently = peer(args.evidently_python, features, rows, args.evidently_timeout)
    print(
        f"{features:>5} features, {result.rows:,} rows over 24 h ({at_risk} at risk, {result.status.value}):"
        f" service {service['wallMs']:.0f} ms wall / {service['cpuMs']:.0f} ms CPU"
        f" (+ PostgreSQL {service.get('postgresCpuMs', float('nan')):.0f} ms CPU);"
        f" HTTP {over['wallMs']:.0f} ms wall / {over['cpuMs']:.0f} ms CPU ({answer['bytes'] / 1024:.0f} KB)",
        flush=True,
    )
    if "wallMs" in evidently:
        print(
            f"      Evidently {evidently['version']} from {rows:,} + {rows:,} raw rows:"
            f" {evidently['wallMs']:.0f} ms wall / {evidently['cpuMs']:.0f} ms CPU",
            flush=True,
        )
    else:
        print(f"      Evidently: skipped ({evidently['skipped']})", flush=True)
    return {
        "features": features, "rows": result.rows, "status": result.status.value, "featuresAtRisk": at_risk,
        "service": service, "http": over | {"bytes": answer["bytes"]}, "evidently": evidently,
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--features", type=int, nargs="+", default=[1000, 20])
    parser.add_argument("--rows-per-minute", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--evidently-python", default=os.environ.get("EVIDENTLY_PYTHON", EVIDENTLY_PYTHON))
    parser.add_argument("--evidently-rows", type=int, default=10_000)
    parser.add_argument("--evidently-timeout", type=float, default=900)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from pydantic import SecretStr

    from shipmate.server.db import Database
    from shipmate.server.settings import ServerSettings
    from shipmate.server.testing import live_server

    name = f"shipmate_drift_bench_{secrets.token_hex(4)}"
    results: dict[str, Any] = {"rowsPerMinute": args.rows_per_minute, "repeat": args.repeat, "sizes": []}
    with scratch_database(name) as url:
        db = Database(url)
        db.migrate()
        now = time.time()
        settings = ServerSettings(
            data_dir=Path(f"/tmp/{name}"), database_url=url, admin_token=SecretStr(ADMIN_TOKEN)
        )
        with live_server(settings) as server:
            for features in args.features:
                results["sizes"].append(measure(db, server.base_url, features, args, now))
        db.dispose()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
