"""The Docker plugin under engine faults, on the real engine: what breaks, what the plugin
repairs, and what its statuses say meanwhile (docs/docker.md, "Faults").

The proxy and OOM faults run on the shared engine. Faults that need the engine itself
to stop or fill up run against a private ``dockerd`` this test starts (own data-root,
exec-root, socket, no default bridge, no iptables) and stops: the shared engine is
never restarted.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest

from shipmate.plugin.actions import Action, invoke
from shipmate.plugin.status import ActionStatus, DeploymentState
from shipmate.plugins.docker.engine import Engine, EngineError

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(600)]


def info(dep: str, model: str, artifact: Any) -> dict[str, Any]:
    return {"id": dep, "modelId": model, "modelArtifact": str(artifact)}


def test_a_proxy_removed_by_hand_is_recreated_at_the_next_status_with_its_routes(
    make_plugin: Callable[..., Any], packages: Any, docker_client: Any, helpers: Any
) -> None:
    dep = "proxygone1"
    port = helpers.free_port()
    plugin = make_plugin(deployments=[dep], traefikPortMapping={80: port})
    with contextlib.suppress(docker.errors.NotFound):  # an earlier test's proxy: ours publishes `port`
        docker_client.containers.get(plugin.proxy.name).remove(force=True)
    started = invoke(plugin, Action.DEPLOYMENT_START, info(dep, "modelA", packages.model_a))
    assert started.status is ActionStatus.OK, started.msg
    url = started.data["predictionUrl"]
    assert url.startswith(f"http://127.0.0.1:{port}/")

    docker_client.containers.get(plugin.proxy.name).remove(force=True)
    with pytest.raises(httpx.TransportError):
        httpx.post(url, json=[packages.row], timeout=5)

    status = invoke(plugin, Action.PE_STATUS)
    assert status.status is ActionStatus.WARN, status.msg
    assert f"Reverse proxy {plugin.proxy.name} was missing: recreated with 1 route(s)" in str(status.msg)
    assert status.data["deploymentsStatus"][dep]["status"] == "passing"
    assert httpx.post(url, json=[packages.row], timeout=10).status_code == 200  # same URL, routed again
    assert invoke(plugin, Action.PE_STATUS).status is ActionStatus.OK  # repaired: nothing more to say
    assert invoke(plugin, Action.DEPLOYMENT_STOP, info(dep, "modelA", packages.model_a)).ok


def test_an_oom_killed_container_reads_as_such_and_a_relaunch_heals_it(
    make_plugin: Callable[..., Any], packages: Any, docker_client: Any
) -> None:
    dep = "oom1"
    plugin = make_plugin(deployments=[dep])
    started = invoke(plugin, Action.DEPLOYMENT_START, info(dep, "modelA", packages.model_a))
    assert started.status is ActionStatus.OK, started.msg
    container = docker_client.containers.get(started.data["container"])
    # A memory limit a little above what the server uses, then a process in the container
    # that needs more; the server is made the kernel's first choice, as the biggest process
    # in a real out-of-memory kill usually is.
    used = container.stats(stream=False)["memory_stats"]["usage"]
    limit = used + 48 * 2**20
    container.update(mem_limit=limit, memswap_limit=limit)
    hog = (
        "import os\n"
        "for pid in os.listdir('/proc'):\n"
        "    if pid.isdigit() and int(pid) != os.getpid():\n"
        "        try: open(f'/proc/{pid}/oom_score_adj', 'w').write('1000')\n"
        "        except OSError: pass\n"
        "block = b'x' * (256 * 2**20)\n"
    )
    container.exec_run(["python3", "-c", hog], detach=True)

    def oom_killed() -> Any:
        state = docker_client.containers.get(container.id).attrs["State"]
        return state["Status"] == "exited" and state["OOMKilled"]

    deadline = time.monotonic() + 60
    while not oom_killed() and time.monotonic() < deadline:
        time.sleep(0.2)
    status = invoke(plugin, Action.DEPLOYMENT_STATUS, {"id": dep, "modelId": "modelA"})
    assert (status.status, status.state) == (ActionStatus.ERROR, DeploymentState.ERRORED), status.msg
    assert "exited with code 137 (killed: out of memory)" in str(status.msg)
    assert status.data["exitCode"] == 137
    environment = invoke(plugin, Action.PE_STATUS).data["deploymentsStatus"][dep]
    assert "out of memory" in environment["msg"]

    healed = invoke(plugin, Action.DEPLOYMENT_RELAUNCH, info(dep, "modelA", packages.model_a))
    assert (healed.status, healed.state) == (ActionStatus.OK, DeploymentState.READY), healed.msg
    assert httpx.post(healed.data["predictionUrl"], json=[packages.row], timeout=10).status_code == 200
    assert invoke(plugin, Action.DEPLOYMENT_STOP, info(dep, "modelA", packages.model_a)).ok


# -- faults of the engine itself, on a private dockerd -----------------------------------------


class PrivateEngine:
    """A dockerd of this test's own: data-root, exec-root, pidfile, socket and containerd under
    ``root``, its default bridge a bridge of its own (``bridge``, made by the fixture), no
    iptables rules, no sysctl changes. Never ``--bridge=none``: at start that deletes the
    host's ``docker0``, which the shared engine uses."""

    def __init__(self, root: Path, bridge: str, data_root: Path | None = None) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.log = root / "dockerd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.args = [
            "dockerd",
            f"--data-root={data_root or root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--pidfile={root / 'dockerd.pid'}",
            f"--host={self.url}",
            f"--containerd-namespace=shipmate-{root.name}",
            f"--containerd-plugins-namespace=shipmate-{root.name}-plugins",
            f"--bridge={bridge}",
            "--iptables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--log-level=warn",
        ]

    def start(self, timeout: float = 60) -> Any:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                client = docker.DockerClient(base_url=self.url, version="auto", timeout=120)
                if client.ping():
                    return client
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.skip(f"a private dockerd cannot start here: {self.log.read_text()[-800:]}")
            time.sleep(0.3)

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM, as a service manager would stop it (it stops its containers and containerd)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def private_engine(docker_client: Any) -> Iterator[Callable[..., PrivateEngine]]:
    """Makes private engines (with a bridge of their own); stops them and removes everything at the end."""
    if os.geteuid() != 0 or shutil.which("dockerd") is None or shutil.which("ip") is None:
        pytest.skip("a private dockerd needs root, dockerd and ip")
    root = Path(tempfile.mkdtemp(prefix="shmd-", dir="/tmp"))  # short: the socket path has a limit
    bridge = f"shm{root.name[-8:]}".replace("_", "0")[:15]
    engines: list[PrivateEngine] = []
    subnet = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"

    def make(data_root: Path | None = None) -> PrivateEngine:
        if not engines:
            for command in (
                ["ip", "link", "add", bridge, "type", "bridge"],
                ["ip", "addr", "add", f"{subnet}.1/24", "dev", bridge],
                ["ip", "link", "set", bridge, "up"],
            ):
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    pytest.skip(f"cannot make a bridge for a private dockerd: {done.stderr.strip()}")
        engines.append(PrivateEngine(root, bridge, data_root))
        return engines[-1]

    yield make
    for engine in engines:
        engine.stop()
    subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False)
    subprocess.run(["umount", "-l", str(root / "data")], capture_output=True, check=False)
    shutil.rmtree(root, ignore_errors=True)


