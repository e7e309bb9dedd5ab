"""A deployment's workload settings (replicas, autoscaling, resources) from its key/values (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from shipmate.plugin.errors import ConfigError
from shipmate.plugins.kubernetes.settings import KubernetesSettings

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
