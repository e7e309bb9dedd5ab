"""The FastAPI application factory: storage, routers, and the one table from domain errors to HTTP."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import event
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from shipmate.common.backoff import Backoff
from shipmate.server import errors
from shipmate.server.artifacts import ArtifactStore
from shipmate.server.db import Database
from shipmate.server.deps import Runtime
from shipmate.server.docs import install_docs
from shipmate.server.feed import ChangeFeed
from shipmate.server.models import TokenKind
from shipmate.server.openapi import document_errors
from shipmate.server.routers import (
    accuracy,
    alerts,
    deployments,
    drift,
    environments,
    events,
    health,
    monitoring,
    packages,
    tokens,
    ui,
    ui_pages,
)
from shipmate.server.services import tokens as token_service
from shipmate.server.services.alerts import Deliverer, Webhook
from shipmate.server.settings import ServerSettings

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"

# Domain errors to HTTP, in one place. Bodies carry the message and the field; never a secret.
ERROR_STATUS: dict[type[errors.DomainError], int] = {
    errors.InvalidInput: 422,
    errors.InvalidPackage: 422,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
}


def _error_response(status: int, detail: str, field: str | None = None, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": detail, "field": field, **extra}, status_code=status, headers=headers)


class OutageLog:
    """One warning when the database stops answering and one when it answers again, instead of a
    line per refused request (a minute's outage under load is thousands of 503s). The outage ends
    at the first connection the pool hands out again (after its ping), whoever asked for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down = False
        self._refused = 0

    def refused(self, reason: object) -> None:
        with self._lock:
            self._refused += 1
            if self._down:
                return
            self._down = True
        log.warning("database unavailable: %s (requests get 503 until it answers again)", reason)

    def answered(self, *_: object) -> None:
        if not self._down:  # the usual case: no lock on every checkout
            return
        with self._lock:
            if not self._down:
                return
            self._down, refused, self._refused = False, self._refused, 0
        log.warning("database available again; %d requests were refused meanwhile", refused)


def _install_error_handlers(app: FastAPI, outage: OutageLog) -> None:
    @app.exception_handler(errors.DomainError)
    async def _domain(_: Request, exc: errors.DomainError) -> JSONResponse:
        return _error_response(ERROR_STATUS.get(type(exc), 400), exc.message, exc.field)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            location = [str(part) for part in error.get("loc", ())]
            where = (
                location[1:] if location and location[0] in ("body", "query", "path", "header") else location
            )
            problems.append(
                {
                    "field": ".".join(where) or "body",
                    "in": location[0] if location else "body",
                    "reason": error.get("msg", "invalid"),
                }
            )
        first = problems[0] if problems else {"field": "body", "reason": "invalid request"}
        return _error_response(422, f"{first['field']}: {first['reason']}", first["field"], errors=problems)

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        log.info("integrity conflict: %s", exc.orig)
        return _error_response(409, "the change conflicts with a concurrent change; retry it")

    @app.exception_handler(DataError)
    async def _unstorable(_: Request, exc: DataError) -> JSONResponse:
        # e.g. a NUL character in a path or query parameter, which PostgreSQL text cannot hold
        log.info("value refused by the database: %s", exc.orig)
        return _error_response(422, "a value in the request cannot be stored or searched for")

    @app.exception_handler(OperationalError)
    async def _unavailable(_: Request, exc: OperationalError) -> JSONResponse:
        outage.refused(exc.orig)
        return JSONResponse(
            {"detail": "the database is unavailable; retry later"},
            status_code=503,
            headers={"Retry-After": "1"},
        )


def write_admin_token(data_dir: Path, secret: str) -> Path:
    """Write an admin token's secret to <data-dir>/admin-token, readable only by this user."""
    path = data_dir / "admin-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    os.chmod(path, 0o600)
    return path


def _ensure_admin_token(settings: ServerSettings, db: Database) -> None:
    """A configured admin token is made valid; with none configured and none stored, one is generated."""
    with db.write() as session:
        if settings.admin_token is not None:
            token_service.ensure_admin(session, secret=settings.admin_token.get_secret_value())
            return
        if token_service.has_admin(session):
            return
        _, secret = token_service.create(
            session, name="admin (generated)", kind=TokenKind.ADMIN, environment_id=None, actor="system"
        )
        path = write_admin_token(settings.data_dir, secret)
    log.warning("generated an admin token; it is in %s (readable only by this user)", path)


def create_app(settings: ServerSettings) -> FastAPI:
    """Build the service. Storage is opened here; migrations run and the feed starts at start-up."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url(), pool_size=settings.database_pool_size)
    feed = ChangeFeed(db, poll_interval=settings.feed_poll_interval)
    db.on_commit(feed.wake_threadsafe)
    runtime = Runtime(settings=settings, db=db, store=ArtifactStore(settings.artifact_dir), feed=feed)
    if settings.alert_webhook_url:
        secret = settings.alert_webhook_secret
        runtime.webhook = Deliverer(
            db,
            Webhook(settings.alert_webhook_url, secret.get_secret_value() if secret else None),
            retention=dt.timedelta(hours=settings.alert_webhook_retention_hours),
            backoff=Backoff(
                initial=settings.alert_webhook_backoff_seconds,
                maximum=settings.alert_webhook_backoff_max_seconds,
                jitter=0.2,
            ),
            idle_seconds=settings.alert_webhook_poll_seconds,
        )
    evaluator = alerts.Evaluator(runtime)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(db.migrate)
        await run_in_threadpool(_ensure_admin_token, settings, db)
        await feed.start()
        evaluator.start()
        if runtime.webhook is not None:
            runtime.webhook.start()
        try:
            yield
        finally:
            await evaluator.stop()
            if runtime.webhook is not None:
                await run_in_threadpool(runtime.webhook.stop)
            await feed.stop()
            db.dispose()

    app = FastAPI(
        title="Shipmate",
        version="1",
        summary="Control plane: model packages, prediction environments, deployments, events, tokens.",
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # served offline by install_docs
        redoc_url=None,
    )
    app.state.runtime = runtime
    outage = OutageLog()
    event.listen(db.engine, "checkout", outage.answered)
    _install_error_handlers(app, outage)
    api = APIRouter(prefix=API_PREFIX)
    for module in (
        health,
        packages,
        environments,
        deployments,
        events,
        tokens,
        monitoring,
        drift,
        accuracy,
        alerts,
    ):
        api.include_router(module.router)
    app.include_router(api)
    app.mount(f"{ui.UI_PREFIX}/static", ui.static_files(), name="console-static")
    app.include_router(ui.router)
    app.include_router(ui_pages.router)
    install_docs(app, API_PREFIX, ui.UI_PREFIX)
    app.openapi = lambda: document_errors(app)  # type: ignore[method-assign]
    return app
