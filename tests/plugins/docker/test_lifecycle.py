"""The Docker plugin on a real engine, with the real prediction server image and real model packages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from shipmate.plugin.actions import Action, invoke
from shipmate.plugin.status import ActionStatus, DeploymentState

# The first engine test builds the images: minutes on a cold cache (see docs/docker.md).
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]
REPLACEMENTS = 11  # odd: model B serves at the end, as the steps below expect
"""Model replacements under a steady stream of requests, each one counted (docs/docker.md has the figures)."""


def predict(client: httpx.Client, url: str, row: dict[str, float]) -> float:
    response = client.post(url, json=[row])
    response.raise_for_status()
    return float(response.json()["data"][0]["prediction"])


def info(dep: str, model: str, artifact: Any, new_model: str | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {"id": dep, "modelId": model, "modelArtifact": str(artifact), "name": f"{dep} name"}
    if new_model:
        raw["newModelId"] = new_model
    return raw


def test_images_run_non_root_and_with_a_read_only_root(
    built_images: dict[str, str], docker_client: Any
) -> None:
    for role in ("prediction-server", "agent"):
        image = docker_client.images.get(built_images[role])
        assert image.attrs["Config"]["User"] == "10001", role
    output = docker_client.containers.run(
        built_images["agent"], ["agent", "--help"], read_only=True, tmpfs={"/tmp": ""}, remove=True
    )
    assert b"agent" in output.lower()
    entrypoint = docker_client.images.get(built_images["prediction-server"]).attrs["Config"]["Entrypoint"]
    assert entrypoint[-1] == "/usr/local/bin/shipmate-serve-model"


def test_full_lifecycle(make_plugin: Callable[..., Any], packages: Any, docker_client: Any) -> None:
    dep = "lifecycle1"
    plugin = make_plugin()
    started = invoke(plugin, Action.PLUGIN_START)
    assert started.status is ActionStatus.OK, started.msg
    assert "reverse proxy" in str(started.msg)

    result = invoke(plugin, Action.DEPLOYMENT_START, info(dep, "modelA", packages.model_a))
    assert (result.status, result.state) == (ActionStatus.OK, DeploymentState.READY), result.msg
    url = result.data["predictionUrl"]
    assert url.endswith(f"/{dep}/predict") and url.startswith("http://127.0.0.1:")
    container = docker_client.containers.get(result.data["container"])
    assert container.name == f"{plugin.config.container_name_prefix}{dep}_modelA"
    assert container.attrs["HostConfig"]["ReadonlyRootfs"] is True
    assert container.attrs["Config"]["User"] == "10001"
    proxy_base = url.rsplit(f"/{dep}/", 1)[0]
    with httpx.Client(timeout=10) as client:
        via_proxy = predict(client, url, packages.row)
        assert predict(client, f"{proxy_base}/deployments/{dep}/predictions", packages.row) == via_proxy
        assert client.get(f"{proxy_base}/{dep}/ping").status_code == 200
        assert client.get(f"{proxy_base}/nobody/ping").status_code == 404
        direct_port = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]
        assert direct_port["HostIp"] == "127.0.0.1"
        assert (
            predict(client, f"http://127.0.0.1:{direct_port['HostPort']}/predictions", packages.row)
            == via_proxy
        )

    again = invoke(plugin, Action.DEPLOYMENT_START, info(dep, "modelA", packages.model_a))
    assert again.status is ActionStatus.OK and "already running" in str(again.msg)
    assert again.data["container"] == container.name

    # A new plugin instance is what the agent has after a restart: labels are enough.
    restarted = make_plugin(deployments=[dep, "never-deployed"])
    listed = invoke(restarted, Action.DEPLOYMENT_LIST)
    assert listed.status is ActionStatus.OK
    entry = listed.data[dep]
    assert entry["state"] == "ready"
    assert entry["data"]["currentModelId"] == "modelA"
    assert entry["data"]["predictionUrl"] == url
    assert entry["data"]["name"] == f"{dep} name"
    env = invoke(restarted, Action.PE_STATUS)
    assert env.status is ActionStatus.OK, env.msg
    statuses = env.data["deploymentsStatus"]
    assert statuses[dep]["status"] == "passing"
    assert statuses["never-deployed"]["status"] == "failing"

    # Zero-downtime replacements under a steady stream of requests through the proxy: every
    # failure counts, nothing is retried.
    answers: list[float] = []
    failures: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    answers.append(predict(client, url, packages.row))
                except Exception as exc:
                    failures.append(repr(exc))

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    models = [("modelA", packages.model_a), ("modelB", packages.model_b)]
    replacements = []
    try:
        time.sleep(0.5)
        for round_ in range(REPLACEMENTS):
            (old, _), (new, artifact) = models[round_ % 2], models[(round_ + 1) % 2]
            replacements.append(
                invoke(restarted, Action.DEPLOYMENT_REPLACE_MODEL, info(dep, old, artifact, new))
            )
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=30)
    for replaced in replacements:
        assert (replaced.status, replaced.state) == (ActionStatus.OK, DeploymentState.READY), replaced.msg
    assert replacements[-1].data["currentModelId"] == "modelB"
    assert failures == []
    assert answers[0] == pytest.approx(via_proxy)
    assert answers[-1] != pytest.approx(via_proxy)  # model B predicts differently
    assert len(answers) > 10
    assert not [c for c in docker_client.containers.list(all=True) if c.name == container.name]

    # A model that cannot start leaves the old one serving.
    failed = invoke(
        restarted, Action.DEPLOYMENT_REPLACE_MODEL, info(dep, "modelB", packages.broken, "modelC")
    )
    assert (failed.status, failed.state) == (ActionStatus.ERROR, DeploymentState.ERRORED)
    assert failed.data["oldModelInUse"] is True
    assert "Failed to replace model" in str(failed.msg) and "could not load the model" in str(failed.msg)
    with httpx.Client(timeout=10) as client:
        assert predict(client, url, packages.row) == pytest.approx(answers[-1])
    status = invoke(restarted, Action.DEPLOYMENT_STATUS, {"id": dep, "modelId": "modelB"})
    assert status.status is ActionStatus.OK and status.data["currentModelId"] == "modelB"

    stopped = invoke(restarted, Action.DEPLOYMENT_STOP, {"id": dep, "modelId": "modelB"})
    assert (stopped.status, stopped.state) == (ActionStatus.OK, DeploymentState.STOPPED), stopped.msg
    with httpx.Client(timeout=10) as client:
        assert client.post(url, json=[packages.row]).status_code == 404
    label = f"org.shipmate.deployment-id={dep}"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
    unknown = invoke(restarted, Action.DEPLOYMENT_STOP, {"id": dep, "modelId": "modelB"})
    assert unknown.status is ActionStatus.OK and "nothing to stop" in str(unknown.msg)


def test_a_package_that_cannot_load_fails_with_its_exit_code_and_log(
    make_plugin: Callable[..., Any], packages: Any, docker_client: Any
) -> None:
    plugin = make_plugin()
    result = invoke(plugin, Action.DEPLOYMENT_START, info("broken1", "modelX", packages.broken))
    assert (result.status, result.state) == (ActionStatus.ERROR, DeploymentState.ERRORED)
    assert "did not start" in str(result.msg) and "could not load the model" in str(result.msg)
    assert "Last lines of its log" in str(result.msg)
    assert (
        docker_client.containers.list(all=True, filters={"label": "org.shipmate.deployment-id=broken1"}) == []
    )


def test_a_container_killed_from_outside_reads_as_exited_and_a_relaunch_heals_it(
    make_plugin: Callable[..., Any], packages: Any, docker_client: Any
) -> None:
    dep = "killed1"
    plugin = make_plugin()
    started = invoke(plugin, Action.DEPLOYMENT_START, info(dep, "modelA", packages.model_a))
    assert started.status is ActionStatus.OK, started.msg
    docker_client.containers.get(started.data["container"]).kill()
    deadline = time.monotonic() + 30
    status = invoke(plugin, Action.DEPLOYMENT_STATUS, {"id": dep, "modelId": "modelA"})
    while status.data.get("containerStatus") == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
        status = invoke(plugin, Action.DEPLOYMENT_STATUS, {"id": dep, "modelId": "modelA"})
    assert (status.status, status.state) == (ActionStatus.ERROR, DeploymentState.ERRORED)
    assert status.data["containerStatus"] == "exited"
    assert status.data["exitCode"] == 137
    assert "exited with code 137" in str(status.msg)

    healed = invoke(plugin, Action.DEPLOYMENT_RELAUNCH, info(dep, "modelA", packages.model_a))
    assert (healed.status, healed.state) == (ActionStatus.OK, DeploymentState.READY), healed.msg
    with httpx.Client(timeout=10) as client:
        predict(client, healed.data["predictionUrl"], packages.row)
    assert invoke(plugin, Action.DEPLOYMENT_STOP, {"id": dep, "modelId": "modelA"}).status is ActionStatus.OK


def test_a_port_already_taken_fails_clearly_and_leaves_nothing_behind(
    make_plugin: Callable[..., Any], packages: Any, docker_client: Any, helpers: Any
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        raw = {**info("porttaken1", "modelA", packages.model_a), "keyValueConfig": {"port": port}}
        result = invoke(make_plugin(), Action.DEPLOYMENT_START, raw)
    assert (result.status, result.state) == (ActionStatus.ERROR, DeploymentState.ERRORED)
    assert "starting container" in str(result.msg) and str(port) in str(result.msg)
    label = "org.shipmate.deployment-id=porttaken1"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
