"""Pure rendering of every Kubernetes object the plugin creates.

Functions here take settings and a deployment's description and return plain
manifests (dicts in the API's JSON shape). No I/O, no clock: the tests render
them from tables of cases and validate each against the official OpenAPI
schemas of the oldest and newest supported Kubernetes versions.

Naming and labelling (what ``deployment_list`` and ``deployment_stop`` rely on):

* every object carries ``app.kubernetes.io/managed-by: shipmate`` and
  ``app.kubernetes.io/part-of: shipmate``; the prediction-server objects also
  ``shipmate.io/deployment`` (and ``shipmate.io/environment`` when known);
* exact ids live in annotations (``shipmate.io/deployment-id`` …) because
  label values are limited to 63 characters of a small alphabet;
* the Deployment is named ``mlops-<deployment id>``; its Service, Ingress,
  HorizontalPodAutoscaler and PodDisruptionBudget share that name and carry an
  owner reference to it, so deleting the Deployment deletes them too.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from shipmate.plugin.errors import ConfigError
from shipmate.plugin.info import DeploymentInfo
from shipmate.plugins.kubernetes.settings import IngressType, KubernetesSettings

MANAGED_BY = "shipmate"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_DEPLOYMENT = "shipmate.io/deployment"
LABEL_ENVIRONMENT = "shipmate.io/environment"
LABEL_MODEL = "shipmate.io/model"
LABEL_IMAGE_TAG = "shipmate.io/image-tag"

ANNOTATION_DEPLOYMENT_ID = "shipmate.io/deployment-id"
ANNOTATION_DEPLOYMENT_NAME = "shipmate.io/deployment-name"
ANNOTATION_ENVIRONMENT_ID = "shipmate.io/environment-id"
ANNOTATION_MODEL_ID = "shipmate.io/model-id"
ANNOTATION_IMAGE = "shipmate.io/image"
ANNOTATION_BASE_IMAGE = "shipmate.io/base-image"
ANNOTATION_PACKAGE_SHA256 = "shipmate.io/package-sha256"

COMPONENT_PREDICTION_SERVER = "prediction-server"
COMPONENT_IMAGE_BUILDER = "image-builder"

CONTAINER_NAME = "prediction-server"
CONTAINER_PORT = 8080
MODEL_DIR = "/opt/ml/model"
MODEL_FILE = "model.mlpkg"

CONTEXT_CHUNK_BYTES = 900 * 1024
"""Raw bytes of the model package per ConfigMap: a ConfigMap holds at most 1 MiB."""

DEFAULT_POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
DEFAULT_CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}

_LABEL_OK = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


# -- names ----------------------------------------------------------------------------


def _digest(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def label_value(text: str) -> str:
    """``text`` as a valid label value; altered or shortened values get a hash suffix to stay unique."""
    if len(text) <= 63 and _LABEL_OK.match(text):
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.")[:54].strip("-_.")
    return f"{cleaned}-{_digest(text)}" if cleaned else _digest(text, 16)


def dns_label(text: str, max_length: int = 63) -> str:
    """``text`` as a lowercase DNS label (RFC 1035) of at most ``max_length`` characters."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if cleaned == text and len(cleaned) <= max_length and cleaned[:1].isalpha():
        return cleaned
    suffix = _digest(text)
    head = cleaned[: max_length - len(suffix) - 1].strip("-")
    if not head[:1].isalpha():
        head = ("x-" + head)[: max_length - len(suffix) - 1].strip("-")
    return f"{head}-{suffix}"


def resource_name(deployment_id: str) -> str:
    """The name of every prediction-server object of one deployment: ``mlops-<id>``."""
    return dns_label(f"mlops-{deployment_id}")


def image_tag(model_id: str) -> str:
    """``m-<model package id>``, the documented tag of a frozen model image."""
    tag = f"m-{model_id}"
    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
        return tag
    return f"m-{re.sub(r'[^A-Za-z0-9_.-]+', '-', model_id)[:110]}-{_digest(model_id)}"


