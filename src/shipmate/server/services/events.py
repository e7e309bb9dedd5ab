"""The append-only event log and its queries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from shipmate.server.models import Event, utcnow


class EventType:
    """Every event type the service writes (closed list, documented in docs/agent-api.md)."""

    DEPLOYMENT_CREATED = "deployment.created"
    DESIRED_CHANGED = "deployment.desired_changed"
    DEPLOYMENT_UPDATED = "deployment.updated"
    DEPLOYMENT_REMOVED = "deployment.removed"
    DEPLOYMENT_HEALTH_CHANGED = "deployment.health_changed"
    ACTION_STARTED = "action.started"
    ACTION_FINISHED = "action.finished"
    ACTION_RETRYING = "action.retrying"
    ENVIRONMENT_CREATED = "environment.created"
    ENVIRONMENT_UPDATED = "environment.updated"
    ENVIRONMENT_DELETED = "environment.deleted"
    ENVIRONMENT_HEALTH_CHANGED = "environment.health_changed"
    MODEL_PACKAGE_CREATED = "model_package.created"
    TOKEN_CREATED = "token.created"
    TOKEN_REVOKED = "token.revoked"


def append(
    session: Session,
    *,
    type: str,
    actor: str,
    environment_id: str | None = None,
    deployment_id: str | None = None,
    generation: int | None = None,
    message: str | None = None,
    status: str | None = None,
    data: dict[str, Any] | None = None,
    timestamp: dt.datetime | None = None,
) -> Event:
    """Add one event to the session's transaction (it gets its id when the transaction flushes)."""
    event = Event(
        type=type,
        actor=actor,
        environment_id=environment_id,
        deployment_id=deployment_id,
        generation=generation,
        message=message,
        status=status,
        data=data,
    )
    if timestamp is not None:
        event.timestamp = timestamp
    session.add(event)
    return event


def row(
    *,
    type: str,
    actor: str,
    environment_id: str | None = None,
    deployment_id: str | None = None,
    generation: int | None = None,
    message: str | None = None,
    status: str | None = None,
    data: dict[str, Any] | None = None,
    timestamp: dt.datetime | None = None,
) -> dict[str, Any]:
    """One event as a row for ``append_many``."""
    return {
        "type": type,
        "actor": actor,
        "environment_id": environment_id,
        "deployment_id": deployment_id,
        "generation": generation,
        "message": message,
        "status": status,
        "data": data,
        "timestamp": timestamp or utcnow(),
    }


def append_many(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert many events in one statement; ids follow the order of ``rows``."""
    if rows:
        session.execute(insert(Event), list(rows))


def latest_id(session: Session) -> int:
    return int(session.scalar(select(func.max(Event.id))) or 0)


def query(
    session: Session,
    *,
    after: int = 0,
    limit: int = 100,
    environment_id: str | None = None,
    deployment_id: str | None = None,
    types: Sequence[str] = (),
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[Event]:
    """Events with ``id > after`` matching every given filter, oldest first."""
    statement = select(Event).where(Event.id > after)
    if environment_id is not None:
        statement = statement.where(Event.environment_id == environment_id)
    if deployment_id is not None:
        statement = statement.where(Event.deployment_id == deployment_id)
    if types:
        statement = statement.where(Event.type.in_(list(types)))
    if since is not None:
        statement = statement.where(Event.timestamp >= since)
    if until is not None:
        statement = statement.where(Event.timestamp < until)
    return list(session.scalars(statement.order_by(Event.id).limit(limit)))


def recent(session: Session, *, limit: int = 50, environment_id: str | None = None) -> list[Event]:
    """The newest events, newest first (for people; followers use ``query``)."""
    statement = select(Event)
    if environment_id is not None:
        statement = statement.where(Event.environment_id == environment_id)
    return list(session.scalars(statement.order_by(Event.id.desc()).limit(limit)))
