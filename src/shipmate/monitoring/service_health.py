"""Service health from stored buckets: a pure computation, no I/O.

The service loads a deployment's buckets for a time range and hands them here; the figures
are DataRobot's service-health metrics (total predictions and requests, requests over a
threshold, response and execution time quantiles, error rates, median and peak load,
distinct consumers) plus monitoring lag and dropped records, for the whole range and for
each period of the chosen resolution.

Definitions (documented in docs/monitoring.md):

* load is requests per minute; median and peak are taken over the minutes that had traffic.
  A bucket already rolled up to an hour counts as 60 minutes of its average load, so its
  peak is understated, and the result says ``coarsened``.
* quantiles are bucket upper bounds of the merged latency histograms (at most 9 % high).
* requests over the threshold are counted at histogram resolution: the bucket holding the
  threshold is not counted as over it.
* monitoring lag is the time from the producer's flush to the service storing the record.

Standard library only, like ``records``: the CLI may use it too.
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shipmate.monitoring.records import LatencyHistogram

QUANTILES = (0.5, 0.95, 0.99)
DEFAULT_SLOW_MS = 1000.0
MAX_PERIODS = 10_000
"""Most periods one answer may hold; a longer range needs a coarser resolution."""


class Resolution(StrEnum):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"

    @property
    def minutes(self) -> int:
        return {"minute": 1, "hour": 60, "day": 1440}[self.value]


@dataclass(slots=True)
class Bucket:
    """What the health computation needs of one stored bucket (``minute`` in epoch minutes)."""

    minute: int
    width: int = 1
    model_id: str = ""
    records: int = 0
    requests: int = 0
    rows: int = 0
    user_errors: int = 0
    server_errors: int = 0
    dropped: int = 0
    response_ms: LatencyHistogram = field(default_factory=LatencyHistogram)
    execution_ms: LatencyHistogram = field(default_factory=LatencyHistogram)
    consumers: Collection[str] = ()
    consumers_overflow: int = 0
    lag_total: float = 0.0
    lag_max: float = 0.0


@dataclass(slots=True)
class Figures:
    """Service health over one span of time (a period, or the whole range)."""

    start_minute: int
    minutes: int
    total_predictions: int = 0
    total_requests: int = 0
    slow_requests: int = 0
    response_time_ms: dict[str, float | None] = field(default_factory=dict)
    execution_time_ms: dict[str, float | None] = field(default_factory=dict)
    user_error_rate: float | None = None
    server_error_rate: float | None = None
    median_load: float | None = None
    peak_load: float | None = None
    distinct_consumers: int = 0
    consumers_capped: bool = False
    monitoring_lag_mean_s: float | None = None
    monitoring_lag_max_s: float | None = None
    dropped_records: int = 0
    coarsened: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start_minute * 60,
            "minutes": self.minutes,
            "totalPredictions": self.total_predictions,
            "totalRequests": self.total_requests,
            "slowRequests": self.slow_requests,
            "responseTimeMs": self.response_time_ms,
            "executionTimeMs": self.execution_time_ms,
            "userErrorRate": self.user_error_rate,
            "serverErrorRate": self.server_error_rate,
            "medianLoad": self.median_load,
            "peakLoad": self.peak_load,
            "distinctConsumers": self.distinct_consumers,
            "consumersCapped": self.consumers_capped,
            "monitoringLagMeanS": self.monitoring_lag_mean_s,
            "monitoringLagMaxS": self.monitoring_lag_max_s,
            "droppedRecords": self.dropped_records,
            "coarsened": self.coarsened,
        }


@dataclass(slots=True)
class Health:
    summary: Figures
    periods: list[Figures]
    models: list[str]


class RangeError(ValueError):
    """A time range or resolution the computation cannot answer; the message says what to change."""


def periods_in(since_minute: int, until_minute: int, resolution: Resolution) -> list[int]:
    """Start minutes of the periods covering [since, until), aligned to the resolution (UTC)."""
    if until_minute <= since_minute:
        raise RangeError("until must be later than since")
    step = resolution.minutes
    first = since_minute - since_minute % step
    count = (until_minute - first + step - 1) // step
    if count > MAX_PERIODS:
        raise RangeError(
            f"{count} periods of a {resolution.value} are too many (at most {MAX_PERIODS}); "
            "choose a coarser resolution or a shorter range"
        )
    return [first + i * step for i in range(count)]


def compute(
    buckets: Sequence[Bucket],
    *,
    since_minute: int,
    until_minute: int,
    resolution: Resolution = Resolution.HOUR,
    slow_ms: float = DEFAULT_SLOW_MS,
) -> Health:
    """Health over [since, until) and per period; buckets starting outside the range are ignored."""
    starts = periods_in(since_minute, until_minute, resolution)
    step = resolution.minutes
    first = starts[0]
    grouped: list[list[Bucket]] = [[] for _ in starts]
    inside: list[Bucket] = []
    for bucket in buckets:
        if not since_minute <= bucket.minute < until_minute:
            continue
        inside.append(bucket)
        grouped[(bucket.minute - first) // step].append(bucket)
    summary = _figures(inside, since_minute, until_minute - since_minute, slow_ms)
    periods = [_figures(group, start, step, slow_ms) for start, group in zip(starts, grouped, strict=True)]
    models = sorted({b.model_id for b in inside})
    return Health(summary=summary, periods=periods, models=models)


def _figures(buckets: Sequence[Bucket], start: int, minutes: int, slow_ms: float) -> Figures:
    figures = Figures(start_minute=start, minutes=minutes)
    response = LatencyHistogram()
    execution = LatencyHistogram()
    consumers: set[str] = set()
    per_minute: dict[int, float] = {}
    records = 0
    lag_total = 0.0
    for bucket in buckets:
        figures.total_predictions += bucket.rows
        figures.total_requests += bucket.requests
        figures.dropped_records += bucket.dropped
        figures.coarsened = figures.coarsened or bucket.width > 1
        response.merge(bucket.response_ms)
        execution.merge(bucket.execution_ms)
        consumers.update(bucket.consumers)
        figures.consumers_capped = figures.consumers_capped or bucket.consumers_overflow > 0
        records += bucket.records
        lag_total += bucket.lag_total
        figures.monitoring_lag_max_s = max(figures.monitoring_lag_max_s or 0.0, bucket.lag_max)
        if bucket.requests:
            share = bucket.requests / bucket.width
            for minute in range(bucket.minute, bucket.minute + bucket.width):
                per_minute[minute] = per_minute.get(minute, 0.0) + share
    user_errors = sum(b.user_errors for b in buckets)
    server_errors = sum(b.server_errors for b in buckets)
    figures.slow_requests = response.count_above(slow_ms)
    figures.response_time_ms = {_name(q): response.quantile(q) for q in QUANTILES}
    figures.execution_time_ms = {_name(q): execution.quantile(q) for q in QUANTILES}
    if figures.total_requests:
        figures.user_error_rate = user_errors / figures.total_requests
        figures.server_error_rate = server_errors / figures.total_requests
    if per_minute:
        loads = list(per_minute.values())
        figures.median_load = float(statistics.median(loads))
        figures.peak_load = max(loads)
    figures.distinct_consumers = len(consumers)
    if records:
        figures.monitoring_lag_mean_s = lag_total / records
    else:
        figures.monitoring_lag_max_s = None
    return figures


def _name(q: float) -> str:
    return f"p{round(q * 100)}"
