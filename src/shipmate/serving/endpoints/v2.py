"""Open Inference Protocol v2 endpoints: health, model metadata and readiness, inference.

A model is named by its deployment id, its directory, or (when only one is served)
its package name. Bodies and metadata are the v2 codec's (`shipmate.serving.codecs.v2`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipmate.serving.codecs import v2
from shipmate.serving.deployments import Deployment
from shipmate.serving.edge import JSON, guard, json_response, read_body
from shipmate.serving.errors import DeploymentNotReady
from shipmate.serving.worker import Worker


class V2Endpoints:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def _deployment(self, name: str) -> Deployment:
        registry = self.worker.registry
        dep = registry.get(name)
        only = registry.only()
        if dep is None and only is not None and only.manifest.name == name:
            dep = only
        return dep or self.worker.dataplane.deployment(name)

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        ready = self.worker.registry.ready
        return json_response({"ready": ready}, 200 if ready else 503)

    async def model(self, request: Request) -> Response:
        self.worker.access.check(request, management=False)
        name = request.path_params["name"]
        return json_response(v2.metadata(name, self._deployment(name).manifest))

    async def model_ready(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            self._deployment(name)
        except DeploymentNotReady:
            return json_response({"name": name, "ready": False}, 503)
        return json_response({"name": name, "ready": True})

    async def infer(self, request: Request) -> Response:
        worker = self.worker
        worker.access.check(request, management=False)
        name = request.path_params["name"]
        dep = self._deployment(name)
        body = await read_body(request, worker.settings.max_body_bytes)
        with worker.inflight:  # counted like any prediction, so siblings see this worker is busy
            response = worker.dataplane.infer(dep, v2.decode(body, dep.manifest))
        return Response(v2.encode(response, name), media_type=JSON)

    def routes(self) -> list[Route]:
        g = guard
        return [
            Route("/v2/health/live", g(self.live), methods=["GET"]),
            Route("/v2/health/ready", g(self.ready), methods=["GET"]),
            Route("/v2/models/{name}", g(self.model), methods=["GET"]),
            Route("/v2/models/{name}/ready", g(self.model_ready), methods=["GET"]),
            Route("/v2/models/{name}/infer", g(self.infer), methods=["POST"]),
            Route("/v2/models/{name}/versions/{version}/infer", g(self.infer), methods=["POST"]),
        ]
