"""Dependency aliases shared by the routers: the runtime, the caller, and access checks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shipmate.server import console_session
from shipmate.server.artifacts import ArtifactStore
from shipmate.server.db import Database
from shipmate.server.errors import Forbidden, Unauthenticated
from shipmate.server.feed import ChangeFeed
from shipmate.server.security import Principal
from shipmate.server.services import tokens
from shipmate.server.services.alerts import Deliverer
from shipmate.server.settings import ServerSettings


@dataclass
class Runtime:
    """What one server process holds: settings, the database handle, the artifact store, the feed."""

    settings: ServerSettings
    db: Database
    store: ArtifactStore
    feed: ChangeFeed
    webhook: Deliverer | None = None
    """Posts the alert changes' outbox to ``SHIPMATE_ALERT_WEBHOOK_URL``, if one is set."""


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


_bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer smt_…`")


def get_principal(
    request: Request,
    runtime: Annotated[Runtime, Depends(get_runtime)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is not None and credentials.credentials:
        secret = credentials.credentials
    else:
        secret = _console_secret(request, runtime)
    with runtime.db.read() as session:
        return tokens.authenticate(session, secret)


def _console_secret(request: Request, runtime: Runtime) -> str:
    """The web console's session cookie stands for its token; a change needs the session's CSRF token."""
    session = console_session.parse(request.cookies.get(console_session.COOKIE))
    if session is None:
        raise Unauthenticated("missing API token: send 'Authorization: Bearer <token>'")
    if session.expired(time.time(), runtime.settings.console_session_s):
        raise Unauthenticated("the console session has expired; sign in again")
    if request.method not in console_session.SAFE_METHODS and not session.csrf_matches(
        request.headers.get(console_session.CSRF_HEADER)
    ):
        raise Forbidden(f"a change made with the console's session needs its {console_session.CSRF_HEADER}")
    return session.token


def require_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if not principal.is_admin:
        raise Forbidden("this needs an admin token; agent tokens reach only their environment's work")
    return principal


def check_environment_access(principal: Principal, environment_id: str) -> None:
    if not principal.may_access_environment(environment_id):
        raise Forbidden(f"this token is bound to another environment and may not reach {environment_id}")


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
CallerDep = Annotated[Principal, Depends(get_principal)]
AdminDep = Annotated[Principal, Depends(require_admin)]


NO_NUL = r"^[^\x00]*$"
"""Pattern for free-text query parameters: PostgreSQL text cannot hold NUL characters."""
