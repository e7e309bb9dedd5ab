"""Recording predictions: an O(1) append per request, binning and spooling per flush, off the request path.

Per request the prediction server calls `Recorder.on_request` once (status, response
time, execution time, the consumer's headers, and the scored rows and scores, all kept by
reference): one append under an uncontended lock. A flusher thread wakes every
``flush_seconds`` or once ``flush_rows`` rows of small requests wait, takes what has
accumulated, counts it into the models' fixed bins (`ModelBins`, numpy over whole columns),
builds one `MinuteAggregate` per deployment, model and minute, and writes them to the spool.
A request of `PROMPT_ROWS` rows or more is instead counted at once, in the serving thread
once its response is out, into its minute's `Tally` (arrays, merged with a few numpy calls):
holding large batches until the flush costs every request more (their memory cannot be
reused), and handing each to the flusher thread costs more still (the serving thread then
waits for the GIL, up to the 5 ms switch interval, whenever it gave it up for I/O). Counted
rows do not make a flush come sooner: they are counts, not rows. A prediction never waits
for any of that and never fails because of it: a full or broken spool is counted
(``dropped``, carried in the next record and in /metrics) and logged; rows arriving while
more than ``max_pending_rows`` wait are counted in the request figures but not binned
(``unbinned_rows``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson

from shipmate.monitoring.binning import ModelBins, Output, Rows, Tally
from shipmate.monitoring.predictions import PredictionBatch, class_labels_of
from shipmate.monitoring.records import LATENCY_SCALE, BinCounts, LatencyHistogram, MinuteAggregate
from shipmate.monitoring.samples import SampleBatch, association_ids, keep_ids, keep_numbers
from shipmate.monitoring.settings import MonitorSettings
from shipmate.monitoring.spool import AGGREGATE, PREDICTIONS, SAMPLE, Spool
from shipmate.packages import Manifest

log = logging.getLogger(__name__)

Key = tuple[str, str | None, int]
MAX_CONSUMER_NAMES = 10_000
SMALL = 32
PROMPT_ROWS = 100
"""Scored requests of this many rows or more are counted at once, not held for the flush."""
RequestsListener = Callable[[str, np.ndarray, np.ndarray, np.ndarray], None]
"""Told per deployment and flush: the requests' statuses, response times in seconds and rows."""


def latency_histogram(milliseconds: np.ndarray) -> LatencyHistogram:
    """`LatencyHistogram` of many latencies at once (the same buckets as its ``observe``)."""
    histogram = LatencyHistogram()
    if len(milliseconds) < SMALL:  # numpy's fixed cost is larger than a few observations
        for value in milliseconds.tolist():
            histogram.observe(value)
        return histogram
    index = np.full(len(milliseconds), -(2**15), dtype=np.int64)
    positive = milliseconds > 0
    index[positive] = np.ceil(np.log2(milliseconds[positive]) * (1 << LATENCY_SCALE))
    keys, counts = np.unique(index, return_counts=True)
    histogram.buckets = dict(zip(keys.tolist(), counts.tolist(), strict=True))
    histogram.total_ms = float(milliseconds.sum())
    histogram.max_ms = max(0.0, float(milliseconds.max()))
    return histogram


def _add_columns(into: dict[str, BinCounts], other: dict[str, BinCounts]) -> None:
    for name, bins in other.items():
        mine = into.get(name)
        if mine is None:
            into[name] = bins
        else:
            mine.merge(bins, name)


def consumer_of(headers: Sequence[tuple[bytes, bytes]] | None, client: Sequence[Any] | None) -> str | None:
    """Who sent a request: its ``X-Consumer-Id`` header, else a digest of its API key, else its address."""
    key = None
    for name, value in headers or ():
        if name == b"x-consumer-id":
            return value.decode("latin-1")[:100]
        if name in (b"authorization", b"x-api-key"):
            key = value
    if key is not None:
        return "key:" + hashlib.sha256(key).hexdigest()[:12]
    return str(client[0]) if client else None


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