def model_image(settings: KubernetesSettings, model_id: str) -> str:
    return f"{settings.generated_image_repo}:{image_tag(model_id)}"


def build_job_name(model_id: str) -> str:
    return dns_label(f"mlops-build-{image_tag(model_id).lower()}")


def deployment_selector(deployment_id: str) -> dict[str, str]:
    """The Deployment's (immutable) pod selector, also the Service's."""
    return {LABEL_DEPLOYMENT: label_value(deployment_id), LABEL_COMPONENT: COMPONENT_PREDICTION_SERVER}


def managed_selector(environment_id: str | None) -> str:
    """Label selector of every prediction-server object of this environment."""
    selector = f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_COMPONENT}={COMPONENT_PREDICTION_SERVER}"
    if environment_id:
        selector += f",{LABEL_ENVIRONMENT}={label_value(environment_id)}"
    return selector


def deployment_label_selector(deployment_id: str) -> str:
    return f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_DEPLOYMENT}={label_value(deployment_id)}"


def _labels(settings: KubernetesSettings, deployment_id: str, component: str) -> dict[str, str]:
    labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PART_OF: "shipmate",
        LABEL_COMPONENT: component,
        LABEL_DEPLOYMENT: label_value(deployment_id),
    }
    if settings.environment_id:
        labels[LABEL_ENVIRONMENT] = label_value(settings.environment_id)
    return labels


def _annotations(settings: KubernetesSettings, info: DeploymentInfo) -> dict[str, str]:
    annotations = {ANNOTATION_DEPLOYMENT_ID: info.id, ANNOTATION_MODEL_ID: info.current_model_id}
    if info.name:
        annotations[ANNOTATION_DEPLOYMENT_NAME] = info.name
    if settings.environment_id:
        annotations[ANNOTATION_ENVIRONMENT_ID] = settings.environment_id
    return annotations


# -- the deployment's key-value config ------------------------------------------------

_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
_SUFFIX: dict[str | None, Decimal] = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    **{k: Decimal(10) ** (3 * (n + 1)) for n, k in enumerate(("k", "M", "G", "T", "P", "E"))},
    **{k: Decimal(2) ** (10 * (n + 1)) for n, k in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
}


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes quantity (``500m``, ``1.5``, ``512Mi``) as a number; ``ValueError`` if malformed."""
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(text)
    try:
        return Decimal(match.group(1)) * _SUFFIX[match.group(3)]
    except InvalidOperation:
        raise ValueError(text) from None


@dataclass(frozen=True, slots=True)
class Workload:
    """Scaling and sizing of one deployment, read from its ``keyValueConfig``."""

    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_cpu_percent: int | None = None
    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None

    @property
    def autoscaled(self) -> bool:
        return self.min_replicas is not None and self.max_replicas is not None

    @property
    def needs_disruption_budget(self) -> bool:
        """Keep one pod up during node drains whenever more than one is meant to run."""
        return (self.min_replicas or 0) > 1 if self.autoscaled else self.replicas > 1


WORKLOAD_KEYS = (
    "replicas",
    "minReplicas",
    "maxReplicas",
    "targetCpuUtilizationPercent",
    "cpuRequest",
    "cpuLimit",
    "memoryRequest",
    "memoryLimit",
)


def parse_workload(kv: dict[str, Any], settings: KubernetesSettings) -> Workload:
    """Read replicas, autoscaling and resources from a deployment's key-value config."""

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"deploymentInfo.keyValueConfig.{key}: {problem}")

    def whole(key: str, minimum: int) -> int | None:
        value = kv.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(key, f"expected a whole number, got {value!r}")
        if value < minimum:
            raise fail(key, f"expected at least {minimum}, got {value}")
        return value

    def quantity(key: str) -> str | None:
        value = kv.get(key)
        if value is None or value == "":
            return None
        text = (
            str(value).strip()
            if isinstance(value, str | int | float) and not isinstance(value, bool)
            else None
        )
        if text is None:
            raise fail(key, f"expected a Kubernetes quantity such as 500m, 2 or 512Mi, got {value!r}")
        try:
            parse_quantity(text)
        except ValueError:
            raise fail(
                key, f"{text!r} is not a Kubernetes quantity (examples: 500m, 2, 512Mi, 1Gi)"
            ) from None
        return text

    replicas = whole("replicas", 0)
    min_replicas = whole("minReplicas", 1)
    max_replicas = whole("maxReplicas", 1)
    if (min_replicas is None) != (max_replicas is None):
        missing = "maxReplicas" if max_replicas is None else "minReplicas"
        raise fail(missing, "autoscaling needs both minReplicas and maxReplicas")
    if min_replicas is not None and max_replicas is not None and min_replicas > max_replicas:
        raise fail("minReplicas", f"{min_replicas} is more than maxReplicas {max_replicas}")
    target = whole("targetCpuUtilizationPercent", 1)
    if target is not None and target > 100:
        raise fail("targetCpuUtilizationPercent", f"expected 1 to 100, got {target}")
    workload = Workload(
        replicas=1 if replicas is None else replicas,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_cpu_percent=target,
        cpu_request=quantity("cpuRequest"),
        cpu_limit=quantity("cpuLimit"),
        memory_request=quantity("memoryRequest"),
        memory_limit=quantity("memoryLimit"),
    )
    for kind in ("cpu", "memory"):
        request = getattr(workload, f"{kind}_request")
        limit = getattr(workload, f"{kind}_limit")
        if request and limit and parse_quantity(request) > parse_quantity(limit):
            raise fail(f"{kind}Request", f"{request} is more than {kind}Limit {limit}")
    if workload.autoscaled and "cpu" not in container_resources(settings, workload).get("requests", {}):
        raise fail(
            "minReplicas",
            "autoscaling scales on CPU utilisation, which needs a CPU request: set cpuRequest "
            "(or ppsResources.requests.cpu in the plugin config)",
        )
    return workload


