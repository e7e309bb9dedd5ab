"""Which API version of each kind to use, chosen from what the server says it serves (pure).

The plugin asks the API server once per connection (discovery: ``/api`` and ``/apis``)
and uses, for each kind, the newest version it knows that the server serves: a 1.20
cluster gets its HorizontalPodAutoscaler as ``autoscaling/v2beta2`` and its
PodDisruptionBudget as ``policy/v1beta1``, a current one ``autoscaling/v2`` and
``policy/v1``. A kind the server serves in none of the known versions is a missing
feature, reported before anything is applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

KNOWN_VERSIONS: dict[str, tuple[str, ...]] = {
    "Deployment": ("apps/v1",),
    "Service": ("v1",),
    "Ingress": ("networking.k8s.io/v1",),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "autoscaling/v2beta2", "autoscaling/v1"),
    "PodDisruptionBudget": ("policy/v1", "policy/v1beta1"),
    "Job": ("batch/v1",),
    "ConfigMap": ("v1",),
    "Pod": ("v1",),
}
"""Per kind, the versions the plugin can render and read, newest first."""

PLURALS: dict[str, str] = {
    "Deployment": "deployments",
    "Service": "services",
    "Ingress": "ingresses",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "Job": "jobs",
    "ConfigMap": "configmaps",
    "Pod": "pods",
}


def group_of(api_version: str) -> str:
    """``"apps"`` for ``"apps/v1"``, ``""`` for the core ``"v1"``."""
    return api_version.rpartition("/")[0]


@dataclass(frozen=True, slots=True)
class ApiVersions:
    """The version chosen for each kind; a kind absent from ``chosen`` is not served."""

    chosen: Mapping[str, str]

    def of(self, kind: str) -> str | None:
        return self.chosen.get(kind)

    def missing(self, kinds: Iterable[str] | None = None) -> list[str]:
        """One line per kind among ``kinds`` (default: all) that the server does not serve."""
        return [
            f"{kind} (none of {', '.join(KNOWN_VERSIONS[kind])})"
            for kind in (kinds if kinds is not None else KNOWN_VERSIONS)
            if kind not in self.chosen
        ]


def choose_versions(served: Iterable[str]) -> ApiVersions:
    """The newest known version of each kind among the ``served`` group versions."""
    available = set(served)
    chosen = {}
    for kind, versions in KNOWN_VERSIONS.items():
        for version in versions:
            if version in available:
                chosen[kind] = version
                break
    return ApiVersions(chosen)


NEWEST = ApiVersions({kind: versions[0] for kind, versions in KNOWN_VERSIONS.items()})
"""What a current cluster serves: the default when rendering without a cluster."""
