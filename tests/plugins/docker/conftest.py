"""Fixtures for the Docker plugin's tests: a real engine, locally built images, real packages.

The engine fixture starts ``dockerd`` when none answers (images/scripts/ensure-dockerd.sh),
stops it again when the session ends, and skips the engine tests, saying why, when it
cannot start one. The images fixture runs
``make -C images`` (debootstrap base OS, wheelhouse, runtime, prediction server,
agent, Traefik): every step is cached, so a warm run costs seconds; a cold one a few
minutes. Everything a session creates carries a unique environment id, container
prefix, network and image prefix, and is removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
IMAGES = REPO / "images"
BUILD_TIMEOUT = 900


@dataclass(frozen=True)
class Session:
    """Names unique to this test session, so parallel runs and leftovers never collide."""

    tag: str

    @property
    def environment_id(self) -> str:
        return f"pytest-{self.tag}"

    @property
    def container_prefix(self) -> str:
        return f"t{self.tag}_"

    @property
    def image_prefix(self) -> str:
        return f"shipmate-test-{self.tag}-"

    @property
    def network(self) -> str:
        return f"shipmate-test-{self.tag}"


@pytest.fixture(scope="session")
def session_names() -> Session:
    return Session(uuid.uuid4().hex[:8])


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False)


def _stop_dockerd(pid: int, timeout: float = 60.0) -> None:
    """SIGTERM the dockerd this session started and wait for it (it stops its containerd too)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)
    if Path(f"/proc/{pid}").exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def docker_client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A client of a running engine; starts dockerd if needed (and then stops it when the session
    ends), skips (with the reason) if it cannot."""
    if shutil.which("docker") is None and shutil.which("dockerd") is None:
        pytest.skip(
            "Docker engine tests skipped: neither docker nor dockerd is installed (apt-get install docker.io)"
        )
    pidfile = Path(tmp_path_factory.mktemp("dockerd")) / "dockerd.pid"
    started = subprocess.run(
        ["bash", str(IMAGES / "scripts" / "ensure-dockerd.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
        env={**os.environ, "DOCKERD_PIDFILE": str(pidfile)},
    )
    if pidfile.exists():  # this session started the engine: it stops it when the session ends
        request.addfinalizer(lambda: _stop_dockerd(int(pidfile.read_text())))
    if started.returncode != 0:
        pytest.skip(
            f"Docker engine tests skipped: the engine cannot start here: {started.stderr.strip()[-600:]}"
        )
    import docker

    try:
        client = docker.from_env(version="auto", timeout=120)
        client.ping()
    except Exception as exc:
        pytest.skip(f"Docker engine tests skipped: the engine does not answer: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def built_images(docker_client: Any) -> dict[str, str]:
    """Build (or reuse from cache) the base OS, runtime, prediction server, agent and Traefik images."""
    result = _run(["make", "-C", str(IMAGES), "all"], timeout=BUILD_TIMEOUT)
    if result.returncode != 0:
        pytest.fail(f"make -C images all failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    from shipmate import __version__

    images = {
        "prediction-server": f"shipmate/prediction-server:{__version__}",
        "agent": f"shipmate/agent:{__version__}",
        "traefik": f"shipmate/traefik:{__version__}",
    }
    for reference in images.values():
        docker_client.images.get(reference)  # raises if the build did not produce it
    return images


@pytest.fixture(scope="session")
def engine_cleanup(docker_client: Any, session_names: Session) -> Iterator[None]:
    """At the end of the session remove every container, network and image it created."""
    yield
    label = f"org.shipmate.environment={session_names.environment_id}"
    for container in docker_client.containers.list(all=True, filters={"label": label}):
        with contextlib.suppress(Exception):
            container.remove(force=True)
    for container in docker_client.containers.list(all=True):
        if container.name.startswith(session_names.container_prefix):
            with contextlib.suppress(Exception):
                container.remove(force=True)
    for network in docker_client.networks.list(names=[session_names.network]):
        with contextlib.suppress(Exception):
            network.remove()
    for image in docker_client.images.list():
        if any(tag.startswith(session_names.image_prefix) for tag in image.tags):
            for tag in image.tags:
                with contextlib.suppress(Exception):
                    docker_client.images.remove(tag, force=True)


@pytest.fixture(scope="session")
def plugin_config(session_names: Session) -> dict[str, Any]:
    """The plugin config the engine tests use: isolated names, random proxy port, fast drain."""
    from shipmate import __version__

    return {
        "dockerNetwork": session_names.network,
        "traefikImage": f"shipmate/traefik:{__version__}",
        "ppsBaseImage": f"shipmate/prediction-server:{__version__}",
        "containerNamePrefix": session_names.container_prefix,
        "generatedImagePrefix": session_names.image_prefix,
        "traefikPortMapping": {80: 0},
        "drainSeconds": 0.5,
        "stopTimeoutSeconds": 10,
        "readinessTimeoutSeconds": 120,
        "restartPolicy": "no",
        "predictionServerWorkers": 1,
    }


@pytest.fixture(scope="session")
def make_plugin(
    built_images: dict[str, str], engine_cleanup: None, plugin_config: dict[str, Any], session_names: Session
) -> Callable[..., Any]:
    """Build a DockerPlugin for this session's environment (a new instance = an agent restart)."""
    from shipmate.plugins.docker.plugin import DockerPlugin

    def make(deployments: list[str] | None = None, **overrides: Any) -> DockerPlugin:
        pe_info = {"id": session_names.environment_id, "deployments": deployments or []}
        return DockerPlugin({**plugin_config, **overrides}, pe_info=pe_info)

    return make


