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


@pytest.mark.skipif(
    os.environ.get("SHIPMATE_FAULTS_DOCKERD") != "1",
    reason="copies the images into a private dockerd (about 2 minutes): scripts/faults.sh runs it",
)
def test_the_engine_restarted_under_a_running_environment(
    private_engine: Callable[..., PrivateEngine],
    make_plugin: Callable[..., Any],
    built_images: dict[str, str],
    packages: Any,
    monkeypatch: pytest.MonkeyPatch,
    helpers: Any,
) -> None:
    """dockerd stopped (SIGTERM) and started again: Docker brings back what its restart policy
    says, the agent relaunches the rest, the proxy routes again; statuses say what happened."""
    engine = private_engine()
    client = engine.start()
    began = time.monotonic()
    copied = subprocess.run(
        f"docker save {built_images['prediction-server']} {built_images['traefik']}"
        f" | docker -H {engine.url} load -q",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
    )
    assert copied.returncode == 0, copied.stderr
    copy_seconds = time.monotonic() - began
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    port = helpers.free_port()
    # Bridged traffic between this engine's containers (proxy → prediction server) passes the
    # host's FORWARD chain; the shared engine's policy there is DROP, and this engine adds no rules.
    network = make_plugin().config.docker_network
    bridge_name = f"shn{os.getpid() % 10**8}"
    client.networks.create(network, driver="bridge", options={"com.docker.network.bridge.name": bridge_name})
    rule = ["DOCKER-USER", "-i", bridge_name, "-o", bridge_name, "-j", "ACCEPT"]
    if subprocess.run(["iptables", "-I", *rule], capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot let this engine's containers talk through iptables here")
    try:
        deps = ["kept1", "relaunched1"]
        policy = {"kept1": "unless-stopped", "relaunched1": "no"}  # Docker restarts one, the agent the other

        def plugin_for(dep: str) -> Any:
            return make_plugin(deployments=deps, traefikPortMapping={80: port}, restartPolicy=policy[dep])

        urls = {}
        for dep in deps:
            started = invoke(plugin_for(dep), Action.DEPLOYMENT_START, info(dep, "modelA", packages.model_a))
            assert started.status is ActionStatus.OK, started.msg
            urls[dep] = started.data["predictionUrl"]
            assert httpx.post(urls[dep], json=[packages.row], timeout=10).status_code == 200

        engine.stop()
        down = invoke(plugin_for("kept1"), Action.PE_STATUS)
        assert down.status is ActionStatus.ERROR and "Docker engine is not reachable" in str(down.msg)
        status = invoke(plugin_for("kept1"), Action.DEPLOYMENT_STATUS, {"id": "kept1", "modelId": "modelA"})
        assert (status.status, status.state) == (ActionStatus.ERROR, DeploymentState.UNKNOWN)
        assert "Docker engine error" in str(status.msg)

        restarted_at = time.monotonic()
        client = engine.start()
        routed_again = helpers.wait_until(
            lambda: httpx.post(urls["kept1"], json=[packages.row], timeout=5).status_code == 200, 90
        )
        assert routed_again, engine.log.read_text()[-2000:]
        back_seconds = time.monotonic() - restarted_at

        plugin = plugin_for("kept1")
        environment = invoke(plugin, Action.PE_STATUS)
        assert environment.status is ActionStatus.OK, environment.msg
        kept = environment.data["deploymentsStatus"]["kept1"]
        assert kept["status"] == "passing" and "it stopped at" in kept["msg"], kept
        relaunch = environment.data["deploymentsStatus"]["relaunched1"]
        assert relaunch["status"] == "failing" and "exited with code" in relaunch["msg"], relaunch
        # What the agent does on a failing deployment status: relaunch it.
        healed = invoke(
            plugin_for("relaunched1"),
            Action.DEPLOYMENT_RELAUNCH,
            info("relaunched1", "modelA", packages.model_a),
        )
        assert (healed.status, healed.state) == (ActionStatus.OK, DeploymentState.READY), healed.msg
        assert httpx.post(urls["relaunched1"], json=[packages.row], timeout=10).status_code == 200
        print(
            f"\nFAULT-FIGURES dockerd restart: images copied in {copy_seconds:.1f} s; "
            f"routing again {back_seconds:.1f} s after the engine started"
        )
    finally:
        subprocess.run(["iptables", "-D", *rule], capture_output=True, check=False)
        with contextlib.suppress(Exception):
            for container in client.containers.list(all=True):
                container.remove(force=True)
        client.close()
        engine.stop()  # an engine leaves its networks' bridges behind when it stops
        subprocess.run(["ip", "link", "delete", bridge_name], capture_output=True, check=False)
