"""Monitoring storage: ingest of minute aggregates, roll-up and retention, and bucket queries.

Records arrive from the monitoring agent in the JSON form of ``shipmate.monitoring.records``.
Each one is judged on its own (a bad or foreign record is refused with a reason, the rest are
stored) and added into one bucket per deployment, model and minute. Writes run in the
serialised write transaction of ``Database.write``, so the read-add-write of a bucket never
races another replica. A record's id is kept in its minute bucket, in the same row as the
counts it added: a record is either counted and remembered, or neither. The ids go when the
bucket is rolled up to its hour; records for minutes rolled up already are refused, so a
forgotten id can never count twice. (Ids in the bucket cost about 35 bytes a record and no
index; the bucket is read for the addition anyway.)
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session

from shipmate.monitoring.records import (
    MAX_CONSUMERS,
    BinCounts,
    LatencyHistogram,
    MinuteAggregate,
    RecordError,
)
from shipmate.monitoring.service_health import Bucket
from shipmate.server.models import Deployment, MonitoringBucket, utcnow
from shipmate.server.services import drift as drift_slots

log = logging.getLogger(__name__)

HOUR = 60
CHUNK = 500
"""Ids per ``IN (...)`` query, well below every backend's parameter limit."""
ROLLUP_BATCH = 1000
"""Minute buckets rolled up per maintenance pass (about a second of work), so one pass holds the
write lock briefly; at one pass a minute that keeps up with 1,000 deployment-models."""
DRIFT_ROLLUP_BATCH = 400
"""15-minute drift slots rolled up per pass: 1,000 deployment-models make 67 a minute; a slot of
1,000 features is about 115 KB, so a pass reads at most about 46 MB under the write lock."""


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    PARTIAL = "partial"
    """Some, not all, of the ids a merged record stands for are stored already: the record is
    not stored; the sender re-sends the original records whose ids are not in ``seen_ids``."""


@dataclass(frozen=True)
class RecordResult:
    index: int
    record_id: str | None
    outcome: Outcome
    reason: str | None = None
    seen_ids: list[str] = field(default_factory=list)


@dataclass
class IngestResult:
    stored: int = 0
    duplicate: int = 0
    rejected: int = 0
    partial: int = 0
    problems: list[RecordResult] = field(default_factory=list)
    """Every record that was not stored as sent (duplicates included)."""

    def add(self, result: RecordResult) -> None:
        if result.outcome is Outcome.STORED:
            self.stored += 1
            return
        setattr(self, result.outcome.value, getattr(self, result.outcome.value) + 1)
        self.problems.append(result)


@dataclass(frozen=True)
class Retention:
    minute_hours: float
    hour_days: float
    max_future_minutes: int
    drift_slot_days: float = 7.0
    """15-minute drift slots older than this are rolled up into hour slots."""


