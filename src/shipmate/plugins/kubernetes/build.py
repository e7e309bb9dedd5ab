"""The frozen model image: a Kaniko Job and the ConfigMaps carrying its build context (pure)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from shipmate.plugins.kubernetes.manifests import (
    DEFAULT_CONTAINER_SECURITY_CONTEXT,
    place_pod,
)
from shipmate.plugins.kubernetes.naming import (
    ANNOTATION_BASE_IMAGE,
    ANNOTATION_IMAGE,
    ANNOTATION_MODEL_ID,
    ANNOTATION_PACKAGE_SHA256,
    COMPONENT_IMAGE_BUILDER,
    LABEL_COMPONENT,
    LABEL_IMAGE_TAG,
    LABEL_MANAGED_BY,
    LABEL_MODEL,
    LABEL_PART_OF,
    MANAGED_BY,
    MODEL_DIR,
    MODEL_FILE,
    build_job_name,
    image_tag,
    label_value,
    model_image,
)
from shipmate.plugins.kubernetes.settings import KubernetesSettings

CONTEXT_CHUNK_BYTES = 900 * 1024
"""Raw bytes of the model package per ConfigMap: a ConfigMap holds at most 1 MiB."""


# -- image build (Kaniko) ---------------------------------------------------------------


BUILD_JOB_TTL_SECONDS = 7 * 24 * 3600
"""How long a finished build Job (the record that an image exists) is kept."""


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
        "securityContext": {
            **DEFAULT_CONTAINER_SECURITY_CONTEXT,
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
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
    place_pod(pod_spec, settings.kaniko_node_selector, settings.kaniko_tolerations, settings.kaniko_affinity)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name, "labels": labels, "annotations": annotations},
        "spec": {
            "backoffLimit": 1,
            # Finished builds do not pile up (1.21+; ignored before): after a week the Job goes,
            # and a later deployment of that model rebuilds its image once.
            "ttlSecondsAfterFinished": BUILD_JOB_TTL_SECONDS,
            "activeDeadlineSeconds": max(60, int(settings.build_timeout_seconds)),
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
    return BuildPlan(image=image, job=job, context_configmaps=configmaps)
