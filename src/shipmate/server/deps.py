"""Dependency aliases shared by the routers: the runtime, the caller, and access checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shipmate.server.artifacts import ArtifactStore
from shipmate.server.db import Database
from shipmate.server.errors import Forbidden, Unauthenticated
from shipmate.server.feed import ChangeFeed
from shipmate.server.security import Principal
from shipmate.server.services import tokens
from shipmate.server.services.alerts import Webhook
from shipmate.server.settings import ServerSettings


@dataclass
class Runtime:
    """What one server process holds: settings, the database handle, the artifact store, the feed."""

    settings: ServerSettings
    db: Database
    store: ArtifactStore
    feed: ChangeFeed
    webhook: Webhook | None = None
    """Where alert changes are POSTed (``SHIPMATE_ALERT_WEBHOOK_URL``), if anywhere."""


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


_bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer smt_…`")


def get_principal(
    runtime: Annotated[Runtime, Depends(get_runtime)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("missing API token: send 'Authorization: Bearer <token>'")
    with runtime.db.read() as session:
        return tokens.authenticate(session, credentials.credentials)


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
