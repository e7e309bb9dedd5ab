"""Fakes at the agent's boundaries: an in-memory control plane that keeps the API's rules, and a plugin.

``FakeService`` implements ``shipmate.agent.ports.ControlPlane`` with the
semantics of docs/agent-api.md (generations, change feed with long poll,
reports that update the observed state only for the current generation,
removal after a confirmed stop), by calling the service's own pure rules in
``shipmate.server.lifecycle``. ``MemoryPlugin`` is a real ``PluginBase``
whose "environment" is a shared dict.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.agent.kills import kill_group

from shipmate.agent.config import AgentSettings
from shipmate.agent.drivers import InProcessDriver
from shipmate.agent.model import DesiredDeployment, ModelPackageRef, ServiceObserved
from shipmate.agent.ports import (
    Change,
    ChangePage,
    ControlPlaneRejected,
    ControlPlaneUnavailable,
    DesiredSnapshot,
    EnvironmentDescription,
    Report,
    ReportOutcome,
)
from shipmate.agent.runtime import Agent
from shipmate.common.vocabulary import DesiredState, EventType
from shipmate.plugin.base import PluginBase
from shipmate.plugin.info import DeploymentInfo
from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DeploymentState
from shipmate.server import lifecycle
from shipmate.server.errors import InvalidInput


@dataclass
class FakeDeployment:
    id: str
    desired: lifecycle.Desired
    observed: dict[str, Any] = field(default_factory=dict)
    """The service's observed state: generation, state, status (as the API shows them)."""

    @property
    def generation(self) -> int:
        return self.desired.generation

    def spec(self, packages: Mapping[str, bytes]) -> DesiredDeployment:
        desired = self.desired
        data = packages[desired.model_package_id]
        return DesiredDeployment(
            id=self.id,
            generation=desired.generation,
            state=desired.state,
            model_package=ModelPackageRef(
                desired.model_package_id, sha256=hashlib.sha256(data).hexdigest(), size=len(data)
            ),
            relaunch_generation=desired.relaunch_generation,
            force=desired.force,
            name=f"name of {self.id}",
            key_value_config={"replicas": 1},
            observed=ServiceObserved(
                generation=int(self.observed.get("generation", 0)),
                state=_text(self.observed.get("state")),
                status=_text(self.observed.get("status")),
            ),
        )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class FakeService:
    """The control plane's agent-facing side, in memory; its rules are the service's own, from
    ``shipmate.server.lifecycle`` (commands change the desired spec, reports are judged)."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.deployments: dict[str, FakeDeployment] = {}
        self.packages: dict[str, bytes] = {}
        self.events: list[dict[str, Any]] = []
        self.reports: list[Report] = []
        self.health: list[tuple[str, str | None]] = []
        self.posted: list[dict[str, Any]] = []
        self.down = False
        self.downloads = 0
        self.tamper: set[str] = set()

    # -- admin side, used by tests -----------------------------------------------------

    def add_package(self, package_id: str, content: bytes | None = None) -> None:
        self.packages[package_id] = content if content is not None else f"model {package_id}".encode()

    def _event(self, type_: EventType, deployment: FakeDeployment | None, **extra: Any) -> None:
        event = {
            "id": len(self.events) + 1,
            "type": type_,
            "timestamp": time.time(),
            "deploymentId": deployment.id if deployment else extra.pop("deployment_id", None),
            "generation": deployment.generation if deployment else None,
            **extra,
        }
        if type_ is EventType.DESIRED_CHANGED and deployment is not None:
            event["spec"] = deployment.spec(self.packages)
        self.events.append(event)
        self.lock.notify_all()

    def create(self, deployment_id: str, package_id: str, state: str = "running") -> None:
        with self.lock:
            if package_id not in self.packages:
                self.add_package(package_id)
            d = FakeDeployment(deployment_id, lifecycle.Desired(1, DesiredState(state), package_id))
            self.deployments[deployment_id] = d
            self._event(EventType.DESIRED_CHANGED, d)

    def _command(self, deployment_id: str, command: lifecycle.Command, **options: Any) -> None:
        with self.lock:
            d = self.deployments[deployment_id]
            after = lifecycle.apply_command(d.desired, command, **options)
            if after is not None:
                d.desired = after
                self._event(EventType.DESIRED_CHANGED, d)

    def change(self, deployment_id: str, *, package_id: str | None = None, state: str | None = None) -> None:
        if package_id is not None:
            if package_id not in self.packages:
                self.add_package(package_id)
            self._command(deployment_id, lifecycle.Command.REPLACE_MODEL, model_package_id=package_id)
        if state is not None:
            command = {"running": lifecycle.Command.ACTIVATE, "stopped": lifecycle.Command.DEACTIVATE}[state]
            self._command(deployment_id, command)

    def relaunch(self, deployment_id: str) -> None:
        self._command(deployment_id, lifecycle.Command.RELAUNCH)

    def delete(self, deployment_id: str, force: bool = False) -> None:
        self._command(deployment_id, lifecycle.Command.FORCE_DELETE if force else lifecycle.Command.DELETE)

    def observed(self, deployment_id: str) -> dict[str, Any] | None:
        with self.lock:
            d = self.deployments.get(deployment_id)
            return dict(d.observed) if d else None

    # -- the ControlPlane protocol ------------------------------------------------------

    def _check(self) -> None:
        if self.down:
            raise ControlPlaneUnavailable("connection refused (fake service is down)")

    def get_environment(self, environment_id: str) -> EnvironmentDescription:
        self._check()
        return EnvironmentDescription(
            id=environment_id, name="test env", created_on="2026-01-01T00:00:00+00:00"
        )

    def desired_state(self, environment_id: str) -> DesiredSnapshot:
        self._check()
        with self.lock:
            specs = [d.spec(self.packages) for d in self.deployments.values()]
            return DesiredSnapshot(cursor=len(self.events), deployments=specs)

    def changes(self, environment_id: str, after: int, wait: float, limit: int = 500) -> ChangePage:
        self._check()
        deadline = time.monotonic() + wait
        with self.lock:
            while len(self.events) <= after and not self.down:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return ChangePage(cursor=after, changes=[])
                self.lock.wait(min(remaining, 0.2))
            self._check()
            batch = self.events[after : after + limit]
        changes = [
            Change(
                id=e["id"],
                type=e["type"],
                deployment_id=e.get("deploymentId"),
                generation=e.get("generation"),
                timestamp=e["timestamp"],
                spec=e.get("spec"),
            )
            for e in batch
        ]
        return ChangePage(cursor=batch[-1]["id"] if batch else after, changes=changes)

    def download_model_package(self, package_id: str, dest: Path) -> str:
        self._check()
        self.downloads += 1
        data = self.packages[package_id]
        if package_id in self.tamper:
            data = data + b"tampered"
        dest.write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    def report(self, environment_id: str, reports: Sequence[Report]) -> ReportOutcome:
        self._check()
        removed = []
        stale = []
        with self.lock:
            for r in reports:
                self.reports.append(r)
                d = self.deployments.get(r.deployment_id)
                if d is None:
                    continue
                try:
                    verdict = lifecycle.judge_report(
                        current=d.desired,
                        observed_generation=int(d.observed.get("generation", 0)),
                        report_generation=r.generation,
                        phase=r.phase,
                        state=r.state,
                    )
                except InvalidInput as exc:  # the service refuses the whole batch
                    raise ControlPlaneRejected(str(exc)) from None
                if verdict is lifecycle.Verdict.STALE:
                    stale.append(r.deployment_id)
                elif verdict is lifecycle.Verdict.REMOVE:
                    del self.deployments[d.id]
                    removed.append(d.id)
                    self._event(EventType.DEPLOYMENT_REMOVED, None, deployment_id=d.id)
                else:
                    d.observed["generation"] = r.generation
                    if r.state is not None:
                        d.observed["state"] = r.state
                    if r.status is not None:
                        d.observed["status"] = r.status
            self.lock.notify_all()
        return ReportOutcome(accepted=len(reports), stale=stale, removed=removed)

    def report_health(
        self, environment_id: str, status: str, message: str | None, data: Mapping[str, Any]
    ) -> None:
        self._check()
        self.health.append((status, message))

    def post_event(
        self,
        environment_id: str,
        type: str,
        message: str,
        deployment_id: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        self._check()
        self.posted.append({"type": type, "message": message, "deploymentId": deployment_id})

    # -- helpers -------------------------------------------------------------------------

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self):
                    return True
            time.sleep(0.02)
        return False

    def reports_for(self, deployment_id: str, phase: str | None = None) -> list[Report]:
        with self.lock:
            return [
                r
                for r in self.reports
                if r.deployment_id == deployment_id and (phase is None or r.phase == phase)
            ]


class Environment:
    """What MemoryPlugin manages: deployment id -> model id, plus a log of calls and failure knobs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[str, str] = {}
        self.calls: list[tuple[str, str | None]] = []
        self.fail: dict[str, int] = {}
        """action name -> how many more calls of it fail"""
        self.retry_after: dict[str, float | bool] = {}
        """action name -> the retry intent its failures state (``ActionStatusInfo.retry_after``)"""
        self.hang: set[str] = set()
        self.artifacts: dict[str, str] = {}

    def count(self, action: str, deployment_id: str | None = None) -> int:
        with self.lock:
            return sum(
                1 for a, d in self.calls if a == action and (deployment_id is None or d == deployment_id)
            )


