"""Pure rendering of every Kubernetes object the plugin creates.

Functions here take settings and a deployment's description and return plain
manifests (dicts in the API's JSON shape). No I/O, no clock: the tests render
them from tables of cases and validate each against the official OpenAPI
schemas of the oldest and newest supported Kubernetes versions.

Names and labels are `naming`'s, workload settings `workload`'s, and the image build
`build`'s. Naming and labelling (what ``deployment_list`` and ``deployment_stop`` rely on):

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

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from shipmate.plugin.info import DeploymentInfo
from shipmate.plugins.kubernetes.apis import KNOWN_VERSIONS, NEWEST, ApiVersions
from shipmate.plugins.kubernetes.monitoring import wire_monitoring
from shipmate.plugins.kubernetes.naming import (
    ANNOTATION_IMAGE,
    ANNOTATION_MODEL_ID,
    COMPONENT_PREDICTION_SERVER,
    CONTAINER_NAME,
    CONTAINER_PORT,
    LABEL_MODEL,
    deployment_selector,
    label_value,
    model_image,
    object_annotations,
    object_labels,
    resource_name,
)
from shipmate.plugins.kubernetes.settings import IngressType, KubernetesSettings
from shipmate.plugins.kubernetes.workload import (
    Workload,
    container_resources,
    parse_workload,
)

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


def render_deployment_objects(
    settings: KubernetesSettings, info: DeploymentInfo, versions: ApiVersions = NEWEST
) -> DeploymentObjects:
    """Render the prediction-server objects of ``info`` (its current model) in the API
    versions the cluster serves (``versions``, from discovery)."""
    workload = parse_workload(info.key_value_config, settings)
    hpa_version = versions.of("HorizontalPodAutoscaler") or KNOWN_VERSIONS["HorizontalPodAutoscaler"][0]
    pdb_version = versions.of("PodDisruptionBudget") or KNOWN_VERSIONS["PodDisruptionBudget"][0]
    return DeploymentObjects(
        deployment=render_deployment(settings, info, workload),
        service=render_service(settings, info),
        ingress=render_ingress(settings, info),
        hpa=render_hpa(settings, info, workload, hpa_version) if workload.autoscaled else None,
        pdb=render_pdb(settings, info, pdb_version) if workload.needs_disruption_budget else None,
    )


def render_deployment(
    settings: KubernetesSettings, info: DeploymentInfo, workload: Workload
) -> dict[str, Any]:
    model_id = info.current_model_id
    image = model_image(settings, model_id)
    labels = object_labels(settings, info.id, COMPONENT_PREDICTION_SERVER)
    pod_labels = {**labels, LABEL_MODEL: label_value(model_id)}
    annotations = {**object_annotations(settings, info), ANNOTATION_IMAGE: image}
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
    place_pod(pod_spec, settings.pps_node_selector, settings.pps_tolerations, settings.pps_affinity)
    wire_monitoring(pod_spec, container, settings.monitoring, info)
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


def place_pod(
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
            "labels": object_labels(settings, info.id, COMPONENT_PREDICTION_SERVER),
            "annotations": object_annotations(settings, info),
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
    annotations = dict(object_annotations(settings, info))
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
            "labels": object_labels(settings, info.id, COMPONENT_PREDICTION_SERVER),
            "annotations": annotations,
        },
        "spec": spec,
    }


def render_hpa(
    settings: KubernetesSettings,
    info: DeploymentInfo,
    workload: Workload,
    api_version: str = KNOWN_VERSIONS["HorizontalPodAutoscaler"][0],
) -> dict[str, Any]:
    """An HPA on CPU utilisation in ``api_version`` (``autoscaling/v2``, ``v2beta2`` or ``v1``)."""
    assert workload.min_replicas is not None and workload.max_replicas is not None
    target = workload.target_cpu_percent or settings.pps_cpu_utilization_percent
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": resource_name(info.id)},
        "minReplicas": workload.min_replicas,
        "maxReplicas": workload.max_replicas,
    }
    if api_version == "autoscaling/v1":
        spec["targetCPUUtilizationPercentage"] = target
    else:
        spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}},
            }
        ]
    return {
        "apiVersion": api_version,
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": resource_name(info.id),
            "labels": object_labels(settings, info.id, COMPONENT_PREDICTION_SERVER),
            "annotations": object_annotations(settings, info),
        },
        "spec": spec,
    }


def render_pdb(
    settings: KubernetesSettings,
    info: DeploymentInfo,
    api_version: str = KNOWN_VERSIONS["PodDisruptionBudget"][0],
) -> dict[str, Any]:
    """Keep one pod up during voluntary disruptions (``policy/v1``, or ``v1beta1`` before 1.21)."""
    return {
        "apiVersion": api_version,
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": resource_name(info.id),
            "labels": object_labels(settings, info.id, COMPONENT_PREDICTION_SERVER),
            "annotations": object_annotations(settings, info),
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
