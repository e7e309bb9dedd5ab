"""Alerts: the list, each deployment's rules (read and edit), and an evaluation pass on demand.

The server evaluates the rules by itself every ``SHIPMATE_ALERT_INTERVAL_SECONDS``
(`Evaluator`); ``POST /alerts/evaluate`` runs one pass now (admin), for operators and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import difflib
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from shipmate.server import errors
from shipmate.server.deps import NO_NUL, AdminDep, CallerDep, Runtime, RuntimeDep, check_environment_access
from shipmate.server.monitoring_schemas import ERRORS
from shipmate.server.schemas import ApiModel, RequestModel
from shipmate.server.services import accuracy, alerts, deployments

log = logging.getLogger(__name__)

router = APIRouter(tags=["alerts"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ERRORS[422]["model"], "description": "no such deployment or rule"}
}


class AlertOut(ApiModel):
    """One alert; ``clearedAt`` is null while it is open."""

    id: int
    deployment_id: str
    rule: str
    kind: str
    state: str
    opened_at: dt.datetime
    cleared_at: dt.datetime | None
    message: str


class RuleOut(ApiModel):
    name: str
    kind: str
    metric: str | None
    threshold: float
    clear_threshold: float
    window_minutes: int
    enabled: bool
    last_value: float | None
    bad_streak: int
    good_streak: int


class RuleChange(RequestModel):
    threshold: float | None = Field(default=None, allow_inf_nan=False)
    clear_threshold: float | None = Field(default=None, allow_inf_nan=False)
    window_minutes: int | None = Field(default=None, ge=1, le=7 * 1440)
    enabled: bool | None = None
    metric: str | None = Field(default=None, max_length=32)


class EvaluationOut(ApiModel):
    opened: int
    cleared: int


ALERT_FILTERS = ("deploymentId", "state", "limit")


def only_alert_filters(request: Request) -> None:
    """Refuse a query parameter ``GET /alerts`` does not know: a misspelt filter (the old
    ``deployment_id``) would otherwise be ignored and every alert answered, unfiltered."""
    for name in request.query_params:
        if name in ALERT_FILTERS:
            continue
        folded = {f.lower(): f for f in ALERT_FILTERS}  # deployment_id, Deployment-Id: deploymentid
        close = difflib.get_close_matches(name.lower().replace("_", "").replace("-", ""), folded, n=1)
        hint = f"did you mean {folded[close[0]]}? " if close else ""
        raise errors.InvalidInput(
            f"unknown query parameter {name}: {hint}this route takes {', '.join(ALERT_FILTERS)}", field=name
        )


@router.get("/alerts", responses=ERRORS, dependencies=[Depends(only_alert_filters)])
def list_alerts(
    runtime: RuntimeDep,
    caller: CallerDep,
    deployment_id: Annotated[str | None, Query(alias="deploymentId", max_length=40, pattern=NO_NUL)] = None,
    state: Literal["open", "cleared"] | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[AlertOut]:
    """Alerts newest first (an agent token sees its own environment's)."""
    with runtime.db.read() as session:
        found = alerts.list_alerts(
            session,
            deployment_id=deployment_id,
            state=state,
            environment_id=None if caller.is_admin else caller.environment_id,
            limit=limit,
        )
        return [AlertOut.model_validate(a) for a in found]


@router.get(
    "/deployments/{deployment_id}/alert-rules", tags=["deployments"], responses={**ERRORS, **NOT_FOUND}
)
def get_rules(runtime: RuntimeDep, caller: CallerDep, deployment_id: str) -> list[RuleOut]:
    """The deployment's alert rules (the defaults until edited), with each one's latest value."""
    with runtime.db.write() as session:  # the defaults are stored on first use
        deployment = deployments.get(session, deployment_id, include_force_deleted=not caller.is_admin)
        check_environment_access(caller, deployment.environment_id)
        return [RuleOut.model_validate(r) for r in alerts.rules_of(session, deployment)]


@router.put(
    "/deployments/{deployment_id}/alert-rules/{name}", tags=["deployments"], responses={**ERRORS, **NOT_FOUND}
)
def put_rule(runtime: RuntimeDep, _: AdminDep, deployment_id: str, name: str, body: RuleChange) -> RuleOut:
    """Change a rule (admin): only the fields given; the rule's streaks start again."""
    with runtime.db.write() as session:
        deployment = deployments.get(session, deployment_id)
        row = alerts.update_rule(session, deployment, name, body.model_dump(exclude_none=True))
        session.flush()
        return RuleOut.model_validate(row)


@router.post("/alerts/evaluate", responses=ERRORS)
def evaluate_now(runtime: RuntimeDep, _: AdminDep) -> EvaluationOut:
    """Run one evaluation pass now (admin); the server also runs one every interval."""
    changes = run_pass(runtime)
    return EvaluationOut(
        opened=sum(c.state == "open" for c in changes), cleared=sum(c.state == "cleared" for c in changes)
    )


def run_pass(runtime: Runtime, now: dt.datetime | None = None) -> list[alerts.Change]:
    """Evaluate every rule and expire old predictions. The signals are read outside the write
    transaction (drift of every deployment takes long; a write would stop ingest meanwhile); only
    the open/clear changes, their events and their webhook deliveries take a short write."""
    settings = runtime.settings
    now = now or dt.datetime.now(dt.UTC)
    with runtime.db.read() as session:
        judged = alerts.gather(session, now=now)
    with runtime.db.write() as session:
        changes = alerts.apply(session, judged, now=now, outbox=runtime.webhook is not None)
    with runtime.db.write() as session:
        accuracy.expire(
            session,
            retention_days=settings.monitoring_prediction_retention_days,
            max_per_deployment=settings.monitoring_max_predictions,
        )
    if runtime.webhook is not None and changes:
        runtime.webhook.wake()
    return changes


class Evaluator:
    """The server's periodic evaluation (an asyncio task; the work runs in a thread)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.runtime.settings.alert_interval_seconds > 0:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        interval = self.runtime.settings.alert_interval_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                await run_in_threadpool(run_pass, self.runtime)
            except SQLAlchemyError as exc:  # the next pass retries
                log.warning("alert evaluation failed, retried in %.0f s: %s", interval, exc)
            except Exception:
                log.exception("alert evaluation failed; retried in %.0f s", interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
