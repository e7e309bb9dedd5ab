"""The agent SIGKILLed at random moments of deployment lifecycles: what the crash-safety test on
SQLite (tests/agent/test_crash_safety.py) and the fault suite's on PostgreSQL
(tests/faults/test_agent_kill_postgres.py) share, and the process-group kill both conftests use.

A lifecycle is start, replace the model, delete. The agent runs the filesystem plugin with a
journal of every completed start (`JOURNAL_PLUGIN`), so a start done twice shows.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

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
"""The plugin file's source; its private config names the journal (``config.journal``)."""


def kill_group(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal the whole process group (the process and anything it spawned) and wait for it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)


class Killer(threading.Thread):
    """SIGKILLs the agent at a random moment of each of its lives, once the life has got past
    start-up (its log says so), and starts the next one; ``agent`` is the one running now."""

    def __init__(self, agent: Any, restart: Callable[[], Any], log: Path, rng: random.Random) -> None:
        super().__init__(name="agent-killer", daemon=True)
        self.agent = agent
        self.kills = 0
        self._restart, self._log, self._rng = restart, log, rng
        self._driving = threading.Event()
        self._driving.set()

    def lives(self) -> int:
        """How many lives of the agent have got past start-up, from its log."""
        if not self._log.exists():
            return 0
        return self._log.read_text(errors="replace").count("agent running for environment")

    def run(self) -> None:
        while self._driving.is_set():
            deadline = time.monotonic() + 60
            while self.lives() <= self.kills and self._driving.is_set() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(self._rng.uniform(0.05, 0.8))
            if not self._driving.is_set():
                break
            self.agent.kill()
            self.kills += 1
            self.agent = self._restart()

    def stop(self, timeout: float) -> None:
        self._driving.clear()
        self.join(timeout)


@dataclass
class Lifecycles:
    """The lifecycles under way, each of ``first`` then ``second``: created in order, then replaced
    and deleted as the agent gets each ready; the last ``keep`` of ``total`` are not deleted."""

    admin: Any
    environment_id: str
    first: str
    second: str
    total: int
    keep: int
    created: list[str] = field(default_factory=list)
    replaced: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)

    def create(self, count: int) -> None:
        for _ in range(min(count, self.total - len(self.created))):
            made = self.admin.create_deployment(
                self.environment_id, self.first, name=f"crash-{len(self.created)}"
            )
            self.created.append(made.id)

    def advance(self) -> int:
        """One pass: a deployment ready at generation 1 gets ``second``, one ready at generation 2
        is deleted unless kept. How many listed deployments are not deleted."""
        active = 0
        for d in self.admin.list_deployments(environment_id=self.environment_id, limit=1000).items:
            ready = d.observed.state.value == "ready"
            if d.id not in self.replaced and ready and d.observed.generation == 1:
                self.admin.replace_model(d.id, self.second)
                self.replaced.add(d.id)
            elif (
                d.id in self.replaced
                and d.id not in self.deleted
                and ready
                and d.observed.generation == 2
                and self.created.index(d.id) < self.total - self.keep
            ):
                self.admin.delete(d.id)
                self.deleted.add(d.id)
            if d.id not in self.deleted:
                active += 1
        return active

    @property
    def done(self) -> bool:
        """Every lifecycle replaced, and every one not kept deleted."""
        return len(self.deleted) == self.total - self.keep and len(self.replaced) == self.total

    @property
    def kept(self) -> set[str]:
        return set(self.created[self.total - self.keep :])


def converged(admin: Any, environment_id: str, keep: set[str]) -> bool:
    """Every deletion confirmed, and exactly the ``keep`` deployments ready at their generation."""
    if admin.list_deployments(environment_id=environment_id, desired_state="deleted", limit=1000).items:
        return False  # deletions the agent has not confirmed yet
    items = admin.list_deployments(environment_id=environment_id, limit=1000).items
    return {d.id for d in items} == keep and all(
        d.observed.state.value == "ready" and d.observed.generation == d.generation for d in items
    )


def check_deployed(admin: Any, base: Path, keep: set[str], package_id: str, agent_log: str) -> set[str]:
    """The filesystem holds exactly the ``keep`` deployments, each of ``package_id`` as the service
    records it; what is left behind fails the test with its log lines and events. The directories."""
    dirs = {p.name.removeprefix("deployment_") for p in base.iterdir() if not p.name.startswith(".")}
    extra = dirs - keep
    if extra:
        lines = [line for line in agent_log.splitlines() if any(x in line for x in extra)]
        history = admin.events(deployment_id=min(extra)).events
        events = [f"{e.type} g{e.generation} {e.message}" for e in history]
        pytest.fail(f"left behind: {sorted(extra)}\n" + "\n".join(lines[-40:]) + "\n" + "\n".join(events))
    assert dirs == keep, f"missing: {sorted(keep - dirs)}"
    for deployment_id in keep:
        info = yaml.safe_load((base / f"deployment_{deployment_id}" / "config.yml").read_text())
        assert info["model_id"] == package_id
        assert admin.get_deployment(deployment_id).observed.model_package_id == package_id
    return dirs


def journaled_starts(journal: Path) -> Counter[str]:
    """How many times the journal says each deployment was started."""
    return Counter(line.split()[1] for line in journal.read_text().splitlines() if line.startswith("start "))