def test_a_full_disk_while_building_an_image_fails_clearly_and_leaves_nothing_tagged(
    private_engine: Callable[..., PrivateEngine], tmp_path: Path
) -> None:
    engine = private_engine()
    data = engine.root / "data"
    data.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(data)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    client = engine.start()
    try:
        # A base image without layers (building FROM it runs nothing) and a package larger than the disk.
        client.images.build(fileobj=io.BytesIO(b"FROM scratch\nLABEL org.shipmate.test=tiny\n"), tag="tiny:1")
        package = tmp_path / "big.mlpkg"
        package.write_bytes(os.urandom(64 * 2**20))
        # The seam every rollout builds through (a whole deployment_start would first need the
        # proxy image, which does not fit on this disk).
        seam = Engine(base_url=engine.url)
        with pytest.raises(EngineError) as failed:
            seam.build_model_image("full-disk-model:1", "tiny:1", package, "big.mlpkg", {"a": "b"})
        seam.close()
        assert "building image full-disk-model:1" in str(failed.value)
        assert "no space left on device" in str(failed.value)
        assert "the engine's disk is full: free space where its data-root lives" in str(failed.value)
        tags = [tag for image in client.images.list(all=True) for tag in image.tags]
        assert tags == ["tiny:1"], tags  # no model image, not even a dangling layer
        assert client.images.list(filters={"dangling": True}) == []
    finally:
        client.close()
        engine.stop()
