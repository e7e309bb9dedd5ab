"""The web UI's deployment page (``/ui/deployments/{id}``): its state and its service health over
the last hour (by minute) and the last day (by hour), read through the same code as the API."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Request
from fastapi.responses import HTMLResponse, Response

from shipmate.monitoring import service_health
from shipmate.server.deps import RuntimeDep
from shipmate.server.errors import NotFound
from shipmate.server.routers.ui import COOKIE, UI_PREFIX, _principal, templates
from shipmate.server.services import deployments
from shipmate.server.services import monitoring as store
from shipmate.server.views import deployment_out

router = APIRouter(prefix=UI_PREFIX, include_in_schema=False)

SPARK = "▁▂▃▄▅▆▇█"


def _sparkline(values: list[int]) -> str:
    top = max(values, default=0)
    if top <= 0:
        return " " * len(values)
    steps = len(SPARK) - 1
    return "".join(" " if v <= 0 else SPARK[min(steps, int(v / top * steps + 0.5))] for v in values)


@router.get("/deployments/{deployment_id}", response_class=HTMLResponse)
def deployment_page(
    request: Request,
    runtime: RuntimeDep,
    deployment_id: str,
    secret: Annotated[str | None, Cookie(alias=COOKIE)] = None,
) -> Response:
    principal = _principal(runtime, secret)
    if principal is None:
        return templates.TemplateResponse(request, "login.html", {"base": UI_PREFIX, "error": None})
    now_minute = int(time.time() // 60) + 1
    with runtime.db.read() as session:
        try:
            deployment = deployments.get(session, deployment_id)
        except NotFound:
            deployment = None
        if deployment is None or not principal.may_access_environment(deployment.environment_id):
            missing = {"base": UI_PREFIX, "actor": principal.actor, "deployment_id": deployment_id}
            return templates.TemplateResponse(request, "deployment_missing.html", missing, status_code=404)
        day = store.buckets_between(
            session, deployment_id, since_minute=now_minute - 24 * 60, until_minute=now_minute
        )
        last = store.last_received(session, deployment_id)
        out = deployment_out(deployment)
    hour = service_health.compute(
        day,
        since_minute=now_minute - 60,
        until_minute=now_minute,
        resolution=service_health.Resolution.MINUTE,
    )
    daily = service_health.compute(
        day,
        since_minute=now_minute - 24 * 60,
        until_minute=now_minute,
        resolution=service_health.Resolution.HOUR,
    )
    context: dict[str, Any] = {
        "base": UI_PREFIX,
        "actor": principal.actor,
        "d": out,
        "last_received": last,
        "spans": [
            ("last hour", hour.summary, _sparkline([p.total_requests for p in hour.periods]), "minute"),
            ("last 24 hours", daily.summary, _sparkline([p.total_requests for p in daily.periods]), "hour"),
        ],
    }
    return templates.TemplateResponse(request, "deployment.html", context)