def container_resources(settings: KubernetesSettings, workload: Workload) -> dict[str, Any]:
    """The plugin-wide ``ppsResources`` with the deployment's own values on top."""
    requests = dict(settings.pps_resources.get("requests") or {})
    limits = dict(settings.pps_resources.get("limits") or {})
    for kind in ("cpu", "memory"):
        if getattr(workload, f"{kind}_request"):
            requests[kind] = getattr(workload, f"{kind}_request")
        if getattr(workload, f"{kind}_limit"):
            limits[kind] = getattr(workload, f"{kind}_limit")
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


# -- prediction server objects --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeploymentObjects:
    """Everything one deployment runs on; ``hpa``/``pdb`` are ``None`` when not wanted."""

    deployment: dict[str, Any]
    service: dict[str, Any]
    ingress: dict[str, Any]
    hpa: dict[str, Any] | None
    pdb: dict[str, Any] | None

    def dependents(self) -> list[dict[str, Any]]:
        """The objects owned by the Deployment, in the order they are applied."""
        return [m for m in (self.service, self.ingress, self.hpa, self.pdb) if m is not None]


def render_deployment_objects(settings: KubernetesSettings, info: DeploymentInfo) -> DeploymentObjects:
    """Render the prediction-server objects of ``info`` (its current model)."""
    workload = parse_workload(info.key_value_config, settings)
    return DeploymentObjects(
        deployment=render_deployment(settings, info, workload),
        service=render_service(settings, info),
        ingress=render_ingress(settings, info),
        hpa=render_hpa(settings, info, workload) if workload.autoscaled else None,
        pdb=render_pdb(settings, info) if workload.needs_disruption_budget else None,
    )


