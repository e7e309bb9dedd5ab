"""Pure rendering and judging, tested with tables; every rendered object is schema-validated."""

from __future__ import annotations

import base64
import hashlib
import re
import sys
from decimal import Decimal
from typing import Any

import kubernetes_validate
import pytest

from shipmate.plugin.errors import ConfigError
from shipmate.plugin.info import DeploymentInfo
from shipmate.plugins.kubernetes.apis import choose_versions
from shipmate.plugins.kubernetes.build import CONTEXT_CHUNK_BYTES, render_build
from shipmate.plugins.kubernetes.manifests import render_deployment_objects
from shipmate.plugins.kubernetes.naming import (
    LABEL_MODEL,
    build_job_name,
    dns_label,
    image_tag,
    label_value,
    resource_name,
)
from shipmate.plugins.kubernetes.rollout import Phase, assess_build, assess_rollout, pod_problem
from shipmate.plugins.kubernetes.settings import KubernetesSettings, parse_settings
from shipmate.plugins.kubernetes.workload import parse_quantity, parse_workload


def _schema_versions() -> tuple[str, str]:
    """The oldest (at least 1.21) and newest Kubernetes schemas kubernetes-validate ships."""
    from kubernetes_validate.utils import all_versions

    shipped = sorted({v for v in all_versions()}, key=lambda v: tuple(int(p) for p in v.split(".")))
    supported = [v for v in shipped if tuple(int(p) for p in v.split(".")[:2]) >= (1, 21)]
    return supported[0], supported[-1]


SCHEMA_VERSIONS = _schema_versions()
NEWEST_SERVED = sys.modules["shipmate_tests_fake_kube_api"].NEWEST_SERVED
SERVED_BY_1_20 = sys.modules["shipmate_tests_fake_kube_api"].SERVED_BY_1_20
BASE = {
    "outfacingPredictionURLPrefix": "https://models.example.com/deployments/",
    "ppsBaseImage": "registry.example.com/shipmate/prediction-server:0.1.0",
    "generatedImageRepo": "registry.example.com/mlops/frozen-models",
}


def settings(**overrides: Any) -> KubernetesSettings:
    return parse_settings({**BASE, **overrides}, environment_id="env-1")


def info(kv: dict[str, Any] | None = None, **fields: Any) -> DeploymentInfo:
    return DeploymentInfo.from_dict(
        {"id": "dep-1", "modelId": "model-a", "keyValueConfig": kv or {}, **fields}
    )


def validate(obj: dict[str, Any]) -> None:
    for version in SCHEMA_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


# -- names ------------------------------------------------------------------------------------------

_LABEL = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize(
    "text",
    ["dep-1", "5f3a9c0e1b2d", "Dep_1.With/Slash", "-leading-and-trailing-", "x" * 80, "日本語", "a" * 63],
)
def test_names_are_always_valid_and_distinct(text: str) -> None:
    assert _LABEL.match(label_value(text)) and len(label_value(text)) <= 63
    assert _DNS1035.match(resource_name(text)) and len(resource_name(text)) <= 63
    assert _DNS1035.match(build_job_name(text)) and len(build_job_name(text)) <= 63
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", image_tag(text))


def test_clean_ids_are_kept_as_they_are() -> None:
    assert label_value("dep-1") == "dep-1"
    assert resource_name("dep-1") == "mlops-dep-1"
    assert image_tag("5f3a9c0e1b2d") == "m-5f3a9c0e1b2d"
    assert dns_label("abc") == "abc"


def test_ids_differing_only_in_case_or_punctuation_get_different_names() -> None:
    assert resource_name("Dep-1") != resource_name("dep-1")
    assert label_value("a/b") != label_value("a.b") or label_value("a/b") != "a-b"
    assert resource_name("x" * 80) != resource_name("x" * 81)


# -- the deployment's key-value config ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("1.5", Decimal("1.5")),
        ("512Mi", Decimal(512 * 2**20)),
        ("1G", Decimal(10**9)),
    ],
)
def test_parse_quantity(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    ("kv", "expected"),
    [
        ({}, {"replicas": 1, "autoscaled": False, "needs_disruption_budget": False}),
        ({"replicas": "3"}, {"replicas": 3, "needs_disruption_budget": True}),
        ({"replicas": 0}, {"replicas": 0, "needs_disruption_budget": False}),
        (
            {"minReplicas": 1, "maxReplicas": 4, "cpuRequest": "250m"},
            {"autoscaled": True, "needs_disruption_budget": False},
        ),
        (
            {"minReplicas": 2, "maxReplicas": 4, "cpuRequest": 1},
            {"autoscaled": True, "needs_disruption_budget": True},
        ),
        ({"memoryRequest": "256Mi", "memoryLimit": "1Gi"}, {"memory_limit": "1Gi"}),
    ],
)
def test_workload_from_key_values(kv: dict[str, Any], expected: dict[str, Any]) -> None:
    workload = parse_workload(kv, settings())
    for attribute, value in expected.items():
        assert getattr(workload, attribute) == value


