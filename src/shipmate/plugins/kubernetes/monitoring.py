"""Monitoring in Kubernetes: the monitoring agent as a sidecar of every model pod (pure).

DataRobot's way, which the plugin follows: with ``MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING``
and ``agentSidecar`` (the default), each model pod gets a second container,
``tracking-agent`` (``agentImage``), and an ``emptyDir`` ``tracking-data`` at ``/tmp/ta``
that both containers mount. The prediction server's spool is forced to a filesystem spool
there (`SIDECAR_SPOOLER_SETTINGS`) and the agent forwards it to the service
(``MLOPS_BOSUN_MONITORING_URL``), with the API token read from an existing Secret
(``agentApiSecretName`` / ``agentApiSecretKey``; the Helm chart passes its own). Without
the sidecar, ``spoolerSettings`` names an external channel (a RabbitMQ queue, say) that
an agent elsewhere reads, and is required.

The agent is configured by the variables DataRobot's agent image reads, so either image
works. It has a liveness probe (``/healthz``) but no readiness probe: monitoring must never
take a pod out of its Service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shipmate.plugin.info import DeploymentInfo

if TYPE_CHECKING:  # settings calls parse_monitoring with its reader
    from shipmate.plugins.kubernetes.settings import _Reader

SIDECAR_NAME = "tracking-agent"
VOLUME_NAME = "tracking-data"
SPOOL_DIRECTORY = "/tmp/ta"
AGENT_PORT = 8123
SIDECAR_SPOOLER_SETTINGS = (
    f"spooler_type=FILESYSTEM;directory={SPOOL_DIRECTORY};max_files=50;file_max_size=10240000"
)
"""DataRobot's forced sidecar spool: 50 files of about 10 MB (at most about 490 MiB on the emptyDir)."""

DEFAULT_AGENT_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


@dataclass(frozen=True, slots=True)
class MonitoringSettings:
    """The plugin's monitoring keys; ``enabled`` false renders nothing."""

    enabled: bool = False
    sidecar: bool = True
    agent_image: str | None = None
    service_url: str | None = None
    api_secret_name: str | None = None
    api_secret_key: str = "secret"
    agent_resources: dict[str, Any] = field(default_factory=dict)
    agent_security_context: dict[str, Any] | None = None
    """``None``: Shipmate's default (read-only root, no capabilities); ``{}`` leaves it to the platform."""
    spooler_settings: str | None = None
    """The prediction server's settings string: `SIDECAR_SPOOLER_SETTINGS` with the sidecar."""


def parse_monitoring(r: _Reader) -> MonitoringSettings:
    """Read the monitoring keys; a missing one that monitoring needs is an error naming it."""
    enabled = _flag(r, "MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING", False)
    sidecar = _flag(r, "agentSidecar", True)
    settings = MonitoringSettings(
        enabled=enabled,
        sidecar=sidecar,
        agent_image=r.optional_str("agentImage"),
        service_url=r.optional_str("MLOPS_BOSUN_MONITORING_URL"),
        api_secret_name=r.optional_str("agentApiSecretName"),
        api_secret_key=r.optional_str("agentApiSecretKey") or "secret",
        agent_resources=r.mapping("agentResources") or {},
        agent_security_context=r.mapping("agentSecurityContext"),
        spooler_settings=SIDECAR_SPOOLER_SETTINGS if sidecar else r.optional_str("spoolerSettings"),
    )
    if not enabled:
        return settings
    if sidecar:
        for key, value, why in (
            ("agentImage", settings.agent_image, "the image of the monitoring agent sidecar"),
            ("MLOPS_BOSUN_MONITORING_URL", settings.service_url, "the service URL the sidecar reports to"),
            ("agentApiSecretName", settings.api_secret_name, "the Secret holding the sidecar's API token"),
        ):
            if not value:
                r.fail(key, f"is required when monitoring runs as a sidecar ({why})")
    elif not settings.spooler_settings:
        r.fail(
            "spoolerSettings",
            "is required when monitoring is enabled without the sidecar (agentSidecar: false): the channel "
            "the prediction servers report to, e.g. spooler_type=RABBITMQ;queue_url=amqp://...;queue_name=...",
        )
    return settings