class _Notes:
    """Finished requests of one flush as columns of machine numbers (and references to objects
    that live on: deployments, consumer names kept once each). No object made for a request is
    held until the flush (the ASGI headers and client were, before): thousands of small objects
    kept for seconds scatter the heap, which every request may then pay for."""

    __slots__ = ("consumers", "deployments", "execution", "minutes", "response", "rows", "status")

    def __init__(self) -> None:
        self.deployments: list[Any] = []
        self.consumers: list[str | None] = []
        self.minutes = array("q")
        self.rows = array("q")
        self.status = array("q")
        self.response = array("d")
        self.execution = array("d")  # NaN: no execution time

    def __len__(self) -> int:
        return len(self.deployments)


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
        self._scored: list[tuple[Any, int, Rows, Output]] = []
        self._binned: dict[Key, list[Tally]] = {}
        self._samples: dict[Key, SampleBatch] = {}
        self._predictions: dict[Key, PredictionBatch] = {}
        self.predictions_written = 0
        self._row_number = 0  # rows seen, for sampling rows that carry no association id
        self.samples_written = 0
        self._max_pending = settings.max_pending_rows
        self._flush_rows = settings.flush_rows
        self._requests = _Notes()
        self._consumer_names: dict[str, str] = {}
        self._pending_rows = 0  # rows held (by reference) until the flush: a flush at flush_rows
        self._bins: dict[tuple[str, str], ModelBins] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reported_drops = 0
        self.unbinned_rows = 0
        self._unbinned_reported = 0
        self.on_flushed: Callable[[Recorder], None] | None = None  # after every flush (metrics)
        self.on_requests: RequestsListener | None = None  # per deployment and flush (metrics)
        self.flushes = 0
        self.records_written = 0
        self.flush_errors = 0
        self._last_error_log = 0.0

    # ---- the request path (O(1))

    def on_scored(self, deployment: Served, request: Rows, scores: Output) -> None:
        """A score hook: keep the scored rows for the next flush (one append)."""
        rows = len(scores)
        minute = int(self.clock()) // 60
        with self._lock:
            wake = self._hold_locked(deployment, minute, request, scores, rows)
        if wake:
            self._wake.set()

    def _hold_locked(self, deployment: Any, minute: int, request: Rows, scores: Output, rows: int) -> bool:
        """Keep scored rows by reference for the flush; whether the flusher must wake."""
        if self._pending_rows >= self._max_pending:
            self.unbinned_rows += rows
            return False
        self._scored.append((deployment, minute, request, scores))
        self._pending_rows += rows
        return self._pending_rows >= self._flush_rows

    def bin_now(self, deployment: Served, request: Rows, scores: Output) -> None:
        """Count one scored request into its minute's `Tally` now, keeping only the counts."""
        self._count_now(deployment, int(self.clock()) // 60, request, scores)

    def _count_now(self, deployment: Any, minute: int, request: Rows, scores: Output) -> None:
        key = (
            self.settings.deployment_id or deployment.id,
            self.settings.model_id or deployment.model_id,
            minute,
        )
        tally = self.bins(deployment).tally([(request, scores)])
        self.sample(key, deployment, request, scores)
        with self._lock:
            partial = self._binned.get(key)
            if partial is None:
                self._binned[key] = [tally]
            elif partial[-1].bins is tally.bins:
                partial[-1].merge(tally)
            else:  # new bins within the minute (the package changed): merged by column at the flush
                partial.append(tally)

    def sample(self, key: Key, deployment: Served, request: Rows, scores: Output) -> None:
        """Keep this request's predictions with association ids and its sampled rows for the next
        flush (nothing without an association id column and sampling)."""
        column = self.settings.association_id_column
        ids = association_ids(request, column) if column else None
        if ids is not None:
            self._keep_predictions(key, deployment, scores, ids)
        percentage = self.settings.sample_percentage
        if percentage <= 0:
            return
        rows = len(scores)
        with self._lock:
            first, self._row_number = self._row_number, self._row_number + rows
        keep = keep_ids(ids, percentage) if ids is not None else keep_numbers(first, rows, percentage)
        part = SampleBatch(key[0], key[1], key[2], list(deployment.manifest.feature_names))
        part.add(request, scores, keep, ids)
        if not part.rows:
            return
        with self._lock:
            batch = self._samples.get(key)
            if batch is None:
                self._samples[key] = part
            else:
                batch.rows.extend(part.rows)
                batch.predictions.extend(part.predictions)
                batch.association_ids.extend(part.association_ids)

    def _keep_predictions(self, key: Key, deployment: Served, scores: Output, ids: list[str | None]) -> None:
        manifest = deployment.manifest
        part = PredictionBatch(key[0], key[1], key[2], class_labels_of(manifest))
        part.add(manifest, scores, ids)
        if not part.ids:
            return
        with self._lock:
            batch = self._predictions.get(key)
            if batch is None:
                self._predictions[key] = part
            else:
                batch.extend(part)

    def on_request(
        self,
        deployment: Served,
        *,
        rows: int,
        response_ms: float,
        execution_ms: float | None,
        status: int,
        consumer: str | None = None,
        headers: Sequence[tuple[bytes, bytes]] | None = None,
        client: Sequence[Any] | None = None,
        request: Rows | None = None,
        scores: Output | None = None,
    ) -> None:
        """One finished prediction request (any status) of a known deployment: one append, and
        with its scored ``request`` and ``scores`` (``rows`` of them) what `on_scored` does, under
        the same lock.

        The consumer is ``consumer``, or worked out from the request's ASGI ``headers`` and
        ``client`` (`consumer_of`)."""
        minute = int(self.clock()) // 60
        if consumer is None:
            consumer = consumer_of(headers, client)
        if consumer is not None:  # one string per consumer is kept, not one per request
            names = self._consumer_names
            consumer = names.get(consumer) or consumer
            if consumer not in names and len(names) < MAX_CONSUMER_NAMES:
                names[consumer] = consumer
        wake = False
        with self._lock:
            notes = self._requests
            notes.deployments.append(deployment)
            notes.consumers.append(consumer)
            notes.minutes.append(minute)
            notes.rows.append(rows)
            notes.status.append(status)
            notes.response.append(response_ms)
            notes.execution.append(math.nan if execution_ms is None else execution_ms)
            if scores is not None and request is not None and rows < PROMPT_ROWS:
                wake = self._hold_locked(deployment, minute, request, scores, rows)
        if wake:
            self._wake.set()
        elif scores is not None and request is not None and rows >= PROMPT_ROWS:
            self._count_now(deployment, minute, request, scores)

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
            scored, self._scored = self._scored, []
            binned, self._binned = self._binned, {}
            requests, self._requests = self._requests, _Notes()
            self._pending_rows = 0
        if not scored and not requests and not binned:
            self._write_samples()
            self.spool.flush()
            return []
        try:
            pending = self.group_scored(scored)
            if self.settings.association_id_column or self.settings.sample_percentage > 0:
                for key, group in pending.items():
                    for request, scores in group.batch:
                        self.sample(key, group.deployment, request, scores)
            records = self.aggregate(pending, self.request_figures(requests), binned)
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
        self._write_samples()
        return records

    def _write_samples(self) -> None:
        """Prediction and sample records go after the aggregates (a full spool drops samples first)."""
        with self._lock:
            samples, self._samples = self._samples, {}
            predictions, self._predictions = self._predictions, {}
        now = self.clock()
        for kept in predictions.values():
            for doc in kept.records(now):
                if self.spool.write(orjson.dumps(doc), PREDICTIONS):
                    self.predictions_written += 1
                else:
                    self._log_drop()
        for batch in samples.values():
            for doc in batch.records(now):
                if self.spool.write(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), SAMPLE):
                    self.samples_written += 1
                else:
                    self._log_drop()

    def aggregate(
        self,
        pending: dict[Key, _Pending],
        stats: dict[Key, MinuteAggregate],
        binned: dict[Key, list[Tally]] | None = None,
    ) -> list[MinuteAggregate]:
        """One record per deployment, model and minute from scored rows, counts binned already
        and request figures (pure)."""
        now = self.clock()
        binned = binned or {}
        records: dict[Key, MinuteAggregate] = {}
        for key in sorted(set(pending) | set(stats) | set(binned), key=lambda k: (k[0], k[1] or "", k[2])):
            record = stats.get(key) or MinuteAggregate(deployment_id=key[0], model_id=key[1], minute=key[2])
            tallies = list(binned.get(key, ()))
            waiting = pending.get(key)
            if waiting is not None and waiting.batch:
                tally = self.bins(waiting.deployment).tally(waiting.batch)
                if tallies and tallies[-1].bins is tally.bins:
                    tallies[-1].merge(tally)
                else:
                    tallies.append(tally)
            for tally in tallies:
                features, predictions = tally.finish()
                _add_columns(record.features, features)
                _add_columns(record.predictions, predictions)
            record.flushed_at = now
            records[key] = record
        return list(records.values())

    def group_scored(self, scored: list[tuple[Any, int, Rows, Output]]) -> dict[Key, _Pending]:
        """Scored requests by deployment, model and minute, in arrival order."""
        groups: dict[Key, _Pending] = {}
        for deployment, minute, request, scores in scored:
            key = (
                self.settings.deployment_id or deployment.id,
                self.settings.model_id or deployment.model_id,
                minute,
            )
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Pending(deployment)
            group.batch.append((request, scores))
        return groups

    def request_figures(self, requests: _Notes) -> dict[Key, MinuteAggregate]:
        """The request figures of one flush per deployment, model and minute (vectorised per group);
        the metrics listener hears of each deployment's requests too."""
        if not len(requests):
            return {}
        groups: dict[tuple[int, int], list[int]] = {}
        deployments: dict[int, Any] = {}
        for i, (deployment, minute) in enumerate(zip(requests.deployments, requests.minutes, strict=True)):
            group = groups.get((id(deployment), minute))
            if group is None:
                groups[(id(deployment), minute)] = [i]
                deployments[id(deployment)] = deployment
            else:
                group.append(i)
        columns = (
            np.frombuffer(requests.status, dtype=np.int64),
            np.frombuffer(requests.response, dtype=np.float64),
            np.frombuffer(requests.execution, dtype=np.float64),
            np.frombuffer(requests.rows, dtype=np.int64),
        )
        figures: dict[Key, MinuteAggregate] = {}
        for (ref, minute), indices in groups.items():
            deployment = deployments[ref]
            key = (
                self.settings.deployment_id or deployment.id,
                self.settings.model_id or deployment.model_id,
                minute,
            )
            if len(groups) == 1:
                statuses, response, execution, rows = (c.copy() for c in columns)
                consumers: Iterable[str | None] = requests.consumers
            else:
                at = np.array(indices, dtype=np.intp)
                statuses, response, execution, rows = (c[at] for c in columns)
                consumers = [requests.consumers[i] for i in indices]
            record = figures.get(key)
            if record is None:
                record = figures[key] = MinuteAggregate(deployment_id=key[0], model_id=key[1], minute=key[2])
            record.requests += len(indices)
            record.rows += int(rows.sum())
            record.user_errors += int(np.count_nonzero((statuses >= 400) & (statuses < 500)))
            record.server_errors += int(np.count_nonzero(statuses >= 500))
            record.response_ms.merge(latency_histogram(response))
            record.execution_ms.merge(latency_histogram(execution[~np.isnan(execution)]))
            for consumer, requests_of in Counter(consumers).items():  # in order of first request
                if consumer is not None:
                    record.add_consumer(consumer, requests_of)
            if self.on_requests is not None:
                try:
                    self.on_requests(key[0], statuses, response / 1000.0, rows)
                except Exception:
                    log.exception("monitoring: the requests listener failed")
        return figures

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
        """Drop compiled bins of packages no longer served (deployment id, package digest); rows of
        theirs still waiting get them compiled again at the next flush."""
        keep = set(live)
        for key in [k for k in self._bins if k not in keep]:
            del self._bins[key]

    @property
    def compiled(self) -> int:
        """Packages whose bins are compiled and cached."""
        return len(self._bins)

    def _log_drop(self) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= 60:
            self._last_error_log = now
            log.error(
                "monitoring: records dropped by the %s spool (%s so far)",
                type(self.spool).__name__,
                dict(self.spool.dropped),
            )
