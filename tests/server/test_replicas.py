"""Several server processes on one PostgreSQL behave as one service."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipmate.server.testing import TEST_ADMIN_TOKEN

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
V1 = "/api/v1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def replicas(pg_url: str, tmp_path: Path) -> Iterator[list[str]]:
    """Two ``shipmate server`` processes sharing one database and one artifact directory."""
    processes = []
    urls = []
    env = {**os.environ, "SHIPMATE_ADMIN_TOKEN": TEST_ADMIN_TOKEN}
    for n in range(2):
        port = free_port()
        command = [
            sys.executable,
            "-c",
            "from shipmate.cli.main import main; main()",
            "server",
            "--data-dir",
            str(tmp_path / "shared"),
            "--database-url",
            pg_url,
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        log = (tmp_path / f"replica-{n}.log").open("w")
        processes.append(
            subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )
        urls.append(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 90
        for url, process in zip(urls, processes, strict=True):
            while True:
                assert process.poll() is None, (tmp_path / "replica-0.log").read_text()
                try:
                    if httpx.get(f"{url}{V1}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "replica did not start"
                time.sleep(0.1)
        yield urls
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_a_change_through_one_replica_reaches_a_follower_of_the_other(replicas: list[str], tmp_path: Path):
    from shipmate.server.testing import write_test_package

    one, two = (
        httpx.Client(base_url=u, headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}, timeout=60)
        for u in replicas
    )
    env = one.post(f"{V1}/environments", json={"name": "dev", "platform": "filesystem"}).json()
    assert two.get(f"{V1}/environments/{env['id']}").json()["name"] == "dev"
    package = write_test_package(tmp_path / "m.mlpkg")
    uploaded = two.post(f"{V1}/model-packages", params={"filename": "m.mlpkg"}, content=package.read_bytes())
    assert uploaded.status_code == 201
    assert one.get(f"{V1}/model-packages/{uploaded.json()['id']}/download").content == package.read_bytes()

    cursor = two.get(f"{V1}/environments/{env['id']}/desired-state").json()["cursor"]
    result: dict[str, Any] = {}

    def follow() -> None:
        result["page"] = two.get(
            f"{V1}/events", params={"environmentId": env["id"], "after": cursor, "wait": 30}
        ).json()

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(0.5)
    assert follower.is_alive()
    created = one.post(
        f"{V1}/deployments",
        json={"environmentId": env["id"], "modelPackageId": uploaded.json()["id"], "name": "d"},
    ).json()
    follower.join(timeout=30)
    assert not follower.is_alive()
    types = [(e["type"], e["deploymentId"]) for e in result["page"]["events"]]
    assert types[0] == ("deployment.created", created["id"])
    one.close()
    two.close()
