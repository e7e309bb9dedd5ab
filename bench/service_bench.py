"""Service benchmark: with 10,000 deployments in the store, how long do the everyday calls take?

Measures, on SQLite and on PostgreSQL (a throw-away database on 127.0.0.1:5432):
  * create one deployment (POST /deployments), repeated;
  * list a page of 100 with a filter (GET /deployments?environmentId=…&limit=100, and ?name=…);
  * follow 10,000 events from cursor 0 (GET /events?after=…&limit=1000, page after page);
  * one batch of 1,000 agent reports (POST /environments/{id}/reports).
The floor ("peer") for each read is the same query made in-process with SQLAlchemy on the
same database, measured in the same run, so the figures show the cost of HTTP + validation
+ serialisation over the database itself. The server runs as a separate process
(``shipmate server``), the client is httpx; all traffic is on 127.0.0.1.

    python3 bench/service_bench.py [--deployments 10000] [--repeat 200] \\
        [--backends sqlite,postgres] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

TOKEN = "smt_bench-admin-token-0123456789abcdef"
PG = "postgresql://root@127.0.0.1:5432"


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "min_ms": round(ordered[0] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 3),
        "n": len(ordered),
    }


def timed(call: Callable[[], Any], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def seed(url: str, data_dir: Path, deployments: int) -> dict[str, Any]:
    """Fill the store through the service layer (fast), as the API would: one event pair per deployment."""
    from shipmate.server.artifacts import StagedUpload
    from shipmate.server.db import Database
    from shipmate.server.models import Platform
    from shipmate.server.services import deployments as deployment_service
    from shipmate.server.services import environments, packages
    from shipmate.server.testing import write_test_package

    db = Database(url)
    db.migrate()
    package_path = write_test_package(data_dir / "bench.mlpkg", name="bench")
    with db.write() as session:
        envs = [
            environments.create(
                session,
                name=f"bench-{n}",
                platform=Platform.FILESYSTEM,
                description="",
                config={},
                plugin_config={},
                actor="bench",
            )
            for n in range(2)
        ]
        from shipmate.packages import read_manifest

        manifest = read_manifest(package_path)
        metadata = packages.PackageMetadata(
            name=manifest.name,
            version=manifest.version,
            framework=manifest.framework.value,
            target_type=manifest.target_type.value,
        )
        staged = StagedUpload(path=package_path, sha256="0" * 64, size=package_path.stat().st_size)
        package, _ = packages.register(
            session, staged=staged, metadata=metadata, filename="bench.mlpkg", actor="bench"
        )
        env_ids = [e.id for e in envs]
        package_id = package.id
    batch = 1000
    for start in range(0, deployments, batch):
        with db.write() as session:
            for n in range(start, min(start + batch, deployments)):
                deployment_service.create(
                    session,
                    environment_id=env_ids[n % 2],
                    model_package_id=package_id,
                    name=f"dep-{n}",
                    description="",
                    key_value_config={"n": n},
                    active=True,
                    actor="bench",
                )
    db.dispose()
    return {"env_ids": env_ids, "package_id": package_id}


def floor_queries(url: str, env_id: str) -> dict[str, Any]:
    """The same reads in-process with SQLAlchemy: the database's own cost."""
    from shipmate.server.db import Database
    from shipmate.server.services import deployments, events
    from shipmate.server.services.deployments import DeploymentFilter

    db = Database(url)
    results: dict[str, Any] = {}

    def page() -> None:
        with db.read() as session:
            deployments.list_page(session, where=DeploymentFilter(environment_id=env_id), limit=100, offset=0)

    results["list_page_floor"] = summary(timed(page, 50))

    def follow() -> None:
        cursor, seen = 0, 0
        with db.read() as session:
            while seen < 10_000:
                rows = events.query_wire(session, after=cursor, limit=1000)
                seen += len(rows)
                cursor = rows[-1]["id"]

    results["follow_10k_floor"] = summary(timed(follow, 3))
    db.dispose()
    return results