@pytest.mark.parametrize(
    ("kv", "message"),
    [
        ({"replicas": "many"}, "keyValueConfig.replicas: expected a whole number, got 'many'"),
        ({"replicas": -1}, "keyValueConfig.replicas: expected at least 0"),
        ({"replicas": True}, "keyValueConfig.replicas: expected a whole number"),
        ({"minReplicas": 2}, "keyValueConfig.maxReplicas: autoscaling needs both"),
        ({"minReplicas": 5, "maxReplicas": 2, "cpuRequest": "1"}, "5 is more than maxReplicas 2"),
        ({"minReplicas": 1, "maxReplicas": 2}, "needs a CPU request"),
        ({"cpuRequest": "lots"}, "'lots' is not a Kubernetes quantity"),
        ({"cpuRequest": "2", "cpuLimit": "1"}, "cpuRequest: 2 is more than cpuLimit 1"),
        ({"memoryRequest": "2Gi", "memoryLimit": "1Gi"}, "memoryRequest: 2Gi is more than memoryLimit 1Gi"),
        ({"targetCpuUtilizationPercent": 150}, "expected 1 to 100"),
    ],
)
def test_bad_key_values_are_named(kv: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_workload(kv, settings())
    assert message in str(caught.value)


def test_plugin_wide_cpu_request_allows_autoscaling() -> None:
    workload = parse_workload(
        {"minReplicas": 1, "maxReplicas": 3}, settings(ppsResources={"requests": {"cpu": "1"}})
    )
    assert workload.autoscaled


# -- rendered objects ----------------------------------------------------------------------------------

VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "defaults": ({}, {}),
    "nginx-class-tls-autoscaled": (
        {
            "ingressClass": "mlops",
            "imagePullSecrets": ["pull"],
            "ppsResources": {"limits": {"memory": "2Gi"}},
        },
        {"minReplicas": 2, "maxReplicas": 6, "cpuRequest": "500m", "targetCpuUtilizationPercent": 60},
    ),
    "openshift-platform-security": (
        {"ingressType": "openshift", "ppsPodSecurityContext": {}, "ppsSecurityContext": {}},
        {"replicas": 3},
    ),
    "plain-http-ip": ({"outfacingPredictionURLPrefix": "http://10.1.2.3"}, {"replicas": 0}),
    "placed-with-extra-env": (
        {
            "ppsNodeSelector": {"pool": "models"},
            "ppsTolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "models", "effect": "NoSchedule"}
            ],
            "ppsAffinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}
                        ]
                    }
                }
            },
            "ppsExtraEnvironment": [{"name": "PREDICTION_API_WORKERS", "value": "2"}],
        },
        {},
    ),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_object_is_valid_for_old_and_new_kubernetes(variant: str) -> None:
    overrides, kv = VARIANTS[variant]
    objects = render_deployment_objects(settings(**overrides), info(kv))
    for obj in [objects.deployment, *objects.dependents()]:
        validate(obj)


def test_deployment_shape() -> None:
    objects = render_deployment_objects(settings(), info({"replicas": 2, "memoryLimit": "1Gi"}, name="Churn"))
    deployment = objects.deployment
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/mlops/frozen-models:m-model-a"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["readinessProbe"]["httpGet"] == {"path": "/ping", "port": "http"}
    assert container["resources"] == {"limits": {"memory": "1Gi"}}
    assert deployment["spec"]["template"]["metadata"]["labels"][LABEL_MODEL] == "model-a"
    assert deployment["metadata"]["annotations"]["shipmate.io/deployment-name"] == "Churn"
    assert deployment["spec"]["selector"]["matchLabels"] == objects.service["spec"]["selector"]
    assert objects.pdb is not None and objects.hpa is None


