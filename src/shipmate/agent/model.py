"""The agent's value types: what the service wants, what the agent applied, what the plugin sees.

Plain frozen dataclasses with no I/O, so the reconciler that compares them stays
a pure function and its tests are tables of these values.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shipmate.common.vocabulary import DesiredState
from shipmate.plugin.actions import Action


class AppliedState(enum.StrEnum):
    """What the agent last made true in the environment for one deployment."""

    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"
    """The last action for this generation failed after every retry: wait for a new generation."""

    def __str__(self) -> str:
        return self.value


class ActionKind(enum.StrEnum):
    """Everything the reconciler can plan. The first five call the plugin."""

    START = "start"
    REPLACE_MODEL = "replace_model"
    STOP = "stop"
    RELAUNCH = "relaunch"
    STATUS = "status"
    ADOPT = "adopt"
    """The plugin already runs the desired model (found by ``deployment_list``): record it, report it."""
    REPORT = "report"
    """Nothing to do in the environment; the service's record lags behind what was applied."""
    REPORT_UNKNOWN = "report_unknown"
    """The plugin runs a deployment the service does not know."""
    FORGET = "forget"
    """Drop local bookkeeping for a deployment that is gone everywhere."""
    NOTICE = "notice"
    """Tell the service why nothing is done (e.g. self-healing gave up)."""

    @property
    def plugin_action(self) -> Action | None:
        """The plugin contract's action name, for kinds that call the plugin."""
        return _PLUGIN_ACTIONS.get(self)

    def __str__(self) -> str:
        return self.value


_PLUGIN_ACTIONS = {
    ActionKind.START: Action.DEPLOYMENT_START,
    ActionKind.REPLACE_MODEL: Action.DEPLOYMENT_REPLACE_MODEL,
    ActionKind.STOP: Action.DEPLOYMENT_STOP,
    ActionKind.RELAUNCH: Action.DEPLOYMENT_RELAUNCH,
    ActionKind.STATUS: Action.DEPLOYMENT_STATUS,
}


@dataclass(frozen=True, slots=True)
class ModelPackageRef:
    """The model package a deployment should serve, with the checksum its download must match."""

    id: str
    sha256: str | None = None
    name: str | None = None
    version: str | None = None
    size: int | None = None


@dataclass(frozen=True, slots=True)
class ServiceObserved:
    """What the service last recorded from the agent (``observed`` in the API)."""

    generation: int = 0
    state: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class DesiredDeployment:
    """One deployment's desired spec as the service publishes it (built from the client's typed
    ``Deployment`` by ``service_client.desired_from``, the one place the API's form is read)."""

    id: str
    generation: int
    state: DesiredState
    model_package: ModelPackageRef
    relaunch_generation: int = 0
    force: bool = False
    name: str | None = None
    description: str | None = None
    key_value_config: Mapping[str, Any] = field(default_factory=dict)
    observed: ServiceObserved = field(default_factory=ServiceObserved)

    @property
    def model_package_id(self) -> str:
        return self.model_package.id


@dataclass(frozen=True, slots=True)
class AppliedRecord:
    """What the agent last applied to one deployment; persisted in the work directory."""

    deployment_id: str
    generation: int
    state: AppliedState
    model_package_id: str | None
    relaunch_generation: int = 0
    message: str | None = None
    reported_state: str | None = None
    """The deployment state the agent reported for ``generation`` (``ready``, ``stopped``, ``errored``)."""


@dataclass(frozen=True, slots=True)
class Observation:
    """What the plugin last said about one deployment.

    ``exists`` is None when the plugin has not been asked; ``healthy`` is None
    when only presence is known (``deployment_list``).
    """

    exists: bool | None = None
    model_id: str | None = None
    healthy: bool | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class PlannedAction:
    """One step of the plan, with the reason it is needed."""

    deployment_id: str
    kind: ActionKind
    reason: str
    generation: int = 0
    desired: DesiredDeployment | None = None
    force: bool = False
    """A force delete: one attempt, no retries, the record is removed whatever the result."""
    report_state: str | None = None
    """For ``report``: the deployment state to report."""
    self_heal: bool = False
    """A relaunch the agent chose itself: the plugin reports the deployment missing or errored."""

    def __str__(self) -> str:
        return f"{self.kind.value} {self.deployment_id} (generation {self.generation}): {self.reason}"


@dataclass(frozen=True, slots=True)
class Policy:
    """The knobs of the decision, from the agent's settings."""

    stop_unknown_deployments: bool = False
    max_self_heal_attempts: int = 3
