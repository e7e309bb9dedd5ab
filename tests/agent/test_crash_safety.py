"""Crash safety with real processes: SIGKILL the agent at random moments during 200 deployment
lifecycles (start, replace, stop) on the filesystem plugin, restart it each time, and check that
everything converges, nothing is started twice, nothing is left behind, and the service agrees
with the filesystem."""

from __future__ import annotations

import random
import textwrap
import threading
import time
from collections import Counter

import pytest
import yaml

pytestmark = pytest.mark.slow

LIFECYCLES = 200
KEEP = 20
"""The last deployments stay running (with their replaced model) so the final state is not just empty."""

JOURNAL_PLUGIN = textwrap.dedent(
    """
    import os

    from shipmate.plugins.filesystem import FilesystemPlugin


    class JournalPlugin(FilesystemPlugin):
        \"\"\"The filesystem plugin, appending one line per completed start (to count starts).\"\"\"

        def deployment_start(self, deployment_info):
            result = super().deployment_start(deployment_info)
            if result.ok:
                fd = os.open(self.plugin_config["journal"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, f"start {deployment_info.id} {deployment_info.current_model_id}\\n".encode())
                finally:
                    os.close(fd)
            return result
    """
)


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
    agent = agent_processes(config, secret, log).start()

    kills = 0
    driving = threading.Event()
    driving.set()

    def lives() -> int:
        return log.read_text(errors="replace").count("agent running for environment") if log.exists() else 0

    def killer() -> None:
        nonlocal agent, kills
        while driving.is_set():
            # let each life get past start-up, then kill it at a random moment while it works
            e2e.wait_until(lambda k=kills: lives() > k or not driving.is_set(), 60)
            time.sleep(rng.uniform(0.05, 0.8))
            if not driving.is_set():
                break
            agent.kill()
            kills += 1
            agent = agent_processes(config, secret, log).start()

    chaos = threading.Thread(target=killer, daemon=True)
    chaos.start()

    created: list[str] = []
    replaced: set[str] = set()
    deleted: set[str] = set()
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            page = admin.list_deployments(environment_id=env.id, limit=1000)
            active = 0
            for d in page.items:
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
                if d.id not in deleted:
                    active += 1
            if len(created) < LIFECYCLES and active < 100:
                for _ in range(min(40, LIFECYCLES - len(created))):
                    created.append(admin.create_deployment(env.id, p1, name=f"crash-{len(created)}").id)
            if len(deleted) == LIFECYCLES - KEEP and len(replaced) == LIFECYCLES:
                break
            time.sleep(0.1)
    finally:
        driving.clear()
        chaos.join(10)
    assert len(created) == LIFECYCLES, "the lifecycles did not all get created in time"
    assert len(deleted) == LIFECYCLES - KEEP, (
        f"only {len(deleted)} deletions issued; {log.read_text()[-3000:]}"
    )
    assert kills >= 5, f"only {kills} kills happened: the test did not test much"

    keep = set(created[LIFECYCLES - KEEP :])

    def converged() -> bool:
        if admin.list_deployments(environment_id=env.id, desired_state="deleted", limit=1000).items:
            return False  # deletions the agent has not confirmed yet
        items = admin.list_deployments(environment_id=env.id, limit=1000).items
        if {d.id for d in items} != keep:
            return False
        return all(d.observed.state.value == "ready" and d.observed.generation == d.generation for d in items)

    assert e2e.wait_until(converged, 90, interval=0.2), log.read_text()[-3000:]

    # the service's record matches the filesystem
    dirs = {p.name.removeprefix("deployment_") for p in base.iterdir() if not p.name.startswith(".")}
    extra = dirs - keep
    if extra:
        lines = [line for line in log.read_text().splitlines() if any(x in line for x in extra)]
        history = admin.events(deployment_id=min(extra)).events
        events = [f"{e.type} g{e.generation} {e.message}" for e in history]
        pytest.fail(f"left behind: {sorted(extra)}\n" + "\n".join(lines[-40:]) + "\n" + "\n".join(events))
    assert dirs == keep
    for deployment_id in keep:
        info = yaml.safe_load((base / f"deployment_{deployment_id}" / "config.yml").read_text())
        assert info["model_id"] == p2
        assert admin.get_deployment(deployment_id).observed.model_package_id == p2

    # nothing started twice
    starts = Counter(
        line.split()[1] for line in journal.read_text().splitlines() if line.startswith("start ")
    )
    assert max(starts.values()) == 1, [k for k, v in starts.items() if v > 1]
    assert set(starts) <= set(created)
    assert agent.terminate() == 0
    print(f"{LIFECYCLES} lifecycles, {kills} SIGKILLs, {sum(starts.values())} journaled starts")
