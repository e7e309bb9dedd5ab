"""Prediction environments: where deployments run, and the health their agent reports."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from shipmate.common.health import DeploymentView, is_pending
from shipmate.server.errors import Conflict, NotFound
from shipmate.server.models import Deployment, Environment, Platform, utcnow
from shipmate.server.services import events
from shipmate.server.services.ids import new_id


def create(
    session: Session,
    *,
    name: str,
    platform: Platform,
    description: str,
    config: dict[str, Any],
    plugin_config: dict[str, Any],
    actor: str,
) -> Environment:
    if session.scalar(select(Environment.id).where(Environment.name == name)) is not None:
        raise Conflict(f"an environment named {name!r} already exists", field="name")
    environment = Environment(
        id=new_id("e"),
        name=name,
        platform=platform,
        description=description,
        config=config,
        plugin_config=plugin_config,
        health_status="unknown",
        created_by=actor,
    )
    session.add(environment)
    events.append(
        session,
        type=events.EventType.ENVIRONMENT_CREATED,
        actor=actor,
        environment_id=environment.id,
        message=f"environment {name} ({platform.value}) created",
    )
    return environment


def get(session: Session, environment_id: str) -> Environment:
    environment = session.get(Environment, environment_id)
    if environment is None:
        raise NotFound(f"environment {environment_id} not found", field="environmentId")
    return environment


def deployment_views(session: Session, environment_ids: Sequence[str]) -> dict[str, list[DeploymentView]]:
    """Each environment's deployments as the shared health rules read them (one query)."""
    views: dict[str, list[DeploymentView]] = {environment_id: [] for environment_id in environment_ids}
    if not views:
        return views
    rows = session.execute(
        select(
            Deployment.environment_id,
            Deployment.desired_state,
            Deployment.observed_state,
            Deployment.observed_status,
            Deployment.generation,
            Deployment.observed_generation,
            Deployment.observed_phase,
        ).where(Deployment.environment_id.in_(list(views)), Deployment.force.is_(False))
    )
    for row in rows:
        pending = is_pending(row.generation, row.observed_generation, row.observed_phase)
        views[row.environment_id].append(
            DeploymentView(str(row.desired_state.value), row.observed_state, row.observed_status, pending)
        )
    return views


def list_all(session: Session, *, only_id: str | None = None) -> list[Environment]:
    statement = select(Environment).order_by(Environment.created_at, Environment.id)
    if only_id is not None:
        statement = statement.where(Environment.id == only_id)
    return list(session.scalars(statement))


def update(
    session: Session,
    *,
    environment_id: str,
    description: str | None,
    config: dict[str, Any] | None,
    plugin_config: dict[str, Any] | None,
    actor: str,
) -> Environment:
    environment = get(session, environment_id)
    changed = []
    if description is not None:
        environment.description = description
        changed.append("description")
    if config is not None:
        environment.config = config
        changed.append("config")
    if plugin_config is not None:
        environment.plugin_config = plugin_config
        changed.append("pluginConfig")
    if changed:
        events.append(
            session,
            type=events.EventType.ENVIRONMENT_UPDATED,
            actor=actor,
            environment_id=environment.id,
            message=f"environment {environment.name}: {', '.join(changed)} changed",
            data={"changed": changed},
        )
    return environment


def delete(session: Session, *, environment_id: str, actor: str) -> None:
    environment = get(session, environment_id)
    if session.scalar(select(exists().where(Deployment.environment_id == environment_id))):
        raise Conflict(
            f"environment {environment_id} still has deployments; delete them first", field="environmentId"
        )
    session.delete(environment)
    events.append(
        session,
        type=events.EventType.ENVIRONMENT_DELETED,
        actor=actor,
        environment_id=environment_id,
        message=f"environment {environment.name} deleted",
    )


def record_health(
    session: Session,
    *,
    environment_id: str,
    status: str,
    message: str | None,
    data: dict[str, Any] | None,
    agent_version: str | None,
    actor: str,
    now: dt.datetime | None = None,
) -> Environment:
    """Store what the agent reports; a change of status is an event, a repeat refreshes ``lastSeenAt``."""
    environment = get(session, environment_id)
    now = now or utcnow()
    previous = environment.health_status
    environment.health_status = status
    environment.health_message = message
    environment.health_data = data
    environment.health_updated_at = now
    environment.last_seen_at = now
    if agent_version is not None:
        environment.agent_version = agent_version
    if previous != status:
        events.append(
            session,
            type=events.EventType.ENVIRONMENT_HEALTH_CHANGED,
            actor=actor,
            environment_id=environment_id,
            status=status,
            message=message,
            data={"previous": previous, **({"details": data} if data else {})},
        )
    return environment


def touch(session: Session, *, environment_id: str, now: dt.datetime | None = None) -> None:
    """Note that the environment's agent was heard from."""
    environment = get(session, environment_id)
    environment.last_seen_at = now or utcnow()
