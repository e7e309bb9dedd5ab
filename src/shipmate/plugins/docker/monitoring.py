"""Monitoring in a Docker environment: a RabbitMQ channel and the monitoring agent beside the proxy.

With ``MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING`` the plugin runs, per environment, one RabbitMQ
container (``rabbitmqImage``, ports ``rabbitmqPortMapping``) and one monitoring-agent container
(``agentImage``), as DataRobot's Docker plugin does; every prediction container publishes its
minute aggregates to the queue (``MLOPS_SPOOLER_TYPE=RABBITMQ`` ...) and the agent forwards
them to the service. The decisions (names, credentials, container specs, variables) are pure
functions of the config; `ensure_monitoring` and `monitoring_problems` are the engine I/O.

* The queue URL is the one source of the broker's credentials: user ``shipmate`` with a
  password derived from ``mlopsApiToken`` and the environment id (an HMAC), so every
  process of the plugin computes the same one without storing it, and nobody without the
  token can.
* The agent reaches the service at ``MLOPS_BOSUN_MONITORING_URL``. When that names this
  host's loopback (``localhost``, ``127.0.0.1``), a container on the bridge network cannot
  reach it, so the agent runs on the host's network and reaches the broker through its
  published AMQP port; otherwise it runs on ``dockerNetwork`` and uses the broker's name.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from shipmate import __version__
from shipmate.plugins.docker import naming
from shipmate.plugins.docker.config import DockerPluginConfig
from shipmate.plugins.docker.decisions import ContainerView
from shipmate.plugins.docker.engine import Engine, EngineError

LOCAL_AGENT_IMAGE = f"shipmate/monitoring-agent:{__version__}"
"""Built by ``make -C images``; used when ``agentImage`` is absent and cannot be pulled."""
LOCAL_RABBITMQ_IMAGE = f"shipmate/rabbitmq:{__version__}"
"""Built by ``make -C images`` from Debian's rabbitmq-server; used when ``rabbitmqImage`` cannot be pulled."""
QUEUE_NAME = "shipmate"
"""The durable queue every prediction container of the environment publishes to."""
AMQP_PORT = 5672
BROKER_USER = "shipmate"
BROKER_READY_LINE = "Server startup complete"
"""What RabbitMQ logs once it accepts connections (its own line, in the official image's log too)."""
CONFIG_DIGEST = naming.LABEL_PREFIX + "config-digest"
"""Label of the monitoring containers: a digest of what they were started with (recreated when it changes)."""


@dataclass(frozen=True, slots=True)
class Channel:
    """The environment's RabbitMQ channel as the prediction containers see it (by name, on the network)."""

    host: str
    user: str
    password: str = field(repr=False)
    queue_name: str = QUEUE_NAME

    def url(self, host: str | None = None, port: int = AMQP_PORT) -> str:
        """``amqp://user:password@host:port/%2F`` (the default virtual host)."""
        credentials = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return f"amqp://{credentials}@{host or self.host}:{port}/%2F"


def rabbitmq_name(config: DockerPluginConfig) -> str:
    return naming.environment_container_name(config.prefix, config.environment_id, naming.ROLE_RABBITMQ)


def agent_name(config: DockerPluginConfig) -> str:
    return naming.environment_container_name(config.prefix, config.environment_id, naming.ROLE_TRACKING_AGENT)


def channel(config: DockerPluginConfig) -> Channel:
    """The queue and its credentials, the same in every process of the plugin (derived, never stored)."""
    token = (config.api_token or "").encode()
    password = hmac.new(token, f"shipmate-rabbitmq/{config.environment_id}".encode(), hashlib.sha256)
    return Channel(host=rabbitmq_name(config), user=BROKER_USER, password=password.hexdigest()[:32])


