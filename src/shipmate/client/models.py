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


class OverallHealth(WireModel):
    status: str
    deployments: str


class Environment(WireModel):
    id: str
    name: str
    description: str = ""
    platform: str
    config: dict[str, Any] = Field(default_factory=dict)
    plugin_config: dict[str, Any] = Field(default_factory=dict)
    health: Health
    """As the agent last reported it."""
    overall: OverallHealth | None = None
    """The agent's check joined with its deployments' reports (absent from older services)."""
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


class RecordProblem(WireModel):
    index: int
    id: str | None = None
    outcome: str
    reason: str | None = None
    seen_ids: list[str] = Field(default_factory=list)


class AggregateResult(WireModel):
    """What the service did with a batch of monitoring records."""

    stored: int
    duplicate: int
    rejected: int
    partial: int = 0
    problems: list[RecordProblem] = Field(default_factory=list)


class HealthFigures(WireModel):
    start: dt.datetime
    minutes: int
    total_predictions: int
    total_requests: int
    slow_requests: int
    response_time_ms: dict[str, float | None]
    execution_time_ms: dict[str, float | None]
    user_error_rate: float | None = None
    server_error_rate: float | None = None
    median_load: float | None = None
    peak_load: float | None = None
    distinct_consumers: int = 0
    consumers_capped: bool = False
    monitoring_lag_mean_s: float | None = None
    monitoring_lag_max_s: float | None = None
    dropped_records: int = 0
    coarsened: bool = False


class ColumnDrift(WireModel):
    """One feature's or model output's drift over a range (``status``: ok, warning, at_risk)."""

    name: str
    metric: str
    value: float | None = None
    threshold_warning: float | None = None
    threshold_at_risk: float | None = None
    rows: int = 0
    status: str
    drift_status: str = "ok"
    importance: float | None = None
    important: bool = False
    missing_rate: float | None = None
    out_of_range_rate: float | None = None
    new_category_rate: float | None = None
    signals: dict[str, str] = Field(default_factory=dict)
    reason: str | None = None


class DriftWindow(WireModel):
    start: dt.datetime
    end: dt.datetime
    rows: int


class Drift(WireModel):
    """A deployment's data and prediction drift over a range (``status``: green, yellow, red)."""

    deployment_id: str
    status: str
    metric: str
    since: dt.datetime
    until: dt.datetime
    rows: int
    min_rows: int
    reference: str
    features: list[ColumnDrift] = Field(default_factory=list)
    predictions: list[ColumnDrift] = Field(default_factory=list)
    windows: list[DriftWindow] = Field(default_factory=list)
    series: dict[str, list[ColumnDrift]] = Field(default_factory=dict)
    reason: str | None = None


class DriftSettings(WireModel):
    deployment_id: str
    metric: str
    min_rows: int
    reference_since: dt.datetime | None = None
    reference_until: dt.datetime | None = None
    starred: list[str] = Field(default_factory=list)
    updated_at: dt.datetime | None = None
    updated_by: str | None = None


class ServiceHealth(WireModel):
    """A deployment's service health over a range: a summary and one entry per period."""

    deployment_id: str
    model_id: str | None = None
    since: dt.datetime
    until: dt.datetime
    resolution: str
    slow_threshold_ms: float
    models: list[str] = Field(default_factory=list)
    last_received_at: dt.datetime | None = None
    summary: HealthFigures
    periods: list[HealthFigures] = Field(default_factory=list)


class ActualProblem(WireModel):
    index: int
    association_id: str | None = None
    outcome: str
    reason: str


class ActualsResult(WireModel):
    """What the service did with a batch of actuals: each refused row has a reason."""

    received: int
    stored: int
    duplicate: int
    rejected: int
    problems: list[ActualProblem] = Field(default_factory=list)


class AccuracyPeriod(WireModel):
    start: dt.datetime
    rows: int
    metrics: dict[str, float | None] = Field(default_factory=dict)


class Accuracy(WireModel):
    """A deployment's accuracy over a range, in total and per period of prediction time."""

    deployment_id: str
    target_type: str
    since: dt.datetime
    until: dt.datetime
    resolution: str
    rows: int
    metrics: dict[str, float | None]
    timeline: list[AccuracyPeriod] = Field(default_factory=list)


class Alert(WireModel):
    id: int
    deployment_id: str
    rule: str
    kind: str
    state: str
    opened_at: dt.datetime
    cleared_at: dt.datetime | None = None
    message: str


class AlertRule(WireModel):
    name: str
    kind: str
    metric: str | None = None
    threshold: float
    clear_threshold: float
    window_minutes: int
    enabled: bool
    last_value: float | None = None
