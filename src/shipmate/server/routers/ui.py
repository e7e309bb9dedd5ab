"""The web console at ``/ui``: sign-in with an API token, the session cookie, and what every page shares.

Pages are rendered here from the same services as the API and show only what the token may see;
every change a page offers is made by the browser through the REST API (``/api/v1``) with the
session cookie and its CSRF token (``server/console_session.py``), exactly as the CLI makes it.
The pages themselves are in ``ui_pages.py``; the browser side (live updates, charts, actions) is
built from ``console/`` into ``ui/static``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from shipmate.common.vocabulary import EventType
from shipmate.server import console_session
from shipmate.server.deps import RuntimeDep
from shipmate.server.errors import Unauthenticated
from shipmate.server.security import Principal
from shipmate.server.services import events, tokens

log = logging.getLogger(__name__)

UI_PREFIX = "/ui"
UI_DIR = Path(__file__).parent.parent / "ui"
STATIC_DIR = UI_DIR / "static"
router = APIRouter(prefix=UI_PREFIX, include_in_schema=False)
templates = Jinja2Templates(directory=str(UI_DIR / "templates"))


NAV = {"overview.html": "overview", "models.html": "models", "model.html": "models", "events.html": "events",
       "tokens.html": "tokens"}  # fmt: skip
"""Which main navigation entry a page belongs to."""


def static_files() -> StaticFiles:
    """The built console assets (``npm run build`` in ``console/``; scripts/setup.sh runs it)."""
    STATIC_DIR.mkdir(parents=True, exist_ok=True)
    if not (STATIC_DIR / "console.js").is_file():
        log.warning(
            "the web console's script is not built: pages are read-only and not live "
            "(run scripts/setup.sh, or npm ci && npm run build in console/)"
        )
    return StaticFiles(directory=str(STATIC_DIR))


@dataclass(frozen=True)
class Viewer:
    """Who is looking at a page, with the session's CSRF token for the page's actions."""

    principal: Principal
    csrf: str

    @property
    def is_admin(self) -> bool:
        return self.principal.is_admin

    @property
    def scope(self) -> str | None:
        """The one environment an agent token sees; ``None`` for an admin (everything)."""
        return None if self.principal.is_admin else self.principal.environment_id


def viewer(request: Request, runtime: RuntimeDep) -> Viewer | None:
    session = console_session.parse(request.cookies.get(console_session.COOKIE))
    if session is None or session.expired(time.time(), runtime.settings.console_session_s):
        return None
    try:
        with runtime.db.read() as db:
            principal = tokens.authenticate(db, session.token)
    except Unauthenticated:
        return None
    return Viewer(principal, session.csrf)


def sign_in_page(
    request: Request, error: str | None = None, status_code: int = 200, next_page: str | None = None
) -> Response:
    """The sign-in form; afterwards the browser returns to the page it asked for."""
    expired = request.cookies.get(console_session.COOKIE) is not None and error is None
    back = next_page if request.method == "POST" else request.url.path
    context = {"base": UI_PREFIX, "error": error, "expired": expired, "next": _local_next(back)}
    return templates.TemplateResponse(request, "login.html", context, status_code=status_code)


def render(
    request: Request,
    runtime: RuntimeDep,
    who: Viewer,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
) -> Response:
    """A page with what every page shares: who is signed in, the CSRF token, the live feed's cursor."""
    with runtime.db.read() as db:
        cursor = events.latest_id(db)
    shared = {
        "base": UI_PREFIX,
        "actor": who.principal.actor,
        "is_admin": who.is_admin,
        "csrf": who.csrf,
        "cursor": cursor,
        "csrf_header": console_session.CSRF_HEADER,
        "scope": who.scope,
        "event_types": " ".join(t.value for t in EventType),
        "page": NAV.get(template, ""),
    }
    return templates.TemplateResponse(request, template, {**shared, **context}, status_code=status_code)


def _cross_site(request: Request) -> bool:
    """A sign-in posted from another site's page (login CSRF): the browser says so."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin == "null"
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] != host


def _local_next(target: str | None) -> str:
    """Back to the page that asked for sign-in, only ever a console page of this site."""
    if target and target.startswith(UI_PREFIX) and "//" not in target and "\\" not in target:
        return UI_PREFIX if target.startswith(f"{UI_PREFIX}/log") else target
    return UI_PREFIX


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    runtime: RuntimeDep,
    token: Annotated[str, Form(max_length=200)],
    next_page: Annotated[str | None, Form(alias="next", max_length=500)] = None,
) -> Response:
    if _cross_site(request):
        return sign_in_page(request, "sign in from this site's own page", 403, next_page)
    token = token.strip()
    try:
        with runtime.db.read() as db:
            tokens.authenticate(db, token)
    except Unauthenticated:
        return sign_in_page(request, "unknown or revoked token", 401, next_page)
    response = RedirectResponse(_local_next(next_page), status_code=303)
    secure = request.url.scheme == "https"  # behind TLS (directly, or a proxy's X-Forwarded-Proto)
    session = console_session.Session(token=token, issued_at=int(time.time()))
    response.set_cookie(
        console_session.COOKIE,
        session.cookie_value(),  # a browser-session cookie; the service ends it after console_session_s
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request, runtime: RuntimeDep, csrf: Annotated[str, Form(max_length=100)]) -> Response:
    session = console_session.parse(request.cookies.get(console_session.COOKIE))
    response = RedirectResponse(UI_PREFIX, status_code=303)
    if session is None or session.csrf_matches(csrf):
        response.delete_cookie(console_session.COOKIE, path="/")
    return response
