"""The HTTP shell of the prediction server: thin endpoints over the data plane.

Wire formats are converted at the edge (`shipmate.serving.codecs`); domain errors
become HTTP responses in one table (`_ERRORS`). Plain Starlette rather than
FastAPI: the per-request cost of dependency injection and response validation is
measurable at thousands of requests per second on two cores (docs/serving.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipmate.serving import codecs
from shipmate.serving.dataplane import DataPlane, ScoreHook
from shipmate.serving.deployments import Deployment, Failure, Registry, discard, load_deployment
from shipmate.serving.errors import (
    DeploymentNotReady,
    ManagementDisabled,
    PayloadTooLarge,
    ServingError,
    Unauthorized,
    UnsupportedMediaType,
)
from shipmate.serving.management import Manager
from shipmate.serving.protocol import InputError
from shipmate.serving.settings import ServeSettings
from shipmate.serving.siblings import ChunkScorer, FanOut, LoadGauge, Siblings, load_file
from shipmate.serving.watcher import DirectoryWatcher

log = logging.getLogger(__name__)

JSON = "application/json"
CSV = "text/csv"
_CSV_TYPES = frozenset({CSV, "application/csv", "text/plain", "text/x-csv"})
Handler = Callable[[Request], Awaitable[Response]]


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON)


def _error(status: int, message: str, **extra: Any) -> Response:
    return _json({"message": message, **{k: v for k, v in extra.items() if v is not None}}, status)


class Server:
    """State shared by the endpoints of one worker process."""

    def __init__(self, settings: ServeSettings, hooks: Sequence[ScoreHook] = ()) -> None:
        self.settings = settings
        self.registry = Registry()
        self.dataplane = DataPlane(self.registry, hooks)
        self.work_dir = Path(settings.work_dir or tempfile.gettempdir()) / f"shipmate-serve-{os.getpid()}"
        self.watcher: DirectoryWatcher | None = None
        self.manager: Manager | None = None
        if settings.deployments_dir is not None:
            settings.deployments_dir.mkdir(parents=True, exist_ok=True)
            self.watcher = DirectoryWatcher(
                self.registry,
                settings.deployments_dir,
                work_dir=self.work_dir,
                prefix=settings.deployment_dir_prefix,
                info_file=settings.deployment_info_file,
                poll_interval=settings.poll_interval_s,
                unload_after=settings.unload_after_scans,
            )
            self.manager = Manager(self.registry, self.watcher, allow_pickled=settings.allow_pickled_uploads)
        key = settings.api_key.get_secret_value().encode() if settings.api_key else None
        self._key = key
        self.inflight = LoadGauge()  # prediction requests being scored by this worker
        self.fanout: FanOut | None = None
        self._chunk_scorer: ChunkScorer | None = None

    # ------------------------------------------------------------ lifecycle

    async def load_single(self) -> None:
        model = self.settings.model
        assert model is not None
        self.registry.pending.add("default")
        try:
            dep = await asyncio.to_thread(
                load_deployment,
                model,
                deployment_id=self.settings.deployment_id,
                key="default",
                work_dir=self.work_dir,
                model_id=self.settings.model_id,
            )
        except Exception as exc:
            log.error("model %s cannot be loaded: %s", model, exc)
            self.registry.fail(Failure(key="default", error=str(exc), fingerprint=""))
        else:
            self.registry.publish(dep)
            log.info(
                "model %s %s ready as deployment %s (%s input)",
                dep.manifest.name,
                dep.manifest.version,
                dep.id,
                dep.model.input_kind,
            )
        self.registry.initialized = True

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Load every configured model before accepting connections (each worker process does this
        itself, so a worker that is still loading never receives a request), then follow changes."""
        task: asyncio.Task[None] | None = None
        if self.watcher is not None:
            try:
                await self.watcher.sync()
            except Exception:
                log.exception("the first scan of %s failed", self.watcher.root)
            self.registry.initialized = True
            task = asyncio.create_task(self.watcher.run())
        else:
            await self.load_single()
        gc.freeze()  # what start-up made lives as long as the worker: keep it out of every collection
        await self.join_siblings()
        try:
            yield
        finally:
            await self.leave_siblings()
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for dep in self.registry.all():
                discard(dep)
            with contextlib.suppress(OSError):
                self.work_dir.rmdir()

    async def join_siblings(self) -> None:
        """Take chunks from sibling workers, and hand chunks to them (see `shipmate.serving.siblings`)."""
        peer_dir = self.settings.peer_dir
        if peer_dir is None or not self.settings.fanout:
            return
        own = peer_dir / f"{os.getpid()}-{secrets.token_hex(4)}.sock"
        scorer = ChunkScorer(self.registry, self.dataplane, own)
        try:
            self.inflight = LoadGauge(load_file(own))  # published before the socket: siblings map it first
            await scorer.start()
        except OSError as exc:  # fan-out is an optimisation: serve without it
            log.warning("batches will not be shared with sibling workers: %s", exc)
            self.inflight.close()
            self.inflight = LoadGauge()
            return
        self._chunk_scorer = scorer
        self.fanout = FanOut(self.dataplane, Siblings(peer_dir, own))

    async def leave_siblings(self) -> None:
        if self.fanout is not None:
            self.fanout.siblings.close()
            self.fanout = None
        if self._chunk_scorer is not None:
            await self._chunk_scorer.close()
            self._chunk_scorer = None
        self.inflight.close()

    # ------------------------------------------------------------ edges

    def check_key(self, request: Request, *, management: bool) -> None:
        if self._key is None:
            if management:
                raise ManagementDisabled(
                    "management endpoints are disabled: configure an API key to enable them"
                )
            return
        if not management and not self.settings.require_key_for_predictions:
            return
        supplied = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization", "")
        if not supplied and auth[:7].lower() == "bearer ":
            supplied = auth[7:].strip()
        if not supplied or not hmac.compare_digest(supplied.encode(), self._key):
            raise Unauthorized("a valid API key is required (Authorization: Bearer <key> or X-API-Key)")

    @staticmethod
    def declared_length(request: Request, limit: int) -> int | None:
        """The body's length from Content-Length (refused at once when over ``limit``)."""
        declared = request.headers.get("content-length")
        if declared is None or not declared.isdigit():
            return None
        if int(declared) > limit:
            raise PayloadTooLarge(f"the request body is {declared} bytes; the limit is {limit}")
        return int(declared)

    @classmethod
    async def body_pieces(cls, request: Request, limit: int) -> AsyncIterator[bytes]:
        """The body as it arrives, refused once it grows past ``limit`` bytes."""
        cls.declared_length(request, limit)
        size = 0
        async for piece in request.stream():
            size += len(piece)
            if size > limit:
                raise PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes")
            if piece:
                yield piece

    @classmethod
    async def read_body(cls, request: Request, limit: int) -> bytes:
        return b"".join([piece async for piece in cls.body_pieces(request, limit)])

    @staticmethod
    def declared_format(request: Request) -> str | None:
        """``"json"`` or ``"csv"`` from the Content-Type; ``None`` when there is none."""
        ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if not ctype:
            return None
        if ctype == JSON or ctype.endswith("+json"):
            return "json"
        if ctype in _CSV_TYPES:
            return "csv"
        raise UnsupportedMediaType(f"unsupported Content-Type {ctype!r}: send application/json or text/csv")

    @classmethod
    def body_format(cls, request: Request, body: bytes) -> str:
        """``"json"`` or ``"csv"``, from the Content-Type (or, when there is none, the first byte)."""
        declared = cls.declared_format(request)
        if declared is not None:
            return declared
        return "json" if body.lstrip()[:1] in (b"[", b"{") else "csv"  # JSON starts with a bracket

    @staticmethod
    def response_format(request: Request) -> str:
        """``"csv"`` when the client accepts CSV, else ``"json"`` (DataRobot's response shape)."""
        return "csv" if CSV in request.headers.get("accept", "") else "json"

    # ------------------------------------------------------------ endpoints: health and info

    async def ping(self, request: Request) -> Response:
        if self.registry.ready:
            return _json({"message": "OK", "ready": True})
        failures = {f.deployment_id or f.key: f.error for f in self.registry.failures.values()}
        return _json(
            {
                "message": "not ready",
                "ready": False,
                "loading": sorted(self.registry.pending),
                "failed": failures or None,
            },
            503,
        )

    async def info(self, request: Request) -> Response:
        self.check_key(request, management=False)
        return _json(self.dataplane.deployment(request.path_params.get("id")).info())

    async def list_deployments(self, request: Request) -> Response:
        self.check_key(request, management=False)
        served = [d.info() for d in self.registry.all()]
        keys = {d.key for d in self.registry.all()}
        failed = [
            {
                "deploymentId": f.deployment_id or f.key,
                "state": "failed",
                "error": f.error,
                "directory": f.key,
            }
            for f in self.registry.failures.values()
        ]
        for item in served:
            failure = next(
                (f for f in failed if f["directory"] in keys and f["deploymentId"] == item["deploymentId"]),
                None,
            )
            if failure:
                item["replacementError"] = failure["error"]
        return _json({"data": served + [f for f in failed if f["directory"] not in keys]})

    # ------------------------------------------------------------ endpoints: predictions

    async def predict(self, request: Request) -> Response:
        self.check_key(request, management=False)
        deployment = self.dataplane.deployment(request.path_params.get("id"))
        out, limit = self.response_format(request), self.settings.max_body_bytes
        media_type = CSV if out == "csv" else JSON
        body: bytes | None = None
        size, fmt = self.declared_length(request, limit), self.declared_format(request)
        if (
            self.fanout is not None
            and fmt is not None
            and size is not None
            and size >= self.settings.fanout_min_bytes
        ):  # a large batch: quiet siblings get their chunks while the rest arrives
            with self.inflight:
                encoded, body = await self.fanout.infer(
                    deployment, self.body_pieces(request, limit), size, fmt, out
                )
            if encoded is not None:
                return Response(encoded, media_type=media_type)
        if body is None:
            body = await self.read_body(request, limit)
        fmt = self.body_format(request, body)
        with self.inflight:
            response = self.dataplane.infer(deployment, codecs.decode(body, fmt, deployment.matrix_features))
            return Response(codecs.encode(response, out), media_type=media_type)

    # ------------------------------------------------------------ endpoints: management

    async def upload(self, request: Request) -> Response:
        self.check_key(request, management=True)
        if self.manager is None:
            raise ManagementDisabled("uploads need multi-model mode (--deployments-dir)")
        deployment_id = request.path_params["id"]
        filename = f"{deployment_id}.mlpkg"
        ctype = request.headers.get("content-type", "")
        fd, tmp = tempfile.mkstemp(suffix=".mlpkg", dir=self.settings.deployments_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                if ctype.startswith("multipart/form-data"):
                    form = await request.form(max_part_size=self.settings.max_package_bytes)
                    part = next((v for v in form.values() if hasattr(v, "read")), None)
                    if part is None:
                        raise InputError("the multipart body has no file part", status=400)
                    filename = getattr(part, "filename", None) or filename
                    while chunk := await part.read(1 << 20):
                        out.write(chunk)
                else:
                    size, limit = 0, self.settings.max_package_bytes
                    async for chunk in request.stream():  # streamed to disk: packages can be large
                        size += len(chunk)
                        if size > limit:
                            raise PayloadTooLarge(f"the package exceeds the limit of {limit} bytes")
                        out.write(chunk)
            deployment, replaced = await self.manager.upload(deployment_id, Path(tmp), filename)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return _json(deployment.info(), 200 if replaced else 201)

    async def delete(self, request: Request) -> Response:
        self.check_key(request, management=True)
        if self.manager is None:
            raise ManagementDisabled("deleting needs multi-model mode (--deployments-dir)")
        await self.manager.delete(request.path_params["id"])
        return Response(status_code=204)

    # ------------------------------------------------------------ Open Inference Protocol v2

    async def v2_live(self, request: Request) -> Response:
        return _json({"live": True})

    async def v2_ready(self, request: Request) -> Response:
        return _json({"ready": self.registry.ready}, 200 if self.registry.ready else 503)

    def _v2_deployment(self, name: str) -> Deployment:
        dep = self.registry.get(name)
        only = self.registry.only()
        if dep is None and only is not None and only.manifest.name == name:
            dep = only
        return dep or self.dataplane.deployment(name)

    async def v2_model(self, request: Request) -> Response:
        self.check_key(request, management=False)
        dep = self._v2_deployment(request.path_params["name"])
        m = dep.manifest
        v2_types = {"numeric": "FP64", "boolean": "BOOL"}
        return _json(
            {
                "name": request.path_params["name"],
                "versions": [m.version],
                "platform": str(m.framework),
                "inputs": [
                    {"name": f.name, "datatype": v2_types.get(f.type, "BYTES"), "shape": [-1]}
                    for f in m.features
                ],
                "outputs": [
                    {
                        "name": "predict",
                        "datatype": "FP64" if m.class_labels is None else "BYTES",
                        "shape": [-1],
                    }
                ]
                + (
                    [{"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(m.class_labels)]}]
                    if m.class_labels
                    else []
                ),
            }
        )

    async def v2_model_ready(self, request: Request) -> Response:
        try:
            self._v2_deployment(request.path_params["name"])
        except DeploymentNotReady:
            return _json({"name": request.path_params["name"], "ready": False}, 503)
        return _json({"name": request.path_params["name"], "ready": True})

    async def v2_infer(self, request: Request) -> Response:
        self.check_key(request, management=False)
        name = request.path_params["name"]
        dep = self._v2_deployment(name)
        body = await self.read_body(request, self.settings.max_body_bytes)
        with self.inflight:  # counted like any prediction, so siblings see this worker is busy
            response = self.dataplane.infer(dep, codecs.decode_v2(body, dep.manifest))
        return Response(codecs.encode_v2(response, name), media_type=JSON)


def _guard(handler: Handler) -> Handler:
    """The one place domain errors become HTTP responses."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except InputError as exc:
            return _error(exc.status, str(exc), row=exc.row, column=exc.column)
        except ServingError as exc:
            return _error(exc.status, str(exc))

    endpoint.__name__ = handler.__name__
    return endpoint


def create_app(settings: ServeSettings, hooks: Sequence[ScoreHook] = ()) -> Starlette:
    """The prediction server's ASGI app (one per worker process)."""
    s = Server(settings, hooks)
    g = _guard
    routes = [
        Route("/", g(s.ping), methods=["GET"]),
        Route("/ping", g(s.ping), methods=["GET"]),
        Route("/info", g(s.info), methods=["GET"]),
        Route("/predictions", g(s.predict), methods=["POST"]),
        Route("/predict", g(s.predict), methods=["POST"]),
        Route("/deployments", g(s.list_deployments), methods=["GET"]),
        Route("/deployments/{id}", g(s.upload), methods=["POST", "PUT"]),
        Route("/deployments/{id}", g(s.delete), methods=["DELETE"]),
        Route("/deployments/{id}", g(s.info), methods=["GET"]),
        Route("/deployments/{id}/info", g(s.info), methods=["GET"]),
        Route("/deployments/{id}/predictions", g(s.predict), methods=["POST"]),
        Route("/deployments/{id}/predict", g(s.predict), methods=["POST"]),
        Route("/v2/health/live", g(s.v2_live), methods=["GET"]),
        Route("/v2/health/ready", g(s.v2_ready), methods=["GET"]),
        Route("/v2/models/{name}", g(s.v2_model), methods=["GET"]),
        Route("/v2/models/{name}/ready", g(s.v2_model_ready), methods=["GET"]),
        Route("/v2/models/{name}/infer", g(s.v2_infer), methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", g(s.v2_infer), methods=["POST"]),
        Route("/{id}/predict", g(s.predict), methods=["POST"]),
        Route("/{id}/predictions", g(s.predict), methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=s.lifespan)
    app.state.server = s
    return app