def _flag(r: _Reader, key: str, default: bool) -> bool:
    value = r.raw.get(key)
    if value is None:
        return default
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        r.fail(key, f"expected true or false, got {value!r}")
    return bool(value)


def prediction_server_environment(monitoring: MonitoringSettings) -> list[dict[str, Any]]:
    """The prediction server's monitoring switch and settings string (the ids are always set)."""
    return [
        {"name": "PREDICTION_API_MONITORING_ENABLED", "value": "True"},
        {"name": "PREDICTION_API_MONITORING_SETTINGS", "value": monitoring.spooler_settings or ""},
    ]


def sidecar_container(monitoring: MonitoringSettings) -> dict[str, Any]:
    """The ``tracking-agent`` container: the shared spool in, the service out."""
    probe = {
        "httpGet": {"path": "/healthz", "port": "agent-metrics"},
        "periodSeconds": 20,
        "failureThreshold": 3,
        "timeoutSeconds": 3,
    }
    container: dict[str, Any] = {
        "name": SIDECAR_NAME,
        "image": monitoring.agent_image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "agent-metrics", "containerPort": AGENT_PORT, "protocol": "TCP"}],
        "env": [
            {"name": "MLOPS_SERVICE_URL", "value": monitoring.service_url},
            {
                "name": "MLOPS_API_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {"name": monitoring.api_secret_name, "key": monitoring.api_secret_key}
                },
            },
            {"name": "MLOPS_SPOOLER_TYPE", "value": "FILESYSTEM"},
            {"name": "MLOPS_FILESYSTEM_DIRECTORY", "value": SPOOL_DIRECTORY},
            {"name": "MLOPS_AGENT_SERVER_PORT", "value": str(AGENT_PORT)},
            # Empty: the variables above, even in an image that names a config file (older ones did).
            {"name": "MLOPS_AGENT_CONFIG_YAML", "value": ""},
            # DataRobot's agent image needs this on a spool shared between containers; Shipmate's ignores it.
            {"name": "MLOPS_FILESYSTEM_SKIP_LOCKFILE_CHECK", "value": "true"},
        ],
        "livenessProbe": probe,
        "securityContext": (
            DEFAULT_AGENT_SECURITY_CONTEXT
            if monitoring.agent_security_context is None
            else monitoring.agent_security_context
        ),
        "volumeMounts": [{"name": VOLUME_NAME, "mountPath": SPOOL_DIRECTORY}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if monitoring.agent_resources:
        container["resources"] = dict(monitoring.agent_resources)
    return container


def wire_monitoring(
    pod_spec: dict[str, Any], server: dict[str, Any], monitoring: MonitoringSettings, info: DeploymentInfo
) -> None:
    """Add monitoring to a rendered pod (``server`` is its prediction-server container), in place."""
    if not monitoring.enabled:
        return
    custom = (info.model_execution_type or "").lower() == "custom_inference_model"
    environment = prediction_server_environment(monitoring)
    if custom:  # DRUM's names for the same two settings
        environment += [
            {"name": "MONITOR", "value": "True"},
            {"name": "MONITOR_SETTINGS", "value": monitoring.spooler_settings or ""},
        ]
    server["env"] = [*server["env"], *environment]
    if not monitoring.sidecar:
        return
    server["volumeMounts"] = [*server["volumeMounts"], {"name": VOLUME_NAME, "mountPath": SPOOL_DIRECTORY}]
    pod_spec["containers"] = [*pod_spec["containers"], sidecar_container(monitoring)]
    pod_spec["volumes"] = [*pod_spec["volumes"], {"name": VOLUME_NAME, "emptyDir": {}}]