def prediction_environment(config: DockerPluginConfig) -> dict[str, str]:
    """What every prediction container gets, in both forms DataRobot's plugin passes: the
    ``MLOPS_*`` variables and the settings string (``MLOPS_DEPLOYMENT_ID`` / ``MLOPS_MODEL_ID``
    are the rollout's, set for every container)."""
    if not config.monitoring_enabled:
        return {"PREDICTION_API_MONITORING_ENABLED": "False"}
    queue = channel(config)
    settings = (
        f"spooler_type=RABBITMQ;rabbitmq_queue_url={queue.url()};rabbitmq_queue_name={queue.queue_name}"
    )
    return {
        "PREDICTION_API_MONITORING_ENABLED": "True",
        "MLOPS_SPOOLER_TYPE": "RABBITMQ",
        "MLOPS_RABBITMQ_QUEUE_URL": queue.url(),
        "MLOPS_RABBITMQ_QUEUE_NAME": queue.queue_name,
        "PREDICTION_API_MONITORING_SETTINGS": settings,
        "PORTABLE_PREDICTION_API_MONITORING_SETTINGS": settings,
    }


def agent_on_host_network(config: DockerPluginConfig) -> bool:
    """A service on this host's loopback is reachable only from the host's own network namespace."""
    host = urlsplit(config.monitoring_url or "").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def rabbitmq_spec(config: DockerPluginConfig, image: str) -> dict[str, Any]:
    """``Engine.run`` arguments of the broker: credentials from the queue URL, the documented ports."""
    queue = channel(config)
    ports = {f"{c}/tcp": (config.publish_address, h or None) for c, h in config.rabbitmq_port_mapping.items()}
    return {
        "image": image,
        "name": rabbitmq_name(config),
        "network": config.docker_network,
        "labels": {
            **naming.environment_labels(config.environment_id, naming.ROLE_RABBITMQ),
            CONFIG_DIGEST: _digest(image, queue.url()),
            "mlops.rabbitmq": "",
        },
        "environment": {"RABBITMQ_DEFAULT_USER": queue.user, "RABBITMQ_DEFAULT_PASS": queue.password},
        "ports": ports,
        "restart_policy": {"Name": "unless-stopped"},
    }


def agent_spec(config: DockerPluginConfig, image: str, broker_host_port: int | None) -> dict[str, Any]:
    """``Engine.run`` arguments of the monitoring agent, configured by DataRobot's agent variables.

    ``broker_host_port``: the broker's AMQP port as published on ``publishAddress`` (needed
    when the agent runs on the host's network)."""
    queue = channel(config)
    spec: dict[str, Any] = {"image": image, "name": agent_name(config)}
    if agent_on_host_network(config):
        if broker_host_port is None:
            raise EngineError(
                f"the monitoring agent must run on the host's network to reach {config.monitoring_url}, "
                f"and so needs RabbitMQ's port {AMQP_PORT} published: add it to rabbitmqPortMapping "
                f"(e.g. {{{AMQP_PORT}: 5673}}, or 0 for any free port)"
            )
        host = "127.0.0.1" if config.publish_address in ("0.0.0.0", "::") else config.publish_address
        url = queue.url(host, broker_host_port)
        spec["network_mode"] = "host"
    else:
        url = queue.url()
        spec["network"] = config.docker_network
    spec.update(
        {
            "labels": {
                **naming.environment_labels(config.environment_id, naming.ROLE_TRACKING_AGENT),
                CONFIG_DIGEST: _digest(image, url, config.monitoring_url or "", config.api_token or ""),
                "mlops.agent": "",
            },
            "environment": {
                "MLOPS_SERVICE_URL": config.monitoring_url or "",
                "MLOPS_API_TOKEN": config.api_token or "",
                "MLOPS_SPOOLER_TYPE": "RABBITMQ",
                "MLOPS_RABBITMQ_QUEUE_URL": url,
                "MLOPS_RABBITMQ_QUEUE_NAME": queue.queue_name,
                # Empty: the variables above, even in an image that names a config file (older ones did).
                "MLOPS_AGENT_CONFIG_YAML": "",
            },
            "restart_policy": {"Name": "unless-stopped"},
            "read_only": True,
            "tmpfs": {"/tmp": "rw,nosuid,nodev,size=64m,mode=1777"},
        }
    )
    return spec


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def up_to_date(view: ContainerView | None, spec: dict[str, Any]) -> bool:
    """Running, and started with what ``spec`` asks for now (token, URL and image unchanged)."""
    return (
        view is not None
        and view.running
        and naming.label(view.labels, CONFIG_DIGEST) == spec["labels"][CONFIG_DIGEST]
    )


