"""Monitoring wired around the prediction server's ASGI app: timing, the score hook, ``/metrics``.

`monitored_app` builds the app with the recorder's score hook and wraps it in
`MonitoringMiddleware`, which for every prediction request (a POST to a path ending in
``/predictions``, ``/predict`` or ``/infer``):

- times it from the first byte handed to the app to the last byte of the response
  (response time) and to the moment the scores were ready (execution time: reading,
  decoding, checking and scoring the rows);
- learns its deployment and row count from the score hook (through a context variable set
  for the request), or, when the request failed before scoring, from its route;
- once the response is out, hands it to the recorder in one call (status 4xx: user error,
  5xx: server error) with its rows and scores: one append, the rows kept by reference for
  the flusher thread, or for a batch of `PROMPT_ROWS` rows or more, counted there and then
  (holding large batches until the flush costs every request more, as their memory cannot
  be reused); the flusher also updates the Prometheus metrics, in bulk, every flush (so
  /metrics lags by up to ``flush_seconds``).

It also answers ``GET /metrics`` (Prometheus text format, histograms only) and starts and
stops the recorder's flusher with the app's lifespan. With several worker processes the
metrics are kept in prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set
by ``shipmate serve``), so any worker answers for all of them.
"""

from __future__ import annotations

import contextvars
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from shipmate.monitoring.recorder import Recorder, Served
from shipmate.monitoring.settings import MonitorSettings, SpoolerType
from shipmate.monitoring.spool import Spool, open_spool

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREDICTION_SUFFIXES = ("/predictions", "/predict", "/infer")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ROWS_BUCKETS = (1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000, 50000)
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
BACKLOG_EVERY_S = 5.0


@dataclass(slots=True)
class _Slot:
    """What the score hook tells the middleware about the request being served."""

    deployment: Any = None
    scored_at: float = 0.0
    request: Any = None
    scores: Any = None


_SLOT: contextvars.ContextVar[_Slot | None] = contextvars.ContextVar("shipmate_monitoring_slot", default=None)


