"""Recording predictions: an O(1) append per request, binning and spooling per flush, off the request path.

Per request the prediction server calls `Recorder.on_scored` (its `ScoreHook`: the scored
rows and scores are kept by reference) and `Recorder.on_request` (status, response time,
execution time, consumer), each a few dictionary and list operations under an uncontended
lock. A flusher thread wakes every ``flush_seconds`` or once ``flush_rows`` rows wait,
takes what has accumulated, counts it into the models' fixed bins (`ModelBins`, numpy over
whole columns), builds one `MinuteAggregate` per deployment, model and minute, and writes
them to the spool. A prediction never waits for that and never fails because of it: a full
or broken spool is counted (``dropped``, carried in the next record and in /metrics) and
logged; rows arriving while more than ``max_pending_rows`` wait are counted in the request
figures but not binned (``unbinned_rows``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from shipmate.monitoring.binning import ModelBins, Output, Rows
from shipmate.monitoring.records import MinuteAggregate
from shipmate.monitoring.settings import MonitorSettings
from shipmate.monitoring.spool import AGGREGATE, Spool
from shipmate.packages import Manifest

log = logging.getLogger(__name__)

Key = tuple[str, str | None, int]


class Served(Protocol):
    """What the recorder reads of a served deployment (`shipmate.serving.deployments.Deployment`)."""

    @property
    def id(self) -> str: ...
    @property
    def model_id(self) -> str | None: ...
    @property
    def manifest(self) -> Manifest: ...
    @property
    def package_sha256(self) -> str: ...


@dataclass(slots=True)
class _Pending:
    """Scored requests of one deployment and minute, waiting for the next flush."""

    deployment: Any
    batch: list[tuple[Rows, Output]] = field(default_factory=list)


class Recorder:
    """One per worker process. ``clock`` is the wall clock (epoch seconds), replaceable in tests."""

    def __init__(
        self,
        settings: MonitorSettings,
        spool: Spool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.spool = spool
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: dict[Key, _Pending] = {}
        self._stats: dict[Key, MinuteAggregate] = {}
        self._pending_rows = 0
        self._bins: dict[tuple[str, str], ModelBins] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reported_drops = 0
        self.unbinned_rows = 0
        self._unbinned_reported = 0
        self.on_flushed: Callable[[Recorder], None] | None = None  # after every flush (metrics)
        self.flushes = 0
        self.records_written = 0
        self.flush_errors = 0
        self._last_error_log = 0.0

    # ---- the request path (O(1))

    def key(self, deployment: Served) -> Key:
        deployment_id = self.settings.deployment_id or deployment.id
        model_id = self.settings.model_id or deployment.model_id
        return (deployment_id, model_id, int(self.clock()) // 60)

    def on_scored(self, deployment: Served, request: Rows, scores: Output) -> None:
        """The prediction server's score hook: keep the scored rows for the next flush."""
        rows = len(scores.probabilities if scores.probabilities is not None else scores.values)  # type: ignore[arg-type]
        key = self.key(deployment)
        with self._lock:
            if self._pending_rows >= self.settings.max_pending_rows:
                self.unbinned_rows += rows
                return
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = _Pending(deployment)
            pending.batch.append((request, scores))
            self._pending_rows += rows
            full = self._pending_rows >= self.settings.flush_rows
        if full:
            self._wake.set()

    def on_request(
        self,
        deployment: Served,
        *,
        rows: int,
        response_ms: float,
        execution_ms: float | None,
        status: int,
        consumer: str | None,
    ) -> None:
        """One finished prediction request (any status) of a known deployment."""
        key = self.key(deployment)
        with self._lock:
            stats = self._stats.get(key)
            if stats is None:
                stats = self._stats[key] = MinuteAggregate(
                    deployment_id=key[0], model_id=key[1], minute=key[2]
                )
            stats.requests += 1
            stats.rows += rows
            if 400 <= status < 500:
                stats.user_errors += 1
            elif status >= 500:
                stats.server_errors += 1
            stats.response_ms.observe(response_ms)
            if execution_ms is not None:
                stats.execution_ms.observe(execution_ms)
            if consumer is not None:
                stats.add_consumer(consumer)

    # ---- the flusher

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="shipmate-monitoring-flush", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Flush what is left and close the spool (at shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        else:
            self.flush()
        self.spool.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.flush_seconds)
            self._wake.clear()
            self._flush_and_tell()
        self._flush_and_tell()

    def _flush_and_tell(self) -> None:
        self.flush()
        if self.on_flushed is not None:
            try:
                self.on_flushed(self)
            except Exception:
                log.exception("monitoring: the after-flush callback failed")

    def take_unbinned(self) -> int:
        """Rows left unbinned since the previous call."""
        with self._lock:
            count, self._unbinned_reported = self.unbinned_rows - self._unbinned_reported, self.unbinned_rows
        return count

    def flush(self) -> list[MinuteAggregate]:
        """Bin and spool everything accumulated; the records written (never raises)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            stats, self._stats = self._stats, {}
            self._pending_rows = 0
        if not pending and not stats:
            self.spool.flush()
            return []
        try:
            records = self.aggregate(pending, stats)
        except Exception:  # a bug here must not stop monitoring for good
            self.flush_errors += 1
            log.exception("monitoring: aggregating a flush failed; its records are lost")
            return []
        self.flushes += 1
        drops = self.spool.dropped_total()
        if records:  # drops so far ride on the first record; counted again if that one is dropped too
            records[0].dropped = drops - self._reported_drops
        for i, record in enumerate(records):
            if self.spool.write(orjson.dumps(record.to_json()), AGGREGATE):
                self.records_written += 1
                if i == 0:
                    self._reported_drops = drops
            else:
                self._log_drop()
        return records

    def aggregate(
        self, pending: dict[Key, _Pending], stats: dict[Key, MinuteAggregate]
    ) -> list[MinuteAggregate]:
        """One record per deployment, model and minute from scored rows and request figures (pure)."""
        now = self.clock()
        records: dict[Key, MinuteAggregate] = {}
        for key in sorted(set(pending) | set(stats), key=lambda k: (k[0], k[1] or "", k[2])):
            record = stats.get(key) or MinuteAggregate(deployment_id=key[0], model_id=key[1], minute=key[2])
            waiting = pending.get(key)
            if waiting is not None and waiting.batch:
                bins = self.bins(waiting.deployment)
                record.features, record.predictions = bins.count(waiting.batch)
            record.flushed_at = now
            records[key] = record
        return list(records.values())

    def bins(self, deployment: Served) -> ModelBins:
        """The compiled bins of a deployment's model (once per package)."""
        cache_key = (deployment.id, deployment.package_sha256)
        bins = self._bins.get(cache_key)
        if bins is None:
            bins = self._bins[cache_key] = ModelBins(deployment.manifest)
            if bins.derived:
                log.warning(
                    "deployment %s: package %s %s predates monitoring bins; they are derived from "
                    "its stored quantiles and frequencies (approximate baseline counts; probability "
                    "bins are fixed tenths and regression values get moments only)",
                    deployment.id,
                    deployment.manifest.name,
                    deployment.manifest.version,
                )
        return bins

    def forget(self, live: Iterable[tuple[str, str]]) -> None:
        """Drop compiled bins of packages no longer served."""
        keep = set(live)
        for key in [k for k in self._bins if k not in keep]:
            del self._bins[key]

    def _log_drop(self) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= 60:
            self._last_error_log = now
            log.error(
                "monitoring: records dropped by the %s spool (%s so far)",
                type(self.spool).__name__,
                dict(self.spool.dropped),
            )
