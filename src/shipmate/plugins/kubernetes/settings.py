"""The Kubernetes plugin's settings: ``plugin.k8s.conf.yaml`` merged over ``pluginConfig``.

Every key of the documented ``plugin.k8s.conf.yaml`` is accepted with its
documented meaning; a few more (Kaniko and prediction-server tuning, timeouts)
carry the names DataRobot's package uses, so a config written for it works here.
Parsing is pure: a mapping in, a frozen ``KubernetesSettings`` out, or a
``ConfigError`` naming the key and what is wrong with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlsplit

from shipmate.plugin.errors import ConfigError
from shipmate.plugins.kubernetes.monitoring import MonitoringSettings, parse_monitoring

IN_CLUSTER = "IN_CLUSTER"
"""``kubeConfigContext`` value meaning: use the pod's service account."""

DEFAULT_KANIKO_IMAGE = "gcr.io/kaniko-project/executor:v1.5.2"
"""The documented default of ``kanikoImage`` (the chart sets its own)."""

_IMAGE_REF = re.compile(
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$"
)
_REPOSITORY = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


class IngressType(StrEnum):
    """Which ingress controller's path and rewrite conventions to render."""

    NGINX = "nginx"
    OPENSHIFT = "openshift"


@dataclass(frozen=True, slots=True)
class KubernetesSettings:
    """Everything the plugin needs to know about its cluster, registry and images."""

    outfacing_prediction_url_prefix: str
    """External URL prefix; a deployment answers under ``<prefix>/<deployment id>/``."""
    pps_base_image: str
    """Prediction-server base image the model image is built FROM."""
    generated_image_repo: str
    """Repository (no tag) model images are pushed to, tagged ``m-<model package id>``."""
    kube_config_context: str = IN_CLUSTER
    kube_config_file: str | None = None
    kube_namespace: str | None = None
    environment_id: str | None = None
    """Prediction environment id, from ``pluginConfig`` or ``peInfo``; labels every object."""
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)
    """``MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING``, ``agentImage``, ``agentSidecar`` ...: see `monitoring`."""
    ingress_class: str | None = None
    ingress_type: IngressType = IngressType.NGINX
    kaniko_image: str = DEFAULT_KANIKO_IMAGE
    kaniko_configmap_name: str | None = None
    kaniko_secret_name: str | None = None
    kaniko_service_account: str = "default"
    kaniko_insecure_registries: tuple[str, ...] = ()
    kaniko_skip_ssl_verify_registries: tuple[str, ...] = ()
    kaniko_extra_arguments: tuple[str, ...] = ()
    kaniko_extra_volumes: tuple[dict[str, Any], ...] = ()
    kaniko_extra_volume_mounts: tuple[dict[str, Any], ...] = ()
    kaniko_resources: dict[str, Any] = field(default_factory=dict)
    pps_service_account: str = "default"
    pps_resources: dict[str, Any] = field(default_factory=dict)
    pps_pod_security_context: dict[str, Any] | None = None
    """``None`` means Shipmate's non-root default; ``{}`` lets the platform decide (OpenShift)."""
    pps_security_context: dict[str, Any] | None = None
    pps_cpu_utilization_percent: int = 80
    pps_node_selector: dict[str, Any] = field(default_factory=dict)
    pps_tolerations: tuple[dict[str, Any], ...] = ()
    pps_affinity: dict[str, Any] = field(default_factory=dict)
    pps_extra_environment: tuple[dict[str, Any], ...] = ()
    """Extra env entries (``{name, value}`` or ``{name, valueFrom}``) of every prediction server."""
    kaniko_node_selector: dict[str, Any] = field(default_factory=dict)
    kaniko_tolerations: tuple[dict[str, Any], ...] = ()
    kaniko_affinity: dict[str, Any] = field(default_factory=dict)
    image_pull_secrets: tuple[str, ...] = ()
    progress_deadline_seconds: int = 600
    """Kubernetes marks a rollout failed (ProgressDeadlineExceeded) after this many seconds."""
    rollout_timeout_seconds: float = 900.0
    """How long an action waits for a rollout before it reports failure."""
    build_timeout_seconds: float = 1500.0
    """How long an action waits for a Kaniko build (the contract's budget is 27.5 min per action)."""
    poll_interval_seconds: float = 5.0

    @property
    def url_path_prefix(self) -> str:
        """The path part of the outfacing URL, without a trailing slash ("" at the root)."""
        return urlsplit(self.outfacing_prediction_url_prefix).path.rstrip("/")

    @property
    def url_host(self) -> str | None:
        """The Ingress host: the URL's host name, or ``None`` for an IP address."""
        host = urlsplit(self.outfacing_prediction_url_prefix).hostname
        if host is None or re.fullmatch(r"[0-9.]+|\[?[0-9a-fA-F:]+\]?", host):
            return None
        return host

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.outfacing_prediction_url_prefix).scheme == "https"

    def prediction_url(self, deployment_id: str) -> str:
        """Where clients send predictions for ``deployment_id`` (the prediction server's ``/predictions``);
        the id is percent-encoded exactly as in the Ingress path."""
        segment = quote(deployment_id, safe="")
        return f"{self.outfacing_prediction_url_prefix.rstrip('/')}/{segment}/predictions"


