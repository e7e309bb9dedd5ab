"""Wire shapes of the monitoring routes (camelCase JSON): ingest of aggregates, service health.

The records themselves are the documented JSON of ``shipmate.monitoring.records``; they are
checked one by one by ``MinuteAggregate.from_json`` so a bad record is refused alone.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from shipmate.server.schemas import ApiModel, ErrorBody, RequestModel, storable_text

MAX_RECORDS_PER_BATCH = 10_000


class AggregateBatch(ApiModel):
    records: list[dict[str, Any]] = Field(
        max_length=MAX_RECORDS_PER_BATCH,
        description="Minute aggregates in the JSON form documented in docs/monitoring.md.",
    )


class RecordProblem(ApiModel):
    index: int
    """Position of the record in the batch."""
    id: str | None
    outcome: str
    """``duplicate``, ``rejected``, or ``partial`` (re-send the originals not in ``seenIds``)."""
    reason: str | None = None
    seen_ids: list[str] = Field(default_factory=list)


class AggregateResult(ApiModel):
    stored: int
    duplicate: int
    rejected: int
    partial: int
    problems: list[RecordProblem]


class HealthFigures(ApiModel):
    start: dt.datetime
    minutes: int
    total_predictions: int
    total_requests: int
    slow_requests: int
    response_time_ms: dict[str, float | None]
    execution_time_ms: dict[str, float | None]
    user_error_rate: float | None
    server_error_rate: float | None
    median_load: float | None
    """Requests per minute, median over the minutes with traffic."""
    peak_load: float | None
    distinct_consumers: int
    consumers_capped: bool
    monitoring_lag_mean_s: float | None
    monitoring_lag_max_s: float | None
    dropped_records: int
    coarsened: bool
    """Some buckets were already rolled up to hours: load within them is their average."""


class ServiceHealthOut(ApiModel):
    deployment_id: str
    model_id: str | None
    since: dt.datetime
    until: dt.datetime
    resolution: str
    slow_threshold_ms: float
    models: list[str]
    last_received_at: dt.datetime | None
    summary: HealthFigures
    periods: list[HealthFigures]


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no token, or an unknown or revoked one"},
    403: {"model": ErrorBody, "description": "the token may not reach this deployment"},
    422: {"model": ErrorBody, "description": "the request is malformed; the field is named"},
    503: {"model": ErrorBody, "description": "the database is unavailable; retry later"},
}


# ---- predictions with association ids, actuals, accuracy ---------------------------------------

MAX_ACTUALS_PER_BATCH = 10_000


class ActualIn(ApiModel):
    """One actual, DataRobot's shape. The fields are checked row by row on the service (a wrong
    type refuses that row with a reason, not the whole request)."""

    association_id: Any = Field(description="the association id the prediction carried")
    actual_value: Any = Field(description="a class label, or a number for regression")
    timestamp: Any = Field(default=None, description="when the actual happened (ISO 8601); default: now")
    was_acted_on: Any = Field(default=None, description="true when the prediction changed what happened")


class ActualsBatch(ApiModel):
    data: list[ActualIn] = Field(max_length=MAX_ACTUALS_PER_BATCH)


class ActualProblemOut(ApiModel):
    index: int
    association_id: str | None
    outcome: str
    """``duplicate`` or ``rejected``."""
    reason: str


class ActualsResultOut(ApiModel):
    received: int
    stored: int
    duplicate: int
    rejected: int
    problems: list[ActualProblemOut]
    """At most 1,000, in row order."""


class AccuracyPeriod(ApiModel):
    start: dt.datetime
    rows: int
    metrics: dict[str, float | None]
    """Keyed by metric name, the names an accuracy alert rule takes (``balanced_accuracy``, ``r2``)."""


class AccuracyOut(ApiModel):
    """Accuracy over a range, in total and per period of prediction time."""

    deployment_id: str
    target_type: str
    since: dt.datetime
    until: dt.datetime
    resolution: str
    rows: int
    metrics: dict[str, float | None]
    timeline: list[AccuracyPeriod]
    """One entry per period, empty periods included (their metrics null)."""


# ---- drift ---------------------------------------------------------------------------------


class ColumnDriftOut(ApiModel):
    """One feature's (or model output's) drift: ``status`` is the worst of the distribution's
    (``driftStatus``) and the rate signals' (``signals``: missing, outOfRange, newCategory)."""

    name: str
    metric: str
    value: float | None
    threshold_warning: float | None
    threshold_at_risk: float | None
    rows: int
    status: str
    drift_status: str
    importance: float | None
    important: bool
    missing_rate: float | None
    out_of_range_rate: float | None
    new_category_rate: float | None
    signals: dict[str, str]
    reason: str | None


class DriftWindowOut(ApiModel):
    start: dt.datetime
    end: dt.datetime
    rows: int


class DriftOut(ApiModel):
    deployment_id: str
    status: str
    """``green``, ``yellow`` or ``red``: drift weighed by importance."""
    metric: str
    since: dt.datetime
    until: dt.datetime
    rows: int
    min_rows: int
    reference: str
    """``baseline`` (the package's bins) or ``window`` (the reference window in the settings)."""
    features: list[ColumnDriftOut]
    predictions: list[ColumnDriftOut]
    windows: list[DriftWindowOut] = Field(default_factory=list)
    series: dict[str, list[ColumnDriftOut]] = Field(default_factory=dict)
    """With ``windows=true``: per column (``feature:<name>``, ``prediction:<name>``) its drift in
    each window (consecutive 15-minute slots merged until they hold ``minRows`` rows)."""
    reason: str | None = None


class DriftSettingsIn(RequestModel):
    metric: Literal["psi", "js", "hellinger"] = "psi"
    min_rows: int = Field(default=200, ge=1, le=10_000_000)
    reference_since: dt.datetime | None = None
    reference_until: dt.datetime | None = None
    starred: list[Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(storable_text)]] = (
        Field(default_factory=list, max_length=1000, description="features always weighed as important")
    )


class DriftSettingsOut(ApiModel):
    deployment_id: str
    metric: str
    min_rows: int
    reference_since: dt.datetime | None
    reference_until: dt.datetime | None
    starred: list[str]
    updated_at: dt.datetime | None
    updated_by: str | None
