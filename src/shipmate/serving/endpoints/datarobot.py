"""DataRobot-compatible endpoints: health, deployment info, and predictions in JSON or CSV."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipmate.serving import codecs
from shipmate.serving.edge import body_pieces, guard, json_response, negotiate
from shipmate.serving.fanout import FanOutDeclined
from shipmate.serving.worker import Worker


class DataRobotEndpoints:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def ping(self, request: Request) -> Response:
        registry = self.worker.registry
        if registry.ready:
            return json_response({"message": "OK", "ready": True})
        failures = {f.deployment_id or f.key: f.public_error for f in registry.failures.values()}
        return json_response(
            {
                "message": "not ready",
                "ready": False,
                "loading": sorted(registry.pending),
                "failed": failures or None,
            },
            503,
        )

    async def info(self, request: Request) -> Response:
        self.worker.access.check(request, management=False)
        return json_response(self.worker.dataplane.deployment(request.path_params.get("id")).info())

    async def predict(self, request: Request) -> Response:
        worker = self.worker
        worker.access.check(request, management=False)
        deployment = worker.dataplane.deployment(request.path_params.get("id"))
        limit = worker.settings.max_body_bytes
        wire = negotiate(request, limit)
        fanout = worker.membership.fanout
        body: bytes | None = None
        if (
            fanout is not None
            and wire.declared is not None
            and wire.length is not None
            and wire.length >= worker.settings.fanout_min_bytes
        ):  # a large batch: quiet siblings get their chunks while the rest arrives
            with worker.inflight:
                try:
                    encoded = await fanout.infer(
                        deployment, body_pieces(request, limit), wire.length, wire.declared, wire.out
                    )
                except FanOutDeclined as declined:
                    body = declined.body
                else:
                    return Response(encoded, media_type=wire.media_type)
        if body is None:
            body = b"".join([piece async for piece in body_pieces(request, limit)])
        fmt = wire.body_format(body)
        with worker.inflight:
            rows = codecs.decode(body, fmt, deployment.matrix_features, worker.settings.association_id_column)
            response = worker.dataplane.infer(deployment, rows)
            return Response(codecs.encode(response, wire.out), media_type=wire.media_type)

    def routes(self) -> list[Route]:
        g = guard
        return [
            Route("/", g(self.ping), methods=["GET"]),
            Route("/ping", g(self.ping), methods=["GET"]),
            Route("/info", g(self.info), methods=["GET"]),
            Route("/predictions", g(self.predict), methods=["POST"]),
            Route("/predict", g(self.predict), methods=["POST"]),
            Route("/deployments/{id}", g(self.info), methods=["GET"]),
            Route("/deployments/{id}/info", g(self.info), methods=["GET"]),
            Route("/deployments/{id}/predictions", g(self.predict), methods=["POST"]),
            Route("/deployments/{id}/predict", g(self.predict), methods=["POST"]),
        ]

    def catch_all_routes(self) -> list[Route]:
        """``/{id}/predict``: matched last, after every other protocol's routes."""
        g = guard
        return [
            Route("/{id}/predict", g(self.predict), methods=["POST"]),
            Route("/{id}/predictions", g(self.predict), methods=["POST"]),
        ]