class ServeMetrics:
    """The prediction server's Prometheus metrics, children cached per deployment."""

    def __init__(self, spooler: SpoolerType) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_ENV))
        self.registry = None if self.multiprocess else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "shipmate_requests", "Prediction requests answered.", ["deployment"], registry=r
        )
        self.predictions = Counter("shipmate_predictions", "Rows scored.", ["deployment"], registry=r)
        self.errors = Counter(
            "shipmate_request_errors",
            "Prediction requests that failed, by kind (user: 4xx, server: 5xx).",
            ["deployment", "kind"],
            registry=r,
        )
        self.duration = Histogram(
            "shipmate_request_duration_seconds",
            "Prediction request time, first byte in to last byte out.",
            ["deployment"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rows = Histogram(
            "shipmate_request_rows",
            "Rows per prediction request.",
            ["deployment"],
            buckets=ROWS_BUCKETS,
            registry=r,
        )
        self.dropped = Counter(
            "shipmate_spool_dropped",
            "Monitoring records dropped (spool full or broken), by record kind and reason.",
            ["kind", "reason"],
            registry=r,
        )
        shared = spooler is SpoolerType.FILESYSTEM  # every worker sees the same directory
        self.backlog = Gauge(
            "shipmate_spool_backlog_bytes",
            "Monitoring bytes spooled and not yet acknowledged by the monitoring agent "
            "(RABBITMQ: held in the workers' buffers).",
            registry=r,
            multiprocess_mode="max" if shared else "livesum",
        )
        self.unbinned = Counter(
            "shipmate_monitoring_unbinned_rows",
            "Rows counted but not binned because too many were waiting for a flush.",
            registry=r,
        )
        self._children: dict[str, tuple[Any, Any, Any, Any, Any, Any]] = {}

    def observe_many(
        self, deployment: str, statuses: np.ndarray, seconds: np.ndarray, rows: np.ndarray
    ) -> None:
        """One flush's requests of one deployment (called by the recorder's flusher, off the request path)."""
        children = self._children.get(deployment)
        if children is None:
            children = self._children[deployment] = (
                self.requests.labels(deployment),
                self.predictions.labels(deployment),
                self.duration.labels(deployment),
                self.rows.labels(deployment),
                self.errors.labels(deployment, "user"),
                self.errors.labels(deployment, "server"),
            )
        requests, predictions, duration, per_request, user, server = children
        requests.inc(len(statuses))
        scored = rows[rows > 0]
        if len(scored):
            predictions.inc(int(scored.sum()))
            observe_all(per_request, scored.astype(np.float64))
        observe_all(duration, seconds)
        users = int(np.count_nonzero((statuses >= 400) & (statuses < 500)))
        servers = int(np.count_nonzero(statuses >= 500))
        if users:
            user.inc(users)
        if servers:
            server.inc(servers)

    def exposition(self) -> bytes:
        if self.registry is not None:
            return bytes(generate_latest(self.registry))
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(registry))


def observe_all(histogram: Any, values: np.ndarray) -> None:
    """``histogram.observe`` for many values at once: bucket counts added in one step each.

    prometheus-client has no bulk observe; its histogram child keeps one value per bucket
    (``_buckets``, non-cumulative) and ``_sum``, which ``observe`` increments. Where those are
    missing (another version) every value is observed one by one.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if len(values) < 32 or bounds is None or buckets is None or total is None or len(buckets) != len(bounds):
        for value in values.tolist():
            histogram.observe(value)
        return
    counts = np.bincount(np.searchsorted(np.asarray(bounds), values, side="left"), minlength=len(bounds))
    total.inc(float(values.sum()))
    for i, count in enumerate(counts.tolist()):
        if count:
            buckets[i].inc(count)


class MonitoringMiddleware:
    """See the module docstring. ``registry`` is the prediction server's deployment registry and
    ``check_access`` its key check for prediction routes (given, not looked up: monitoring does
    not import the prediction server)."""

    def __init__(
        self,
        app: ASGIApp,
        recorder: Recorder,
        metrics: ServeMetrics,
        registry: Any,
        check_access: Callable[[Any], None],
    ) -> None:
        self.app = app
        self.recorder = recorder
        self.metrics = metrics
        self.registry = registry
        self.check_access = check_access
        recorder.spool.on_drop = lambda kind, reason: metrics.dropped.labels(kind, reason).inc()
        recorder.on_flushed = self._after_flush
        recorder.on_requests = metrics.observe_many
        self._backlog_at = 0.0

    def score_hook(self, deployment: Served, request: Any, scores: Any) -> None:
        """The `ScoreHook` given to the data plane: tells the request's slot, then the recorder."""
        slot = _SLOT.get()
        if slot is None:  # not a request this middleware saw
            self.recorder.on_scored(deployment, request, scores)
            return
        slot.scored_at = time.perf_counter()
        slot.deployment, slot.request, slot.scores = deployment, request, scores

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if scope["method"] == "POST" and path.endswith(PREDICTION_SUFFIXES):
                await self._prediction(scope, receive, send)
                return
            if path == "/metrics" and scope["method"] in ("GET", "HEAD"):
                await self._metrics(scope, send)
                return
        elif kind == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        await self.app(scope, receive, send)

    async def _prediction(self, scope: Scope, receive: Receive, send: Send) -> None:
        slot = _Slot()
        token = _SLOT.set(slot)
        status = 500
        started = time.perf_counter()

        async def tell(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tell)
        finally:
            _SLOT.reset(token)
            self._observe(scope, slot, status, started)

    def _observe(self, scope: Scope, slot: _Slot, status: int, started: float) -> None:
        try:
            finished = time.perf_counter()
            deployment = slot.deployment or self._deployment_of(scope)
            if deployment is None:  # no such deployment: only Prometheus hears of it
                self.metrics.observe_many(
                    "unknown", np.array([status]), np.array([finished - started]), np.array([0])
                )
                return
            scores = slot.scores
            self.recorder.on_request(
                deployment,
                rows=0 if scores is None else len(scores),
                response_ms=(finished - started) * 1000.0,
                execution_ms=(slot.scored_at - started) * 1000.0 if slot.scored_at else None,
                status=status,
                headers=scope.get("headers"),
                client=scope.get("client"),
                request=slot.request,
                scores=scores,
            )
        except Exception:  # monitoring never fails a prediction
            log.exception("monitoring: recording a request failed")

    def _deployment_of(self, scope: Scope) -> Any:
        """The deployment a failed request was for, from its route (None when there is none)."""
        registry = self.registry
        params = scope.get("path_params") or {}
        route = params.get("id") or params.get("name")
        if route is None:
            return registry.only()
        found = registry.get(route)
        only = registry.only()
        if found is None and only is not None and only.manifest.name == route:
            return only
        return found

    async def _metrics(self, scope: Scope, send: Send) -> None:
        """The metrics, under the same key as predictions (``require_key_for_predictions``)."""
        status, content_type = 200, CONTENT_TYPE_LATEST.encode()
        try:
            from starlette.requests import Request

            self.check_access(Request(scope))
            body = self.metrics.exposition()
        except Exception as exc:  # the server's Unauthorized, or a metrics failure
            status = int(getattr(exc, "status", 500))
            body = orjson.dumps({"message": str(exc) if status == 401 else "metrics unavailable"})
            content_type = b"application/json"
            if status != 401:
                log.exception("monitoring: /metrics failed")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _lifespan_send(self, send: Send) -> Send:
        async def relay(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self.recorder.start()
            elif message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                self.recorder.stop()
                if self.metrics.multiprocess:
                    from prometheus_client import multiprocess

                    multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
            await send(message)

        return relay

    def _after_flush(self, recorder: Recorder) -> None:
        # compiled bins of deployments no longer served (multi-model mode) go with them; this
        # flush has binned their last rows
        recorder.forget((d.id, d.package_sha256) for d in self.registry.all())
        now = time.monotonic()
        if now - self._backlog_at >= BACKLOG_EVERY_S:  # a directory scan: not at every flush
            self._backlog_at = now
            self.metrics.backlog.set(recorder.spool.backlog_bytes())
        unbinned = recorder.take_unbinned()
        if unbinned:
            self.metrics.unbinned.inc(unbinned)


def monitored_app(
    create_app: Callable[..., Any], settings: Any, monitor: MonitorSettings, spool: Spool | None = None
) -> ASGIApp:
    """The prediction server's app with monitoring: ``create_app(settings, hooks)`` wrapped."""
    recorder = Recorder(monitor, spool or open_spool(monitor))
    metrics = ServeMetrics(monitor.spooler_type)
    hook_box: list[Callable[..., None]] = []

    def hook(deployment: Any, request: Any, scores: Any) -> None:
        hook_box[0](deployment, request, scores)

    if monitor.association_id_column:
        # decoders keep the id column; fan-out would hand the hooks the feature matrix alone
        settings = settings.model_copy(
            update={"association_id_column": monitor.association_id_column, "fanout": False}
        )
    app = create_app(settings, hooks=[hook])
    worker = app.state.worker  # the prediction server's one worker (shipmate.serving.worker)

    def check_access(request: Any) -> None:
        worker.access.check(request, management=False)

    middleware = MonitoringMiddleware(app, recorder, metrics, worker.registry, check_access)
    hook_box.append(middleware.score_hook)
    log.debug("%s", monitor.describe())
    return middleware
