"""Accuracy: prediction records from the monitoring agent, actuals from users, accuracy over time."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query

from shipmate.server.deps import CallerDep, RuntimeDep, check_environment_access
from shipmate.server.errors import InvalidInput
from shipmate.server.monitoring_schemas import (
    ERRORS,
    AccuracyOut,
    AccuracyPeriod,
    ActualProblemOut,
    ActualsBatch,
    ActualsResultOut,
    AggregateBatch,
    AggregateResult,
    RecordProblem,
)
from shipmate.server.services import accuracy as store
from shipmate.server.services import deployments

router = APIRouter(tags=["monitoring"])

RESOLUTIONS = {"minute": 1, "hour": 60, "day": 1440}
MAX_PERIODS = 10_000
MAX_PROBLEMS = 1000
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ERRORS[422]["model"], "description": "no such deployment"}
}


@router.post("/monitoring/predictions", responses=ERRORS)
def post_predictions(runtime: RuntimeDep, caller: CallerDep, body: AggregateBatch) -> AggregateResult:
    """Store prediction records (association ids with their predictions) from a monitoring agent.

    An association id is stored once per deployment; a record all of whose ids are stored
    already is a ``duplicate``. Records for deployments outside the token's environment are
    refused with a reason."""
    environment_id = None if caller.is_admin else caller.environment_id
    with runtime.db.write() as session:
        outcome = store.ingest_predictions(session, body.records, environment_id=environment_id)
    return AggregateResult(
        stored=outcome.stored,
        duplicate=outcome.duplicate,
        rejected=outcome.rejected,
        partial=0,
        problems=[
            RecordProblem(index=p.index, id=p.record_id, outcome=p.outcome.value, reason=p.reason)
            for p in outcome.problems
        ],
    )


@router.post("/deployments/{deployment_id}/actuals", tags=["deployments"], responses={**ERRORS, **NOT_FOUND})
def post_actuals(
    runtime: RuntimeDep, caller: CallerDep, deployment_id: str, body: ActualsBatch
) -> ActualsResultOut:
    """Report actuals (DataRobot's shape: ``{"data": [{"associationId", "actualValue",
    "timestamp"?, "wasActedOn"?}]}``), matched to the predictions by association id. Each row is
    stored, or refused with a reason: unknown id, an actual already reported (the first is kept),
    a value that does not fit the model's target, a prediction older than the late-actuals window."""
    with runtime.db.write() as session:
        deployment = deployments.get(session, deployment_id, include_force_deleted=not caller.is_admin)
        check_environment_access(caller, deployment.environment_id)
        result = store.ingest_actuals(
            session,
            deployment,
            [store.Actual(a.association_id, a.actual_value, a.timestamp, a.was_acted_on) for a in body.data],
            max_age_days=runtime.settings.actuals_max_age_days,
        )
    return ActualsResultOut(
        received=result.received,
        stored=result.stored,
        duplicate=result.duplicate,
        rejected=result.rejected,
        problems=[
            ActualProblemOut(
                index=p.index, association_id=p.association_id, outcome=p.outcome, reason=p.reason
            )
            for p in result.problems[:MAX_PROBLEMS]
        ],
    )


@router.get("/deployments/{deployment_id}/accuracy", tags=["deployments"], responses={**ERRORS, **NOT_FOUND})
def get_accuracy(
    runtime: RuntimeDep,
    caller: CallerDep,
    deployment_id: str,
    since: Annotated[
        dt.datetime | None, Query(description="start (ISO 8601); default: 7 days before until")
    ] = None,
    until: Annotated[dt.datetime | None, Query(description="end, exclusive (ISO 8601); default: now")] = None,
    resolution: Annotated[str, Query(pattern="^(minute|hour|day)$")] = "day",
) -> AccuracyOut:
    """Accuracy of the predictions made in [since, until) that have actuals, in total and per
    period of prediction time. Classification: accuracy, balanced accuracy, AUC, log loss, F1,
    precision, recall; regression: RMSE, MAE, MAPE (%), R². A metric the data leave undefined is null."""
    until = _aware(until) if until is not None else dt.datetime.now(dt.UTC)
    since = _aware(since) if since is not None else until - dt.timedelta(days=7)
    if since >= until:
        raise InvalidInput("since must be before until", field="since")
    minutes = RESOLUTIONS[resolution]
    if (until - since).total_seconds() / 60 / minutes > MAX_PERIODS:
        raise InvalidInput(
            f"the range holds more than {MAX_PERIODS} {resolution}s; choose a coarser resolution",
            field="resolution",
        )
    with runtime.db.read() as session:
        deployment = deployments.get(session, deployment_id, include_force_deleted=not caller.is_admin)
        check_environment_access(caller, deployment.environment_id)
        target, total, periods = store.accuracy(
            session, deployment, since=since, until=until, period_minutes=minutes
        )
    return AccuracyOut(
        deployment_id=deployment_id,
        target_type=target.type,
        since=since,
        until=until,
        resolution=resolution,
        rows=total.rows,
        metrics=store.metrics_of(total),
        timeline=[
            AccuracyPeriod(start=p.start, rows=p.stats.rows, metrics=store.metrics_of(p.stats))
            for p in periods
        ],
    )


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
