#!/usr/bin/env python3
"""Monitoring at scale: 100 deployments x 100 features reporting every minute, on PostgreSQL.

A real ``shipmate server`` process on a scratch PostgreSQL database (created and dropped here),
one package with ``--features`` numeric features (10 bins each) and an output baseline, and
``--deployments`` deployments of it. Then ``--minutes`` simulated minutes, compressed: each
minute's records (one ``MinuteAggregate`` per deployment, ``--rows`` rows, every feature binned)
are posted to ``POST /api/v1/monitoring/aggregates`` with an agent token, ``--batch`` records a
request from ``--clients`` concurrent senders, as fast as the service takes them. Per simulated
minute: wall time, CPU of the server process and of its PostgreSQL backends (/proc), and growth of
the monitoring tables (``pg_total_relation_size``). The service keeps up if a minute's work is
well under 60 s.

Then, at that scale: one alert evaluation pass (``POST /api/v1/alerts/evaluate``), one drift
query of a deployment over the simulated range, and the maintenance that bounds storage
(``monitoring.maintain``, what the server runs after ingest once a minute) run in this process
with the clock moved past the minute retention (roll-up to hours), past the drift slot retention
(15-minute drift slots to hours) and past the hour retention (expiry), with the sizes after
each. The steady-state sizes at the default retention are projected from the measured bytes
per row.

    python3 bench/monitoring_scale.py                 # 30 simulated minutes, a few minutes
    python3 bench/monitoring_scale.py --minutes 5     # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scratch_pg import (  # noqa: E402 (found through the path above, as serve_bench.py is)
    ADMIN_TOKEN,
    baseline_manifest,
    log,
    minute_counts,
    scratch_database,
)
from scratch_pg import cpu_seconds as proc_cpu_seconds  # noqa: E402

TABLES = ["monitoring_buckets", "drift_slots", "prediction_records", "alerts", "events"]
# server defaults (ServerSettings): minute buckets 48 h, 15-minute drift slots 7 days, hour buckets
# and hour drift slots 400 days
MINUTE_HOURS, HOUR_DAYS, DRIFT_SLOT_DAYS = 48.0, 400.0, 7.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (0 when /proc cannot see it)."""
    return proc_cpu_seconds(pid) or 0.0


def manifest(features: int) -> dict[str, Any]:
    return {"targetType": "regression", **baseline_manifest([f"f{i:03d}" for i in range(features)])}


class Postgres:
    """The scratch database: sizes of the monitoring tables and CPU of the server's backends."""

    def __init__(self, name: str) -> None:
        import psycopg

        self.name = name
        self.conn = psycopg.connect(f"postgresql://root@127.0.0.1:5432/{name}", autocommit=True)

    def sizes(self) -> dict[str, dict[str, int]]:
        out = {}
        for table in TABLES:
            row = self.conn.execute(
                f"select pg_total_relation_size('{table}'), count(*), coalesce(sum(pg_column_size(t.*)), 0)"
                f" from {table} t"
            ).fetchone()
            assert row is not None
            out[table] = {"bytes": int(row[0]), "rows": int(row[1]), "liveBytes": int(row[2])}
        return out

    def backends_cpu(self) -> float:
        pids = self.conn.execute(
            "select pid from pg_stat_activity where datname = %s and pid <> pg_backend_pid()", (self.name,)
        ).fetchall()
        return sum(cpu_seconds(pid) for (pid,) in pids)

    def vacuum(self) -> None:
        for table in TABLES:
            self.conn.execute(f"vacuum (analyze) {table}")