@dataclass(frozen=True)
class Packages:
    model_a: Path
    model_b: Path
    broken: Path
    row: dict[str, float]


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    """Two real scikit-learn packages that predict differently, and one that cannot load."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    from shipmate.packages import BuildOptions, build_sklearn_package

    folder = tmp_path_factory.mktemp("packages")
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    paths = []
    for index, coefficient in enumerate((1.0, -5.0)):
        target = coefficient * frame["a"] + 2 * frame["b"] + index * 100
        model = LinearRegression().fit(frame, target)
        path = folder / f"model_{'ab'[index]}.mlpkg"
        build_sklearn_package(
            model,
            frame.head(20),
            path,
            name=f"regression-{'ab'[index]}",
            options=BuildOptions(version=str(index + 1)),
        )
        paths.append(path)
    broken = folder / "model_broken.mlpkg"
    broken.write_bytes(b"this is not a zip archive, so the prediction server cannot load it")
    return Packages(paths[0], paths[1], broken, {"a": 0.5, "b": 1.0, "c": -0.25})


# -- the real service and agent as processes (for self-healing on the real engine) ---------------

SHIPMATE = [sys.executable, "-c", "from shipmate.cli.main import main; main()"]
ADMIN_TOKEN = "admin-token-for-docker-tests-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return True
        time.sleep(interval)
    return False


class Processes:
    """Processes started in their own process group, killed (group and all) at teardown."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(log, "ab") as handle:
            process = subprocess.Popen(
                command,
                env={**os.environ, **env},
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


@pytest.fixture
def processes() -> Iterator[Processes]:
    running = Processes()
    yield running
    running.stop_all()


@pytest.fixture
def live_service(tmp_path: Path, processes: Processes) -> Any:
    """``shipmate server`` on a free port with SQLite; returns (url, admin client)."""
    import httpx

    from shipmate.client.client import ShipmateClient

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [*SHIPMATE, "server", "--data-dir", str(tmp_path / "service"), "--port", str(port)]
    processes.start(command, tmp_path / "server.log", {"SHIPMATE_ADMIN_TOKEN": ADMIN_TOKEN})
    up = wait_until(lambda: httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200, 60)
    assert up, (tmp_path / "server.log").read_text()[-2000:]
    return url, ShipmateClient(url, ADMIN_TOKEN)


@pytest.fixture
def helpers() -> Any:
    """Module-level helpers for test files (which cannot import this conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(shipmate=SHIPMATE, wait_until=wait_until, free_port=free_port)
