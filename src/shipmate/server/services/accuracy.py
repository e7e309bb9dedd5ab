"""Predictions with association ids, the actuals reported for them, and accuracy over time.

The monitoring agent posts prediction records (`shipmate.monitoring.predictions`); each
association id is stored once per deployment (the first prediction wins, so a record posted
twice changes nothing). Actuals are matched to them by id, at most once, and only while the
prediction is younger than the late-actuals window. Accuracy is counted per period of
prediction time into mergeable statistics (`shipmate.monitoring.accuracy`) and summed.
Every bad row gets a reason; nothing here raises for bad data.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from shipmate.monitoring.accuracy import ClassificationStats, RegressionStats, Stats, finite
from shipmate.server.errors import InvalidInput
from shipmate.server.models import Deployment, PredictionRecord
from shipmate.server.services.monitoring import IngestResult, Outcome, RecordResult

CHUNK = 500
MAX_ID = 200
MAX_MINUTE = 3_700_000_000
"""Epoch minutes before the year 9000 (datetimes end at 9999)."""
REGRESSION = "regression"
CLASSIFICATION = ("binary", "multiclass")
EXPIRE_BATCH = 50_000


@dataclass(frozen=True)
class Target:
    """What a deployment predicts: its target type and, for classifiers, the class labels."""

    type: str
    labels: list[str] | None

    @classmethod
    def of(cls, deployment: Deployment) -> Target:
        package = deployment.model_package
        target = package.target_type or str(package.manifest.get("targetType") or "")
        labels = package.manifest.get("classLabels")
        if target not in (REGRESSION, *CLASSIFICATION):
            raise InvalidInput(
                f"deployment {deployment.id}: its model's target type {target or 'is unknown'!s} has no "
                "accuracy (binary, multiclass or regression only)",
                field="deployment_id",
            )
        if target == REGRESSION:
            return cls(target, None)
        return cls(target, [label_text(v) for v in labels or []])


def label_text(value: Any) -> str:
    """A class label as text, the way packages and prediction records write it (1.0 is "1")."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ---- prediction records --------------------------------------------------------------------------


def _prediction_rows(doc: Any) -> tuple[str, list[dict[str, Any]]]:
    """The rows of one prediction record, or ValueError naming what is wrong."""
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    deployment_id, ids, minute = doc.get("deploymentId"), doc.get("associationIds"), doc.get("minute")
    if not isinstance(deployment_id, str) or not deployment_id:
        raise ValueError("deploymentId: a string is required")
    if not isinstance(ids, list) or not all(_id_ok(i) for i in ids):
        raise ValueError(
            f"associationIds: a list of strings of 1 to {MAX_ID} characters (no NUL) is required"
        )
    if not isinstance(minute, int) or isinstance(minute, bool) or not 0 <= minute < MAX_MINUTE:
        raise ValueError("minute: epoch minutes (an integer before the year 9000) are required")
    labels: Any = doc.get("labels")
    probabilities: Any = doc.get("probabilities")
    values: Any = doc.get("values")
    n = len(ids)
    classifier = labels is not None
    if classifier:
        if not (isinstance(labels, list) and isinstance(probabilities, list)):
            raise ValueError("labels and probabilities: lists are required")
        if len(labels) != n or len(probabilities) != n:
            raise ValueError(f"labels and probabilities must have one entry per association id ({n})")
    elif not isinstance(values, list) or len(values) != n:
        raise ValueError(f"values: a list with one entry per association id ({n}) is required")
    at = dt.datetime.fromtimestamp(minute * 60, dt.UTC)
    model_id = str(doc.get("modelId") or "")[:200]
    rows = []
    for i, association_id in enumerate(ids):
        row: dict[str, Any] = {
            "deployment_id": deployment_id,
            "association_id": association_id,
            "model_id": model_id,
            "predicted_at": at,
        }
        if classifier:
            probs = probabilities[i]
            ok = isinstance(probs, list) and all(_number(p) for p in probs)
            row["label"] = str(labels[i]).replace("\x00", "")[:200]
            row["probabilities"] = probs if ok else None
        else:
            row["value"] = float(values[i]) if _number(values[i]) else None
        rows.append(row)
    return deployment_id, rows


