"""Names, labels and annotations of every Kubernetes object the plugin creates (pure).

What ``deployment_list`` and ``deployment_stop`` rely on:

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

import hashlib
import re

from shipmate.plugin.info import DeploymentInfo
from shipmate.plugins.kubernetes.settings import KubernetesSettings

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


def object_labels(settings: KubernetesSettings, deployment_id: str, component: str) -> dict[str, str]:
    labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PART_OF: "shipmate",
        LABEL_COMPONENT: component,
        LABEL_DEPLOYMENT: label_value(deployment_id),
    }
    if settings.environment_id:
        labels[LABEL_ENVIRONMENT] = label_value(settings.environment_id)
    return labels


def object_annotations(settings: KubernetesSettings, info: DeploymentInfo) -> dict[str, str]:
    annotations = {ANNOTATION_DEPLOYMENT_ID: info.id, ANNOTATION_MODEL_ID: info.current_model_id}
    if info.name:
        annotations[ANNOTATION_DEPLOYMENT_NAME] = info.name
    if settings.environment_id:
        annotations[ANNOTATION_ENVIRONMENT_ID] = settings.environment_id
    return annotations


# -- the deployment's key-value config ------------------------------------------------