@pytest.mark.parametrize(
    ("overrides", "path", "path_type", "host", "rewrite"),
    [
        ({}, "/deployments/dep\\-1(/|$)(.*)", "ImplementationSpecific", "models.example.com", "/$2"),
        (
            {"outfacingPredictionURLPrefix": "http://10.0.0.1"},
            "/dep\\-1(/|$)(.*)",
            "ImplementationSpecific",
            None,
            "/$2",
        ),
        ({"ingressType": "openshift"}, "/deployments/dep-1", "Prefix", "models.example.com", "/"),
    ],
)
def test_ingress_routes_the_deployment_prefix(
    overrides: dict[str, Any], path: str, path_type: str, host: str | None, rewrite: str
) -> None:
    ingress = render_deployment_objects(settings(**overrides), info()).ingress
    rule = ingress["spec"]["rules"][0]
    assert rule["http"]["paths"][0]["path"] == path
    assert rule["http"]["paths"][0]["pathType"] == path_type
    assert rule.get("host") == host
    assert rewrite in ingress["metadata"]["annotations"].values()
    nginx_path = re.compile(path) if path_type == "ImplementationSpecific" else None
    if nginx_path is not None:  # what nginx would forward for the prediction URL
        url_path = "/" + settings(**overrides).prediction_url("dep-1").split("/", 3)[3]
        match = nginx_path.match(url_path)
        assert match is not None and "/" + match.group(2) == "/predictions"


def test_tls_prefix_forces_https_on_nginx() -> None:
    annotations = render_deployment_objects(settings(), info()).ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"