def _id_ok(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID and "\x00" not in value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def ingest_predictions(
    session: Session, documents: Sequence[Any], *, environment_id: str | None, now: dt.datetime | None = None
) -> IngestResult:
    """Store prediction records for the caller (``environment_id`` None = admin, any deployment):
    ``stored`` when any id was new, ``duplicate`` when all were stored already."""
    now = now or dt.datetime.now(dt.UTC)
    result = IngestResult()
    parsed: list[tuple[int, str, list[dict[str, Any]]]] = []
    for index, doc in enumerate(documents):
        record_id = doc.get("id") if isinstance(doc, dict) and isinstance(doc.get("id"), str) else None
        try:
            deployment_id, rows = _prediction_rows(doc)
        except ValueError as exc:
            result.add(RecordResult(index, record_id, Outcome.REJECTED, f"malformed record: {exc}"))
            continue
        parsed.append((index, deployment_id, rows))
    wanted = {d for _, d, _ in parsed}
    owners = (
        dict(
            session.execute(select(Deployment.id, Deployment.environment_id).where(Deployment.id.in_(wanted)))
            .tuples()
            .all()
        )
        if wanted
        else {}
    )
    seen: dict[str, set[str]] = {}
    for index, deployment_id, rows in parsed:
        record_id = documents[index].get("id")
        owner = owners.get(deployment_id)
        if owner is None or (environment_id is not None and owner != environment_id):
            reason = (
                f"deployment {deployment_id} is unknown"
                if environment_id is None
                else f"deployment {deployment_id} is not a deployment of this token's environment"
            )
            result.add(RecordResult(index, record_id, Outcome.REJECTED, reason))
            continue
        known = seen.get(deployment_id)
        if known is None:
            known = seen[deployment_id] = set()
        ids = [r["association_id"] for r in rows if r["association_id"] not in known]
        stored = _existing(session, deployment_id, ids)
        fresh = [r for r in rows if r["association_id"] not in stored and r["association_id"] not in known]
        unique: dict[str, dict[str, Any]] = {}
        for row in fresh:
            unique.setdefault(row["association_id"], {**row, "received_at": now})
        if unique:
            session.execute(insert(PredictionRecord), list(unique.values()))
        known.update(r["association_id"] for r in rows)
        outcome = Outcome.STORED if unique else Outcome.DUPLICATE
        result.add(RecordResult(index, record_id, outcome))
    return result


def _existing(session: Session, deployment_id: str, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), CHUNK):
        chunk = unique[start : start + CHUNK]
        found.update(
            session.scalars(
                select(PredictionRecord.association_id).where(
                    PredictionRecord.deployment_id == deployment_id,
                    PredictionRecord.association_id.in_(chunk),
                )
            )
        )
    return found


# ---- actuals -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Actual:
    """One actual as received (DataRobot's shape): checked by `ingest_actuals`, row by row."""

    association_id: Any
    actual_value: Any
    timestamp: Any = None
    was_acted_on: Any = None


@dataclass(frozen=True)
class ActualProblem:
    index: int
    association_id: str | None
    outcome: str  # duplicate | rejected
    reason: str


