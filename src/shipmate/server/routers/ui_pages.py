"""The web console's pages: overview, environment, deployment (with its tabs), model packages, events
and tokens. Each reads through the same services as the API and shows only what the token may see;
an agent token sees its own environment and is offered no action (the API would refuse it)."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from shipmate.common.health import BADGES, DeploymentView, is_pending, state_badge
from shipmate.common.vocabulary import EventType
from shipmate.monitoring import service_health
from shipmate.server.deps import NO_NUL, RuntimeDep
from shipmate.server.errors import NotFound
from shipmate.server.models import Deployment
from shipmate.server.routers.ui import UI_PREFIX, Viewer, render, sign_in_page, viewer
from shipmate.server.schemas import DeploymentOut
from shipmate.server.services import deployments, environments, events, packages, tokens
from shipmate.server.services import monitoring as store
from shipmate.server.services.deployments import DeploymentFilter
from shipmate.server.views import deployment_out, environment_out, event_out, package_out, token_out

router = APIRouter(prefix=UI_PREFIX, include_in_schema=False)
ViewerDep = Annotated[Viewer | None, Depends(viewer)]
Id = Annotated[str, Query(max_length=40, pattern=NO_NUL)]

SPARK = "▁▂▃▄▅▆▇█"
TABS = ("overview", "health", "drift", "accuracy", "alerts", "events", "history")
PAGE = 50


def _sparkline(values: list[int]) -> str:
    top = max(values, default=0)
    if top <= 0:
        return " " * len(values)
    steps = len(SPARK) - 1
    return "".join(" " if v <= 0 else SPARK[min(steps, int(v / top * steps + 0.5))] for v in values)


def _view(d: DeploymentOut) -> DeploymentView:
    pending = is_pending(d.generation, d.observed.generation, d.observed.phase)
    return DeploymentView(str(d.desired.state), d.observed.state, d.observed.status, pending)


def example_row(manifest: dict[str, Any]) -> str:
    """One request body for the copyable ``curl`` example: a row with every feature."""
    sample = {"numeric": 0, "boolean": False}
    row = {f.get("name"): sample.get(str(f.get("type")), "") for f in manifest.get("features") or []}
    return json.dumps([row]).replace("'", "")


def badge(d: DeploymentOut) -> str:
    changing = d.observed.model_package_id not in (None, d.desired.model_package_id)
    return state_badge(_view(d), model_changing=changing)


def _rows(rows: list[Deployment]) -> list[dict[str, Any]]:
    return [{"d": out, "badge": badge(out)} for out in map(deployment_out, rows)]


def _packages(session: Any, who: Viewer) -> list[Any]:
    """What a deploy or replace form offers: every package, for an admin (only an admin may act)."""
    return [package_out(p) for p in packages.list_all(session, limit=200)] if who.is_admin else []


def _missing(request: Request, runtime: RuntimeDep, who: Viewer, what: str) -> Response:
    return render(request, runtime, who, "missing.html", {"what": what}, status_code=404)


@router.get("", response_class=HTMLResponse)
def overview(request: Request, runtime: RuntimeDep, who: ViewerDep) -> Response:
    if who is None:
        return sign_in_page(request)
    with runtime.db.read() as session:
        envs = environments.list_all(session, only_id=who.scope)
        views = environments.deployment_views(session, [e.id for e in envs])
        page, total = deployments.list_page(
            session, where=DeploymentFilter(environment_id=who.scope), limit=PAGE, offset=0
        )
        recent = events.recent(session, limit=15, environment_id=who.scope)
        counts = Counter(state_badge(v) for e in envs for v in views.get(e.id, []))
        context = {
            "environments": [environment_out(e, views.get(e.id, [])) for e in envs],
            "deployments": _rows(page),
            "total": total,
            "counts": [(b, counts.get(b, 0)) for b in BADGES if counts.get(b, 0) or b != "UNKNOWN"],
            "events": [event_out(e) for e in recent],
        }
    return render(request, runtime, who, "overview.html", context)


@router.get("/environments/{environment_id}", response_class=HTMLResponse)
def environment_page(request: Request, runtime: RuntimeDep, who: ViewerDep, environment_id: str) -> Response:
    if who is None:
        return sign_in_page(request)
    if not who.principal.may_access_environment(environment_id):
        return _missing(request, runtime, who, f"environment {environment_id}")
    with runtime.db.read() as session:
        try:
            env = environments.get(session, environment_id)
        except NotFound:
            return _missing(request, runtime, who, f"environment {environment_id}")
        views = environments.deployment_views(session, [env.id]).get(env.id, [])
        rows, total = deployments.list_page(
            session, where=DeploymentFilter(environment_id=env.id), limit=200, offset=0
        )
        context = {
            "env": environment_out(env, views),
            "deployments": _rows(rows),
            "total": total,
            "events": [event_out(e) for e in events.recent(session, limit=20, environment_id=env.id)],
            "packages": _packages(session, who),
        }
    return render(request, runtime, who, "environment.html", context)


@router.get("/deployments/{deployment_id}", response_class=HTMLResponse)
def deployment_page(
    request: Request,
    runtime: RuntimeDep,
    who: ViewerDep,
    deployment_id: str,
    tab: Annotated[str, Query(max_length=20)] = "overview",
) -> Response:
    if who is None:
        return sign_in_page(request)
    tab = tab if tab in TABS else "overview"
    now_minute = int(time.time() // 60) + 1
    with runtime.db.read() as session:
        try:
            deployment = deployments.get(session, deployment_id)
        except NotFound:
            deployment = None
        if deployment is None or not who.principal.may_access_environment(deployment.environment_id):
            return _missing(request, runtime, who, f"deployment {deployment_id}")
        out = deployment_out(deployment)
        env = environment_out(environments.get(session, deployment.environment_id))
        applied = None
        if out.observed.model_package_id and out.observed.model_package_id != out.desired.model_package_id:
            try:
                applied = package_out(packages.get(session, out.observed.model_package_id))
            except NotFound:
                applied = None
        manifest = packages.get(session, out.desired.model_package_id).manifest
        context: dict[str, Any] = {
            "d": out,
            "example": example_row(manifest),
            "env": env,
            "badge": badge(out),
            "tab": tab,
            "tabs": TABS,
            "applied_package": applied,
            "history": [event_out(e) for e in events.model_history(session, deployment_id=deployment_id)],
            "events": [event_out(e) for e in events.browse(session, deployment_id=deployment_id, limit=PAGE)],
            "packages": _packages(session, who),
        }
        if tab == "health":
            day = store.buckets_between(
                session, deployment_id, since_minute=now_minute - 24 * 60, until_minute=now_minute
            )
            context["last_received"] = store.last_received(session, deployment_id)
            spans = []
            for name, minutes, resolution, unit in (
                ("last hour", 60, service_health.Resolution.MINUTE, "minute"),
                ("last 24 hours", 24 * 60, service_health.Resolution.HOUR, "hour"),
            ):
                figures = service_health.compute(
                    day, since_minute=now_minute - minutes, until_minute=now_minute, resolution=resolution
                )
                spark = _sparkline([p.total_requests for p in figures.periods])
                spans.append((name, figures.summary, spark, unit))
            context["spans"] = spans
    return render(request, runtime, who, "deployment.html", context)


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, runtime: RuntimeDep, who: ViewerDep) -> Response:
    if who is None:
        return sign_in_page(request)
    if not who.is_admin:
        return _missing(request, runtime, who, "the model packages (an admin token sees them)")
    with runtime.db.read() as session:
        found = [package_out(p) for p in packages.list_all(session, limit=500)]
    by_name: dict[str, list[Any]] = {}
    for p in found:
        by_name.setdefault(p.name, []).append(p)
    return render(request, runtime, who, "models.html", {"by_name": by_name})


@router.get("/models/{package_id}", response_class=HTMLResponse)
def model_page(request: Request, runtime: RuntimeDep, who: ViewerDep, package_id: str) -> Response:
    if who is None:
        return sign_in_page(request)
    if not who.is_admin:
        return _missing(request, runtime, who, f"model package {package_id}")
    with runtime.db.read() as session:
        try:
            package = package_out(packages.get(session, package_id))
        except NotFound:
            return _missing(request, runtime, who, f"model package {package_id}")
        users, _ = deployments.list_page(
            session, where=DeploymentFilter(model_package_id=package_id), limit=200, offset=0
        )
        versions = [package_out(p) for p in packages.list_all(session, name=package.name, limit=200)]
        envs = {e.id: e.name for e in environments.list_all(session)}
    manifest = package.manifest
    baseline = manifest.get("baseline") or {}
    features = [
        {
            "name": f.get("name"),
            "type": f.get("type"),
            "bins": (baseline.get(f.get("name")) or {}).get("bins"),
            "importance": (manifest.get("featureImportance") or {}).get(f.get("name")),
        }
        for f in manifest.get("features") or []
    ]
    context = {
        "p": package,
        "features": features,
        "files": sorted((manifest.get("files") or {}).items()),
        "users": _rows(users),
        "versions": versions,
        "envs": envs,
    }
    return render(request, runtime, who, "model.html", context)


@router.get("/events", response_class=HTMLResponse)
def events_page(
    request: Request,
    runtime: RuntimeDep,
    who: ViewerDep,
    type_: Annotated[str | None, Query(alias="type", max_length=60, pattern=NO_NUL)] = None,
    deployment_id: Annotated[str | None, Query(alias="deploymentId", max_length=40, pattern=NO_NUL)] = None,
    environment_id: Annotated[str | None, Query(alias="environmentId", max_length=40, pattern=NO_NUL)] = None,
    status: Annotated[str | None, Query(max_length=20, pattern=NO_NUL)] = None,
    since_hours: Annotated[str | None, Query(alias="sinceHours", pattern=r"^(\d{1,5})?$")] = None,
    before: Annotated[int | None, Query(gt=0, lt=2**63)] = None,
) -> Response:
    if who is None:
        return sign_in_page(request)
    scope = who.scope or (environment_id or None)
    hours = int(since_hours) if since_hours else None  # the form sends "" for "any time"
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours) if hours else None
    with runtime.db.read() as session:
        found = events.browse(
            session,
            before=before,
            limit=PAGE + 1,
            environment_id=scope,
            deployment_id=deployment_id or None,
            types=[type_] if type_ else [],
            status=status or None,
            since=since,
        )
        envs = [(e.id, e.name) for e in environments.list_all(session, only_id=who.scope)]
        more = len(found) > PAGE
        shown = [event_out(e) for e in found[:PAGE]]
    filters = {
        "type": type_ or "",
        "deploymentId": deployment_id or "",
        "environmentId": environment_id or "",
        "status": status or "",
        "sinceHours": hours or "",
    }
    context = {
        "events": shown,
        "filters": filters,
        "query": urlencode({k: v for k, v in filters.items() if v}),
        "older": shown[-1].id if more and shown else None,
        "paged": before is not None,
        "types": [t.value for t in EventType],
        "environments": envs,
    }
    return render(request, runtime, who, "events.html", context)


@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, runtime: RuntimeDep, who: ViewerDep) -> Response:
    if who is None:
        return sign_in_page(request)
    if not who.is_admin:
        return _missing(request, runtime, who, "the tokens (an admin token manages them)")
    with runtime.db.read() as session:
        found = [token_out(t) for t in tokens.list_all(session, include_revoked=True)]
        envs = [(e.id, e.name) for e in environments.list_all(session)]
    return render(request, runtime, who, "tokens.html", {"tokens": found, "environments": envs})