class MemoryPlugin(PluginBase):
    """A plugin whose environment is an in-memory ``Environment`` (shared through ``plugin_config``)."""

    def _env(self) -> Environment:
        return self.plugin_config["environment"]

    def _enter(self, action: str, deployment_id: str | None) -> ActionStatusInfo | None:
        env = self._env()
        with env.lock:
            env.calls.append((action, deployment_id))
            remaining = env.fail.get(action, 0)
            if remaining:
                env.fail[action] = remaining - 1
                return ActionStatusInfo(
                    ActionStatus.ERROR,
                    msg=f"{action} broke on purpose",
                    state="errored",
                    retry_after=env.retry_after.get(action),
                )
        if action in env.hang:
            time.sleep(3600)
        return None

    def plugin_start(self) -> ActionStatusInfo:
        return self._enter("plugin_start", None) or ActionStatusInfo(ActionStatus.OK, msg="all ok")

    def plugin_stop(self) -> ActionStatusInfo:
        return self._enter("plugin_stop", None) or ActionStatusInfo(ActionStatus.OK)

    def deployment_list(self) -> ActionStatusInfo:
        failed = self._enter("deployment_list", None)
        if failed:
            return failed
        env = self._env()
        with env.lock:
            data = {d: {"status": "passing", "data": {"currentModelId": m}} for d, m in env.running.items()}
        return ActionStatusInfo(ActionStatus.OK, msg=f"Number of deployments: {len(data)}", data=data)

    def deployment_start(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        failed = self._enter("deployment_start", deployment_info.id)
        if failed:
            return failed
        env = self._env()
        assert deployment_info.model_artifact and Path(deployment_info.model_artifact).is_file()
        with env.lock:
            env.running[deployment_info.id] = deployment_info.current_model_id
            env.artifacts[deployment_info.id] = deployment_info.model_artifact
        return ActionStatusInfo(
            ActionStatus.OK,
            state=DeploymentState.READY,
            data={"predictionUrl": f"http://x/{deployment_info.id}/predict"},
        )

    def deployment_stop(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        failed = self._enter("deployment_stop", deployment_info.id)
        if failed:
            return failed
        env = self._env()
        with env.lock:
            env.running.pop(deployment_info.id, None)
        return ActionStatusInfo(ActionStatus.OK, state=DeploymentState.STOPPED)

    def deployment_replace_model(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        failed = self._enter("deployment_replace_model", deployment_info.id)
        if failed:
            failed.data = {"oldModelInUse": True}
            return failed
        env = self._env()
        with env.lock:
            env.running[deployment_info.id] = deployment_info.current_model_id
        return ActionStatusInfo(
            ActionStatus.OK, state=DeploymentState.READY, msg="Model replaced successfully"
        )

    def deployment_status(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        failed = self._enter("deployment_status", deployment_info.id)
        if failed:
            return failed
        env = self._env()
        with env.lock:
            model = env.running.get(deployment_info.id)
        if model is None:
            return ActionStatusInfo(
                ActionStatus.ERROR, msg="Deployment not found", state=DeploymentState.ERRORED
            )
        return ActionStatusInfo(ActionStatus.OK, state=DeploymentState.READY, data={"currentModelId": model})

    def pe_status(self) -> ActionStatusInfo:
        failed = self._enter("pe_status", None)
        if failed:
            return failed
        return ActionStatusInfo(ActionStatus.OK, msg="PE healthy")


def make_settings(tmp_path: Path, **overrides: Any) -> AgentSettings:
    values: dict[str, Any] = {
        "environment_id": "e-1",
        "token": "agent-token-0123456789abcdef",
        "plugin": {"name": "memory"},
        "work_dir": tmp_path / "work",
        "concurrency": 4,
        "retry": {"max_attempts": 3, "initial_delay": 0.05, "max_delay": 0.2},
        "intervals": {
            "feed_wait": 0.5,
            "reconnect_max": 0.3,
            "resync": 300,
            "pe_status": 300,
            "deployment_status": 300,
        },
        "metrics": {"enabled": False},
        "shutdown_grace": 5,
    }
    values.update(overrides)
    return AgentSettings(**values)


class AgentHarness:
    """An agent on a thread, over a FakeService and a MemoryPlugin environment."""

    def __init__(self, tmp_path: Path, service: FakeService, env: Environment, **overrides: Any) -> None:
        self.service = service
        self.env = env
        self.settings = make_settings(tmp_path, **overrides)

        def driver(environment: EnvironmentDescription) -> InProcessDriver:
            def factory(pe_info: Any) -> PluginBase:
                return MemoryPlugin({"environment": env}, None, pe_info, False)

            return InProcessDriver(factory, environment, ["agent-token-0123456789abcdef"])

        self.agent = Agent(self.settings, service, driver)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.exit_code: int | None = None

    def _run(self) -> None:
        self.exit_code = self.agent.run()

    def start(self) -> AgentHarness:
        self.thread.start()
        assert self.agent.started.wait(15), "agent did not start"
        return self

    def stop(self) -> int | None:
        self.agent.stop()
        self.thread.join(20)
        assert not self.thread.is_alive(), "agent did not stop"
        return self.exit_code


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def environment() -> Environment:
    return Environment()


@pytest.fixture
def harness(tmp_path, service, environment):
    made: list[AgentHarness] = []

    def _make(**overrides: Any) -> AgentHarness:
        h = AgentHarness(tmp_path, service, environment, **overrides)
        made.append(h)
        return h

    yield _make
    for h in made:
        if h.thread.is_alive():
            h.stop()


# -- real processes: the service, the agent, packages ------------------------------------------

ADMIN_TOKEN = "admin-token-for-agent-tests-0123456789"
SHIPMATE = [sys.executable, "-c", "from shipmate.cli.main import main; main()"]
"""The ``shipmate`` command, run by this interpreter."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


class LiveService:
    """``shipmate server`` in its own process group, on a free port, with SQLite in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "server.log"

    def start(self) -> LiveService:
        import httpx

        env = {**os.environ, "SHIPMATE_ADMIN_TOKEN": ADMIN_TOKEN}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*SHIPMATE, "server", "--data-dir", str(self.data_dir),
                 "--port", str(self.port), "--log-level", "warning"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

        def up() -> bool:
            try:
                return httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(up, 60), f"service did not start: {self.log.read_text()[-2000:]}"
        return self

    def stop(self) -> None:
        if self.process is not None:
            kill_group(self.process, signal.SIGTERM)
            self.process = None

    def admin(self) -> Any:
        from shipmate.client.client import ShipmateClient

        return ShipmateClient(self.url, ADMIN_TOKEN)


class AgentProcess:
    """``shipmate agent --config F`` in its own process group."""

    def __init__(self, config: Path, token: str, log: Path) -> None:
        self.config = config
        self.token = token
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        env = {**os.environ, "MLOPS_API_TOKEN": self.token}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*SHIPMATE, "agent", "--config", str(self.config)],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return self

    def kill(self) -> None:
        if self.process is not None:
            kill_group(self.process, signal.SIGKILL)
            self.process = None

    def terminate(self, timeout: float = 60) -> int | None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.process)
            code = None
        self.process = None
        return code


@pytest.fixture
def live_service(tmp_path: Path):
    service = LiveService(tmp_path / "service-data").start()
    yield service
    service.stop()


@pytest.fixture
def agent_processes():
    started: list[AgentProcess] = []

    def _make(config: Path, token: str, log: Path) -> AgentProcess:
        process = AgentProcess(config, token, log)
        started.append(process)
        return process

    yield _make
    for process in started:
        process.kill()


def write_agent_config(
    path: Path, service_url: str, environment_id: str, work_dir: Path, plugin: dict[str, Any], **extra: Any
) -> Path:
    import yaml

    config = {
        "serviceUrl": service_url,
        "environmentId": environment_id,
        "plugin": plugin,
        "workDir": str(work_dir),
        "metrics": {"port": 0},
        "retry": {"maxAttempts": 3, "initialDelay": 0.1, "maxDelay": 0.5},
        "intervals": {"reconnectMax": 0.5, "feedWait": 5},
        **extra,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def filesystem_private_config(path: Path, base_dir: Path) -> Path:
    base_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"baseDir: {base_dir}\ndeploymentDirPrefix: deployment_\ndeploymentInfoFile: config.yml\n"
        "deploymentPredictionBaseUrl: http://127.0.0.1:8080\n"
    )
    return path


@pytest.fixture
def e2e() -> Any:
    """The helpers above, for test modules (which cannot import each other or this file)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        wait_until=wait_until,
        write_agent_config=write_agent_config,
        filesystem_private_config=filesystem_private_config,
        free_port=free_port,
        shipmate=SHIPMATE,
        admin_token=ADMIN_TOKEN,
    )


BOSUN_VENV = Path(__file__).resolve().parents[2] / ".cache" / "venv-bosun"


@pytest.fixture(scope="session")
def bosun_runner() -> Path:
    """DataRobot's published ``bosun-plugin-runner`` (datarobot-bosun), in its own virtualenv.

    Built once into .cache/venv-bosun; the tests that need it skip, saying why, when it cannot be built.
    """
    runner = BOSUN_VENV / "bin" / "bosun-plugin-runner"
    if not runner.exists():
        try:
            subprocess.run(
                [sys.executable, "-m", "venv", str(BOSUN_VENV)], check=True, capture_output=True, timeout=300
            )
            subprocess.run(
                [str(BOSUN_VENV / "bin" / "pip"), "install", "-q", "datarobot-bosun"],
                check=True, capture_output=True, timeout=600,
            )  # fmt: skip
        except (subprocess.SubprocessError, OSError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            pytest.skip(f"cannot build a virtualenv with datarobot-bosun: {exc} {detail[-300:]!r}")
    if not runner.exists():
        pytest.skip("datarobot-bosun installed no bosun-plugin-runner")
    return runner
