"""The prediction server's ASGI app: one worker's state and every protocol's endpoints.

Endpoints per protocol (`shipmate.serving.endpoints`) are thin over one data plane
(`shipmate.serving.dataplane`); wire formats are converted by the codecs of each
dialect (`shipmate.serving.codecs`); what every endpoint shares at the HTTP edge
(access, body limits, format negotiation, error responses) is `shipmate.serving.edge`.
Plain Starlette rather than FastAPI: the per-request cost of dependency injection and
response validation is measurable at thousands of requests per second on two cores
(docs/serving.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from shipmate.serving.dataplane import ScoreHook
from shipmate.serving.edge import error_response
from shipmate.serving.endpoints.datarobot import DataRobotEndpoints
from shipmate.serving.endpoints.management import ManagementEndpoints
from shipmate.serving.endpoints.v2 import V2Endpoints
from shipmate.serving.openapi import OpenAPIEndpoints
from shipmate.serving.settings import ServeSettings
from shipmate.serving.worker import Worker


def create_app(settings: ServeSettings, hooks: Sequence[ScoreHook] = ()) -> Starlette:
    """The prediction server's ASGI app (one per worker process); ``hooks`` hear of every scored request."""
    worker = Worker(settings, hooks)
    datarobot = DataRobotEndpoints(worker)
    routes = [
        *datarobot.routes(),
        *ManagementEndpoints(worker).routes(),
        *V2Endpoints(worker).routes(),
        *OpenAPIEndpoints(worker).routes(),
        *datarobot.catch_all_routes(),  # /{id}/predict: last, so it shadows nothing
    ]
    app = Starlette(routes=routes, lifespan=worker.lifespan, exception_handlers={HTTPException: _http_error})
    app.state.worker = worker
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) in the body every other refusal has."""
    assert isinstance(exc, HTTPException)
    response = error_response(exc.status_code, exc.detail)
    response.headers.update(exc.headers or {})
    return response
