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
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.agent.kills import JOURNAL_PLUGIN, Killer, Lifecycles, check_deployed, converged, journaled_starts

from shipmate.client.client import ShipmateClient

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(400)]

LIFECYCLES = int(os.environ.get("SHIPMATE_FAULTS_LIFECYCLES", "60"))
KEEP = 5
"""The last deployments stay running with their replaced model, so the end state is not empty."""
BATCH = 5
"""Lifecycles begun per life of the agent: LIFECYCLES / BATCH lives at least, each killed."""


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
    first = processes.start(argv, "agent", env=agent_env)
    chaos = Killer(first, lambda: processes.start(argv, "agent", env=agent_env), first.log, rng)
    chaos.start()
    lifecycles = Lifecycles(admin, env.id, p1, p2, LIFECYCLES, KEEP)
    created, deleted = lifecycles.created, lifecycles.deleted
    batches = 0
    deadline = time.monotonic() + 200
    try:
        while time.monotonic() < deadline:
            lifecycles.advance()
            # a batch of new lifecycles per life of the agent, so every life has work to be killed in
            if len(created) < LIFECYCLES and chaos.kills >= batches:
                batches += 1
                lifecycles.create(BATCH)
            if lifecycles.done:
                break
            time.sleep(0.1)
    finally:
        chaos.stop(70)
    kills, agent = chaos.kills, chaos.agent
    assert len(created) == LIFECYCLES
    assert len(deleted) == LIFECYCLES - KEEP, f"only {len(deleted)} deletions issued; {agent.tail()}"
    assert kills >= LIFECYCLES // BATCH - 1, f"only {kills} kills happened: the test did not test much"

    keep = lifecycles.kept
    assert faults.wait_until(lambda: converged(admin, env.id, keep), 90, 0.2), agent.tail()
    dirs = check_deployed(admin, base, keep, p2, first.log.read_text(errors="replace"))
    starts = journaled_starts(journal)
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