def _minute(now: float) -> int:
    return int(now // 60)


def ingest(
    session: Session,
    documents: Sequence[Any],
    *,
    environment_id: str | None,
    retention: Retention,
    now: float | None = None,
) -> IngestResult:
    """Store a batch of records for the caller (``environment_id`` None = admin, any deployment)."""
    now = time.time() if now is None else now
    now_minute = _minute(now)
    newest = now_minute + retention.max_future_minutes
    rollup_before = _rollup_cutoff(now_minute, retention)
    result = IngestResult()
    parsed: list[tuple[int, MinuteAggregate]] = []
    for index, document in enumerate(documents):
        try:
            record = MinuteAggregate.from_json(document)
        except RecordError as exc:
            result.add(RecordResult(index, _id_of(document), Outcome.REJECTED, f"malformed record: {exc}"))
            continue
        if record.minute < rollup_before:
            reason = (
                f"minute {record.minute} is older than the {retention.minute_hours:g} h minute retention: "
                "it is rolled up to hours and its record ids are gone, so it could count twice"
            )
            result.add(RecordResult(index, record.record_id, Outcome.REJECTED, reason))
        elif record.minute > newest:
            reason = (
                f"minute {record.minute} is more than {retention.max_future_minutes} minutes ahead of the "
                "service's clock (check the producer's clock)"
            )
            result.add(RecordResult(index, record.record_id, Outcome.REJECTED, reason))
        else:
            parsed.append((index, record))

    owners = _deployment_environments(session, {r.deployment_id for _, r in parsed})
    allowed: list[tuple[int, MinuteAggregate]] = []
    for index, record in parsed:
        owner = owners.get(record.deployment_id)
        if owner is None or (environment_id is not None and owner != environment_id):
            reason = (
                f"deployment {record.deployment_id} is unknown"
                if environment_id is None
                else f"deployment {record.deployment_id} is not a deployment of this token's environment"
            )
            result.add(RecordResult(index, record.record_id, Outcome.REJECTED, reason))
        else:
            allowed.append((index, record))

    rows = _load_buckets(session, {_bucket_key(r) for _, r in allowed})
    sums: dict[BucketKey, _Sum] = {}
    drift_counts: list[drift_slots.Counts] = []
    for index, record in allowed:
        key = _bucket_key(record)
        total = sums.get(key)
        if total is None:
            total = sums[key] = _Sum.of(rows.get(key))
        ids = record.source_ids()
        known = [i for i in ids if i in total.ids]
        if len(set(ids)) != len(ids):
            result.add(RecordResult(index, record.record_id, Outcome.REJECTED, "mergedIds repeats an id"))
            continue
        if len(known) == len(ids):
            result.add(RecordResult(index, record.record_id, Outcome.DUPLICATE))
            continue
        if known:
            result.add(RecordResult(index, record.record_id, Outcome.PARTIAL, None, known))
            continue
        problem = total.incompatible(record.features, record.predictions)
        if problem:
            result.add(RecordResult(index, record.record_id, Outcome.REJECTED, problem))
            continue
        drift_counts.append(drift_slots.counts_of(record))  # before add_record reuses its lists
        total.add_record(record, now)
        result.add(RecordResult(index, record.record_id, Outcome.STORED))
    for key, total in sums.items():
        if total.changed:  # a bucket every record of which was refused is not created or touched
            row = rows.get(key)
            if row is None:
                row = _new_bucket(key)
                session.add(row)
            total.write(row)
    drift_slots.add_counts(session, drift_counts)
    return result


@dataclass
class MaintenanceResult:
    rolled_up: int = 0
    expired_buckets: int = 0
    expired_drift_slots: int = 0
    rolled_up_drift_slots: int = 0


def maintain(session: Session, *, retention: Retention, now: float | None = None) -> MaintenanceResult:
    """Roll minute buckets and 15-minute drift slots older than their retention up into hours;
    delete what is past retention."""
    now = time.time() if now is None else now
    now_minute = _minute(now)
    outcome = MaintenanceResult()
    cutoff = _rollup_cutoff(now_minute, retention)
    old = list(
        session.scalars(
            select(MonitoringBucket)
            .where(MonitoringBucket.width == 1, MonitoringBucket.minute < cutoff)
            .order_by(MonitoringBucket.minute)
            .limit(ROLLUP_BATCH)
        )
    )
    if old:
        keys = {(b.deployment_id, b.model_id, HOUR, b.minute - b.minute % HOUR) for b in old}
        hours = _load_buckets(session, keys)
        sums: dict[BucketKey, _Sum] = {}
        for minute_bucket in old:
            start = minute_bucket.minute - minute_bucket.minute % HOUR
            key = (minute_bucket.deployment_id, minute_bucket.model_id, HOUR, start)
            total = sums.get(key)
            if total is None:
                total = sums[key] = _Sum.of(hours.get(key))
            total.add_row(minute_bucket)
            session.delete(minute_bucket)
        for key, total in sums.items():
            row = hours.get(key)
            if row is None:
                row = _new_bucket(key)
                session.add(row)
            total.write(row)
        outcome.rolled_up = len(old)
    expire_before = now_minute - int(retention.hour_days * 24 * 60)
    outcome.expired_buckets = _deleted(
        session.execute(delete(MonitoringBucket).where(MonitoringBucket.minute < expire_before))
    )
    drift_cutoff = now_minute - int(retention.drift_slot_days * 24 * 60)
    outcome.rolled_up_drift_slots = drift_slots.roll_up(
        session, drift_cutoff - drift_cutoff % HOUR, limit=DRIFT_ROLLUP_BATCH
    )
    outcome.expired_drift_slots = drift_slots.expire(session, expire_before)
    return outcome


def buckets_between(
    session: Session,
    deployment_id: str,
    *,
    since_minute: int,
    until_minute: int,
    model_id: str | None = None,
) -> list[Bucket]:
    """The deployment's stored buckets that start in [since, until), for ``service_health``."""
    b = MonitoringBucket
    # the bin counts (the bulk of a row) are not needed for service health: leave them unread
    query = select(
        b.minute, b.width, b.model_id, b.records, b.requests, b.rows, b.user_errors, b.server_errors,
        b.dropped, b.response_ms, b.execution_ms, b.consumers, b.consumers_overflow, b.lag_total, b.lag_max,
    ).where(
        b.deployment_id == deployment_id, b.minute >= since_minute, b.minute < until_minute
    )  # fmt: skip
    if model_id is not None:
        query = query.where(MonitoringBucket.model_id == model_id)
    return [
        Bucket(
            minute=row.minute,
            width=row.width,
            model_id=row.model_id,
            records=row.records,
            requests=row.requests,
            rows=row.rows,
            user_errors=row.user_errors,
            server_errors=row.server_errors,
            dropped=row.dropped,
            response_ms=LatencyHistogram.from_json(row.response_ms or _EMPTY, "responseMs"),
            execution_ms=LatencyHistogram.from_json(row.execution_ms or _EMPTY, "executionMs"),
            consumers=list(row.consumers),
            consumers_overflow=row.consumers_overflow,
            lag_total=row.lag_total,
            lag_max=row.lag_max,
        )
        for row in session.execute(query)
    ]


def last_received(session: Session, deployment_id: str) -> dt.datetime | None:
    """When the newest record for the deployment arrived (None: never)."""
    return session.scalar(
        select(MonitoringBucket.received_at)
        .where(MonitoringBucket.deployment_id == deployment_id)
        .order_by(MonitoringBucket.received_at.desc())
        .limit(1)
    )


# ---- helpers -------------------------------------------------------------------------------

_EMPTY = {"scale": 3, "buckets": {}}
BucketKey = tuple[str, str, int, int]


def _id_of(document: Any) -> str | None:
    value = document.get("id") if isinstance(document, dict) else None
    return value if isinstance(value, str) and len(value) <= 200 else None


def _rollup_cutoff(now_minute: int, retention: Retention) -> int:
    """Minute buckets before this minute (an hour boundary) belong in hour buckets."""
    cutoff = now_minute - int(retention.minute_hours * 60)
    return cutoff - cutoff % HOUR


def _bucket_key(record: MinuteAggregate) -> BucketKey:
    return (record.deployment_id, record.model_id or "", 1, record.minute)


def _deployment_environments(session: Session, ids: set[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    ordered = sorted(ids)
    for start in range(0, len(ordered), CHUNK):
        rows = session.execute(
            select(Deployment.id, Deployment.environment_id).where(
                Deployment.id.in_(ordered[start : start + CHUNK])
            )
        )
        found.update({row[0]: row[1] for row in rows})
    return found


def _load_buckets(session: Session, keys: Iterable[BucketKey]) -> dict[BucketKey, MonitoringBucket]:
    ordered = sorted(keys)
    found: dict[BucketKey, MonitoringBucket] = {}
    columns = tuple_(
        MonitoringBucket.deployment_id,
        MonitoringBucket.model_id,
        MonitoringBucket.width,
        MonitoringBucket.minute,
    )
    for start in range(0, len(ordered), CHUNK // 4):
        for row in session.scalars(
            select(MonitoringBucket).where(columns.in_(ordered[start : start + CHUNK // 4]))
        ):
            found[(row.deployment_id, row.model_id, row.width, row.minute)] = row
    return found


def _new_bucket(key: BucketKey) -> MonitoringBucket:
    deployment_id, model_id, width, minute = key
    return MonitoringBucket(
        deployment_id=deployment_id,
        model_id=model_id,
        width=width,
        minute=minute,
        records=0,
        requests=0,
        rows=0,
        user_errors=0,
        server_errors=0,
        dropped=0,
        response_ms=LatencyHistogram().to_json(),
        execution_ms=LatencyHistogram().to_json(),
        consumers={},
        consumers_overflow=0,
        features={},
        predictions={},
        record_ids=[],
        lag_total=0.0,
        lag_max=0.0,
        received_at=utcnow(),
    )


@dataclass
class _Sum:
    """One bucket's figures in memory while records are added: its stored JSON is parsed once,
    every record of the batch added, and the JSON written back once."""

    records: int = 0
    requests: int = 0
    rows: int = 0
    user_errors: int = 0
    server_errors: int = 0
    dropped: int = 0
    response: LatencyHistogram = field(default_factory=LatencyHistogram)
    execution: LatencyHistogram = field(default_factory=LatencyHistogram)
    consumers: dict[str, int] = field(default_factory=dict)
    consumers_overflow: int = 0
    features: dict[str, BinCounts] = field(default_factory=dict)
    predictions: dict[str, BinCounts] = field(default_factory=dict)
    lag_total: float = 0.0
    lag_max: float = 0.0
    received_at: dt.datetime | None = None
    ids: dict[str, None] = field(default_factory=dict)
    """Ids of the records in this minute bucket, in arrival order (a dict as an ordered set)."""
    changed: bool = False

    @classmethod
    def of(cls, row: MonitoringBucket | None) -> _Sum:
        total = cls()
        if row is not None:
            total.add_row(row)
            total.ids = dict.fromkeys(row.record_ids or ())
            total.changed = False
        return total

    def incompatible(self, features: dict[str, BinCounts], predictions: dict[str, BinCounts]) -> str | None:
        for where, mine, incoming in (
            ("features", self.features, features),
            ("predictions", self.predictions, predictions),
        ):
            for name, bins in incoming.items():
                stored = mine.get(name)
                if stored is not None and len(stored.counts) != len(bins.counts):
                    return (
                        f"{where}[{name}] has {len(bins.counts)} bins but the stored ones have "
                        f"{len(stored.counts)} (a different baseline under the same model id)"
                    )
        return None

    def _add_counts(self, other: Any) -> None:
        self.records += other.records if isinstance(other, MonitoringBucket) else 1
        self.requests += other.requests
        self.rows += other.rows
        self.user_errors += other.user_errors
        self.server_errors += other.server_errors
        self.dropped += other.dropped

    def _add_consumers(self, consumers: dict[str, int], overflow: int) -> None:
        for consumer, count in consumers.items():
            if consumer in self.consumers or len(self.consumers) < MAX_CONSUMERS:
                self.consumers[consumer] = self.consumers.get(consumer, 0) + count
            else:
                overflow += count
        self.consumers_overflow += overflow

    def _add_columns(self, features: dict[str, BinCounts], predictions: dict[str, BinCounts]) -> None:
        for mine, incoming in ((self.features, features), (self.predictions, predictions)):
            for name, bins in incoming.items():
                stored = mine.get(name)
                if stored is None:
                    mine[name] = bins  # records and rows are parsed afresh: no copy needed
                else:
                    stored.merge(bins, name)

    def add_record(self, record: MinuteAggregate, now: float) -> None:
        """Add a record (checked with `incompatible` first)."""
        self._add_counts(record)
        self.response.merge(record.response_ms)
        self.execution.merge(record.execution_ms)
        self._add_consumers(record.consumers, record.consumers_overflow)
        self._add_columns(record.features, record.predictions)
        lag = max(0.0, now - record.flushed_at) if record.flushed_at > 0 else 0.0
        self.lag_total += lag
        self.lag_max = max(self.lag_max, lag)
        self.received_at = utcnow()
        self.ids.update(dict.fromkeys(record.source_ids()))
        self.changed = True

    def add_row(self, row: MonitoringBucket) -> None:
        """Add a stored bucket (itself, or a minute bucket rolled up into this hour)."""
        self._add_counts(row)
        self.response.merge(LatencyHistogram.from_json(row.response_ms or _EMPTY, "responseMs"))
        self.execution.merge(LatencyHistogram.from_json(row.execution_ms or _EMPTY, "executionMs"))
        self._add_consumers(dict(row.consumers), row.consumers_overflow)
        features = {name: BinCounts.from_json(doc, name) for name, doc in row.features.items()}
        predictions = {name: BinCounts.from_json(doc, name) for name, doc in row.predictions.items()}
        problem = self.incompatible(features, predictions)
        if problem:  # two baselines under one model id: keep the counts above, not these bins
            log.warning(
                "roll-up of %s kept the hour's bins, not the minute's: %s", row.deployment_id, problem
            )
        else:
            self._add_columns(features, predictions)
        self.lag_total += row.lag_total
        self.lag_max = max(self.lag_max, row.lag_max)
        if row.received_at is not None:
            self.received_at = max(self.received_at or row.received_at, row.received_at)
        self.changed = True

    def write(self, row: MonitoringBucket) -> None:
        row.records = self.records
        row.requests = self.requests
        row.rows = self.rows
        row.user_errors = self.user_errors
        row.server_errors = self.server_errors
        row.dropped = self.dropped
        row.response_ms = self.response.to_json()
        row.execution_ms = self.execution.to_json()
        row.consumers = dict(self.consumers)
        row.consumers_overflow = self.consumers_overflow
        row.features = {name: bins.to_json() for name, bins in self.features.items()}
        row.predictions = {name: bins.to_json() for name, bins in self.predictions.items()}
        row.lag_total = self.lag_total
        row.lag_max = self.lag_max
        row.received_at = self.received_at or utcnow()
        row.record_ids = list(self.ids) if row.width == 1 else []


def _deleted(result: Any) -> int:
    count = getattr(result, "rowcount", 0)
    return int(count) if count and count > 0 else 0
