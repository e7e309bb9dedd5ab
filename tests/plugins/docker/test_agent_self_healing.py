"""The real service, the real ``shipmate agent`` and the Docker plugin on the real engine.

A deployment created in the service comes up as a container behind the proxy;
when its container is killed from outside, the agent notices (status checks)
and relaunches it, and predictions through the same URL work again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

# The first engine test builds the images: minutes on a cold cache (see docs/docker.md).
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]


def test_a_container_killed_from_outside_is_relaunched_by_the_agent(
    tmp_path: Path,
    make_plugin: Any,
    plugin_config: dict[str, Any],
    live_service: Any,
    processes: Any,
    packages: Any,
    docker_client: Any,
    helpers: Any,
) -> None:
    wait_until = helpers.wait_until
    url, admin = live_service
    env = admin.create_environment("docker-selfheal", "docker")
    _, secret = admin.create_token(kind="agent", environment_id=env.id)
    package = admin.upload_model_package(packages.model_a)
    private = tmp_path / "plugin.docker.conf.yaml"
    private.write_text(yaml.safe_dump(plugin_config))
    agent_config = tmp_path / "agent.yaml"
    agent_config.write_text(
        yaml.safe_dump(
            {
                "serviceUrl": url,
                "environmentId": env.id,
                "plugin": {"name": "docker", "privateConfig": str(private)},
                "workDir": str(tmp_path / "work"),
                "metrics": {"port": 0},
                "retry": {"maxAttempts": 3, "initialDelay": 0.2, "maxDelay": 1},
                "intervals": {"feedWait": 2, "reconnectMax": 0.5, "peStatus": 2, "deploymentStatus": 2},
            }
        )
    )
    log = tmp_path / "agent.log"
    processes.start(
        [*helpers.shipmate, "agent", "--config", str(agent_config)], log, {"MLOPS_API_TOKEN": secret}
    )

    deployment = admin.create_deployment(env.id, package.id, name="self-healing")
    ready = wait_until(lambda: admin.get_deployment(deployment.id).observed.state == "ready", 180)
    assert ready, log.read_text()[-3000:]
    prediction_url = admin.get_deployment(deployment.id).observed.prediction_url
    assert prediction_url and prediction_url.endswith(f"/{deployment.id}/predict")
    assert httpx.post(prediction_url, json=[packages.row], timeout=10).status_code == 200

    label = f"org.shipmate.deployment-id={deployment.id}"
    (container,) = docker_client.containers.list(filters={"label": label})
    container.kill()

    def relaunched() -> bool:
        running = docker_client.containers.list(filters={"label": label, "status": "running"})
        if not running or running[0].id == container.id:
            return False
        return httpx.post(prediction_url, json=[packages.row], timeout=5).status_code == 200

    assert wait_until(relaunched, 180), log.read_text()[-3000:]
    assert wait_until(lambda: admin.get_deployment(deployment.id).observed.state == "ready", 60)

    admin.delete(deployment.id)
    gone = wait_until(lambda: not docker_client.containers.list(all=True, filters={"label": label}), 120)
    assert gone, log.read_text()[-3000:]