def start_server(url: str, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "SHIPMATE_ADMIN_TOKEN": TOKEN}
    command = [
        sys.executable,
        "-c",
        "from shipmate.cli.main import main; main()",
        "server",
        "--data-dir",
        str(data_dir),
        "--database-url",
        url,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError("server did not start")


def measure(backend: str, url: str, deployments: int, repeat: int) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"shipmate-bench-{backend}-"))
    started = time.perf_counter()
    ids = seed(url, data_dir, deployments)
    results: dict[str, Any] = {
        "backend": backend,
        "deployments": deployments,
        "seed_s": round(time.perf_counter() - started, 2),
    }
    results.update(floor_queries(url, ids["env_ids"][0]))
    process, base = start_server(url, data_dir)
    try:
        with httpx.Client(
            base_url=base + "/api/v1", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        ) as api:
            counter = iter(range(10**9))

            def create() -> None:
                response = api.post(
                    "/deployments",
                    json={
                        "environmentId": ids["env_ids"][0],
                        "modelPackageId": ids["package_id"],
                        "name": f"new-{next(counter)}",
                    },
                )
                assert response.status_code == 201, response.text

            results["create_one"] = summary(timed(create, repeat))

            def page_by_env() -> None:
                body = api.get(
                    "/deployments", params={"environmentId": ids["env_ids"][1], "limit": 100}
                ).json()
                assert len(body["items"]) == 100

            results["list_page_env_filter"] = summary(timed(page_by_env, repeat))

            def page_by_name() -> None:
                body = api.get("/deployments", params={"name": "dep-4242", "limit": 100}).json()
                assert body["total"] == 1

            results["list_page_name_filter"] = summary(timed(page_by_name, repeat))

            def follow() -> None:
                cursor, seen = 0, 0
                while seen < 10_000:
                    page = api.get("/events", params={"after": cursor, "limit": 1000}).json()
                    seen += len(page["events"])
                    cursor = page["cursor"]

            results["follow_10k_events"] = summary(timed(follow, 3))

            desired = api.get(f"/environments/{ids['env_ids'][0]}/desired-state").json()["deployments"][:1000]
            reports = [
                {
                    "deploymentId": d["id"],
                    "generation": d["generation"],
                    "action": "deployment_start",
                    "phase": "finished",
                    "status": "passing",
                    "state": "ready",
                    "duration": 0.01,
                    "data": {"predictionUrl": f"http://127.0.0.1:8080/{d['id']}/predict"},
                }
                for d in desired
            ]
            batch_start = time.perf_counter()
            result = api.post(f"/environments/{ids['env_ids'][0]}/reports", json={"reports": reports}).json()
            results["report_batch_1000_ms"] = round((time.perf_counter() - batch_start) * 1000, 1)
            assert result["accepted"] == len(reports)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deployments", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import psycopg

    all_results = []
    for backend in args.backends.split(","):
        if backend == "sqlite":
            url = f"sqlite:///{tempfile.mkdtemp(prefix='shipmate-bench-db-')}/bench.db"
            all_results.append(measure(backend, url, args.deployments, args.repeat))
            continue
        name = f"shipmate_bench_{secrets.token_hex(4)}"
        with psycopg.connect(f"{PG}/test", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            all_results.append(
                measure(
                    backend, f"postgresql+psycopg://root@127.0.0.1:5432/{name}", args.deployments, args.repeat
                )
            )
        finally:
            with psycopg.connect(f"{PG}/test", autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for result in all_results:
        print(
            f"\n== {result['backend']}: {result['deployments']} deployments (seeded in {result['seed_s']} s)"
        )
        for key, value in result.items():
            if isinstance(value, dict):
                print(
                    f"  {key:<24} median {value['median_ms']:>9.2f} ms  p90 {value['p90_ms']:>9.2f}  "
                    f"min {value['min_ms']:>9.2f}  max {value['max_ms']:>9.2f}  (n={value['n']})"
                )
        print(f"  {'report_batch_1000':<24} {result['report_batch_1000_ms']:>9.1f} ms")
        print(
            f"  list page overhead vs in-process query: "
            f"{result['list_page_env_filter']['median_ms'] / result['list_page_floor']['median_ms']:.1f}x; "
            f"follow 10k overhead: "
            f"{result['follow_10k_events']['median_ms'] / result['follow_10k_floor']['median_ms']:.1f}x"
        )
    if args.json:
        args.json.write_text(json.dumps(all_results, indent=2))


if __name__ == "__main__":
    main()
