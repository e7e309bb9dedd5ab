"""Management endpoints: list every deployment; upload and delete one (multi-model mode, API key)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipmate.serving.deployments import DeploymentState
from shipmate.serving.edge import guard, json_response
from shipmate.serving.errors import ManagementDisabled, PayloadTooLarge
from shipmate.serving.management import Manager
from shipmate.serving.protocol import InputError
from shipmate.serving.worker import Worker


class ManagementEndpoints:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def list_deployments(self, request: Request) -> Response:
        registry = self.worker.registry
        self.worker.access.check(request, management=False)
        served = [d.info() for d in registry.all()]
        keys = {d.key for d in registry.all()}
        failed = [
            {
                "deploymentId": f.deployment_id or f.key,
                "state": DeploymentState.FAILED,
                "error": f.error,
                "directory": f.key,
            }
            for f in registry.failures.values()
        ]
        for item in served:
            failure = next(
                (f for f in failed if f["directory"] in keys and f["deploymentId"] == item["deploymentId"]),
                None,
            )
            if failure:
                item["replacementError"] = failure["error"]
        return json_response({"data": served + [f for f in failed if f["directory"] not in keys]})

    def _manager(self, request: Request, what: str) -> Manager:
        self.worker.access.check(request, management=True)
        if self.worker.manager is None:
            raise ManagementDisabled(f"{what} needs multi-model mode (--deployments-dir)")
        return self.worker.manager

    async def upload(self, request: Request) -> Response:
        manager = self._manager(request, "uploads")
        deployment_id = request.path_params["id"]
        limit = self.worker.settings.max_package_bytes
        filename = f"{deployment_id}.mlpkg"
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form(max_part_size=limit)
            part: Any = next((v for v in form.values() if hasattr(v, "read")), None)
            if part is None:
                raise InputError("the multipart body has no file part", status=400)
            filename = getattr(part, "filename", None) or filename

            async def pieces() -> AsyncIterator[bytes]:
                while chunk := await part.read(1 << 20):
                    yield chunk

        else:

            async def pieces() -> AsyncIterator[bytes]:
                size = 0
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(f"the package exceeds the limit of {limit} bytes")
                    yield chunk

        deployment, replaced = await manager.receive(deployment_id, pieces(), filename)
        return json_response(deployment.info(), 200 if replaced else 201)

    async def delete(self, request: Request) -> Response:
        manager = self._manager(request, "deleting")
        await manager.delete(request.path_params["id"])
        return Response(status_code=204)

    def routes(self) -> list[Route]:
        g = guard
        return [
            Route("/deployments", g(self.list_deployments), methods=["GET"]),
            Route("/deployments/{id}", g(self.upload), methods=["POST", "PUT"]),
            Route("/deployments/{id}", g(self.delete), methods=["DELETE"]),
        ]
