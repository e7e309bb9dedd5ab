"""Typed results of the service API (camelCase on the wire, snake_case here).

Unknown fields are ignored, so an older client keeps working against a newer service.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from shipmate.common import vocabulary
from shipmate.plugin.status import ActionStatus, DeploymentState


class WireModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ModelPackageSummary(WireModel):
    id: str
    name: str
    version: str
    sha256: str
    size: int
    framework: str | None = None
    target_type: str | None = None


class ModelPackage(ModelPackageSummary):
    filename: str
    created_by: str
    created_at: dt.datetime
    manifest: dict[str, Any] = Field(default_factory=dict)


class Health(WireModel):
    status: ActionStatus
    message: str | None = None
    data: dict[str, Any] | None = None
    updated_at: dt.datetime | None = None


class Environment(WireModel):
    id: str
    name: str
    description: str = ""
    platform: str
    config: dict[str, Any] = Field(default_factory=dict)
    plugin_config: dict[str, Any] = Field(default_factory=dict)
    health: Health
    last_seen_at: dt.datetime | None = None
    agent_version: str | None = None
    created_by: str
    created_at: dt.datetime


class DesiredSpec(WireModel):
    state: vocabulary.DesiredState
    model_package_id: str
    relaunch_generation: int = 0
    force: bool = False


class Observed(WireModel):
    state: DeploymentState
    generation: int
    status: ActionStatus
    message: str | None = None
    action: str | None = None
    phase: str | None = None
    duration: float | None = None
    prediction_url: str | None = None
    model_package_id: str | None = None
    updated_at: dt.datetime | None = None


class Deployment(WireModel):
    id: str
    name: str
    description: str = ""
    environment_id: str
    generation: int
    desired: DesiredSpec
    key_value_config: dict[str, Any] = Field(default_factory=dict)
    model_package: ModelPackageSummary
    observed: Observed
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime


class DeploymentPage(WireModel):
    items: list[Deployment]
    total: int
    limit: int
    offset: int


class DesiredState(WireModel):
    """An environment's work: every deployment its agent must act on, and where to follow changes from."""

    cursor: int
    deployments: list[Deployment]


class Event(WireModel):
    id: int
    type: str
    """An ``EventType`` value; kept as text so a newer service's new types do not break an older client."""
    timestamp: dt.datetime
    environment_id: str | None = None
    deployment_id: str | None = None
    generation: int | None = None
    actor: str
    message: str | None = None
    status: str | None = None
    data: dict[str, Any] | None = None

    def deployment(self) -> Deployment | None:
        """The deployment spec a ``deployment.desired_changed`` (or ``.updated``) event carries."""
        if self.type in _SPEC_EVENTS and self.data:
            return Deployment.model_validate(self.data)
        return None


_SPEC_EVENTS = (vocabulary.EventType.DESIRED_CHANGED, vocabulary.EventType.DEPLOYMENT_UPDATED)


class EventPage(WireModel):
    cursor: int
    events: list[Event]


class Report(WireModel):
    """One action result (or observation) from the agent, for the generation it applies to."""

    deployment_id: str
    generation: int
    action: str
    phase: vocabulary.ReportPhase = vocabulary.ReportPhase.FINISHED
    status: ActionStatus | None = None
    state: DeploymentState | None = None
    message: str | None = None
    duration: float | None = None
    attempt: int | None = None
    data: dict[str, Any] | None = None


class ReportResult(WireModel):
    accepted: int
    stale: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    unknown: list[str] = Field(default_factory=list)


class TokenInfo(WireModel):
    id: str
    name: str
    kind: str
    environment_id: str | None = None
    prefix: str
    created_by: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None
