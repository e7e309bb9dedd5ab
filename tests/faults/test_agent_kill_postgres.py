"""The agent SIGKILLed at random moments during deployment lifecycles, with the service on
PostgreSQL (tests/agent/test_crash_safety.py does the same on SQLite, with 200 lifecycles).

Each lifecycle is start, replace the model, delete; the agent (filesystem plugin, in-process,
journalling every completed start) is killed at a random moment of each life and restarted.
Afterwards everything has converged, nothing was started twice, nothing is left behind, and
the service's record agrees with the filesystem. SHIPMATE_FAULTS_LIFECYCLES sets how many
(default 60, the last 5 of which stay running).
"""

from __future__ import annotations

import os
import random
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipmate.client.client import ShipmateClient

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(400)]

LIFECYCLES = int(os.environ.get("SHIPMATE_FAULTS_LIFECYCLES", "60"))
KEEP = 5
"""The last deployments stay running with their replaced model, so the end state is not empty."""
BATCH = 5
"""Lifecycles begun per life of the agent: LIFECYCLES / BATCH lives at least, each killed."""

JOURNAL_PLUGIN = textwrap.dedent(
    """
    import os

    from shipmate.plugins.filesystem import FilesystemPlugin


    class JournalPlugin(FilesystemPlugin):
        def deployment_start(self, deployment_info):
            result = super().deployment_start(deployment_info)
            if result.ok:
                line = f"start {deployment_info.id} {deployment_info.current_model_id}\\n".encode()
                fd = os.open(self.plugin_config["journal"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
            return result
    """
)


def test_agent_sigkills_on_postgres_converge_with_nothing_done_twice(
    tmp_path: Path, processes: Any, pg_url: str, faults: Any, iris_packages: tuple[Path, Path]
) -> None:
    rng = random.Random(20261207)
    server = faults.start_server(processes, "server", tmp_path / "data", pg_url)
    admin = ShipmateClient(server.url, faults.admin_token)
    env = admin.create_environment("crash-pg", "filesystem")
    _, secret = admin.create_token(kind="agent", environment_id=env.id)
    p1 = admin.upload_model_package(iris_packages[0]).id
    p2 = admin.upload_model_package(iris_packages[1]).id
    base = tmp_path / "deployments"
    base.mkdir()
    private = tmp_path / "fs.yaml"
    private.write_text(f"baseDir: {base}\ndeploymentDirPrefix: deployment_\ndeploymentInfoFile: config.yml\n")
    journal = tmp_path / "journal.log"
    plugin_file = tmp_path / "journal_plugin.py"
    plugin_file.write_text(JOURNAL_PLUGIN)
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "serviceUrl": server.url,
                "environmentId": env.id,
                "plugin": {
                    "name": str(plugin_file),
                    "privateConfig": str(private),
                    "config": {"journal": str(journal)},
                },
                "workDir": str(tmp_path / "work"),
                "metrics": {"port": 0},
                "concurrency": 4,
                "retry": {"maxAttempts": 3, "initialDelay": 0.1, "maxDelay": 0.5},
                "intervals": {"reconnectMax": 0.5, "feedWait": 5},
            }
        )
    )
    argv = [*faults.shipmate, "agent", "--config", str(config)]
    agent_env = {"MLOPS_API_TOKEN": secret}
    agent = processes.start(argv, "agent", env=agent_env)
    log: Path = agent.log

    kills = 0
    driving = threading.Event()
    driving.set()

    def lives() -> int:
        return log.read_text(errors="replace").count("agent running for environment")

    def killer() -> None:
        nonlocal agent, kills
        while driving.is_set():
            # let each life get past start-up, then kill it at a random moment of its work
            faults.wait_until(lambda k=kills: lives() > k or not driving.is_set(), 60)
            time.sleep(rng.uniform(0.05, 0.8))
            if not driving.is_set():
                break
            agent.kill()
            kills += 1
            agent = processes.start(argv, "agent", env=agent_env)

    chaos = threading.Thread(target=killer, daemon=True)
    chaos.start()
    created: list[str] = []
    replaced: set[str] = set()
    deleted: set[str] = set()
    batches = 0
    deadline = time.monotonic() + 200
    try:
        while time.monotonic() < deadline:
            for d in admin.list_deployments(environment_id=env.id, limit=1000).items:
                ready = d.observed.state.value == "ready"
                if d.id not in replaced and ready and d.observed.generation == 1:
                    admin.replace_model(d.id, p2)
                    replaced.add(d.id)
                elif (
                    d.id in replaced
                    and d.id not in deleted
                    and ready
                    and d.observed.generation == 2
                    and created.index(d.id) < LIFECYCLES - KEEP
                ):
                    admin.delete(d.id)
                    deleted.add(d.id)
            # a batch of new lifecycles per life of the agent, so every life has work to be killed in
            if len(created) < LIFECYCLES and kills >= batches:
                batches += 1
                for _ in range(min(BATCH, LIFECYCLES - len(created))):
                    created.append(admin.create_deployment(env.id, p1, name=f"crash-{len(created)}").id)
            if len(deleted) == LIFECYCLES - KEEP and len(replaced) == LIFECYCLES:
                break
            time.sleep(0.1)
    finally:
        driving.clear()
        chaos.join(70)
    assert len(created) == LIFECYCLES
    assert len(deleted) == LIFECYCLES - KEEP, f"only {len(deleted)} deletions issued; {agent.tail()}"
    assert kills >= LIFECYCLES // BATCH - 1, f"only {kills} kills happened: the test did not test much"

    keep = set(created[LIFECYCLES - KEEP :])

    def converged() -> bool:
        if admin.list_deployments(environment_id=env.id, desired_state="deleted", limit=1000).items:
            return False  # deletions the agent has not confirmed yet
        items = admin.list_deployments(environment_id=env.id, limit=1000).items
        return {d.id for d in items} == keep and all(
            d.observed.state.value == "ready" and d.observed.generation == d.generation for d in items
        )

    assert faults.wait_until(converged, 90, 0.2), agent.tail()
    dirs = {p.name.removeprefix("deployment_") for p in base.iterdir() if not p.name.startswith(".")}
    assert dirs == keep, f"left behind: {sorted(dirs - keep)}, missing: {sorted(keep - dirs)}"
    for deployment_id in keep:
        info = yaml.safe_load((base / f"deployment_{deployment_id}" / "config.yml").read_text())
        assert info["model_id"] == p2
        assert admin.get_deployment(deployment_id).observed.model_package_id == p2
    starts = Counter(
        line.split()[1] for line in journal.read_text().splitlines() if line.startswith("start ")
    )
    twice = sorted(k for k, v in starts.items() if v > 1)
    assert not twice, f"started twice: {twice}"
    assert set(starts) <= set(created)
    assert agent.terminate(60) == 0
    staging = sorted(p.name for p in base.iterdir() if p.name.startswith("."))
    faults.figures(
        "agent_kill_postgres",
        lifecycles=LIFECYCLES,
        sigkills=kills,
        journaled_starts=sum(starts.values()),
        started_twice=len(twice),
        left_behind=len(dirs - keep),
        staging_dirs_left=len(staging),
    )