# (kind, a fragment of the field path the API server names, the setting that fills that field);
# the first match wins, so the more specific fragments come first.
_FIELD_SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("Job", "volumeMounts", "kanikoExtraVolumeMounts"),
    ("Job", "volumes", "kanikoExtraVolumes"),
    ("Job", "tolerations", "kanikoTolerations"),
    ("Job", "affinity", "kanikoAffinity"),
    ("Job", "nodeSelector", "kanikoNodeSelector"),
    ("Job", "resources", "kanikoResources"),
    ("Job", "args", "kanikoExtraArguments"),
    ("Deployment", "tolerations", "ppsTolerations"),
    ("Deployment", "affinity", "ppsAffinity"),
    ("Deployment", "nodeSelector", "ppsNodeSelector"),
    ("Deployment", ".env", "ppsExtraEnvironment"),
    ("Deployment", "resources", "ppsResources (or the deployment's cpu/memory key-values)"),
    ("Deployment", "containers[0].securityContext", "ppsSecurityContext"),
    ("Deployment", "securityContext", "ppsPodSecurityContext"),
    ("Deployment", "imagePullSecrets", "imagePullSecrets"),
)


def setting_behind(kind: str, server_message: str) -> str | None:
    """The plugin setting that filled the field an API server's rejection names, if any."""
    for fragment_kind, fragment, setting in _FIELD_SETTINGS:
        if fragment_kind == kind and fragment in server_message:
            return setting
    return None


def parse_settings(
    raw: Mapping[str, Any], *, environment_id: str | None = None, source: str = "config"
) -> KubernetesSettings:
    """Validate the merged plugin config; every error names the key and what is wrong."""
    r = _Reader(raw, source)
    url = r.required_str("outfacingPredictionURLPrefix")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or "<" in url:
        r.fail(
            "outfacingPredictionURLPrefix",
            f"expected an http(s):// URL such as https://models.example.com/deployments, got {url!r}",
        )
    pps = r.required_str("ppsBaseImage")
    if not _IMAGE_REF.match(pps):
        r.fail("ppsBaseImage", f"not a valid image reference: {pps!r}")
    repo = r.required_str("generatedImageRepo")
    if not _REPOSITORY.match(repo):
        r.fail(
            "generatedImageRepo",
            f"expected a repository without a tag (images are tagged m-<model package id>), got {repo!r}",
        )
    context = r.optional_str("kubeConfigContext") or IN_CLUSTER
    configmap = r.optional_str("kanikoConfigmapName")
    secret = r.optional_str("kanikoSecretName")
    if configmap and secret:
        r.fail(
            "kanikoSecretName",
            "set either kanikoConfigmapName or kanikoSecretName, not both (both become Kaniko's config.json)",
        )
    ingress_type_text = (r.optional_str("ingressType") or IngressType.NGINX.value).lower()
    try:
        ingress_type = IngressType(ingress_type_text)
    except ValueError:
        r.fail("ingressType", f"expected nginx or openshift, got {ingress_type_text!r}")
    env_id = r.optional_str("MLOPS_BOSUN_PRED_ENV_ID") or environment_id
    settings = KubernetesSettings(
        outfacing_prediction_url_prefix=url.rstrip("/"),
        pps_base_image=pps,
        generated_image_repo=repo,
        kube_config_context=context,
        kube_config_file=r.optional_str("kubeConfigFile"),
        kube_namespace=r.optional_str("kubeNamespace"),
        environment_id=env_id,
        monitoring=parse_monitoring(r),
        ingress_class=r.optional_str("ingressClass"),
        ingress_type=ingress_type,
        kaniko_image=r.optional_str("kanikoImage") or DEFAULT_KANIKO_IMAGE,
        kaniko_configmap_name=configmap,
        kaniko_secret_name=secret,
        kaniko_service_account=r.optional_str("kanikoServiceAccount") or "default",
        kaniko_insecure_registries=r.str_list("kanikoInsecureRegistries"),
        kaniko_skip_ssl_verify_registries=r.str_list("kanikoSkipSslVerifyRegistries"),
        kaniko_extra_arguments=r.str_list("kanikoExtraArguments"),
        kaniko_extra_volumes=r.mapping_list("kanikoExtraVolumes"),
        kaniko_extra_volume_mounts=r.mapping_list("kanikoExtraVolumeMounts"),
        kaniko_resources=r.mapping("kanikoResources") or {},
        pps_service_account=r.optional_str("ppsServiceAccount") or "default",
        pps_resources=r.mapping("ppsResources") or {},
        pps_pod_security_context=r.mapping("ppsPodSecurityContext"),
        pps_security_context=r.mapping("ppsSecurityContext"),
        pps_cpu_utilization_percent=r.positive_int("ppsCpuUtilizationPercent", 80, maximum=100),
        pps_node_selector=r.mapping("ppsNodeSelector") or {},
        pps_tolerations=r.object_list("ppsTolerations"),
        pps_affinity=r.mapping("ppsAffinity") or {},
        pps_extra_environment=r.mapping_list("ppsExtraEnvironment"),
        kaniko_node_selector=r.mapping("kanikoNodeSelector") or {},
        kaniko_tolerations=r.object_list("kanikoTolerations"),
        kaniko_affinity=r.mapping("kanikoAffinity") or {},
        image_pull_secrets=r.str_list("imagePullSecrets"),
        progress_deadline_seconds=r.positive_int("progressDeadlineSeconds", 600),
        rollout_timeout_seconds=r.positive_float("rolloutTimeoutSeconds", 900.0),
        build_timeout_seconds=r.positive_float("buildTimeoutSeconds", 1500.0),
        poll_interval_seconds=r.positive_float("pollIntervalSeconds", 5.0),
    )
    return settings


