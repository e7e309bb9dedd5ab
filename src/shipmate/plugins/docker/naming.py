"""Names, labels and image tags: how the plugin finds its own things again (pure).

Containers carry labels that are enough to rebuild every deployment's record
after an agent restart (``deployment_list``); names follow the contract's
``<containerNamePrefix><deployment id>_<model id>``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shipmate.plugin.errors import ConfigError
from shipmate.plugin.info import DeploymentInfo

LABEL_PREFIX = "org.shipmate."
MANAGED_BY = LABEL_PREFIX + "managed-by"
MANAGED_BY_VALUE = "shipmate-docker-plugin"
ENVIRONMENT = LABEL_PREFIX + "environment"
ROLE = LABEL_PREFIX + "role"
DEPLOYMENT_ID = LABEL_PREFIX + "deployment-id"
DEPLOYMENT_NAME = LABEL_PREFIX + "deployment-name"
MODEL_ID = LABEL_PREFIX + "model-id"
MODEL_EXECUTION_TYPE = LABEL_PREFIX + "model-execution-type"
PACKAGE_DIGEST = LABEL_PREFIX + "package-sha256"
PREDICTION_URL = LABEL_PREFIX + "prediction-url"
MODEL_FILE = LABEL_PREFIX + "model-file"

ROLE_DEPLOYMENT = "deployment"
ROLE_PROXY = "reverse-proxy"
ROLE_TRACKING_AGENT = "tracking-agent"
ROLE_RABBITMQ = "rabbitmq"

PREDICTION_PORT = 8080
"""Port the prediction server listens on inside its container."""

MODEL_DIR = "/opt/ml/model"
"""Where a model image holds its package (the Portable Prediction Server's layout)."""

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_id(value: str, what: str) -> str:
    """Ids become parts of container names, URL paths and proxy config: keep them to a safe alphabet."""
    if not _SAFE_ID.match(value):
        raise ConfigError(
            f"{what} {value!r} cannot be used by the Docker plugin: it must start with a letter or digit and "
            "hold only letters, digits, '_', '.', '-' (at most 128 characters)"
        )
    return value


def container_name(prefix: str, deployment_id: str, model_id: str) -> str:
    """``<containerNamePrefix><deployment id>_<model id>``, the contract's convention."""
    return f"{prefix}{check_id(deployment_id, 'deployment id')}_{check_id(model_id, 'model id')}"


def environment_container_name(prefix: str, environment_id: str, role: str) -> str:
    """One proxy (and tracking agent) per environment: ``<prefix><role>`` plus the environment id."""
    suffix = re.sub(r"[^A-Za-z0-9_.-]", "-", environment_id)
    return f"{prefix}{role.replace('-', '_')}_{suffix}"


def model_image(generated_image_prefix: str, digest: str) -> str:
    """Model images are named by content: the same package on the same base is built once."""
    return f"{generated_image_prefix}model:{digest[:20]}"


@dataclass(frozen=True, slots=True)
class PackageDigest:
    """Content hash of a model package plus the base image it is layered on."""

    package_sha256: str
    image_digest: str
    """sha256 over the package hash and the base image id: the model image's identity."""


def package_digest(artifact: Path, base_image_id: str) -> PackageDigest:
    """Hash the package in chunks (packages can be large) and bind it to the base image."""
    sha = hashlib.sha256()
    with open(artifact, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    package_sha = sha.hexdigest()
    combined = hashlib.sha256(f"{package_sha}\n{base_image_id}\n{artifact.name}".encode()).hexdigest()
    return PackageDigest(package_sha256=package_sha, image_digest=combined)


def environment_labels(environment_id: str, role: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGED_BY_VALUE, ENVIRONMENT: environment_id, ROLE: role}


def deployment_labels(
    environment_id: str,
    info: DeploymentInfo,
    *,
    package_sha256: str,
    prediction_url: str,
    model_file: str,
) -> dict[str, str]:
    """Everything ``deployment_list`` needs to report a deployment without the agent's memory."""
    labels = environment_labels(environment_id, ROLE_DEPLOYMENT)
    labels.update(
        {
            DEPLOYMENT_ID: info.id,
            DEPLOYMENT_NAME: info.name or "",
            MODEL_ID: current_model_id(info),
            MODEL_EXECUTION_TYPE: info.model_execution_type or "",
            PACKAGE_DIGEST: package_sha256,
            PREDICTION_URL: prediction_url,
            MODEL_FILE: model_file,
            # DataRobot's Docker plugin labels, for tools written against it.
            "mlops": "",
            "mlops.deployment_id": info.id,
            "mlops.model_id": current_model_id(info),
            "mlops.prediction_port": str(PREDICTION_PORT),
            "model_execution_type": info.model_execution_type or "",
        }
    )
    return labels


def current_model_id(info: DeploymentInfo) -> str:
    """The model the deployment should serve: ``newModelId`` during a replacement, else ``modelId``."""
    return info.new_model_id or info.model_id


def selector(environment_id: str, role: str | None = None) -> dict[str, list[str]]:
    """Docker API filter for this plugin's containers in one environment."""
    wanted = [f"{MANAGED_BY}={MANAGED_BY_VALUE}", f"{ENVIRONMENT}={environment_id}"]
    if role:
        wanted.append(f"{ROLE}={role}")
    return {"label": wanted}


def prediction_url(outfacing_prefix: str, deployment_id: str) -> str:
    """``<outfacingPredictionURLPrefix>/<deployment id>/predict``, the seed's URL shape."""
    return f"{outfacing_prefix.rstrip('/')}/{deployment_id}/predict"


def label(labels: Mapping[str, str] | None, key: str) -> str | None:
    value = (labels or {}).get(key)
    return value or None
