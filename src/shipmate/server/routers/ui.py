"""The read-only web UI at ``/ui``: sign in with an API token (kept in an HttpOnly cookie), then see
environments, deployments and recent events. Agent tokens see only their environment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Cookie, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from shipmate.common.health import DeploymentView, environment_health, is_pending
from shipmate.server.deps import NO_NUL, RuntimeDep
from shipmate.server.errors import Unauthenticated
from shipmate.server.schemas import DeploymentOut, EnvironmentOut
from shipmate.server.security import Principal
from shipmate.server.services import deployments, environments, events, tokens
from shipmate.server.services.deployments import DeploymentFilter
from shipmate.server.views import deployment_out, environment_out, event_out

UI_PREFIX = "/ui"
COOKIE = "shipmate_token"
router = APIRouter(prefix=UI_PREFIX, include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent.parent / "ui" / "templates"))


def _principal(runtime: RuntimeDep, secret: str | None) -> Principal | None:
    if not secret:
        return None
    try:
        with runtime.db.read() as session:
            return tokens.authenticate(session, secret)
    except Unauthenticated:
        return None


@router.get("", response_class=HTMLResponse)
def overview(
    request: Request,
    runtime: RuntimeDep,
    environment_id: Annotated[str | None, Query(alias="environmentId", max_length=40, pattern=NO_NUL)] = None,
    secret: Annotated[str | None, Cookie(alias=COOKIE)] = None,
) -> Response:
    principal = _principal(runtime, secret)
    if principal is None:
        return templates.TemplateResponse(request, "login.html", {"base": UI_PREFIX, "error": None})
    if not principal.is_admin:
        environment_id = principal.environment_id
    with runtime.db.read() as session:
        envs = environments.list_all(
            session, only_id=None if principal.is_admin else principal.environment_id
        )
        rows, total = deployments.list_page(
            session, where=DeploymentFilter(environment_id=environment_id), limit=100, offset=0
        )
        recent = events.recent(session, limit=50, environment_id=environment_id)
        every, _ = deployments.list_page(
            session,
            where=DeploymentFilter(environment_id=None if principal.is_admin else principal.environment_id),
            limit=1000,
            offset=0,
        )
        health = _health([environment_out(e) for e in envs], [deployment_out(d) for d in every])
        context = {
            "base": UI_PREFIX,
            "actor": principal.actor,
            "environment_id": environment_id,
            "environments": [environment_out(e) for e in envs],
            "deployments": [deployment_out(d) for d in rows],
            "total": total,
            "events": [event_out(e) for e in recent],
            "health": health,
        }
    return templates.TemplateResponse(request, "overview.html", context)


def _cross_site(request: Request) -> bool:
    """A sign-in posted from another site's page (login CSRF): the browser says so."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin == "null"
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] != host


def _health(envs: list[EnvironmentOut], rows: list[DeploymentOut]) -> dict[str, tuple[str, str]]:
    """Each environment's health from the same deployment records the table shows (as the CLI does)."""
    views: dict[str, list[DeploymentView]] = {e.id: [] for e in envs}
    for d in rows:
        pending = is_pending(d.generation, d.observed.generation, d.observed.phase)
        views.setdefault(d.environment_id, []).append(
            DeploymentView(str(d.desired.state), d.observed.state, d.observed.status, pending)
        )
    return {e.id: environment_health(str(e.health.status), views[e.id]) for e in envs}


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, runtime: RuntimeDep, token: Annotated[str, Form(max_length=200)]) -> Response:
    if _cross_site(request):
        context = {"base": UI_PREFIX, "error": "sign in from this site's own page"}
        return templates.TemplateResponse(request, "login.html", context, status_code=403)
    if _principal(runtime, token) is None:
        context = {"base": UI_PREFIX, "error": "unknown or revoked token"}
        return templates.TemplateResponse(request, "login.html", context, status_code=401)
    response = RedirectResponse(UI_PREFIX, status_code=303)
    secure = request.url.scheme == "https"  # behind TLS (directly, or a proxy's X-Forwarded-Proto)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure, path=UI_PREFIX)
    return response


@router.get("/logout")
def logout() -> Response:
    response = RedirectResponse(UI_PREFIX, status_code=303)
    response.delete_cookie(COOKIE, path=UI_PREFIX)
    return response