# -- image build ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 10, CONTEXT_CHUNK_BYTES, CONTEXT_CHUNK_BYTES * 2 + 1])
def test_build_context_carries_the_package_intact(size: int) -> None:
    package = bytes(range(256)) * (size // 256) + bytes(size % 256)
    plan = render_build(settings(), "model-a", package)
    parts = [cm for cm in plan.context_configmaps if "binaryData" in cm]
    assert len(parts) == max(1, -(-size // CONTEXT_CHUNK_BYTES))
    assert b"".join(base64.b64decode(cm["binaryData"]["part"]) for cm in parts) == package
    script = plan.job["spec"]["template"]["spec"]["initContainers"][0]["command"][2]
    assert hashlib.sha256(package).hexdigest() in script
    for cm in plan.context_configmaps:
        assert len(base64.b64decode(cm.get("binaryData", {}).get("part", ""))) <= CONTEXT_CHUNK_BYTES
        validate(cm)
    validate(plan.job)


@pytest.mark.parametrize(
    ("overrides", "expected_args", "docker_config"),
    [
        ({}, [], None),
        ({"kanikoConfigmapName": "docker-config"}, [], {"configMap": {"name": "docker-config"}}),
        (
            {
                "kanikoSecretName": "registry-creds",
                "kanikoInsecureRegistries": ["registry.local:5000"],
                "kanikoSkipSslVerifyRegistries": ["registry.internal"],
                "kanikoExtraArguments": ["--cache=true"],
            },
            [
                "--insecure-registry=registry.local:5000",
                "--skip-tls-verify-registry=registry.internal",
                "--cache=true",
            ],
            {
                "secret": {
                    "secretName": "registry-creds",
                    "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                }
            },
        ),
    ],
)
def test_kaniko_job_follows_the_settings(
    overrides: dict[str, Any], expected_args: list[str], docker_config: dict[str, Any] | None
) -> None:
    plan = render_build(settings(kanikoServiceAccount="builder", **overrides), "model-a", b"pkg")
    pod = plan.job["spec"]["template"]["spec"]
    (kaniko,) = pod["containers"]
    assert kaniko["args"][:3] == [
        "--context=dir:///workspace",
        "--dockerfile=/workspace/Dockerfile",
        "--destination=registry.example.com/mlops/frozen-models:m-model-a",
    ]
    assert kaniko["args"][3:] == expected_args
    assert pod["serviceAccountName"] == "builder" and pod["restartPolicy"] == "Never"
    volumes = {v["name"]: v for v in pod["volumes"]}
    if docker_config is None:
        assert "docker-config" not in volumes
    else:
        assert {k: v for k, v in volumes["docker-config"].items() if k != "name"} == docker_config
        assert {"name": "docker-config", "mountPath": "/kaniko/.docker/", "readOnly": True} in kaniko[
            "volumeMounts"
        ]
    validate(plan.job)


def test_dockerfile_builds_from_the_base_image_with_the_package_in_place() -> None:
    plan = render_build(settings(), "model-a", b"pkg")
    dockerfile = next(cm for cm in plan.context_configmaps if "data" in cm)["data"]["Dockerfile"]
    assert dockerfile.startswith("FROM registry.example.com/shipmate/prediction-server:0.1.0\n")
    assert "COPY model.mlpkg /opt/ml/model/model.mlpkg\n" in dockerfile


def test_placement_reaches_both_kinds_of_pod() -> None:
    placed = settings(
        ppsNodeSelector={"pool": "models"},
        ppsExtraEnvironment=[{"name": "PREDICTION_API_WORKERS", "value": "2"}],
        kanikoNodeSelector={"pool": "builds"},
        kanikoTolerations=[{"key": "builds", "operator": "Exists"}],
    )
    pod = render_deployment_objects(placed, info()).deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "models"} and "tolerations" not in pod
    assert {"name": "PREDICTION_API_WORKERS", "value": "2"} in pod["containers"][0]["env"]
    build = render_build(placed, "model-a", b"pkg").job["spec"]["template"]["spec"]
    assert build["nodeSelector"] == {"pool": "builds"} and build["tolerations"] == [
        {"key": "builds", "operator": "Exists"}
    ]
    with pytest.raises(ConfigError, match="ppsTolerations"):
        settings(ppsTolerations="dedicated=models")


def test_extra_volumes_reach_the_kaniko_pod() -> None:
    extra = settings(
        kanikoExtraVolumes=[{"name": "cacert", "hostPath": {"path": "/etc/docker/certs.d"}}],
        kanikoExtraVolumeMounts=[{"name": "cacert", "mountPath": "/certs/", "readOnly": True}],
    )
    pod = render_build(extra, "model-a", b"pkg").job["spec"]["template"]["spec"]
    assert {"name": "cacert", "hostPath": {"path": "/etc/docker/certs.d"}} in pod["volumes"]
    assert {"name": "cacert", "mountPath": "/certs/", "readOnly": True} in pod["containers"][0][
        "volumeMounts"
    ]


# -- judging live objects ------------------------------------------------------------------------------


def _deployment(desired: int = 2, generation: int = 2, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation, "annotations": {"shipmate.io/model-id": "model-b"}},
        "spec": {"replicas": desired, "template": {"metadata": {"labels": {LABEL_MODEL: "model-b"}}}},
        "status": {"observedGeneration": generation, **status},
    }


def _pod(model: str = "model-b", **container: Any) -> dict[str, Any]:
    state = {"name": "prediction-server", "ready": False, "restartCount": 0, **container}
    return {
        "metadata": {"name": f"p-{model}", "labels": {LABEL_MODEL: model}},
        "status": {"containerStatuses": [state]},
    }


@pytest.mark.parametrize(
    ("deployment", "pods", "phase", "text"),
    [
        (
            _deployment(desired=2, updatedReplicas=2, availableReplicas=2, replicas=2, readyReplicas=2),
            [],
            Phase.COMPLETE,
            "2/2",
        ),
        (
            _deployment(updatedReplicas=2, availableReplicas=2, replicas=3),
            [],
            Phase.PROGRESSING,
            "rollout in progress",
        ),
        (
            _deployment(updatedReplicas=2, availableReplicas=2, replicas=2, observedGeneration=1),
            [],
            Phase.PROGRESSING,
            "rollout in progress",
        ),
        (
            _deployment(updatedReplicas=1, availableReplicas=2, replicas=3),
            [_pod(state={"waiting": {"reason": "ImagePullBackOff", "message": "not found"}})],
            Phase.FAILED,
            "ImagePullBackOff",
        ),
        (
            _deployment(updatedReplicas=1, availableReplicas=2, replicas=3),
            [_pod(state={"waiting": {"reason": "ErrImagePull"}})],
            Phase.PROGRESSING,
            "ErrImagePull",
        ),
        (
            _deployment(updatedReplicas=1, availableReplicas=2, replicas=3),
            [_pod(model="model-a", state={"waiting": {"reason": "CrashLoopBackOff"}})],
            Phase.PROGRESSING,
            "rollout in progress",
        ),
        (
            _deployment(
                updatedReplicas=1,
                availableReplicas=0,
                conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
            ),
            [],
            Phase.FAILED,
            "deadline",
        ),
        (  # the deadline of the previous template: the controller has not seen the new one yet
            _deployment(
                updatedReplicas=0,
                availableReplicas=2,
                observedGeneration=1,
                conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
            ),
            [],
            Phase.PROGRESSING,
            "rollout in progress",
        ),
    ],
)
def test_assess_rollout(
    deployment: dict[str, Any], pods: list[dict[str, Any]], phase: Phase, text: str
) -> None:
    rollout = assess_rollout(deployment, pods)
    assert rollout.phase is phase
    assert text in rollout.message
    assert rollout.model_id == "model-b"


def test_oom_killed_outranks_the_crash_loop_it_causes() -> None:
    pod = _pod(
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        lastState={"terminated": {"reason": "OOMKilled", "exitCode": 137}},
    )
    problem = pod_problem(pod)
    assert problem is not None and problem.reason == "OOMKilled" and problem.fatal
    assert "raise memoryLimit" in problem.describe() and "exit code 137" in problem.describe()


def test_unschedulable_pods_are_reported_but_not_fatal() -> None:
    pod = {
        "metadata": {"name": "p"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}
            ],
        },
    }
    problem = pod_problem(pod)
    assert problem is not None and problem.reason == "Unschedulable" and not problem.fatal


