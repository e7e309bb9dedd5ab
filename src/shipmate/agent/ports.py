"""The agent's two boundaries, as protocols: the control-plane service and the plugin.

The runtime depends only on these; ``shipmate.agent.service_client`` adapts the
real ``shipmate.client.ShipmateClient``, the tests use in-memory fakes, and
``shipmate.agent.drivers`` runs plugins in-process or as external commands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shipmate.agent.model import DesiredDeployment
from shipmate.common.vocabulary import ReportPhase
from shipmate.plugin.actions import Action
from shipmate.plugin.info import DeploymentInfo
from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DeploymentState


class ControlPlaneUnavailable(Exception):
    """The service cannot be reached or answered 5xx: retry with back-off."""


class ControlPlaneRejected(Exception):
    """The service refused a request (4xx): retrying the same request will not help."""


@dataclass(frozen=True, slots=True)
class Report:
    """One action's progress or result, for ``POST /environments/{id}/reports``."""

    deployment_id: str
    generation: int
    action: Action
    phase: ReportPhase
    status: ActionStatus | None = None
    """None while an action is only started (the service then keeps the status it had)."""
    state: DeploymentState | None = None
    message: str | None = None
    duration: float | None = None
    attempt: int = 1
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    accepted: int = 0
    stale: Sequence[str] = ()
    removed: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class DesiredSnapshot:
    """Every deployment of the environment and the feed position read in the same transaction."""

    cursor: int
    deployments: Sequence[DesiredDeployment]


@dataclass(frozen=True, slots=True)
class Change:
    """One event of the change feed, reduced to what the agent acts on."""

    id: int
    type: str
    deployment_id: str | None = None
    generation: int | None = None
    timestamp: float | None = None
    """Seconds since the epoch, when the service stamped it (feed lag is measured from it)."""
    spec: DesiredDeployment | None = None
    """The full desired spec, carried by ``deployment.desired_changed``."""


@dataclass(frozen=True, slots=True)
class ChangePage:
    cursor: int
    changes: Sequence[Change]


@dataclass(frozen=True, slots=True)
class EnvironmentDescription:
    """What ``peInfo`` says about the environment."""

    id: str
    name: str | None = None
    description: str | None = None
    created_on: str | None = None
    created_by: str | None = None
    key_value_config: Mapping[str, Any] = field(default_factory=dict)
    plugin_config: Mapping[str, Any] = field(default_factory=dict)
    """``pluginConfig`` entries kept with the environment in the service (the agent's own file wins)."""


class ControlPlane(Protocol):
    """What the agent needs from the service. Methods raise ``ControlPlaneUnavailable`` or
    ``ControlPlaneRejected`` and nothing else."""

    def get_environment(self, environment_id: str) -> EnvironmentDescription: ...

    def desired_state(self, environment_id: str) -> DesiredSnapshot: ...

    def changes(self, environment_id: str, after: int, wait: float, limit: int = 500) -> ChangePage: ...

    def download_model_package(self, package_id: str, dest: Path) -> str:
        """Write the package to ``dest``; return the SHA-256 hex of what was written."""
        ...

    def report(self, environment_id: str, reports: Sequence[Report]) -> ReportOutcome: ...

    def report_health(
        self, environment_id: str, status: str, message: str | None, data: Mapping[str, Any]
    ) -> None: ...

    def post_event(
        self,
        environment_id: str,
        type: str,
        message: str,
        deployment_id: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """One plugin action, described in the contract's terms."""

    action: Action
    deployment_info: DeploymentInfo | None = None
    pe_deployments: Sequence[DeploymentInfo] = ()
    """``peInfo.deployments`` (full deploymentInfo entries), for ``pe_status``."""
    timeout: float = 1800.0


class PluginDriver(Protocol):
    """Runs plugin actions. ``run`` never raises: every failure is a ``failing`` status with a message."""

    def run(self, request: ActionRequest) -> ActionStatusInfo: ...

    def close(self) -> None: ...
