"""Crash safety with real processes: SIGKILL the agent at random moments during 200 deployment
lifecycles (start, replace, stop) on the filesystem plugin, restart it each time, and check that
everything converges, nothing is started twice, nothing is left behind, and the service agrees
with the filesystem."""

from __future__ import annotations

import random
import time

import pytest
from tests.agent.kills import JOURNAL_PLUGIN, Killer, Lifecycles, check_deployed, converged, journaled_starts

pytestmark = pytest.mark.slow

LIFECYCLES = 200
KEEP = 20
"""The last deployments stay running (with their replaced model) so the final state is not just empty."""


def test_sigkill_during_200_lifecycles_converges(tmp_path, live_service, iris_packages, agent_processes, e2e):
    rng = random.Random(20261122)
    admin = live_service.admin()
    env = admin.create_environment("crash", "filesystem")
    _, secret = admin.create_token(kind="agent", environment_id=env.id)
    p1 = admin.upload_model_package(iris_packages[0]).id
    p2 = admin.upload_model_package(iris_packages[1]).id
    base = tmp_path / "deployments"
    journal = tmp_path / "journal.log"
    plugin_file = tmp_path / "journal_plugin.py"
    plugin_file.write_text(JOURNAL_PLUGIN)
    plugin = {
        "name": str(plugin_file),
        "privateConfig": str(e2e.filesystem_private_config(tmp_path / "fs.yaml", base)),
        "config": {"journal": str(journal)},
    }
    config = e2e.write_agent_config(
        tmp_path / "agent.yaml", live_service.url, env.id, tmp_path / "work", plugin, concurrency=4
    )
    log = tmp_path / "agent.log"
    chaos = Killer(
        agent_processes(config, secret, log).start(),
        lambda: agent_processes(config, secret, log).start(),
        log,
        rng,
    )
    chaos.start()

    lifecycles = Lifecycles(admin, env.id, p1, p2, LIFECYCLES, KEEP)
    created, deleted = lifecycles.created, lifecycles.deleted
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            active = lifecycles.advance()
            if len(created) < LIFECYCLES and active < 100:
                lifecycles.create(40)
            if lifecycles.done:
                break
            time.sleep(0.1)
    finally:
        chaos.stop(10)
    kills, agent = chaos.kills, chaos.agent
    assert len(created) == LIFECYCLES, "the lifecycles did not all get created in time"
    assert len(deleted) == LIFECYCLES - KEEP, (
        f"only {len(deleted)} deletions issued; {log.read_text()[-3000:]}"
    )
    assert kills >= 5, f"only {kills} kills happened: the test did not test much"

    keep = lifecycles.kept
    assert e2e.wait_until(lambda: converged(admin, env.id, keep), 90, interval=0.2), log.read_text()[-3000:]

    # the service's record matches the filesystem
    check_deployed(admin, base, keep, p2, log.read_text())

    # nothing started twice
    starts = journaled_starts(journal)
    assert max(starts.values()) == 1, [k for k, v in starts.items() if v > 1]
    assert set(starts) <= set(created)
    assert agent.terminate() == 0
    print(f"{LIFECYCLES} lifecycles, {kills} SIGKILLs, {sum(starts.values())} journaled starts")
