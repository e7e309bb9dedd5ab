"""The append-only event log and its queries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from shipmate.common.vocabulary import EventType as EventType  # the services write events by this name
from shipmate.server.models import Event, utcnow


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


_WIRE_COLUMNS = (
    Event.id.label("id"),
    Event.type.label("type"),
    Event.timestamp.label("timestamp"),
    Event.environment_id.label("environmentId"),
    Event.deployment_id.label("deploymentId"),
    Event.generation.label("generation"),
    Event.actor.label("actor"),
    Event.message.label("message"),
    Event.status.label("status"),
    Event.data.label("data"),
)


def query_wire(
    session: Session,
    *,
    after: int = 0,
    limit: int = 100,
    environment_id: str | None = None,
    deployment_id: str | None = None,
    types: Sequence[str] = (),
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Events with ``id > after`` matching every given filter, oldest first, straight in their wire
    form (camelCase keys): the followers' hot path skips ORM objects and per-event validation."""
    statement = _filtered(
        select(*_WIRE_COLUMNS), after, environment_id, deployment_id, types, since, until
    ).order_by(Event.id)
    return [dict(row._mapping) for row in session.execute(statement.limit(limit))]


def _filtered(
    statement: Any,
    after: int,
    environment_id: str | None,
    deployment_id: str | None,
    types: Sequence[str],
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> Any:
    statement = statement.where(Event.id > after)
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
    return statement


def recent(session: Session, *, limit: int = 50, environment_id: str | None = None) -> list[Event]:
    """The newest events, newest first (for people; followers use ``query_wire``)."""
    statement = select(Event)
    if environment_id is not None:
        statement = statement.where(Event.environment_id == environment_id)
    return list(session.scalars(statement.order_by(Event.id.desc()).limit(limit)))


def browse(
    session: Session,
    *,
    before: int | None = None,
    limit: int = 50,
    environment_id: str | None = None,
    deployment_id: str | None = None,
    types: Sequence[str] = (),
    status: str | None = None,
    since: dt.datetime | None = None,
) -> list[Event]:
    """A page of events newest first, older than ``before`` (the console's events page)."""
    statement = _filtered(select(Event), 0, environment_id, deployment_id, types, since, None)
    if before is not None:
        statement = statement.where(Event.id < before)
    if status is not None:
        statement = statement.where(Event.status == status)
    return list(session.scalars(statement.order_by(Event.id.desc()).limit(limit)))


def model_history(session: Session, *, deployment_id: str, limit: int = 100) -> list[Event]:
    """The deployment's desired-state changes, newest first: where its model replacements are."""
    statement = select(Event).where(
        Event.deployment_id == deployment_id, Event.type == EventType.DESIRED_CHANGED.value
    )
    return list(session.scalars(statement.order_by(Event.id.desc()).limit(limit)))