def render_deployment(
    settings: KubernetesSettings, info: DeploymentInfo, workload: Workload
) -> dict[str, Any]:
    model_id = info.current_model_id
    image = model_image(settings, model_id)
    labels = _labels(settings, info.id, COMPONENT_PREDICTION_SERVER)
    pod_labels = {**labels, LABEL_MODEL: label_value(model_id)}
    annotations = {**_annotations(settings, info), ANNOTATION_IMAGE: image}
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": [
            {"name": "MLOPS_DEPLOYMENT_ID", "value": info.id},
            {"name": "MLOPS_MODEL_ID", "value": model_id},
            *settings.pps_extra_environment,
        ],
        "startupProbe": _ping_probe(period=5, failures=60),
        "readinessProbe": _ping_probe(period=5, failures=3),
        "livenessProbe": _ping_probe(period=10, failures=3),
        "securityContext": (
            DEFAULT_CONTAINER_SECURITY_CONTEXT
            if settings.pps_security_context is None
            else settings.pps_security_context
        ),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    resources = container_resources(settings, workload)
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "serviceAccountName": settings.pps_service_account,
        "automountServiceAccountToken": False,
        "securityContext": (
            DEFAULT_POD_SECURITY_CONTEXT
            if settings.pps_pod_security_context is None
            else settings.pps_pod_security_context
        ),
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in settings.image_pull_secrets]
    _place(pod_spec, settings.pps_node_selector, settings.pps_tolerations, settings.pps_affinity)
    spec: dict[str, Any] = {
        "selector": {"matchLabels": deployment_selector(info.id)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "progressDeadlineSeconds": settings.progress_deadline_seconds,
        "revisionHistoryLimit": 3,
        "template": {
            "metadata": {"labels": pod_labels, "annotations": {ANNOTATION_MODEL_ID: model_id}},
            "spec": pod_spec,
        },
    }
    if not workload.autoscaled:  # with an HPA, the HPA owns the replica count
        spec["replicas"] = workload.replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": resource_name(info.id), "labels": pod_labels, "annotations": annotations},
        "spec": spec,
    }


def _place(
    pod_spec: dict[str, Any],
    node_selector: dict[str, Any],
    tolerations: tuple[dict[str, Any], ...],
    affinity: dict[str, Any],
) -> None:
    """Where the pods may run: node selector, tolerations and affinity, when configured."""
    if node_selector:
        pod_spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        pod_spec["tolerations"] = [dict(t) for t in tolerations]
    if affinity:
        pod_spec["affinity"] = dict(affinity)


def _ping_probe(*, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/ping", "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 3,
    }


def render_service(settings: KubernetesSettings, info: DeploymentInfo) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": resource_name(info.id),
            "labels": _labels(settings, info.id, COMPONENT_PREDICTION_SERVER),
            "annotations": _annotations(settings, info),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": deployment_selector(info.id),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def ingress_path(settings: KubernetesSettings, deployment_id: str) -> str:
    """The Ingress path: ``<prefix path>/<deployment id>/…`` (regex for nginx, prefix for OpenShift)."""
    segment = quote(deployment_id, safe="")
    if settings.ingress_type is IngressType.OPENSHIFT:
        return f"{settings.url_path_prefix}/{segment}"
    return f"{settings.url_path_prefix}/{re.escape(segment)}(/|$)(.*)"


def render_ingress(settings: KubernetesSettings, info: DeploymentInfo) -> dict[str, Any]:
    annotations = dict(_annotations(settings, info))
    if settings.ingress_type is IngressType.OPENSHIFT:
        annotations["haproxy.router.openshift.io/rewrite-target"] = "/"
        path_type = "Prefix"
    else:
        annotations["nginx.ingress.kubernetes.io/rewrite-target"] = "/$2"
        annotations["nginx.ingress.kubernetes.io/use-regex"] = "true"
        if settings.uses_tls:
            annotations["nginx.ingress.kubernetes.io/force-ssl-redirect"] = "true"
        path_type = "ImplementationSpecific"
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": ingress_path(settings, info.id),
                    "pathType": path_type,
                    "backend": {"service": {"name": resource_name(info.id), "port": {"name": "http"}}},
                }
            ]
        }
    }
    if settings.url_host:
        rule["host"] = settings.url_host
    spec: dict[str, Any] = {"rules": [rule]}
    if settings.ingress_class:
        spec["ingressClassName"] = settings.ingress_class
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": resource_name(info.id),
            "labels": _labels(settings, info.id, COMPONENT_PREDICTION_SERVER),
            "annotations": annotations,
        },
        "spec": spec,
    }