# -- engine I/O -------------------------------------------------------------------------------


def resolve_image(engine: Engine, configured: str, local: str) -> tuple[str, str | None]:
    """``configured`` when present or pullable, else the locally built ``local``; and a note saying so."""
    try:
        engine.ensure_image(configured)
        return configured, None
    except EngineError as exc:
        if configured == local or engine.image_id(local) is None:
            raise
        return local, f"{configured} cannot be pulled ({str(exc).split(';')[0]}), using {local}"


def wait_for_broker(
    engine: Engine,
    name: str,
    timeout: float = 60.0,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Until a new broker accepts connections (about 10 s), so that neither the agent nor the
    prediction servers start by backing off; False after ``timeout`` (they then keep retrying)."""
    deadline = clock() + timeout
    while clock() < deadline:
        if BROKER_READY_LINE in engine.logs_tail(name, 50):
            return True
        view = engine.get(name)
        if view is None or view.status in ("exited", "dead"):
            tail = engine.logs_tail(name, 10).strip()
            raise EngineError(
                f"RabbitMQ container {name} stopped while starting" + (f":\n{tail}" if tail else "")
            )
        sleep(0.5)
    return False


def ensure_monitoring(engine: Engine, config: DockerPluginConfig) -> str:
    """Start (or restart, when stopped or outdated) the broker and then the agent; a one-line summary."""
    notes: list[str] = []
    broker = engine.get(rabbitmq_name(config))
    rabbit_image, note = resolve_image(engine, config.rabbitmq_image, LOCAL_RABBITMQ_IMAGE)
    notes += [note] if note else []
    spec = rabbitmq_spec(config, rabbit_image)
    if not up_to_date(broker, spec):
        engine.stop_and_remove(spec["name"], timeout=10)
        broker = engine.run(**spec)
        notes.append(f"{spec['name']} started ({rabbit_image})")
        if not wait_for_broker(engine, spec["name"]):
            notes.append("RabbitMQ did not report ready within 60 s (the agent keeps retrying)")
    assert broker is not None
    agent_image, note = resolve_image(engine, config.agent_image, LOCAL_AGENT_IMAGE)
    notes += [note] if note else []
    spec = agent_spec(config, agent_image, broker.ports.get(AMQP_PORT))
    if not up_to_date(engine.get(spec["name"]), spec):
        engine.stop_and_remove(spec["name"], timeout=10)
        engine.run(**spec)
        notes.append(f"{spec['name']} started ({agent_image})")
    return "monitoring: " + ("; ".join(notes) if notes else "RabbitMQ and the monitoring agent running")


def monitoring_problems(engine: Engine, config: DockerPluginConfig) -> list[str]:
    """What ``pe_status`` reports as a warning: a monitoring container that is not running."""
    problems = []
    for name, what in ((rabbitmq_name(config), "RabbitMQ"), (agent_name(config), "monitoring agent")):
        view = engine.get(name)
        if view is None or not view.running:
            state = "missing" if view is None else view.status
            problems.append(f"{what} container {name} is {state}: predictions are not monitored")
    return problems


def remove_monitoring(engine: Engine, config: DockerPluginConfig) -> None:
    """The agent first (it holds no data), then the broker."""
    engine.stop_and_remove(agent_name(config), timeout=10)
    engine.stop_and_remove(rabbitmq_name(config), timeout=10)