def test_a_ready_pod_has_no_problem() -> None:
    assert pod_problem(_pod(ready=True, state={"running": {}})) is None


@pytest.mark.parametrize(
    ("job", "pods", "phase", "text"),
    [
        ({"status": {"succeeded": 1}}, [], Phase.COMPLETE, "built"),
        ({"status": {"active": 1}}, [], Phase.PROGRESSING, "building"),
        (
            {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}},
            [],
            Phase.FAILED,
            "DeadlineExceeded",
        ),
        (
            {"status": {"active": 1}},
            [_pod(state={"waiting": {"reason": "ImagePullBackOff", "message": "kaniko image"}})],
            Phase.FAILED,
            "kaniko image",
        ),
    ],
)
def test_assess_build(job: dict[str, Any], pods: list[dict[str, Any]], phase: Phase, text: str) -> None:
    verdict = assess_build(job, pods)
    assert verdict.phase is phase and text in verdict.message


def test_an_hpa_minimum_above_the_spec_is_not_complete() -> None:
    deployment = _deployment(desired=1, updatedReplicas=1, availableReplicas=1, replicas=1, readyReplicas=1)
    assert assess_rollout(deployment, []).phase is Phase.COMPLETE
    rollout = assess_rollout(deployment, [], minimum=2)
    assert rollout.phase is Phase.PROGRESSING and rollout.desired == 2


@pytest.mark.parametrize(
    ("served", "hpa_version", "pdb_version", "schema"),
    [
        (NEWEST_SERVED, "autoscaling/v2", "policy/v1", "1.37.0"),
        (SERVED_BY_1_20, "autoscaling/v2beta2", "policy/v1beta1", "1.25.0"),
        ({"v1", "apps/v1", "autoscaling/v1", "policy/v1beta1"}, "autoscaling/v1", "policy/v1beta1", "1.25.0"),
    ],
)
def test_hpa_and_pdb_follow_what_the_server_serves(
    served: set[str], hpa_version: str, pdb_version: str, schema: str
) -> None:
    versions = choose_versions(served)
    kv = {"minReplicas": 2, "maxReplicas": 4, "cpuRequest": "1", "targetCpuUtilizationPercent": 60}
    objects = render_deployment_objects(settings(), info(kv), versions)
    assert objects.hpa is not None and objects.pdb is not None
    assert objects.hpa["apiVersion"] == hpa_version and objects.pdb["apiVersion"] == pdb_version
    spec = objects.hpa["spec"]
    target = (
        spec["targetCPUUtilizationPercentage"]
        if hpa_version == "autoscaling/v1"
        else spec["metrics"][0]["resource"]["target"]["averageUtilization"]
    )
    assert target == 60
    kubernetes_validate.validate(objects.hpa, schema, strict=True)
    kubernetes_validate.validate({**objects.pdb, "apiVersion": "policy/v1"}, schema, strict=True)


def test_a_server_without_a_kind_is_named() -> None:
    versions = choose_versions({"v1", "apps/v1", "autoscaling/v1"})
    assert versions.of("PodDisruptionBudget") is None
    assert "PodDisruptionBudget (none of policy/v1, policy/v1beta1)" in versions.missing()


def test_build_jobs_expire_and_every_build_container_has_a_seccomp_profile() -> None:
    """Finished builds do not pile up; the init container passes the restricted profile's checks
    (Kaniko itself cannot: it runs as root, see docs/kubernetes.md)."""
    job = render_build(settings(), "model-a", b"package").job
    assert job["spec"]["ttlSecondsAfterFinished"] == 7 * 24 * 3600
    (prepare,) = job["spec"]["template"]["spec"]["initContainers"]
    assert prepare["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert prepare["securityContext"]["runAsNonRoot"] is True