def render_hpa(settings: KubernetesSettings, info: DeploymentInfo, workload: Workload) -> dict[str, Any]:
    """``autoscaling/v1`` on CPU: the one HPA version served by every Kubernetes from 1.21 on."""
    assert workload.min_replicas is not None and workload.max_replicas is not None
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": resource_name(info.id),
            "labels": _labels(settings, info.id, COMPONENT_PREDICTION_SERVER),
            "annotations": _annotations(settings, info),
        },
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": resource_name(info.id)},
            "minReplicas": workload.min_replicas,
            "maxReplicas": workload.max_replicas,
            "targetCPUUtilizationPercentage": workload.target_cpu_percent
            or settings.pps_cpu_utilization_percent,
        },
    }


def render_pdb(settings: KubernetesSettings, info: DeploymentInfo) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": resource_name(info.id),
            "labels": _labels(settings, info.id, COMPONENT_PREDICTION_SERVER),
            "annotations": _annotations(settings, info),
        },
        "spec": {"minAvailable": 1, "selector": {"matchLabels": deployment_selector(info.id)}},
    }


def owned_by(manifest: dict[str, Any], owner: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with an owner reference to ``owner`` (a live object, so it has a uid)."""
    reference = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
    metadata = {**manifest["metadata"], "ownerReferences": [reference]}
    return {**manifest, "metadata": metadata}


# -- image build (Kaniko) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuildPlan:
    """A Kaniko Job and the ConfigMaps carrying its build context (Dockerfile + package chunks)."""

    image: str
    job: dict[str, Any]
    context_configmaps: list[dict[str, Any]]


def render_dockerfile(settings: KubernetesSettings, model_id: str) -> str:
    """The frozen model image: the base image plus the package in ``/opt/ml/model/``.

    The base image's own entry point serves the single package it finds there
    (``shipmate serve --model /opt/ml/model/model.mlpkg --host 0.0.0.0 --port 8080``).
    """
    return (
        f"FROM {settings.pps_base_image}\n"
        f"COPY {MODEL_FILE} {MODEL_DIR}/{MODEL_FILE}\n"
        f'LABEL io.shipmate.model-id="{_docker_quote(model_id)}" '
        f'io.shipmate.base-image="{settings.pps_base_image}"\n'
        f'ENV MLOPS_MODEL_ID="{_docker_quote(model_id)}"\n'
    )


def _docker_quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def render_build(settings: KubernetesSettings, model_id: str, package: bytes) -> BuildPlan:
    """The Job that builds ``<generatedImageRepo>:m-<model id>`` from ``package``.

    The context travels in ConfigMaps (one for the Dockerfile, one per 900 KiB of
    package); an init container running the base image joins the chunks into an
    ``emptyDir`` and checks the package's SHA-256 before Kaniko builds and pushes.
    """
    image = model_image(settings, model_id)
    job_name = build_job_name(model_id)
    sha256 = hashlib.sha256(package).hexdigest()
    labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PART_OF: "shipmate",
        LABEL_COMPONENT: COMPONENT_IMAGE_BUILDER,
        LABEL_IMAGE_TAG: label_value(image_tag(model_id)),
        LABEL_MODEL: label_value(model_id),
    }
    annotations = {
        ANNOTATION_MODEL_ID: model_id,
        ANNOTATION_IMAGE: image,
        ANNOTATION_BASE_IMAGE: settings.pps_base_image,
        ANNOTATION_PACKAGE_SHA256: sha256,
    }
    chunks = [package[i : i + CONTEXT_CHUNK_BYTES] for i in range(0, len(package), CONTEXT_CHUNK_BYTES)] or [
        b""
    ]
    configmaps = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{job_name}-context", "labels": labels},
            "data": {"Dockerfile": render_dockerfile(settings, model_id)},
        }
    ]
    for index, chunk in enumerate(chunks):
        configmaps.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"{job_name}-part-{index:03d}", "labels": labels},
                "binaryData": {"part": base64.b64encode(chunk).decode("ascii")},
            }
        )
    part_paths = " ".join(f"/parts/{i:03d}/part" for i in range(len(chunks)))
    prepare_script = (
        "set -eu; "
        f"cat {part_paths} > /workspace/{MODEL_FILE}; "
        "cp /context/Dockerfile /workspace/Dockerfile; "
        f"cd /workspace && echo '{sha256}  {MODEL_FILE}' | sha256sum -c -"
    )
    volumes: list[dict[str, Any]] = [
        {"name": "workspace", "emptyDir": {}},
        {"name": "context", "configMap": {"name": f"{job_name}-context"}},
    ]
    prepare_mounts: list[dict[str, Any]] = [
        {"name": "workspace", "mountPath": "/workspace"},
        {"name": "context", "mountPath": "/context", "readOnly": True},
    ]
    for index in range(len(chunks)):
        volumes.append({"name": f"part-{index:03d}", "configMap": {"name": f"{job_name}-part-{index:03d}"}})
        prepare_mounts.append(
            {"name": f"part-{index:03d}", "mountPath": f"/parts/{index:03d}", "readOnly": True}
        )
    kaniko_mounts: list[dict[str, Any]] = [{"name": "workspace", "mountPath": "/workspace"}]
    if settings.kaniko_configmap_name:
        volumes.append({"name": "docker-config", "configMap": {"name": settings.kaniko_configmap_name}})
        kaniko_mounts.append({"name": "docker-config", "mountPath": "/kaniko/.docker/", "readOnly": True})
    elif settings.kaniko_secret_name:
        volumes.append(
            {
                "name": "docker-config",
                "secret": {
                    "secretName": settings.kaniko_secret_name,
                    "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                },
            }
        )
        kaniko_mounts.append({"name": "docker-config", "mountPath": "/kaniko/.docker/", "readOnly": True})
    volumes.extend(settings.kaniko_extra_volumes)
    kaniko_mounts.extend(settings.kaniko_extra_volume_mounts)
    args = [
        "--context=dir:///workspace",
        "--dockerfile=/workspace/Dockerfile",
        f"--destination={image}",
        *(f"--insecure-registry={r}" for r in settings.kaniko_insecure_registries),
        *(f"--skip-tls-verify-registry={r}" for r in settings.kaniko_skip_ssl_verify_registries),
        *settings.kaniko_extra_arguments,
    ]
    kaniko: dict[str, Any] = {
        "name": "kaniko",
        "image": settings.kaniko_image,
        "args": args,
        "volumeMounts": kaniko_mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if settings.kaniko_resources:
        kaniko["resources"] = settings.kaniko_resources
    prepare = {
        "name": "prepare-context",
        "image": settings.pps_base_image,
        "command": ["sh", "-c", prepare_script],
        "volumeMounts": prepare_mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {**DEFAULT_CONTAINER_SECURITY_CONTEXT, "runAsNonRoot": True, "runAsUser": 10001},
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": settings.kaniko_service_account,
        "initContainers": [prepare],
        "containers": [kaniko],  # Kaniko unpacks image layers as root: it cannot run non-root
        "volumes": volumes,
    }
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in settings.image_pull_secrets]
    _place(pod_spec, settings.kaniko_node_selector, settings.kaniko_tolerations, settings.kaniko_affinity)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name, "labels": labels, "annotations": annotations},
        "spec": {
            "backoffLimit": 1,
            "activeDeadlineSeconds": max(60, int(settings.build_timeout_seconds)),
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
    return BuildPlan(image=image, job=job, context_configmaps=configmaps)
