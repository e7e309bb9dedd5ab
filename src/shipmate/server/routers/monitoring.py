"""Monitoring: the monitoring agent's ingest route and service health per deployment."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query
from sqlalchemy.exc import SQLAlchemyError

from shipmate.monitoring import service_health
from shipmate.server.deps import NO_NUL, CallerDep, Runtime, RuntimeDep, check_environment_access
from shipmate.server.errors import InvalidInput
from shipmate.server.monitoring_schemas import (
    ERRORS,
    AggregateBatch,
    AggregateResult,
    HealthFigures,
    RecordProblem,
    ServiceHealthOut,
)
from shipmate.server.services import deployments
from shipmate.server.services import monitoring as store

log = logging.getLogger(__name__)

router = APIRouter(tags=["monitoring"])

MAINTENANCE_INTERVAL = 60.0
"""Seconds between roll-up passes; one runs after an ingest has been answered, once this much
time has passed since the previous pass of this process."""
_maintenance_lock = threading.Lock()
_last_maintenance: dict[int, float] = {}


def retention_of(runtime: Runtime) -> store.Retention:
    settings = runtime.settings
    return store.Retention(
        minute_hours=settings.monitoring_minute_retention_hours,
        hour_days=settings.monitoring_hour_retention_days,
        max_future_minutes=settings.monitoring_max_future_minutes,
        drift_slot_days=settings.monitoring_drift_slot_retention_days,
    )


@router.post("/monitoring/aggregates", responses=ERRORS)
def post_aggregates(
    runtime: RuntimeDep, caller: CallerDep, body: AggregateBatch, background: BackgroundTasks
) -> AggregateResult:
    """Store minute aggregates from a monitoring agent.

    Each record is judged alone: malformed ones, ones for deployments outside the token's
    environment (decided by the deployment as stored, not by the record) and ones outside the
    time window are refused with a reason; duplicates (by record id) are ignored.
    """
    retention = retention_of(runtime)
    environment_id = None if caller.is_admin else caller.environment_id
    with runtime.db.write() as session:
        outcome = store.ingest(session, body.records, environment_id=environment_id, retention=retention)
    background.add_task(_maybe_maintain, runtime, retention)  # after the answer, not before it
    return AggregateResult(
        stored=outcome.stored,
        duplicate=outcome.duplicate,
        rejected=outcome.rejected,
        partial=outcome.partial,
        problems=[
            RecordProblem(
                index=p.index, id=p.record_id, outcome=p.outcome.value, reason=p.reason, seen_ids=p.seen_ids
            )
            for p in outcome.problems
        ],
    )


def _maybe_maintain(runtime: Runtime, retention: store.Retention) -> None:
    now = time.monotonic()
    key = id(runtime.db)
    with _maintenance_lock:
        if now - _last_maintenance.get(key, -MAINTENANCE_INTERVAL) < MAINTENANCE_INTERVAL:
            return
        _last_maintenance[key] = now
    try:
        with runtime.db.write() as session:
            done = store.maintain(session, retention=retention)
    except SQLAlchemyError as exc:  # the next pass retries; nothing is lost by waiting
        log.warning("monitoring roll-up failed, retried in %.0f s: %s", MAINTENANCE_INTERVAL, exc)
        return
    if done.rolled_up or done.expired_buckets or done.rolled_up_drift_slots:
        log.info(
            "monitoring: %d minute buckets and %d drift slots rolled up, %d buckets expired",
            done.rolled_up,
            done.rolled_up_drift_slots,
            done.expired_buckets,
        )


Resolution = service_health.Resolution


@router.get(
    "/deployments/{deployment_id}/service-health",
    tags=["deployments"],
    responses={**ERRORS, 404: {"model": ERRORS[422]["model"], "description": "no such deployment"}},
)
def get_service_health(
    runtime: RuntimeDep,
    caller: CallerDep,
    deployment_id: str,
    since: Annotated[
        dt.datetime | None, Query(description="start (ISO 8601); default: 24 h before until")
    ] = None,
    until: Annotated[dt.datetime | None, Query(description="end, exclusive (ISO 8601); default: now")] = None,
    resolution: Resolution = Resolution.HOUR,
    slow_threshold_ms: Annotated[float, Query(alias="slowThresholdMs", gt=0, le=3_600_000)] = (
        service_health.DEFAULT_SLOW_MS
    ),
    model_id: Annotated[str | None, Query(alias="modelId", max_length=200, pattern=NO_NUL)] = None,
) -> ServiceHealthOut:
    """Service health of one deployment (optionally one model) over [since, until)."""
    until = _aware(until) if until is not None else dt.datetime.now(dt.UTC)
    since = _aware(since) if since is not None else until - dt.timedelta(hours=24)
    since_minute = int(since.timestamp() // 60)
    until_minute = -int(-until.timestamp() // 60)
    with runtime.db.read() as session:
        deployment = deployments.get(session, deployment_id, include_force_deleted=not caller.is_admin)
        check_environment_access(caller, deployment.environment_id)
        try:
            service_health.periods_in(since_minute, until_minute, resolution)
        except service_health.RangeError as exc:
            raise InvalidInput(str(exc), field="since") from None
        buckets = store.buckets_between(
            session, deployment_id, since_minute=since_minute, until_minute=until_minute, model_id=model_id
        )
        last = store.last_received(session, deployment_id)
    health = service_health.compute(
        buckets,
        since_minute=since_minute,
        until_minute=until_minute,
        resolution=resolution,
        slow_ms=slow_threshold_ms,
    )
    return ServiceHealthOut(
        deployment_id=deployment_id,
        model_id=model_id,
        since=since,
        until=until,
        resolution=resolution.value,
        slow_threshold_ms=slow_threshold_ms,
        models=health.models,
        last_received_at=last,
        summary=HealthFigures.model_validate(health.summary.to_json()),
        periods=[HealthFigures.model_validate(p.to_json()) for p in health.periods],
    )


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
