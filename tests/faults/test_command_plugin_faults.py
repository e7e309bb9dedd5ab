"""An external-command plugin that hangs, crashes mid-action or writes garbage, under a real
``shipmate agent`` driven by a real ``shipmate server``.

tests/agent/test_command_driver.py already proves, on the driver alone, that a missing,
malformed (bad YAML) or wrongly-typed status file, an exit code, a command that cannot start
and a hung command (its whole process group killed on timeout) each become a ``failing``
result with a message. It is not repeated here. What this module adds is the path
end to end: each fault reaches the service as a failed action with a precise message
(after the configured retries), the agent process keeps running and keeps serving its
other deployments, and the same deployment recovers once the plugin behaves again. It also
tries faults the driver tests do not: death by SIGKILL partway through an action, a
command that writes a passing status and then hangs (a timeout, not a success), a status
file that is YAML but not a mapping, and one that is not UTF-8 at all.

The plugin is Shipmate's ``bosun-plugin-runner --plugin filesystem`` behind a small
wrapper that misbehaves on the actions a JSON file names (the fault injector).
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(240)]

V1 = "/api/v1"
ACTION_TIMEOUT = 3
"""deployment_start's timeout in the agent's config, seconds."""

FAULTY_RUNNER = textwrap.dedent(
    """
    import json, os, signal, sys, time

    faults_file, real = sys.argv[1], sys.argv[2:]   # real: the runner and its args, then the agent's
    action = real[real.index("--action") + 1]
    status_file = real[real.index("--status-file") + 1]
    try:
        with open(faults_file) as handle:
            mode = json.load(handle).get(action, "ok")
    except FileNotFoundError:
        mode = "ok"
    if mode == "hang":
        print(f"{action}: waiting for the platform", flush=True)
        time.sleep(3600)
    elif mode == "crash":
        print(f"{action}: copying the model", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    elif mode == "hang-after-status":
        with open(status_file, "w") as handle:
            handle.write("status: passing\\nstate: ready\\n")
        print(f"{action}: status written, now stuck", flush=True)
        time.sleep(3600)
    elif mode == "garbage-yaml":
        with open(status_file, "w") as handle:
            handle.write("- this\\n- is not a status\\n")
    elif mode == "garbage-binary":
        with open(status_file, "wb") as handle:
            handle.write(b"\\xff\\xfe\\x00\\x89PNG not a status")
    else:
        os.execv(real[0], real)
    """
)


class Rig:
    """A service, an environment with an agent token, and a ``shipmate agent`` whose plugin command
    is the faulty wrapper around the filesystem runner."""

    def __init__(self, tmp_path: Path, processes: Any, faults: Any, iris: tuple[Path, Path]) -> None:
        self.faults = faults
        self.tmp = tmp_path
        self.server = faults.start_server(processes, "server", tmp_path / "data", None)
        self.admin = self.server.client()
        env = self.admin.post(f"{V1}/environments", json={"name": "cmd", "platform": "filesystem"}).json()
        self.env_id = env["id"]
        token = self.admin.post(
            f"{V1}/tokens", json={"name": "agent", "kind": "agent", "environmentId": self.env_id}
        ).json()["secret"]
        self.package_id = self._upload(iris[0])
        self.base = tmp_path / "deployments"
        self.base.mkdir()
        private = tmp_path / "fs.yaml"
        private.write_text(
            f"baseDir: {self.base}\ndeploymentDirPrefix: deployment_\ndeploymentInfoFile: config.yml\n"
        )
        wrapper = tmp_path / "faulty_runner.py"
        wrapper.write_text(FAULTY_RUNNER)
        self.fault_file = tmp_path / "faults.json"
        runner = shutil.which("bosun-plugin-runner", path=str(Path(sys.executable).parent))
        assert runner, "Shipmate's bosun-plugin-runner is not installed beside this interpreter"
        command = (
            f"{sys.executable} {wrapper} {self.fault_file} {runner} --plugin filesystem "
            f"--private-config {private}"
        )
        config = {
            "serviceUrl": self.server.url,
            "environmentId": self.env_id,
            "plugin": {"command": command},
            "workDir": str(tmp_path / "work"),
            "metrics": {"port": 0},
            "retry": {"maxAttempts": 2, "initialDelay": 0.2, "maxDelay": 0.5},
            "timeouts": {"deploymentStart": ACTION_TIMEOUT},
            "intervals": {"reconnectMax": 0.5, "feedWait": 5},
        }
        (tmp_path / "agent.yaml").write_text(yaml.safe_dump(config))
        self.agent = processes.start(
            [*faults.shipmate, "agent", "--config", str(tmp_path / "agent.yaml")],
            "agent",
            env={"MLOPS_API_TOKEN": token},
        )
        port = faults.wait_until(lambda: self._metrics_port(), 60, 0.1)
        assert port, f"the agent did not start: {self.agent.tail()}"
        self.health_url = f"http://127.0.0.1:{port}/healthz"

    def _metrics_port(self) -> int | None:
        text = self.agent.tail(100_000)
        marker = "metrics and health on http://127.0.0.1:"
        if marker not in text:
            return None
        return int(text.split(marker)[1].split("/")[0])

    def _upload(self, path: Path) -> str:
        reply = self.admin.post(
            f"{V1}/model-packages", params={"filename": path.name}, content=path.read_bytes()
        )
        assert reply.status_code == 201, reply.text
        return str(reply.json()["id"])

    def inject(self, **modes: str) -> None:
        self.fault_file.write_text(json.dumps(modes))

    def deploy(self, name: str) -> str:
        reply = self.admin.post(
            f"{V1}/deployments",
            json={"environmentId": self.env_id, "modelPackageId": self.package_id, "name": name},
        )
        assert reply.status_code == 201, reply.text
        return str(reply.json()["id"])

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        reply = self.admin.get(f"{V1}/deployments/{deployment_id}")
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result

    def wait_failed(self, deployment_id: str, timeout: float = 60) -> dict[str, Any]:
        """The observed state once the agent has given up on this generation (retries exhausted)."""

        def failed() -> dict[str, Any] | None:
            d = self.deployment(deployment_id)
            o = d["observed"]
            done = o["generation"] == d["generation"] and o["phase"] == "finished"
            return o if done and o["status"] == "failing" else None

        observed = self.faults.wait_until(failed, timeout, 0.1)
        assert observed, f"no failure reported: {self.deployment(deployment_id)}; {self.agent.tail()}"
        return dict(observed)

    def wait_ready(self, deployment_id: str, timeout: float = 60) -> None:
        def ready() -> bool:
            d = self.deployment(deployment_id)
            o = d["observed"]
            return bool(o["generation"] == d["generation"] and o["state"] == "ready")

        assert self.faults.wait_until(ready, timeout, 0.1), (
            f"not ready: {self.deployment(deployment_id)}; {self.agent.tail()}"
        )

    def relaunch(self, deployment_id: str) -> None:
        reply = self.admin.post(f"{V1}/deployments/{deployment_id}/relaunch")
        assert reply.status_code == 200, reply.text

    def agent_alive(self) -> bool:
        if not self.agent.alive():
            return False
        try:
            return bool(httpx.get(self.health_url, timeout=5).status_code == 200)
        except httpx.HTTPError:
            return False

    def finished_events(self, deployment_id: str) -> list[dict[str, Any]]:
        page = self.admin.get(f"{V1}/events", params={"deploymentId": deployment_id, "limit": 1000}).json()
        return [e for e in page["events"] if e["type"] == "action.finished"]


@pytest.fixture
def rig(tmp_path: Path, processes: Any, faults: Any, iris_packages: tuple[Path, Path]) -> Any:
    made = Rig(tmp_path, processes, faults, iris_packages)
    try:
        yield made
    finally:
        made.admin.close()
        made.agent.kill()
        # a plugin command runs in a session of its own: killing the agent's group leaves it
        faults.kill_process_groups_of(str(tmp_path / "faulty_runner.py"))


FAULTS = {
    "hang": [
        f"action deployment_start timed out after {ACTION_TIMEOUT}s; the command's process group was killed",
        "last output: deployment_start: waiting for the platform",
    ],
    "crash": [
        "action deployment_start: status file was not written (command exited with code -9)",
        "last output: deployment_start: copying the model",
    ],
    "hang-after-status": [
        f"action deployment_start timed out after {ACTION_TIMEOUT}s; the command's process group was killed",
        "last output: deployment_start: status written, now stuck",
    ],
    "garbage-yaml": [
        "action deployment_start: status file: expected a mapping, got list (command exited with code 0)",
    ],
}


def test_hung_crashed_and_garbage_plugins_fail_precisely_and_the_agent_recovers(
    rig: Any, faults: Any
) -> None:
    steady = rig.deploy("steady")
    rig.wait_ready(steady)
    started = time.monotonic()
    failures = 0
    for mode, expected in FAULTS.items():
        rig.inject(deployment_start=mode)
        victim = rig.deploy(f"victim-{mode}")
        observed = rig.wait_failed(victim)
        failures += 1
        assert observed["action"] == "deployment_start"
        for words in expected:
            assert words in observed["message"], (mode, observed["message"])
        assert not (rig.base / f"deployment_{victim}").exists()
        # both attempts were made and reported, each with its reason
        finished = rig.finished_events(victim)
        assert finished and finished[-1]["status"] == "failing", finished
        assert rig.agent_alive(), rig.agent.tail()

        rig.inject()  # the plugin behaves again
        rig.relaunch(victim)
        rig.wait_ready(victim)
        assert (rig.base / f"deployment_{victim}" / "config.yml").is_file()
    rig.wait_ready(steady, timeout=5)  # the other deployment was never disturbed
    assert rig.agent_alive()
    faults.figures(
        "command_plugin_faults",
        faults=len(FAULTS),
        failed_actions_reported=failures,
        recovered=failures,
        agent_restarts=0,
        seconds=round(time.monotonic() - started, 1),
    )


def test_a_status_file_that_is_not_utf8_is_a_failed_action(rig: Any) -> None:
    rig.inject(deployment_start="garbage-binary")
    victim = rig.deploy("victim-binary")
    observed = rig.wait_failed(victim, timeout=20)
    assert "status file" in observed["message"] and "UTF-8" in observed["message"]
    assert rig.agent_alive()
