"""Drift: a deployment's data and prediction drift over a range, and its drift settings."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query

from shipmate.monitoring import drift
from shipmate.server.deps import NO_NUL, AdminDep, CallerDep, RuntimeDep, check_environment_access
from shipmate.server.errors import InvalidInput
from shipmate.server.monitoring_schemas import (
    ERRORS,
    ColumnDriftOut,
    DriftOut,
    DriftSettingsIn,
    DriftSettingsOut,
    DriftWindowOut,
)
from shipmate.server.services import deployments
from shipmate.server.services import drift as store

router = APIRouter(tags=["deployments"])

RESPONSES = {**ERRORS, 404: {"model": ERRORS[422]["model"], "description": "no such deployment"}}
MAX_RANGE = dt.timedelta(days=400)


@router.get("/deployments/{deployment_id}/drift", responses=RESPONSES)
def get_drift(
    runtime: RuntimeDep,
    caller: CallerDep,
    deployment_id: str,
    since: Annotated[
        dt.datetime | None, Query(description="start (ISO 8601); default: 24 h before until")
    ] = None,
    until: Annotated[dt.datetime | None, Query(description="end, exclusive (ISO 8601); default: now")] = None,
    metric: Annotated[
        drift.Metric | None, Query(description="psi, js or hellinger; default: the deployment's setting")
    ] = None,
    feature: Annotated[
        list[str] | None,
        Query(description="only these features or outputs (repeatable)", max_length=1000),
    ] = None,
    model_id: Annotated[str | None, Query(alias="modelId", max_length=200, pattern=NO_NUL)] = None,
    windows: Annotated[bool, Query(description="also score each window (at most 50 columns)")] = False,
) -> DriftOut:
    """Data drift (features) and prediction drift (model outputs) over [since, until), widened to
    whole 15-minute slots, against the package's baseline or the settings' reference window."""
    until = _aware(until) if until is not None else dt.datetime.now(dt.UTC)
    since = _aware(since) if since is not None else until - dt.timedelta(hours=24)
    if until <= since:
        raise InvalidInput("until must be later than since", field="until")
    if until - since > MAX_RANGE:
        raise InvalidInput(f"the range may span at most {MAX_RANGE.days} days", field="since")
    for name in feature or []:
        if not name or len(name) > 1024 or "\x00" in name:
            raise InvalidInput("a feature name is 1 to 1024 characters, without NUL", field="feature")
    with runtime.db.read() as session:
        deployment = deployments.get(session, deployment_id, include_force_deleted=not caller.is_admin)
        check_environment_access(caller, deployment.environment_id)
        try:
            result = store.compute(
                session,
                deployment,
                since,
                until,
                metric=metric,
                features=feature or (),
                model_id=model_id,
                windows=windows,
            )
        except store.TooManyColumns as exc:
            raise InvalidInput(str(exc), field="feature") from None
    return DriftOut(
        deployment_id=result.deployment_id,
        status=result.status.value,
        metric=result.metric.value,
        since=result.since,
        until=result.until,
        rows=result.rows,
        min_rows=result.min_rows,
        reference=result.reference,
        features=[_column(c) for c in result.features],
        predictions=[_column(c) for c in result.predictions],
        windows=[
            DriftWindowOut(start=_at(w.start_minute), end=_at(w.end_minute), rows=w.rows)
            for w in result.windows
        ],
        series={name: [_column(c) for c in columns] for name, columns in result.series.items()},
        reason=result.reason,
    )


@router.get("/deployments/{deployment_id}/drift/settings", responses=RESPONSES)
def get_drift_settings(runtime: RuntimeDep, caller: CallerDep, deployment_id: str) -> DriftSettingsOut:
    """The deployment's drift settings (the defaults until changed)."""
    with runtime.db.read() as session:
        deployment = deployments.get(session, deployment_id, include_force_deleted=not caller.is_admin)
        check_environment_access(caller, deployment.environment_id)
        return _settings(deployment_id, store.settings_of(session, deployment_id))


@router.put("/deployments/{deployment_id}/drift/settings", responses=RESPONSES)
def put_drift_settings(
    runtime: RuntimeDep, caller: AdminDep, deployment_id: str, body: DriftSettingsIn
) -> DriftSettingsOut:
    """Replace the deployment's drift settings: metric, min rows, an optional reference window of
    live traffic (both ends, or neither), starred features (always weighed as important)."""
    since, until = body.reference_since, body.reference_until
    if (since is None) != (until is None):
        raise InvalidInput("give both referenceSince and referenceUntil, or neither", field="referenceSince")
    if since is not None and until is not None and _aware(until) <= _aware(since):
        raise InvalidInput("referenceUntil must be later than referenceSince", field="referenceUntil")
    settings = store.Settings(
        metric=drift.Metric(body.metric),
        min_rows=body.min_rows,
        reference_since=None if since is None else _aware(since),
        reference_until=None if until is None else _aware(until),
        starred=tuple(dict.fromkeys(body.starred)),
    )
    with runtime.db.write() as session:
        deployments.get(session, deployment_id)
        saved = store.save_settings(session, deployment_id, settings, caller.actor)
        return _settings(deployment_id, saved)


def _settings(deployment_id: str, settings: store.Settings) -> DriftSettingsOut:
    return DriftSettingsOut(
        deployment_id=deployment_id,
        metric=settings.metric.value,
        min_rows=settings.min_rows,
        reference_since=settings.reference_since,
        reference_until=settings.reference_until,
        starred=list(settings.starred),
        updated_at=settings.updated_at,
        updated_by=settings.updated_by,
    )


def _column(column: drift.ColumnDrift) -> ColumnDriftOut:
    return ColumnDriftOut.model_validate(column.to_json())


def _at(minute: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(minute * 60, dt.UTC)


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
