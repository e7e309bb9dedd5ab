"""The Helm chart, linted and rendered by a real Helm (Helm v4's Go library through helm-python-sdk).

Every example renders, every rendered object validates against the Kubernetes
OpenAPI schemas of the oldest and newest versions kubernetes-validate ships, and
what the chart gives the agent and the plugin is read back by their real code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import helm_python as helm  # a real Helm: Helm v4's Go library through its C ABI, no binary
import kubernetes_validate
import pytest
import yaml

from shipmate.plugins.kubernetes.cluster import REQUIRED_PERMISSIONS
from shipmate.plugins.kubernetes.settings import IngressType, parse_settings

HERE = Path(__file__).parent
CHART = HERE.parents[2] / "charts" / "shipmate"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))


def _schema_versions() -> tuple[str, str]:
    """The oldest (at least 1.21) and newest Kubernetes schemas kubernetes-validate ships."""
    from kubernetes_validate.utils import all_versions

    shipped = sorted({v for v in all_versions()}, key=lambda v: tuple(int(p) for p in v.split(".")))
    supported = [v for v in shipped if tuple(int(p) for p in v.split(".")[:2]) >= (1, 21)]
    return supported[0], supported[-1]


SCHEMA_VERSIONS = _schema_versions()

MINIMUM = {
    "shipmate": {"serviceUrl": "https://shipmate.example.com"},
    "predictionServer": {
        "ingressClassName": "mlops",
        "outfacingUrlRoot": "http://your-company.com/deployments/",
    },
    "datarobot": {"apiSecretName": "mlops-api-key", "predictionEnvId": "env-123"},
    "managementAgent": {"repository": "registry.your-company.com/shipmate/agent"},
    "trackingAgent": {"image": "registry.your-company.com/shipmate/tracking-agent:0.1.0"},
    "imageBuilder": {
        "ppsImage": "registry.your-company.com/shipmate/prediction-server:0.1.0",
        "generatedImageRepository": "registry.your-company.com/mlops/frozen-models",
    },
}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if nested else value
    return out


def render(values: dict[str, Any], namespace: str = "shipmate") -> list[dict[str, Any]]:
    chart = helm.Chart.load(str(CHART))
    manifests = chart.render(values, name="shipmate", namespace=namespace, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".yaml"):
            objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def config_files(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    (configmap,) = by_kind(objects, "ConfigMap")
    data = configmap["data"]
    return yaml.safe_load(data["agent.yaml"]), yaml.safe_load(data["plugin.k8s.conf.yaml"])


def test_helm_lint_passes_strict() -> None:
    for kube_version in ("v1.20.0", "v1.37.0"):
        report = helm.lint(str(CHART), MINIMUM, strict=True, kube_version=kube_version)
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert problems == [], problems


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_renders_valid_objects(example: Path) -> None:
    objects = render(yaml.safe_load(example.read_text()))
    assert {o["kind"] for o in objects} >= {"ConfigMap", "Deployment", "Role", "RoleBinding"}
    for obj in objects:
        for version in SCHEMA_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_plugin_accepts_the_config_every_example_renders(example: Path) -> None:
    agent, plugin = config_files(render(yaml.safe_load(example.read_text())))
    settings = parse_settings(plugin, environment_id=agent["environmentId"], source=example.name)
    assert settings.kube_config_context == "IN_CLUSTER" and settings.kube_namespace == "shipmate"
    assert agent["plugin"] == {"name": "kubernetes", "privateConfig": "/etc/shipmate/plugin.k8s.conf.yaml"}


def test_the_documented_values_reach_the_plugin_and_the_agent() -> None:
    objects = render(MINIMUM)
    agent, plugin = config_files(objects)
    assert agent["serviceUrl"] == "https://shipmate.example.com"
    assert agent["environmentId"] == "env-123"
    settings = parse_settings(plugin)
    assert settings.outfacing_prediction_url_prefix == "http://your-company.com/deployments"
    assert settings.prediction_url("d1") == "http://your-company.com/deployments/d1/predictions"
    assert settings.ingress_class == "mlops" and settings.ingress_type is IngressType.NGINX
    assert settings.pps_base_image == "registry.your-company.com/shipmate/prediction-server:0.1.0"
    assert settings.generated_image_repo == "registry.your-company.com/mlops/frozen-models"
    assert settings.monitoring.agent_image == "registry.your-company.com/shipmate/tracking-agent:0.1.0"
    assert settings.kaniko_service_account == "shipmate-image-builder"
    (deployment,) = by_kind(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.your-company.com/shipmate/agent:0.1.0"


def test_image_builder_values_reach_kaniko() -> None:
    values = _merge(
        MINIMUM,
        {
            "imageBuilder": {
                "secretName": "registry-creds",
                "insecureRegistries": ["registry.local:5000"],
                "skipSslVerifyRegistries": ["registry.internal"],
                "extraArguments": ["--registry-certificate=r=/certs/ca.crt"],
                "extraVolumes": [{"name": "cacert", "configMap": {"name": "ca"}}],
                "extraVolumeMounts": [{"name": "cacert", "mountPath": "/certs"}],
                "serviceAccount": {"create": False, "name": "builder"},
            }
        },
    )
    _, plugin = config_files(render(values))
    settings = parse_settings(plugin)
    assert settings.kaniko_secret_name == "registry-creds" and settings.kaniko_configmap_name is None
    assert settings.kaniko_insecure_registries == ("registry.local:5000",)
    assert settings.kaniko_skip_ssl_verify_registries == ("registry.internal",)
    assert settings.kaniko_extra_arguments == ("--registry-certificate=r=/certs/ca.crt",)
    assert settings.kaniko_extra_volumes[0]["name"] == "cacert"
    assert settings.kaniko_service_account == "builder"


def test_placement_values_reach_the_plugin() -> None:
    values = _merge(
        MINIMUM,
        {
            "predictionServer": {
                "nodeSelector": {"pool": "models"},
                "extraEnv": [{"name": "PREDICTION_API_WORKERS", "value": "2"}],
            },
            "imageBuilder": {"tolerations": [{"key": "builds", "operator": "Exists"}]},
        },
    )
    _, plugin = config_files(render(values))
    settings = parse_settings(plugin)
    assert settings.pps_node_selector == {"pool": "models"}
    assert settings.pps_extra_environment == ({"name": "PREDICTION_API_WORKERS", "value": "2"},)
    assert settings.kaniko_tolerations == ({"key": "builds", "operator": "Exists"},)


def test_shipmate_aliases_win_over_the_documented_names() -> None:
    values = _merge(MINIMUM, {"shipmate": {"environmentId": "env-own", "apiSecretName": "shipmate-token"}})
    objects = render(values)
    agent, _ = config_files(objects)
    assert agent["environmentId"] == "env-own"
    (deployment,) = by_kind(objects, "Deployment")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0]["valueFrom"]["secretKeyRef"]["name"] == "shipmate-token"


def test_the_token_comes_only_from_the_secret() -> None:
    objects = render(MINIMUM)
    (deployment,) = by_kind(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    token = next(e for e in container["env"] if e["name"] == "MLOPS_API_TOKEN")
    assert token["valueFrom"] == {"secretKeyRef": {"name": "mlops-api-key", "key": "secret"}}
    assert by_kind(objects, "Secret") == []
    agent, plugin = config_files(objects)
    assert not {"token", "apiToken", "mlopsApiToken"} & (set(agent) | set(plugin))


def test_the_agent_runs_non_root_on_a_read_only_root_filesystem() -> None:
    (deployment,) = by_kind(render(MINIMUM), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    context = pod["containers"][0]["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert {"/tmp", "/var/lib/shipmate-agent", "/etc/shipmate"} <= mounts
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_rbac_grants_exactly_what_the_plugin_uses() -> None:
    objects = render(MINIMUM)
    (role,) = [r for r in by_kind(objects, "Role") if r["metadata"]["name"] == "shipmate-agent"]
    granted = {
        (verb, group, resource)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == {(p.verb, p.group, p.resource) for p in REQUIRED_PERMISSIONS}
    (cluster_role,) = by_kind(objects, "ClusterRole")
    assert cluster_role["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["shipmate"], "verbs": ["get"]}
    ]
    (binding,) = by_kind(objects, "RoleBinding")
    assert binding["subjects"][0]["name"] == "shipmate-agent"


def test_rbac_and_service_accounts_can_be_left_to_the_platform() -> None:
    values = _merge(
        MINIMUM,
        {
            "managementAgent": {
                "rbac": {"create": False},
                "serviceAccount": {"create": False, "name": "agent"},
            },
            "imageBuilder": {"serviceAccount": {"create": False, "name": "builder"}},
        },
    )
    objects = render(values)
    assert by_kind(objects, "Role") == [] and by_kind(objects, "ServiceAccount") == []
    assert by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["serviceAccountName"] == "agent"


def plugin_volumes(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    _, plugin = config_files(objects)
    return list(plugin.get("kanikoExtraVolumes") or [])


def test_openshift_example_grants_the_scc_and_routes_through_the_router() -> None:
    objects = render(yaml.safe_load((CHART / "examples" / "OpenShift_values.yaml").read_text()))
    scc = next(r for r in by_kind(objects, "Role") if r["metadata"]["name"].endswith("image-builder-scc"))
    # Kaniko runs as root and the example mounts a hostPath: anyuid alone forbids hostPath volumes.
    assert any("hostPath" in v for v in plugin_volumes(objects))
    assert scc["rules"][0]["resourceNames"] == ["hostmount-anyuid"] and scc["rules"][0]["verbs"] == ["use"]
    _, plugin = config_files(objects)
    settings = parse_settings(plugin)
    assert settings.ingress_type is IngressType.OPENSHIFT
    assert "runAsUser" not in (settings.pps_pod_security_context or {"runAsUser": "default"})
    pod = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]
    assert "runAsUser" not in pod["securityContext"]


def test_eks_example_uses_the_ecr_credential_helper_config() -> None:
    _, plugin = config_files(render(yaml.safe_load((CHART / "examples" / "EKS_values.yaml").read_text())))
    assert plugin["kanikoConfigmapName"] == "docker-config" and "kanikoSecretName" not in plugin
    assert plugin["kanikoServiceAccount"] == "shipmate-image-builder"


def test_gke_example_annotates_the_builder_for_workload_identity() -> None:
    objects = render(yaml.safe_load((CHART / "examples" / "GKE_values.yaml").read_text()))
    accounts = {o["metadata"]["name"]: o for o in by_kind(objects, "ServiceAccount")}
    builder = accounts["shipmate-image-builder"]
    assert builder["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].startswith("gcr-push-user@")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"imageBuilder": {"insecureRegistries": "registry.local"}}, "/imageBuilder/insecureRegistries"),
        ({"imageBuilder": {"secretname": "typo"}}, "additional properties 'secretname' not allowed"),
        ({"imageBuilder": {"ppsImage": "registry.example.com/pps"}}, "/imageBuilder/ppsImage"),
        ({"imageBuilder": {"ppsImage": "registry.example.com/pps:latest"}}, "versioned tag, not :latest"),
        (
            {"imageBuilder": {"generatedImageRepository": "r.example.com/m:v1"}},
            "/imageBuilder/generatedImageRepository",
        ),
        ({"imageBuilder": {"configMap": "docker-config", "secretName": "creds"}}, "exclusive"),
        ({"predictionServer": {"outfacingUrlRoot": "models.example"}}, "/predictionServer/outfacingUrlRoot"),
        ({"predictionServer": {"ingressType": "traefik"}}, "/predictionServer/ingressType"),
        ({"imageBuilder": {"serviceAccount": {"create": "yes"}}}, "/imageBuilder/serviceAccount/create"),
        ({"datarobot": {"predictionEnvId": ""}}, "predictionEnvId (or shipmate.environmentId) is required"),
        ({"datarobot": {"apiSecretName": ""}}, "apiSecretName (or shipmate.apiSecretName) is required"),
        ({"shipmate": {"serviceUrl": ""}}, "shipmate.serviceUrl is required"),
        ({"managementAgent": {"repository": ""}}, "managementAgent.repository is required"),
    ],
)
def test_a_wrong_value_fails_at_install_with_a_clear_message(override: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError) as caught:
        render(_merge(MINIMUM, override))
    assert message in str(caught.value)


def test_tracking_agent_value_is_kept_but_no_agent_is_deployed() -> None:
    objects = render(MINIMUM)
    pods = [d["spec"]["template"]["spec"] for d in by_kind(objects, "Deployment")]
    images = {c["image"] for pod in pods for c in pod["containers"]}
    assert images == {"registry.your-company.com/shipmate/agent:0.1.0"}
    _, plugin = config_files(objects)
    assert plugin["agentImage"] == "registry.your-company.com/shipmate/tracking-agent:0.1.0"


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_agent_accepts_the_config_every_example_renders(
    example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chart's agent.yaml, read by the agent's own loader with the token from the environment."""
    from shipmate.agent.config import load_settings

    for name in list(os.environ):
        if name.startswith("SHIPMATE_AGENT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MLOPS_API_TOKEN", "agent-token-from-the-secret")
    (configmap,) = by_kind(render(yaml.safe_load(example.read_text())), "ConfigMap")
    path = tmp_path / "agent.yaml"
    path.write_text(configmap["data"]["agent.yaml"])
    settings = load_settings(path)
    assert settings.environment_id == "REPLACE-WITH-PREDICTION-ENVIRONMENT-ID"
    assert settings.service_url.rstrip("/") == "https://shipmate.your-company.com"
    assert settings.plugin.name == "kubernetes"
    assert str(settings.plugin.private_config) == "/etc/shipmate/plugin.k8s.conf.yaml"
    assert settings.token_text() == "agent-token-from-the-secret"
    assert settings.timeouts.for_action("deployment_start") == 1500 + 2 * 900 + 120
    assert settings.metrics.enabled and settings.metrics.host == "0.0.0.0"


def test_the_agent_pod_is_probed_on_the_port_its_config_serves() -> None:
    objects = render(_merge(MINIMUM, {"managementAgent": {"metricsPort": 9555}}))
    agent, _ = config_files(objects)
    (deployment,) = by_kind(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert agent["metrics"]["port"] == 9555
    assert container["ports"] == [{"name": "metrics", "containerPort": 9555}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
