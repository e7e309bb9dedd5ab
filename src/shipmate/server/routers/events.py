"""The event log: filtered queries, long polling, and Server-Sent Events from a cursor."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from shipmate.server import schemas
from shipmate.server.deps import NO_NUL, CallerDep, Runtime, RuntimeDep, check_environment_access
from shipmate.server.errors import InvalidInput
from shipmate.server.security import Principal
from shipmate.server.services import events

router = APIRouter(prefix="/events", tags=["events"])

MAX_CURSOR = 2**63 - 1
RECONNECT_MS = 1000  # the SSE ``retry:`` a follower waits before resuming after a store outage

log = logging.getLogger(__name__)


class _Filter:
    def __init__(
        self,
        environment_id: str | None,
        deployment_id: str | None,
        types: list[str],
        since: dt.datetime | None,
        until: dt.datetime | None,
    ) -> None:
        self.environment_id = environment_id
        self.deployment_id = deployment_id
        self.types = types
        self.since = since
        self.until = until


def _scoped(caller: Principal, environment_id: str | None) -> str | None:
    """An agent token follows only its own environment's events."""
    if caller.is_admin:
        return environment_id
    if environment_id is not None:
        check_environment_access(caller, environment_id)
    return caller.environment_id


def _read(runtime: Runtime, where: _Filter, after: int, limit: int) -> list[dict[str, Any]]:
    """Events in their wire form (the shape of ``schemas.EventOut``), oldest first."""
    with runtime.db.read() as session:
        return events.query_wire(
            session,
            after=after,
            limit=limit,
            environment_id=where.environment_id,
            deployment_id=where.deployment_id,
            types=where.types,
            since=where.since,
            until=where.until,
        )


async def _next_batch(
    runtime: Runtime, where: _Filter, after: int, limit: int, wait: float
) -> list[dict[str, Any]]:
    """Events after the cursor; if there are none yet, wait up to ``wait`` seconds for some."""
    deadline = time.monotonic() + wait
    while True:
        mark = runtime.feed.latest
        found = await run_in_threadpool(_read, runtime, where, after, limit)
        remaining = deadline - time.monotonic()
        if found or remaining <= 0:
            return found
        await runtime.feed.wait_beyond(mark, remaining)


Types = Annotated[list[str], Query(alias="type", description="event type; repeat for several")]


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


@router.get("", response_model=schemas.EventPage)
async def list_events(
    runtime: RuntimeDep,
    caller: CallerDep,
    environment_id: Annotated[str | None, Query(alias="environmentId", max_length=40, pattern=NO_NUL)] = None,
    deployment_id: Annotated[str | None, Query(alias="deploymentId", max_length=40, pattern=NO_NUL)] = None,
    types: Types = [],  # noqa: B006 (FastAPI copies defaults)
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    after: Annotated[int, Query(ge=0, le=MAX_CURSOR, description="return events with a larger id")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    wait: Annotated[float, Query(ge=0, le=3600, description="seconds to wait for an event (long poll)")] = 0,
) -> Response:
    """Events oldest first after a cursor; ``cursor`` in the answer is where to continue from."""
    where = _Filter(_scoped(caller, environment_id), deployment_id, types, since, until)
    found = await _next_batch(
        runtime,
        where,
        after,
        min(limit, runtime.settings.max_page_size * 10),
        min(wait, runtime.settings.max_wait),
    )
    # Encoded directly (orjson): a page of 1,000 events is the hot path of every follower.
    page = {"cursor": found[-1]["id"] if found else after, "events": found}
    return Response(_json(page), media_type="application/json")


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
)
async def stream_events(
    request: Request,
    runtime: RuntimeDep,
    caller: CallerDep,
    environment_id: Annotated[str | None, Query(alias="environmentId", max_length=40, pattern=NO_NUL)] = None,
    deployment_id: Annotated[str | None, Query(alias="deploymentId", max_length=40, pattern=NO_NUL)] = None,
    types: Types = [],  # noqa: B006
    after: Annotated[int, Query(ge=0, le=MAX_CURSOR)] = 0,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> StreamingResponse:
    """Follow the log as Server-Sent Events; reconnect with ``Last-Event-ID`` to resume after it."""
    if last_event_id:
        if not last_event_id.isdigit() or int(last_event_id) > MAX_CURSOR:
            raise InvalidInput("Last-Event-ID must be an event id", field="Last-Event-ID")
        after = max(after, int(last_event_id))
    where = _Filter(_scoped(caller, environment_id), deployment_id, types, None, None)

    async def body() -> AsyncIterator[bytes]:
        cursor = after
        yield b": connected\n\n"
        while not await request.is_disconnected():
            try:
                batch = await _next_batch(runtime, where, cursor, 500, 15.0)
            except OperationalError as exc:
                # The response has started, so no 503 can be sent: end the stream cleanly and
                # let the follower resume from its Last-Event-ID once the store is back.
                log.warning("event stream ended at cursor %d: database unavailable (%s)", cursor, exc.orig)
                yield b"retry: %d\n\n" % RECONNECT_MS
                return
            if not batch:
                yield b": keep-alive\n\n"
                continue
            for event in batch:
                yield b"id: %d\nevent: %s\ndata: %s\n\n" % (event["id"], event["type"].encode(), _json(event))
            cursor = batch[-1]["id"]

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
