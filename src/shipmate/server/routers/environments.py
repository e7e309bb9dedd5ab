"""Prediction environments, and the agent's side of the API (desired state, reports, health)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy.orm import Session

from shipmate.common.vocabulary import EventType
from shipmate.server import schemas
from shipmate.server.deps import AdminDep, CallerDep, RuntimeDep, check_environment_access
from shipmate.server.models import Environment
from shipmate.server.services import deployments, environments, events
from shipmate.server.views import deployment_out, environment_out, event_out

router = APIRouter(prefix="/environments", tags=["environments"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create_environment(
    runtime: RuntimeDep, caller: AdminDep, body: schemas.EnvironmentCreate
) -> schemas.EnvironmentOut:
    with runtime.db.write() as session:
        environment = environments.create(
            session,
            name=body.name,
            platform=body.platform,
            description=body.description,
            config=body.config,
            plugin_config=body.plugin_config,
            actor=caller.actor,
        )
        session.flush()
        return _out(session, environment)


@router.get("")
def list_environments(runtime: RuntimeDep, caller: CallerDep) -> schemas.EnvironmentList:
    """All environments for an admin; an agent sees its own."""
    with runtime.db.read() as session:
        rows = environments.list_all(session, only_id=None if caller.is_admin else caller.environment_id)
        views = environments.deployment_views(session, [e.id for e in rows])
        return schemas.EnvironmentList(items=[environment_out(e, views[e.id]) for e in rows])


@router.get("/{environment_id}")
def get_environment(runtime: RuntimeDep, caller: CallerDep, environment_id: str) -> schemas.EnvironmentOut:
    check_environment_access(caller, environment_id)
    with runtime.db.read() as session:
        environment = environments.get(session, environment_id)
        return _out(session, environment)


@router.patch("/{environment_id}")
def update_environment(
    runtime: RuntimeDep, caller: AdminDep, environment_id: str, body: schemas.EnvironmentUpdate
) -> schemas.EnvironmentOut:
    with runtime.db.write() as session:
        environment = environments.update(
            session,
            environment_id=environment_id,
            description=body.description,
            config=body.config,
            plugin_config=body.plugin_config,
            actor=caller.actor,
        )
        session.flush()
        return _out(session, environment)


@router.delete("/{environment_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_environment(runtime: RuntimeDep, caller: AdminDep, environment_id: str) -> Response:
    with runtime.db.write() as session:
        environments.delete(session, environment_id=environment_id, actor=caller.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---- the agent's side ----------------------------------------------------------------------


@router.get("/{environment_id}/desired-state", tags=["agent"])
def get_desired_state(runtime: RuntimeDep, caller: CallerDep, environment_id: str) -> schemas.DesiredStateOut:
    """Every deployment the agent must act on, and the event cursor to follow changes from."""
    check_environment_access(caller, environment_id)
    with runtime.db.read() as session:
        cursor, rows = deployments.desired_state(session, environment_id=environment_id)
        return schemas.DesiredStateOut(cursor=cursor, deployments=[deployment_out(d) for d in rows])


@router.post("/{environment_id}/reports", tags=["agent"])
def post_reports(
    runtime: RuntimeDep, caller: CallerDep, environment_id: str, body: schemas.ReportBatch
) -> schemas.ReportResult:
    """A batch of action results, recorded in one transaction."""
    check_environment_access(caller, environment_id)
    with runtime.db.write() as session:
        outcome = deployments.apply_reports(
            session, environment_id=environment_id, reports=body.reports, actor=caller.actor
        )
    return schemas.ReportResult(
        accepted=outcome.accepted, stale=outcome.stale, removed=outcome.removed, unknown=outcome.unknown
    )


@router.post("/{environment_id}/health", tags=["agent"])
def post_health(
    runtime: RuntimeDep, caller: CallerDep, environment_id: str, body: schemas.HealthReport
) -> schemas.EnvironmentOut:
    check_environment_access(caller, environment_id)
    with runtime.db.write() as session:
        environment = environments.record_health(
            session,
            environment_id=environment_id,
            status=body.status.value,
            message=body.message,
            data=body.data,
            agent_version=body.agent_version,
            actor=caller.actor,
        )
        session.flush()
        return _out(session, environment)


@router.post("/{environment_id}/events", status_code=status.HTTP_201_CREATED, tags=["agent"])
def post_agent_event(
    runtime: RuntimeDep, caller: CallerDep, environment_id: str, body: schemas.AgentEvent
) -> schemas.EventOut:
    """An agent-originated event that is not an action report (e.g. an unknown deployment found)."""
    check_environment_access(caller, environment_id)
    with runtime.db.write() as session:
        if body.deployment_id is not None:
            deployments.check_event_subject(
                session,
                environment_id=environment_id,
                deployment_id=body.deployment_id,
                unknown_allowed=body.type is EventType.AGENT_UNKNOWN_DEPLOYMENT,
            )
        environments.touch(session, environment_id=environment_id)
        event = events.append(
            session,
            type=body.type.value,
            actor=caller.actor,
            environment_id=environment_id,
            deployment_id=body.deployment_id,
            message=body.message,
            status=body.status.value if body.status else None,
            data=body.data,
        )
        session.flush()
        return event_out(event)


def _out(session: Session, environment: Environment) -> schemas.EnvironmentOut:
    """One environment on the wire, its overall health read from its deployments."""
    return environment_out(
        environment, environments.deployment_views(session, [environment.id])[environment.id]
    )
