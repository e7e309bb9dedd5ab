"""One channel's forwarding loop: read a batch, merge it, post it until the service has it, acknowledge.

The order is the whole guarantee. A batch is acknowledged only after the service answered
for every record in it (stored, duplicate, or refused for good), so a crash anywhere loses
nothing; a record posted twice is recognised by its id, so nothing counts twice. A merged
record that the service finds partly stored (the agent died after posting an earlier merge)
is re-sent as its original records, leaving out the ids the service already has.

While the service is down the loop holds one batch and keeps retrying with a capped
back-off; it reads nothing more, so memory stays bounded and the backlog stays in the spool
or the queue, which bound themselves.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shipmate.common.backoff import Backoff
from shipmate.monitoring.agent.metrics import AgentMetrics
from shipmate.monitoring.records import MinuteAggregate, RecordError, merge_all
from shipmate.monitoring.spool import AGGREGATE, PREDICTIONS, SpoolBatch, SpoolReader

log = logging.getLogger(__name__)


class ReaderReset(Exception):
    """The channel failed (a broker gone, a file unreadable): what was not acknowledged is read again."""


class PostRefused(Exception):
    """The service refused the whole request (4xx); ``status`` says which."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ServiceDown(Exception):
    """The service could not be reached or answered 5xx: retry later."""


@dataclass
class PostResult:
    """The service's answer, as counts of posted records and the ids of those not stored."""

    stored: int = 0
    duplicate: int = 0
    rejected: int = 0
    duplicate_ids: list[str | None] = field(default_factory=list)
    rejected_ids: list[str | None] = field(default_factory=list)
    partial: list[tuple[str | None, list[str]]] = field(default_factory=list)
    """(record id, ids already stored) of each merged record the service found partly stored."""
    reasons: list[str] = field(default_factory=list)


class Sink(Protocol):
    def post(self, records: Sequence[dict[str, Any]]) -> PostResult: ...

    def post_predictions(self, records: Sequence[dict[str, Any]]) -> PostResult:
        """Prediction records (association ids): stored by the service once per id, so posting
        one twice is harmless."""
        ...


PREDICTIONS_PER_POST = 50
"""Prediction records per request (up to 1,000 rows each)."""


@dataclass
class Batch:
    originals: list[dict[str, Any]] = field(default_factory=list)
    records: list[MinuteAggregate] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    last: SpoolBatch | None = None
    """The reader's last batch read into this one: acknowledging it acknowledges them all."""
    count: int = 0
    """Spool records read into the batch, damaged and skipped ones included."""
    first_read: float = 0.0


def resend_after_partial(
    merged: Sequence[MinuteAggregate], partial: Sequence[tuple[str | None, list[str]]],
    originals: Sequence[dict[str, Any]],
) -> list[dict[str, Any]]:  # fmt: skip
    """The original records to post again for merged records the service found partly stored."""
    by_merged = {r.record_id: set(r.source_ids()) for r in merged}
    resend: list[dict[str, Any]] = []
    for record_id, seen in partial:
        wanted = by_merged.get(record_id or "", set()) - set(seen)
        for doc in originals:
            ids = doc.get("mergedIds") or [doc.get("id")]
            if any(i in wanted for i in ids) and not any(i in seen for i in ids):
                resend.append(doc)
    return resend


