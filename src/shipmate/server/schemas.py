"""What goes over the wire (camelCase JSON), kept apart from the tables so nothing leaks.

Create, update and read shapes are separate: a token's hash never reaches a
response, and the secret appears only in ``TokenCreated``.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from shipmate.common.vocabulary import AGENT_EVENT_TYPES, DesiredState, EventType, ReportPhase
from shipmate.plugin.status import ActionStatus, DeploymentState
from shipmate.server.models import Platform, TokenKind

MAX_INT = 2**31 - 1


MAX_JSON_DEPTH = 32


def storable_text(value: str, where: str = "value") -> str:
    """Refuse what some supported store cannot keep: NUL characters (PostgreSQL) and unpaired
    surrogates (no UTF-8 encoding, so SQLite keeps them but nothing can read them back)."""
    if "\x00" in value:
        raise ValueError(f"{where}: must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"{where}: is not valid Unicode (an unpaired surrogate at character {exc.start})"
            ) from None
    return value


def _storable(value: str) -> str:
    return storable_text(value)


def storable_json(value: Any, path: str = "", depth: int = 0) -> Any:
    """Refuse what some supported store cannot keep, anywhere in a document: text that
    `storable_text` refuses (in keys too), non-finite numbers, integers beyond 64 bits,
    and nesting deeper than ``MAX_JSON_DEPTH``."""
    where = path or "value"
    if isinstance(value, str):
        storable_text(value, where)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: must be a finite number")
        if abs(value) >= 2**63:  # PostgreSQL's jsonb gives it back as an integer of that size
            raise ValueError(f"{where}: number out of range (at most ±9.2e18)")
    elif isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= 2**63:
            raise ValueError(f"{where}: integer out of range (at most ±9.2e18)")
    elif isinstance(value, dict | list):
        if depth >= MAX_JSON_DEPTH:
            raise ValueError(f"{where}: nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(value, dict):
            for key, item in value.items():
                storable_text(key, f"{where} (a key)")
                storable_json(item, f"{path}.{key}" if path else key, depth + 1)
        else:
            for index, item in enumerate(value):
                storable_json(item, f"{path}[{index}]", depth + 1)
    return value


Text = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(_storable)]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_storable)
]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=40), AfterValidator(_storable)]
JsonObject = Annotated[dict[str, Any], AfterValidator(storable_json)]
Generation = Annotated[int, Field(ge=1, le=MAX_INT)]


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class RequestModel(ApiModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# ---- model packages -------------------------------------------------------------------------


class ModelPackageSummary(ApiModel):
    id: str
    name: str
    version: str
    sha256: str
    size: int
    framework: str | None
    target_type: str | None


class ModelPackageOut(ModelPackageSummary):
    filename: str
    created_by: str
    created_at: dt.datetime
    manifest: dict[str, Any]


class ModelPackageList(ApiModel):
    items: list[ModelPackageOut]


# ---- environments ---------------------------------------------------------------------------


class EnvironmentCreate(RequestModel):
    name: Name
    platform: Platform
    description: Text = ""
    config: JsonObject = Field(default_factory=dict)
    plugin_config: JsonObject = Field(default_factory=dict)


class EnvironmentUpdate(RequestModel):
    description: Text | None = None
    config: JsonObject | None = None
    plugin_config: JsonObject | None = None


class Health(ApiModel):
    status: str
    message: str | None = None
    data: dict[str, Any] | None = None
    updated_at: dt.datetime | None = None


class OverallHealth(ApiModel):
    """The environment as a person should read it (``shipmate.common.health``): the worse of the
    agent's own check and its deployments' settled reports, and a count of them by state."""

    status: str
    deployments: str


class EnvironmentOut(ApiModel):
    id: str
    name: str
    description: str
    platform: Platform
    config: dict[str, Any]
    plugin_config: dict[str, Any]
    health: Health
    """As the agent last reported it."""
    overall: OverallHealth
    last_seen_at: dt.datetime | None
    agent_version: str | None
    created_by: str
    created_at: dt.datetime


class EnvironmentList(ApiModel):
    items: list[EnvironmentOut]


# ---- deployments ----------------------------------------------------------------------------


class DeploymentCreate(RequestModel):
    environment_id: Identifier
    model_package_id: Identifier
    name: Name
    description: Text = ""
    key_value_config: JsonObject = Field(default_factory=dict)
    active: bool = True
    """Start it at once (desired ``running``); ``false`` registers it stopped."""


class DeploymentUpdate(RequestModel):
    name: Name | None = None
    description: Text | None = None
    key_value_config: JsonObject | None = None


class ReplaceModel(RequestModel):
    model_package_id: Identifier


class DesiredSpec(ApiModel):
    state: DesiredState
    model_package_id: str
    relaunch_generation: int
    force: bool


class Observed(ApiModel):
    state: str
    generation: int
    status: str
    message: str | None
    action: str | None
    phase: str | None
    duration: float | None
    prediction_url: str | None
    model_package_id: str | None
    updated_at: dt.datetime | None


class DeploymentOut(ApiModel):
    id: str
    name: str
    description: str
    environment_id: str
    generation: int
    desired: DesiredSpec
    key_value_config: dict[str, Any]
    model_package: ModelPackageSummary
    observed: Observed
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime


class DeploymentPage(ApiModel):
    items: list[DeploymentOut]
    total: int
    limit: int
    offset: int


class DesiredStateOut(ApiModel):
    cursor: int
    deployments: list[DeploymentOut]


# ---- events ---------------------------------------------------------------------------------


class EventOut(ApiModel):
    id: int
    type: str
    timestamp: dt.datetime
    environment_id: str | None
    deployment_id: str | None
    generation: int | None
    actor: str
    message: str | None
    status: str | None
    data: dict[str, Any] | None


class EventPage(ApiModel):
    cursor: int
    events: list[EventOut]


# ---- the agent's reports --------------------------------------------------------------------


class Report(RequestModel):
    deployment_id: Identifier
    generation: Generation
    action: Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_storable)]
    phase: ReportPhase
    status: ActionStatus | None = None
    """Absent (null) while an action is only started: the observed status is then left as it was."""
    state: DeploymentState | None = None
    message: Text | None = None
    duration: Annotated[float, Field(ge=0, le=10**7, allow_inf_nan=False)] | None = None
    attempt: Annotated[int, Field(ge=1, le=MAX_INT)] | None = None
    data: JsonObject | None = None


class ReportBatch(RequestModel):
    reports: Annotated[list[Report], Field(max_length=10_000)]


class ReportResult(ApiModel):
    accepted: int
    stale: list[str]
    removed: list[str]
    unknown: list[str]


class HealthReport(RequestModel):
    status: ActionStatus
    message: Text | None = None
    data: JsonObject | None = None
    agent_version: Annotated[str, StringConstraints(max_length=100), AfterValidator(_storable)] | None = None


def _agent_may_post(value: EventType) -> EventType:
    if not value.agent_may_post:
        allowed = ", ".join(sorted(AGENT_EVENT_TYPES))
        raise ValueError(f"an agent may post only these event types: {allowed}")
    return value


class AgentEvent(RequestModel):
    type: Annotated[EventType, AfterValidator(_agent_may_post)]
    deployment_id: Identifier | None = None
    message: Text | None = None
    status: ActionStatus | None = None
    data: JsonObject | None = None


# ---- tokens ---------------------------------------------------------------------------------


class TokenCreate(RequestModel):
    name: Name
    kind: TokenKind = TokenKind.AGENT
    environment_id: Identifier | None = None


class TokenOut(ApiModel):
    id: str
    name: str
    kind: TokenKind
    environment_id: str | None
    prefix: str
    created_by: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class TokenCreated(ApiModel):
    token: TokenOut
    secret: str
    """Shown once; only its hash is kept."""


class TokenList(ApiModel):
    items: list[TokenOut]


class FieldProblem(ApiModel):
    field: str
    in_: str = Field(alias="in")
    reason: str


class ErrorBody(ApiModel):
    """Every error the service answers (4xx and 503): one sentence, and the input at fault."""

    detail: str
    field: str | None = None
    errors: list[FieldProblem] | None = None
    """For 422s on request validation: every field at fault, the first of which ``detail`` names."""
