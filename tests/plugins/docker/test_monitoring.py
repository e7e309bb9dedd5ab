"""Monitoring in the Docker environment: the decisions (pure), then the whole path on the real engine.

On the engine: with monitoring enabled the plugin starts RabbitMQ (the locally built image, since
``rabbitmqImage``'s documented default cannot be pulled here) and the monitoring agent beside the
proxy; predictions sent through the proxy reach a real ``shipmate server`` as service health.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from shipmate.plugin.actions import Action, invoke
from shipmate.plugin.status import ActionStatus, DeploymentState
from shipmate.plugins.docker.config import parse_config
from shipmate.plugins.docker.engine import EngineError
from shipmate.plugins.docker.monitoring import (
    agent_name,
    agent_on_host_network,
    agent_spec,
    channel,
    prediction_environment,
    rabbitmq_spec,
)

MONITORED = {
    "MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING": True,
    "MLOPS_BOSUN_MONITORING_URL": "https://shipmate.example.com",
    "mlopsApiToken": "smt_token-one",
}


def config(**overrides: Any) -> Any:
    return parse_config({**MONITORED, **overrides}, environment_id="env-1")


def test_prediction_containers_get_both_forms_of_the_same_rabbitmq_settings() -> None:
    from shipmate.monitoring.settings import SpoolerType, parse

    environment = prediction_environment(config())
    assert environment["MLOPS_SPOOLER_TYPE"] == "RABBITMQ"
    assert (
        environment["PREDICTION_API_MONITORING_SETTINGS"]
        == environment["PORTABLE_PREDICTION_API_MONITORING_SETTINGS"]
    )
    # What the prediction server makes of it, by its own parser: the variables alone, and the string alone.
    for variables in (
        {k: v for k, v in environment.items() if k.startswith("MLOPS_")},
        {"PREDICTION_API_MONITORING_SETTINGS": environment["PREDICTION_API_MONITORING_SETTINGS"]},
    ):
        settings = parse({**variables, "PREDICTION_API_MONITORING_ENABLED": "True"})
        assert settings.spooler_type is SpoolerType.RABBITMQ
        assert (settings.rabbitmq_queue_url, settings.rabbitmq_queue_name) == (
            environment["MLOPS_RABBITMQ_QUEUE_URL"],
            "shipmate",
        )
    assert prediction_environment(config(MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING=False)) == {
        "PREDICTION_API_MONITORING_ENABLED": "False"
    }


def test_the_broker_credentials_come_from_the_queue_url_derived_from_the_token() -> None:
    spec = rabbitmq_spec(config(), "shipmate/rabbitmq:test")
    url = urlsplit(channel(config()).url())
    assert (spec["environment"]["RABBITMQ_DEFAULT_USER"], spec["environment"]["RABBITMQ_DEFAULT_PASS"]) == (
        unquote(url.username or ""),
        unquote(url.password or ""),
    )
    assert url.hostname == spec["name"]  # prediction containers reach it by name on dockerNetwork
    assert channel(config()) == channel(config())  # every process of the plugin computes the same one
    assert channel(config()).password != channel(config(mlopsApiToken="smt_token-two")).password
    assert "smt_token-one" not in repr(channel(config())) + channel(config()).url()
    assert spec["ports"] == {"15672/tcp": ("127.0.0.1", 15673), "5672/tcp": ("127.0.0.1", 5673)}


@pytest.mark.parametrize(
    ("url", "host_network"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://localhost:8000", True),
        ("http://[::1]:8000", True),
        ("https://shipmate.example.com", False),
        ("http://10.1.2.3:8000", False),
    ],
)
def test_the_agent_joins_the_hosts_network_only_for_a_service_on_loopback(
    url: str, host_network: bool
) -> None:
    cfg = config(MLOPS_BOSUN_MONITORING_URL=url)
    assert agent_on_host_network(cfg) is host_network
    spec = agent_spec(cfg, "shipmate/monitoring-agent:test", broker_host_port=5673)
    queue_url = spec["environment"]["MLOPS_RABBITMQ_QUEUE_URL"]
    if host_network:
        assert spec["network_mode"] == "host" and "@127.0.0.1:5673/" in queue_url
    else:
        assert spec["network"] == "bosun" and f"@{channel(cfg).host}:5672/" in queue_url
    assert spec["environment"]["MLOPS_API_TOKEN"] == "smt_token-one"


def test_an_agent_on_the_hosts_network_needs_the_amqp_port_published() -> None:
    cfg = config(MLOPS_BOSUN_MONITORING_URL="http://127.0.0.1:8000", rabbitmqPortMapping={15672: 15673})
    with pytest.raises(EngineError, match="add it to rabbitmqPortMapping"):
        agent_spec(cfg, "shipmate/monitoring-agent:test", broker_host_port=None)


# -- on the real engine ----------------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_predictions_through_the_proxy_become_service_health(
    make_plugin: Any, live_service: Any, packages: Any, docker_client: Any, helpers: Any
) -> None:
    url, admin = live_service
    env = admin.create_environment("docker-monitoring", "docker")
    _, secret = admin.create_token(kind="agent", environment_id=env.id)
    package = admin.upload_model_package(packages.model_a)
    deployment = admin.create_deployment(env.id, package.id, name="monitored")
    plugin = make_plugin(
        MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING=True,
        MLOPS_BOSUN_MONITORING_URL=url,
        mlopsApiToken=secret,
        rabbitmqImage="rabbitmq:3-management",  # the documented image: not pullable here
        rabbitmqPortMapping={5672: 0},
    )
    started = invoke(plugin, Action.PLUGIN_START)
    assert started.status is ActionStatus.OK, started.msg
    assert "cannot be pulled" in str(started.msg) and "shipmate/rabbitmq" in str(started.msg)

    raw = {"id": deployment.id, "modelId": package.id, "modelArtifact": str(packages.model_a)}
    result = invoke(plugin, Action.DEPLOYMENT_START, raw)
    assert (result.status, result.state) == (ActionStatus.OK, DeploymentState.READY), result.msg
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    with httpx.Client(timeout=10) as client:
        for _ in range(25):
            assert client.post(result.data["predictionUrl"], json=[packages.row]).status_code == 200

    def predictions() -> int:
        health = admin.service_health(deployment.id, since=since, resolution="minute")
        return int(health.summary.total_predictions)

    agent = docker_client.containers.get(agent_name(plugin.config))
    delivered = helpers.wait_until(lambda: predictions() >= 25, 120, interval=1.0)
    assert delivered, f"service health: {predictions()}; agent log:\n{agent.logs(tail=30).decode()}"
    assert predictions() == 25  # counted once each

    assert invoke(plugin, Action.PE_STATUS).status is ActionStatus.OK
    agent.remove(force=True)
    status = invoke(plugin, Action.PE_STATUS)
    assert status.status is ActionStatus.WARN and "monitoring agent container" in str(status.msg)
    assert "started" in str(invoke(plugin, Action.PLUGIN_START).msg)
    assert invoke(plugin, Action.PE_STATUS).status is ActionStatus.OK


class _StartingBroker:
    """The engine seam as a starting broker shows it: its log, then its state."""

    def __init__(self, logs: list[str], status: str = "running") -> None:
        self.logs, self.status = logs, status

    def logs_tail(self, name: str, lines: int) -> str:
        return self.logs.pop(0) if len(self.logs) > 1 else self.logs[0]

    def get(self, name: str) -> Any:
        from shipmate.plugins.docker.decisions import ContainerView

        return ContainerView(name=name, id="1", status=self.status)


def test_a_new_broker_is_awaited_until_it_accepts_connections() -> None:
    from shipmate.plugins.docker.monitoring import wait_for_broker

    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    booting = ["Starting broker...", "Starting broker...", "... Server startup complete; 3 plugins started."]
    assert wait_for_broker(_StartingBroker(booting), "b", sleep=sleep, clock=lambda: now[0]) is True
    assert now[0] == 1.0
    assert wait_for_broker(_StartingBroker(["booting"]), "b", 5, sleep=sleep, clock=lambda: now[0]) is False
    with pytest.raises(EngineError, match="RabbitMQ container b stopped while starting:\nboom"):
        wait_for_broker(_StartingBroker(["boom"], status="exited"), "b", sleep=sleep, clock=lambda: now[0])
