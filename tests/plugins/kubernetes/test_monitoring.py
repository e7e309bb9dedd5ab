"""Monitoring in Kubernetes: the tracking-agent sidecar rendered, validated, and wired by the chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from shipmate.plugin.errors import ConfigError
from shipmate.plugin.info import DeploymentInfo
from shipmate.plugins.kubernetes.manifests import render_deployment_objects
from shipmate.plugins.kubernetes.monitoring import SIDECAR_SPOOLER_SETTINGS
from shipmate.plugins.kubernetes.settings import KubernetesSettings, parse_settings

CHART = Path(__file__).parents[3] / "charts" / "shipmate"
BASE = {
    "outfacingPredictionURLPrefix": "https://models.example.com/deployments/",
    "ppsBaseImage": "registry.example.com/shipmate/prediction-server:0.1.0",
    "generatedImageRepo": "registry.example.com/mlops/frozen-models",
}
SIDECAR = {
    "MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING": True,
    "MLOPS_BOSUN_MONITORING_URL": "https://shipmate.example.com",
    "agentImage": "registry.example.com/shipmate/monitoring-agent:0.1.0",
    "agentApiSecretName": "mlops-api-key",
}


def _schema_versions() -> tuple[str, str]:
    from kubernetes_validate.utils import all_versions

    shipped = sorted(set(all_versions()), key=lambda v: tuple(int(p) for p in v.split(".")))
    supported = [v for v in shipped if tuple(int(p) for p in v.split(".")[:2]) >= (1, 21)]
    return supported[0], supported[-1]


SCHEMA_VERSIONS = _schema_versions()


def settings(**overrides: Any) -> KubernetesSettings:
    return parse_settings({**BASE, **overrides}, environment_id="env-1")


def info(**fields: Any) -> DeploymentInfo:
    return DeploymentInfo.from_dict({"id": "dep-1", "modelId": "model-a", **fields})


def pod_of(deployment: dict[str, Any]) -> dict[str, Any]:
    for version in SCHEMA_VERSIONS:
        kubernetes_validate.validate(deployment, version, strict=True)
    return dict(deployment["spec"]["template"]["spec"])


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_sidecar_shares_a_filesystem_spool_with_the_prediction_server() -> None:
    pod = pod_of(render_deployment_objects(settings(**SIDECAR), info()).deployment)
    server, agent = pod["containers"]
    assert agent["name"] == "tracking-agent" and agent["image"] == SIDECAR["agentImage"]
    spool = {"name": "tracking-data", "mountPath": "/tmp/ta"}
    assert spool in server["volumeMounts"] and agent["volumeMounts"] == [spool]
    assert {"name": "tracking-data", "emptyDir": {}} in pod["volumes"]
    assert env_of(server)["PREDICTION_API_MONITORING_SETTINGS"] == SIDECAR_SPOOLER_SETTINGS
    assert "directory=/tmp/ta" in SIDECAR_SPOOLER_SETTINGS
    assert env_of(server)["MLOPS_DEPLOYMENT_ID"] == "dep-1" and env_of(server)["MLOPS_MODEL_ID"] == "model-a"
    agent_env = env_of(agent)
    assert agent_env["MLOPS_API_TOKEN"] == {"secretKeyRef": {"name": "mlops-api-key", "key": "secret"}}
    assert agent_env["MLOPS_SERVICE_URL"] == "https://shipmate.example.com"
    assert (agent_env["MLOPS_SPOOLER_TYPE"], agent_env["MLOPS_FILESYSTEM_DIRECTORY"]) == (
        "FILESYSTEM",
        "/tmp/ta",
    )
    # Monitoring must never take a pod out of its Service: a liveness probe only.
    assert "readinessProbe" not in agent and agent["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert agent["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_agent_reads_the_variables_the_sidecar_is_given() -> None:
    """The sidecar's variables, read by the real agent's loader (the secret resolved as the kubelet would)."""
    from shipmate.monitoring.agent.config import FilesystemChannel, from_environment

    pod = pod_of(render_deployment_objects(settings(**SIDECAR), info()).deployment)
    environ = {k: v for k, v in env_of(pod["containers"][1]).items() if isinstance(v, str)}
    config = from_environment({**environ, "MLOPS_API_TOKEN": "smt_sidecar-token"})
    assert config.channels == (FilesystemChannel("filesystem", Path("/tmp/ta")),)
    assert (config.mlops_url, config.server_mode, config.server_port) == (
        "https://shipmate.example.com",
        True,
        8123,
    )


def test_without_the_sidecar_the_configured_channel_is_passed_on() -> None:
    channel = "spooler_type=RABBITMQ;queue_url=amqp://u:p@rabbit:5672/%2F;queue_name=monitoring"
    overrides = {**SIDECAR, "agentSidecar": False, "spoolerSettings": channel}
    pod = pod_of(render_deployment_objects(settings(**overrides), info()).deployment)
    (server,) = pod["containers"]
    assert env_of(server)["PREDICTION_API_MONITORING_SETTINGS"] == channel
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]


def test_monitoring_off_renders_no_sidecar_and_custom_models_get_drums_names() -> None:
    pod = pod_of(render_deployment_objects(settings(), info()).deployment)
    assert len(pod["containers"]) == 1 and "PREDICTION_API_MONITORING_SETTINGS" not in env_of(
        pod["containers"][0]
    )
    pod = pod_of(
        render_deployment_objects(
            settings(**SIDECAR, agentResources={"limits": {"memory": "128Mi"}}),
            info(modelExecutionType="custom_inference_model"),
        ).deployment
    )
    server, agent = pod["containers"]
    assert env_of(server)["MONITOR_SETTINGS"] == SIDECAR_SPOOLER_SETTINGS
    assert agent["resources"] == {"limits": {"memory": "128Mi"}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"agentImage": None}, "'agentImage': is required when monitoring runs as a sidecar"),
        ({"MLOPS_BOSUN_MONITORING_URL": None}, "'MLOPS_BOSUN_MONITORING_URL': is required"),
        ({"agentApiSecretName": None}, "'agentApiSecretName': is required"),
        ({"agentSidecar": False}, "'spoolerSettings': is required when monitoring is enabled without"),
        ({"agentSidecar": "sometimes"}, "'agentSidecar': expected true or false"),
        ({"agentResources": "lots"}, "'agentResources': expected a mapping"),
    ],
)
def test_missing_or_wrong_monitoring_keys_are_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(**{**SIDECAR, **change})


def _chart_plugin_config(values: dict[str, Any]) -> dict[str, Any]:
    import helm_python as helm

    rendered = helm.Chart.load(str(CHART)).render(
        values, name="shipmate", namespace="shipmate", is_install=True
    )
    for path, text in rendered.items():
        for doc in yaml.safe_load_all(text) if path.endswith(".yaml") else ():
            if doc and doc["kind"] == "ConfigMap":
                return dict(yaml.safe_load(doc["data"]["plugin.k8s.conf.yaml"]))
    raise AssertionError("the chart rendered no ConfigMap")


CHART_MINIMUM = {
    "shipmate": {"serviceUrl": "https://shipmate.example.com"},
    "predictionServer": {
        "ingressClassName": "mlops",
        "outfacingUrlRoot": "http://your-company.com/deployments/",
    },
    "datarobot": {"apiSecretName": "mlops-api-key", "predictionEnvId": "env-123"},
    "managementAgent": {"repository": "registry.your-company.com/shipmate/agent"},
    "trackingAgent": {"image": "registry.your-company.com/shipmate/monitoring-agent:0.1.0"},
    "imageBuilder": {
        "ppsImage": "registry.your-company.com/shipmate/prediction-server:0.1.0",
        "generatedImageRepository": "registry.your-company.com/mlops/frozen-models",
    },
}


def test_the_charts_tracking_agent_image_wires_a_sidecar_with_the_charts_secret() -> None:
    config = _chart_plugin_config(CHART_MINIMUM)
    pod = pod_of(
        render_deployment_objects(parse_settings(config, environment_id="env-123"), info()).deployment
    )
    agent = pod["containers"][1]
    assert agent["image"] == "registry.your-company.com/shipmate/monitoring-agent:0.1.0"
    assert env_of(agent)["MLOPS_API_TOKEN"] == {"secretKeyRef": {"name": "mlops-api-key", "key": "secret"}}
    assert env_of(agent)["MLOPS_SERVICE_URL"] == "https://shipmate.example.com"
    assert agent["resources"]["limits"] == {"memory": "256Mi"}

    off = {**CHART_MINIMUM, "trackingAgent": {**CHART_MINIMUM["trackingAgent"], "enabled": False}}
    config = _chart_plugin_config(off)
    assert not parse_settings(config, environment_id="env-123").monitoring.enabled
