"""The Docker plugin under engine faults, on the real engine: what breaks, what the plugin
repairs, and what its statuses say meanwhile (docs/docker.md, "Faults").

The proxy and OOM faults run on the shared engine. Faults that need the engine itself
to stop or fill up run against a private ``dockerd`` this test starts (own data-root,
exec-root, socket, no default bridge, no iptables) and stops: the shared engine is
never restarted.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import docker.errors
import httpx
import pytest

from shipmate.plugin.actions import Action, invoke
from shipmate.plugin.status import ActionStatus, DeploymentState

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