def start_server(url: str, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = os.environ | {
        "SHIPMATE_ADMIN_TOKEN": ADMIN_TOKEN, "SHIPMATE_ALERT_INTERVAL_SECONDS": "0",
        "PYTHONPATH": str(ROOT / "src"),
    }  # fmt: skip
    command = [
        sys.executable,
        "-c",
        "from shipmate.cli.main import main; main()",
        "server",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--database-url",
        url,
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"shipmate server exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError("shipmate server did not answer within 90 s")


def setup(http: Any, args: argparse.Namespace, work: Path) -> tuple[list[str], str]:
    """An environment, the package, the deployments and an agent token; returns (ids, token)."""
    from shipmate.server.testing import write_test_package

    env = http.post("/api/v1/environments", json={"name": "scale", "platform": "filesystem"}).json()
    path = write_test_package(work / "scale.mlpkg", name="scale", extra_manifest=manifest(args.features))
    package = http.post("/api/v1/model-packages", params={"filename": path.name}, content=path.read_bytes(),
                        headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    package.raise_for_status()
    ids = []
    for i in range(args.deployments):
        made = http.post("/api/v1/deployments", json={"environmentId": env["id"], "name": f"scale-{i:03d}",
                                                      "modelPackageId": package.json()["id"]})  # fmt: skip
        made.raise_for_status()
        ids.append(made.json()["id"])
    token = http.post("/api/v1/tokens", json={"name": "agent", "kind": "agent", "environmentId": env["id"]})
    token.raise_for_status()
    return ids, token.json()["secret"]


def minute_records(rng: Any, ids: list[str], minute: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One record per deployment, as the monitoring agent writes them (a feature in twenty shifted)."""
    from shipmate.monitoring.records import BinCounts, LatencyHistogram, MinuteAggregate

    records = []
    for dep in ids:
        counts = minute_counts(rng, args.rows, args.features)
        latency = LatencyHistogram()
        for ms in rng.gamma(2.0, 5.0, size=20):
            latency.observe(float(ms))
        aggregate = MinuteAggregate(deployment_id=dep, minute=minute, model_id="m-1", requests=args.rows,
                                    rows=args.rows, response_ms=latency, execution_ms=latency,
                                    consumers={"bench": args.rows}, flushed_at=time.time())  # fmt: skip
        aggregate.features = {
            f"f{i:03d}": BinCounts(counts=[0, *row, 0, 0], count=args.rows)
            for i, row in enumerate(counts.tolist())
        }
        aggregate.predictions = {"value": BinCounts(counts=[0, *counts[-1].tolist(), 0, 0], count=args.rows)}
        records.append(aggregate.to_json())
    return records


def timed(work: Callable[[], Any], repeat: int) -> dict[str, float]:
    walls = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        walls.append(time.perf_counter() - started)
    return {"wallMs": statistics.median(walls) * 1000, "bestWallMs": min(walls) * 1000}


def mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB"


def simulate(args: argparse.Namespace, pg: Postgres, server: subprocess.Popen[bytes], base: str,
             work: Path) -> dict[str, Any]:  # fmt: skip
    import httpx
    import numpy as np

    admin = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=120)
    ids, token = setup(admin, args, work)
    agent = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120,
                         limits=httpx.Limits(max_connections=args.clients))  # fmt: skip
    rng = np.random.default_rng(17)
    first = int(time.time() // 60) - args.minutes  # real, recent minutes: inside every retention window

    def post(batch: list[dict[str, Any]]) -> int:
        answer = agent.post("/api/v1/monitoring/aggregates", json={"records": batch})
        answer.raise_for_status()
        stored: int = answer.json()["stored"]
        return stored

    before = pg.sizes()
    minutes = []
    with ThreadPoolExecutor(args.clients) as pool:
        for i in range(args.minutes):
            records = minute_records(rng, ids, first + i, args)
            batches = [records[j : j + args.batch] for j in range(0, len(records), args.batch)]
            cpu, db_cpu, wall = cpu_seconds(server.pid), pg.backends_cpu(), time.perf_counter()
            stored = sum(pool.map(post, batches))
            wall = time.perf_counter() - wall
            time.sleep(0.2)  # let the background roll-up check that follows an answer finish
            cpu, db_cpu = cpu_seconds(server.pid) - cpu, pg.backends_cpu() - db_cpu
            assert stored == len(records), f"stored {stored} of {len(records)}"
            minutes.append({"wallS": wall, "serverCpuS": cpu, "postgresCpuS": db_cpu})
            log(f"  minute {i + 1}/{args.minutes}: {wall:.2f} s wall, server {cpu:.2f} s CPU,"
                f" PostgreSQL {db_cpu:.2f} s CPU")  # fmt: skip
    after = pg.sizes()
    body = len(json.dumps(records[: args.batch]).encode())

    cpu = cpu_seconds(server.pid)
    evaluate = timed(lambda: admin.post("/api/v1/alerts/evaluate").raise_for_status(), args.repeat)
    evaluate["serverCpuMs"] = (cpu_seconds(server.pid) - cpu) / args.repeat * 1000
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(first * 60))
    cpu = cpu_seconds(server.pid)
    drift_query = timed(
        lambda: admin.get(f"/api/v1/deployments/{ids[0]}/drift", params={"since": since}).raise_for_status(),
        args.repeat,
    )
    drift_query["serverCpuMs"] = (cpu_seconds(server.pid) - cpu) / args.repeat * 1000
    admin.close()
    agent.close()
    return {"minutes": minutes, "before": before, "after": after, "batchBytes": body,
            "alertsEvaluate": evaluate, "drift": drift_query}  # fmt: skip


def maintenance(url: str, pg: Postgres) -> dict[str, Any]:
    """The service's maintenance, in this process, with the clock past each retention."""
    from shipmate.server.db import Database
    from shipmate.server.services import monitoring

    retention = monitoring.Retention(
        minute_hours=MINUTE_HOURS, hour_days=HOUR_DAYS, max_future_minutes=10, drift_slot_days=DRIFT_SLOT_DAYS
    )
    db = Database(url)
    out: dict[str, Any] = {}
    steps = (("rollUp", (MINUTE_HOURS + 2) * 3600), ("driftRollUp", (DRIFT_SLOT_DAYS + 1) * 86400),
             ("expiry", (HOUR_DAYS + 1) * 86400))  # fmt: skip
    for label, ahead_s in steps:
        passes, wall, cpu, done = 0, time.perf_counter(), time.process_time(), monitoring.MaintenanceResult()
        while True:
            with db.write() as session:
                step = monitoring.maintain(session, retention=retention, now=time.time() + ahead_s)
            passes += 1
            done.rolled_up += step.rolled_up
            done.expired_buckets += step.expired_buckets
            done.expired_drift_slots += step.expired_drift_slots
            done.rolled_up_drift_slots += step.rolled_up_drift_slots
            if (
                step.rolled_up < monitoring.ROLLUP_BATCH
                and step.rolled_up_drift_slots < monitoring.DRIFT_ROLLUP_BATCH
            ):
                break
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        pg.vacuum()
        out[label] = {"passes": passes, "wallS": wall, "cpuS": cpu, "rolledUp": done.rolled_up,
                      "expiredBuckets": done.expired_buckets, "expiredDriftSlots": done.expired_drift_slots,
                      "rolledUpDriftSlots": done.rolled_up_drift_slots, "sizes": pg.sizes()}  # fmt: skip
    db.dispose()
    return out


def report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    minutes = result["minutes"]
    n = len(minutes)
    wall = statistics.median(m["wallS"] for m in minutes)
    cpu = statistics.median(m["serverCpuS"] for m in minutes)
    db_cpu = statistics.median(m["postgresCpuS"] for m in minutes)
    worst = max(m["wallS"] for m in minutes)
    print(f"{args.deployments} deployments x {args.features} features, {args.rows} rows a minute each,"
          f" {n} simulated minutes, {args.batch} records a request ({result['batchBytes'] / 1024:.0f} KB),"
          f" {args.clients} senders")  # fmt: skip
    print(f"  per simulated minute (median): {wall:.2f} s wall (worst {worst:.2f} s) of the 60 s available;"
          f" server {cpu:.2f} s CPU, PostgreSQL backends {db_cpu:.2f} s CPU")  # fmt: skip
    before, after = result["before"], result["after"]
    for table in TABLES:
        grown = after[table]["bytes"] - before[table]["bytes"]
        rows = after[table]["rows"] - before[table]["rows"]
        print(f"  {table:<19} {mib(after[table]['bytes']):>12}  +{mib(grown / n)} and +{rows / n:.1f} rows"
              f" a minute")  # fmt: skip
    for label, what in (("alerts/evaluate", "alertsEvaluate"), (f"drift of a deployment, {n} min", "drift")):
        t = result[what]
        print(f"  {label}: {t['wallMs']:.0f} ms wall (best {t['bestWallMs']:.0f}),"
              f" server {t['serverCpuMs']:.0f} ms CPU")  # fmt: skip
    buckets = after["monitoring_buckets"]
    slots = after["drift_slots"]
    minute_row = buckets["liveBytes"] / max(1, buckets["rows"])
    slot_row = slots["liveBytes"] / max(1, slots["rows"])
    m = result["maintenance"]
    ahead = {"rollUp": "50 h", "driftRollUp": f"{DRIFT_SLOT_DAYS + 1:g} days", "expiry": "401 days"}
    for label in ("rollUp", "driftRollUp", "expiry"):
        step = m[label]
        b, s = step["sizes"]["monitoring_buckets"], step["sizes"]["drift_slots"]
        print(f"  maintenance, clock +{ahead[label]}: {step['passes']} passes,"
              f" {step['wallS']:.2f} s wall / {step['cpuS']:.2f} s CPU (this process);"
              f" {step['rolledUp']} minute buckets and {step['rolledUpDriftSlots']} drift slots rolled up,"
              f" {step['expiredBuckets']} buckets and"
              f" {step['expiredDriftSlots']} drift slots expired; then buckets {b['rows']} rows"
              f" ({mib(b['liveBytes'])} live, {mib(b['bytes'])} on disk),"
              f" drift slots {s['rows']} rows ({mib(s['liveBytes'])} live,"
              f" {mib(s['bytes'])} on disk)")  # fmt: skip
    rolled = m["rollUp"]["sizes"]["monitoring_buckets"]
    hour_row = rolled["liveBytes"] / max(1, rolled["rows"])
    hour_slots = m["driftRollUp"]["sizes"]["drift_slots"]
    hour_slot_row = hour_slots["liveBytes"] / max(1, hour_slots["rows"])
    d = args.deployments
    steady = {
        "minute buckets": d * MINUTE_HOURS * 60 * minute_row,
        "hour buckets": d * HOUR_DAYS * 24 * hour_row,
        "15-minute drift slots": d * DRIFT_SLOT_DAYS * 24 * 4 * slot_row,
        "hour drift slots": d * (HOUR_DAYS - DRIFT_SLOT_DAYS) * 24 * hour_slot_row,
    }
    print(f"  live bytes a row: minute bucket {minute_row / 1024:.1f} KB,"
          f" hour bucket {hour_row / 1024:.1f} KB,"
          f" drift slot {slot_row / 1024:.1f} KB, hour drift slot {hour_slot_row / 1024:.1f} KB"
          f" (TOAST-compressed)")  # fmt: skip
    print(
        "  steady state at the default retention (48 h of minutes, 7 days of 15-minute drift slots,"
        " 400 days of hours): " + ", ".join(f"{k} {v / 2**30:.1f} GiB" for k, v in steady.items())
    )
    result["steadyStateBytes"] = steady


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--rows", type=int, default=1000, help="rows a deployment predicts a minute")
    parser.add_argument("--batch", type=int, default=10, help="records a request")
    parser.add_argument("--clients", type=int, default=4, help="concurrent senders")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    name = f"shipmate_scale_{os.getpid()}"
    server = None
    pg = None
    with scratch_database(name) as url:
        try:
            with tempfile.TemporaryDirectory(prefix="shipmate-scale-") as tmp:
                work = Path(tmp)
                server, base = start_server(url, work / "data")
                pg = Postgres(name)
                log(f"simulating {args.minutes} minutes of {args.deployments} deployments ...")
                result = simulate(args, pg, server, base, work)
                server.terminate()
                server.wait(timeout=30)
                result["maintenance"] = maintenance(url, pg)
                report(args, result)
        finally:
            if server is not None and server.poll() is None:
                server.terminate()
                server.wait(timeout=30)
            if pg is not None:
                pg.conn.close()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