class Forwarder:
    """Moves one channel's records to the service; ``run`` returns when ``stop`` is set."""

    def __init__(
        self,
        channel: str,
        reader: SpoolReader,
        sink: Sink,
        metrics: AgentMetrics,
        *,
        max_records: int,
        pending_timeout: float,
        http_retry: int,
        backoff: Backoff,
        stop: threading.Event,
        run_once: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self.sink = sink
        self.metrics = metrics
        self.max_records = max_records
        self.pending_timeout = pending_timeout
        self.http_retry = http_retry
        self.backoff = backoff
        self.stop = stop
        self.run_once = run_once
        self.clock = clock
        self.channel = channel

    # ---- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                batch = self._fill()
                if failures:
                    log.info("%s: the channel is back after %d failed attempts", self.channel, failures)
                    failures = 0
                if batch.count == 0:
                    if self.run_once:
                        return
                    continue
                if self._deliver(batch):
                    self._ack(batch.last)
                    self.metrics.pending.labels(self.channel).set(0)
            except ReaderReset as exc:
                failures += 1
                self.metrics.channel_errors.labels(self.channel).inc()
                self.metrics.set_channel_error(self.channel, str(exc))
                self.metrics.pending.labels(self.channel).set(0)
                level = logging.WARNING if failures == 1 or failures % 50 == 0 else logging.DEBUG
                log.log(level, "%s: %s; unacknowledged records will be read again (attempt %d)",
                        self.channel, exc, failures)  # fmt: skip
                with contextlib.suppress(Exception):
                    self.reader.rewind()
                self.stop.wait(self.backoff.delay(failures))

    def _read(self, max_records: int, timeout: float) -> SpoolBatch:
        try:
            return self.reader.read(max_records, timeout)
        except Exception as exc:  # the spool's own errors (a broker gone, a file unreadable)
            raise ReaderReset(f"{type(exc).__name__}: {exc}") from exc

    def _ack(self, batch: SpoolBatch | None) -> None:
        if batch is None:
            return
        try:
            self.reader.ack(batch)
        except Exception as exc:
            raise ReaderReset(f"acknowledgement failed: {type(exc).__name__}: {exc}") from exc

    def _fill(self) -> Batch:
        batch = Batch()
        deadline: float | None = None
        while batch.count < self.max_records and not self.stop.is_set():
            wait = 0.5 if deadline is None else max(0.0, deadline - self.clock())
            if self.run_once:  # drain what is there; do not wait for more
                wait = min(wait, 0.2)
            read = self._read(self.max_records - batch.count, wait)
            self.metrics.mark_read(self.channel)
            got = len(read.records) + read.damaged
            if got == 0:
                if deadline is not None or self.run_once:
                    break
                continue
            if deadline is None:
                batch.first_read = self.clock()
                deadline = batch.first_read + self.pending_timeout
            batch.last = read
            batch.count += got
            if read.damaged:
                self.metrics.outcomes.labels(self.channel, "malformed").inc(read.damaged)
            for item in read.records:
                self._add(batch, item.kind, item.doc)
            self.metrics.read.labels(self.channel).inc(got)
            self.metrics.pending.labels(self.channel).set(batch.count)
            if self.clock() >= deadline:
                break
        return batch

    def _add(self, batch: Batch, kind: str, doc: dict[str, Any]) -> None:
        if kind == PREDICTIONS:
            if isinstance(doc.get("deploymentId"), str) and isinstance(doc.get("associationIds"), list):
                batch.predictions.append(doc)
            else:
                self.metrics.outcomes.labels(self.channel, "malformed").inc()
                log.warning("%s: skipped a malformed predictions record %s", self.channel, doc.get("id"))
            return
        if kind != AGGREGATE:
            # raw-row samples are for later work (challengers); nothing stores them yet
            self.metrics.outcomes.labels(self.channel, "skipped").inc()
            return
        try:
            record = MinuteAggregate.from_json(doc)
        except RecordError as exc:
            self.metrics.outcomes.labels(self.channel, "malformed").inc()
            log.warning("%s: skipped a malformed spool record: %s", self.channel, exc)
            return
        batch.originals.append(doc)
        batch.records.append(record)

    # ---- delivery ----------------------------------------------------------------------------

    def _deliver(self, batch: Batch) -> bool:
        """Post the batch until the service has answered for every record; False if stopped first."""
        for start in range(0, len(batch.predictions), PREDICTIONS_PER_POST):
            chunk = batch.predictions[start : start + PREDICTIONS_PER_POST]
            answered = self._post_until_answered(chunk, self.sink.post_predictions)
            if answered is None:
                return False
            self._count_predictions(answered)
        rows = sum(r.rows for r in batch.records)
        merged = merge_all(batch.records)
        if not merged:
            return True
        documents = [r.to_json() for r in merged]
        for round_ in range(2):
            result = self._post_until_answered(documents)
            if result is None:
                return False
            self._count(result, merged)
            documents = resend_after_partial(merged, result.partial, batch.originals)
            if not documents:
                break
            if round_ == 1:  # originals partly stored: only a producer's own merge can do that
                self.metrics.outcomes.labels(self.channel, "rejected").inc(len(documents))
                log.error("%s: %d records are partly stored already and cannot be split further; "
                          "skipped", self.channel, len(documents))  # fmt: skip
            merged = [MinuteAggregate.from_json(d) for d in documents]
        self.metrics.rows.labels(self.channel).inc(rows)
        return True

    def _post_until_answered(
        self,
        documents: list[dict[str, Any]],
        send: Callable[[Sequence[dict[str, Any]]], PostResult] | None = None,
    ) -> PostResult | None:
        send = send or self.sink.post
        failures = 0
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                result = send(documents)
            except ServiceDown as exc:
                failures += 1
                self.metrics.posts.labels("unavailable").inc()
                self.metrics.service_failures = failures
                level = logging.ERROR if failures == self.http_retry + 1 else logging.WARNING
                if failures <= self.http_retry + 1 or failures % 20 == 0:
                    log.log(level, "%s: the service is unavailable (attempt %d): %s; retrying",
                            self.channel, failures, exc)  # fmt: skip
                self.stop.wait(self.backoff.delay(failures))
                continue
            except PostRefused as exc:
                if exc.status in (400, 413, 422) and len(documents) > 1:
                    # one bad record must not hold the rest back: split until it is alone
                    half = len(documents) // 2
                    first = self._post_until_answered(documents[:half], send)
                    second = self._post_until_answered(documents[half:], send) if first is not None else None
                    if first is None or second is None:
                        return None
                    return _combined(first, second)
                if exc.status in (400, 413, 422):
                    self.metrics.posts.labels("refused").inc()
                    log.error("%s: the service refused record %s for good: %s",
                              self.channel, documents[0].get("id"), exc)  # fmt: skip
                    return PostResult(rejected=1, rejected_ids=[documents[0].get("id")], reasons=[str(exc)])
                failures += 1
                self.metrics.posts.labels("refused").inc()
                log.error("%s: the service refused the agent (%s): %s; check apiToken and the "
                          "token's environment; retrying", self.channel, exc.status, exc)  # fmt: skip
                self.stop.wait(self.backoff.delay(failures))
                continue
            self.metrics.post_seconds.observe(time.perf_counter() - started)
            self.metrics.posts.labels("ok").inc()
            self.metrics.service_failures = 0
            self.metrics.last_success.set_to_current_time()
            if failures:
                log.info(
                    "%s: the service is reachable again after %d failed attempts", self.channel, failures
                )
            return result
        return None

    def _count(self, result: PostResult, posted: Sequence[MinuteAggregate]) -> None:
        """Count outcomes in spool records: a merged record stands for every record it absorbed."""
        sizes = {r.record_id: len(r.source_ids()) for r in posted}
        duplicate = sum(sizes.get(i or "", 1) for i in result.duplicate_ids)
        duplicate += sum(len(seen) for _, seen in result.partial)
        rejected = sum(sizes.get(i or "", 1) for i in result.rejected_ids)
        later = sum(sizes.get(i or "", 1) for i, _ in result.partial)  # re-sent as originals, counted then
        stored = sum(sizes.values()) - duplicate - rejected - later + sum(len(s) for _, s in result.partial)
        self.metrics.outcomes.labels(self.channel, "stored").inc(max(0, stored))
        self.metrics.outcomes.labels(self.channel, "duplicate").inc(duplicate)
        self.metrics.outcomes.labels(self.channel, "rejected").inc(rejected)
        for reason in result.reasons[:5]:
            log.warning("%s: the service refused a record: %s", self.channel, reason)
        if len(result.reasons) > 5:
            log.warning("%s: ... and %d more refused records", self.channel, len(result.reasons) - 5)

    def _count_predictions(self, result: PostResult) -> None:
        """Prediction records are never merged: the service's counts are spool records."""
        for outcome in ("stored", "duplicate", "rejected"):
            self.metrics.outcomes.labels(self.channel, outcome).inc(getattr(result, outcome))
        for reason in result.reasons[:5]:
            log.warning("%s: the service refused a predictions record: %s", self.channel, reason)


def _combined(a: PostResult, b: PostResult) -> PostResult:
    return PostResult(
        stored=a.stored + b.stored,
        duplicate=a.duplicate + b.duplicate,
        rejected=a.rejected + b.rejected,
        duplicate_ids=a.duplicate_ids + b.duplicate_ids,
        rejected_ids=a.rejected_ids + b.rejected_ids,
        partial=a.partial + b.partial,
        reasons=a.reasons + b.reasons,
    )