class _Reader:
    """Typed access to the raw mapping, with errors that name the key."""

    def __init__(self, raw: Mapping[str, Any], source: str) -> None:
        self.raw = raw
        self.source = source

    def fail(self, key: str, problem: str) -> Any:
        raise ConfigError(f"{self.source}: Kubernetes plugin setting {key!r}: {problem}")

    def optional_str(self, key: str) -> str | None:
        value = self.raw.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {type(value).__name__} {value!r}")
        return str(value).strip() or None

    def required_str(self, key: str) -> str:
        value = self.optional_str(key)
        if value is None:
            self.fail(key, "is required")
        assert value is not None
        if "<FILL" in value.upper():
            self.fail(key, f"still holds the placeholder {value!r}; fill in your own value")
        return value

    def str_list(self, key: str) -> tuple[str, ...]:
        value = self.raw.get(key)
        if value is None:
            return ()
        if isinstance(value, str) or not isinstance(value, list | tuple):
            self.fail(key, f"expected a list of strings, got {type(value).__name__}")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item:
                self.fail(f"{key}[{index}]", f"expected a non-empty string, got {item!r}")
        return tuple(value)

    def mapping(self, key: str) -> dict[str, Any] | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.fail(key, f"expected a mapping, got {type(value).__name__}")
        return {str(k): v for k, v in value.items()}

    def mapping_list(self, key: str) -> tuple[dict[str, Any], ...]:
        value = self.raw.get(key)
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            self.fail(key, f"expected a list of mappings, got {type(value).__name__}")
        out = []
        for index, item in enumerate(value):
            if not isinstance(item, Mapping) or not item.get("name"):
                self.fail(f"{key}[{index}]", f"expected a mapping with a 'name', got {item!r}")
            out.append({str(k): v for k, v in item.items()})
        return tuple(out)

    def object_list(self, key: str) -> tuple[dict[str, Any], ...]:
        value = self.raw.get(key)
        if value is None:
            return ()
        if not isinstance(value, list | tuple) or not all(isinstance(item, Mapping) for item in value):
            self.fail(key, f"expected a list of mappings, got {value!r}")
        return tuple({str(k): v for k, v in item.items()} for item in value)

    def positive_int(self, key: str, default: int, *, maximum: int | None = None) -> int:
        value = self.raw.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.fail(key, f"expected a positive whole number, got {value!r}")
        if maximum is not None and value > maximum:
            self.fail(key, f"expected at most {maximum}, got {value}")
        return int(value)

    def positive_float(self, key: str, default: float) -> float:
        value = self.raw.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            self.fail(key, f"expected a positive number of seconds, got {value!r}")
        return float(value)