@dataclass
class ActualsResult:
    received: int = 0
    stored: int = 0
    duplicate: int = 0
    rejected: int = 0
    problems: list[ActualProblem] = field(default_factory=list)

    def refuse(self, index: int, association_id: str | None, outcome: str, reason: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        self.problems.append(ActualProblem(index, association_id, outcome, reason))


def _actual_value(value: Any, target: Target) -> tuple[str | None, float | None]:
    """The actual as a label or a number for the target, or ValueError saying why not."""
    if target.type == REGRESSION:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(
                    f"actualValue {value!r} is not a number (the model is a regression)"
                ) from None
        if not _number(value):
            raise ValueError(f"actualValue {value!r} is not a finite number (the model is a regression)")
        return None, float(value)
    if (
        value is None
        or isinstance(value, dict | list)
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise ValueError(f"actualValue {value!r} is not a class label")
    label = label_text(value)
    if label not in (target.labels or []):
        raise ValueError(
            f"actualValue {label!r} is not one of the model's classes {target.labels} "
            f"(the model is {target.type})"
        )
    return label, None


def _timestamp(value: Any, now: dt.datetime) -> dt.datetime:
    if value is None:
        return now
    if not isinstance(value, str):
        raise ValueError(f"timestamp {value!r} is not an ISO 8601 time")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"timestamp {value!r} is not an ISO 8601 time") from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def ingest_actuals(
    session: Session,
    deployment: Deployment,
    actuals: Sequence[Actual],
    *,
    max_age_days: float,
    now: dt.datetime | None = None,
) -> ActualsResult:
    """Match actuals to stored predictions by association id; each row stored or refused with a reason."""
    now = now or dt.datetime.now(dt.UTC)
    target = Target.of(deployment)
    oldest = now - dt.timedelta(days=max_age_days)
    result = ActualsResult(received=len(actuals))
    checked: list[tuple[int, str, str | None, float | None, dt.datetime, bool | None]] = []
    for index, actual in enumerate(actuals):
        raw_id = actual.association_id
        association_id = (
            label_text(raw_id)
            if isinstance(raw_id, str | int | float) and not isinstance(raw_id, bool)
            else None
        )
        if association_id is None or not _id_ok(association_id):
            result.refuse(
                index,
                None,
                "rejected",
                f"associationId must be a string of 1 to {MAX_ID} characters (no NUL)",
            )
            continue
        try:
            label, value = _actual_value(actual.actual_value, target)
            at = _timestamp(actual.timestamp, now)
            if actual.was_acted_on is not None and not isinstance(actual.was_acted_on, bool):
                raise ValueError(f"wasActedOn {actual.was_acted_on!r} is not true or false")
        except ValueError as exc:
            result.refuse(index, association_id, "rejected", str(exc))
            continue
        checked.append((index, association_id, label, value, at, actual.was_acted_on))
    records: dict[str, PredictionRecord] = {}
    ids = list(dict.fromkeys(c[1] for c in checked))
    for start in range(0, len(ids), CHUNK):
        for record in session.scalars(
            select(PredictionRecord).where(
                PredictionRecord.deployment_id == deployment.id,
                PredictionRecord.association_id.in_(ids[start : start + CHUNK]),
            )
        ):
            records[record.association_id] = record
    for index, association_id, label, value, at, acted in checked:
        found = records.get(association_id)
        if found is None:
            reason = (
                f"no prediction with association id {association_id!r} for deployment {deployment.id} (the "
                "prediction server records ids from MLOPS_ASSOCIATION_ID_COLUMN_NAME; it may not have "
                "reached the service yet, or be past retention)"
            )
            result.refuse(index, association_id, "rejected", reason)
        elif found.actual_at is not None:
            reason = f"association id {association_id!r} has an actual already (the first one is kept)"
            result.refuse(index, association_id, "duplicate", reason)
        elif found.predicted_at < oldest:
            reason = (
                f"the prediction for {association_id!r} was made {found.predicted_at.isoformat()}, "
                f"before the {max_age_days:g}-day window for actuals"
            )
            result.refuse(index, association_id, "rejected", reason)
        else:
            found.actual_label, found.actual_value = label, value
            found.actual_at, found.was_acted_on = at, acted
            result.stored += 1
    return result


# ---- accuracy ------------------------------------------------------------------------------------


@dataclass
class Period:
    start: dt.datetime
    stats: Stats


def _new_stats(target: Target) -> Stats:
    return RegressionStats() if target.type == REGRESSION else ClassificationStats(list(target.labels or []))


def accuracy(
    session: Session,
    deployment: Deployment,
    *,
    since: dt.datetime,
    until: dt.datetime,
    period_minutes: int,
) -> tuple[Target, Stats, list[Period]]:
    """Statistics over [since, until) by prediction time: the total and one per period (empty
    periods included), periods aligned to ``period_minutes`` in UTC."""
    target = Target.of(deployment)
    rows = session.execute(
        select(
            PredictionRecord.predicted_at,
            PredictionRecord.label,
            PredictionRecord.probabilities,
            PredictionRecord.value,
            PredictionRecord.actual_label,
            PredictionRecord.actual_value,
        )
        .where(
            PredictionRecord.deployment_id == deployment.id,
            PredictionRecord.actual_at.is_not(None),
            PredictionRecord.predicted_at >= since,
            PredictionRecord.predicted_at < until,
        )
        .order_by(PredictionRecord.predicted_at)
    ).all()
    step = period_minutes * 60
    first = int(since.timestamp()) // step * step
    count = max(1, -(-(int(until.timestamp()) - first) // step))
    periods = [
        Period(dt.datetime.fromtimestamp(first + i * step, dt.UTC), _new_stats(target)) for i in range(count)
    ]
    groups: dict[int, list[Any]] = {}
    for row in rows:
        at = row[0] if row[0].tzinfo else row[0].replace(tzinfo=dt.UTC)
        groups.setdefault(min(count - 1, (int(at.timestamp()) - first) // step), []).append(row)
    total = _new_stats(target)
    for i, group in groups.items():
        _count(periods[i].stats, group, target)
        total.merge(periods[i].stats)  # type: ignore[arg-type]
    return target, total, periods


def _count(stats: Stats, rows: list[Any], target: Target) -> None:
    if isinstance(stats, RegressionStats):
        pairs = [(r[5], r[3]) for r in rows if r[5] is not None and r[3] is not None]
        if pairs:
            arr = np.asarray(pairs, dtype=np.float64)
            stats.add(arr[:, 0], arr[:, 1])
        return
    index = {label: i for i, label in enumerate(target.labels or [])}
    k = len(index)
    usable = [r for r in rows if r[4] in index and r[1] in index]
    if not usable:
        return
    actual = np.fromiter((index[r[4]] for r in usable), np.intp, len(usable))
    predicted = np.fromiter((index[r[1]] for r in usable), np.intp, len(usable))
    with_probs = np.array([isinstance(r[2], list) and len(r[2]) == k for r in usable], dtype=bool)
    if with_probs.all():
        stats.add(actual, predicted, np.asarray([r[2] for r in usable], dtype=np.float64))
        return
    # rows from a model with other classes (or without probabilities): counted, not scored
    stats.add(actual[~with_probs], predicted[~with_probs], None)
    if with_probs.any():
        probs = np.asarray([r[2] for r, ok in zip(usable, with_probs, strict=True) if ok], dtype=np.float64)
        stats.add(actual[with_probs], predicted[with_probs], probs)


def metrics_of(stats: Stats) -> dict[str, float | None]:
    return finite(stats.metrics())


# ---- retention -----------------------------------------------------------------------------------


def expire(
    session: Session, *, retention_days: float, max_per_deployment: int, now: dt.datetime | None = None
) -> int:
    """Delete predictions past retention, and each deployment's oldest beyond its cap; how many."""
    now = now or dt.datetime.now(dt.UTC)
    cutoff = now - dt.timedelta(days=retention_days)
    old = list(
        session.scalars(
            select(PredictionRecord.id).where(PredictionRecord.predicted_at < cutoff).limit(EXPIRE_BATCH)
        )
    )
    deleted = 0
    for start in range(0, len(old), CHUNK):
        deleted += session.execute(
            delete(PredictionRecord).where(PredictionRecord.id.in_(old[start : start + CHUNK]))
        ).rowcount  # type: ignore[attr-defined]
    over = session.execute(
        select(PredictionRecord.deployment_id, func.count())
        .group_by(PredictionRecord.deployment_id)
        .having(func.count() > max_per_deployment)
    ).all()
    for deployment_id, _ in over:
        newest_kept = session.scalar(
            select(PredictionRecord.id)
            .where(PredictionRecord.deployment_id == deployment_id)
            .order_by(PredictionRecord.id.desc())
            .offset(max_per_deployment - 1)
            .limit(1)
        )
        if newest_kept is not None:
            deleted += session.execute(  # type: ignore[attr-defined]
                delete(PredictionRecord).where(
                    PredictionRecord.deployment_id == deployment_id, PredictionRecord.id < newest_kept
                )
            ).rowcount
    return deleted
