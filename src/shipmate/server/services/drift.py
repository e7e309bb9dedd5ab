"""Drift on the service: the 15-minute slots of bin counts drift reads, a deployment's drift
settings, and the drift of a deployment over a range (the scoring is ``shipmate.monitoring.drift``).

Slots are written in the same transaction as the minute buckets (``monitoring.ingest`` hands
over the records it stored), so drift never disagrees with what was counted. A slot holds only
the bin counts, in one binary blob (`encode`): the column names once, then every count as an
int64, so a query sums a slot with one numpy gather per layout length. A day of a 1,000-feature
deployment is 96 rows of about 120 KB (bench/drift_bench.py).

After a retention period (``SHIPMATE_MONITORING_DRIFT_SLOT_RETENTION_DAYS``) `roll_up` adds the
15-minute slots of each hour into one hour slot (``width`` 60): counts add, so every range made
of whole hours gives the same drift as before; a range that cuts an hour slot is widened to it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.orm import Session

from shipmate.monitoring import drift
from shipmate.monitoring.records import MinuteAggregate
from shipmate.server.models import Deployment, DriftSettings, DriftSlot, utcnow

SLOT_MINUTES = 15
HOUR_MINUTES = 60
"""The width of a rolled-up slot, the widest there is: a read looks this far back for slots that
started before its range and reach into it."""
MAX_WINDOWS_COLUMNS = 50
"""Columns whose series of windows one answer may hold (each window is scored on its own)."""


def slot_of(minute: int) -> int:
    return minute - minute % SLOT_MINUTES


def slot_end(moment: dt.datetime) -> int:
    """The first slot boundary at or after ``moment`` (epoch minutes): an exclusive end widened."""
    minute = math.ceil(moment.timestamp() / 60)
    return -(-minute // SLOT_MINUTES) * SLOT_MINUTES


# ---- writing: from the records ingest stored -----------------------------------------------


SlotKey = tuple[str, str, int]


@dataclass(frozen=True)
class Counts:
    """A stored record's bin counts, copied before the bucket addition reuses its lists."""

    key: SlotKey
    rows: int
    features: dict[str, list[int]]
    predictions: dict[str, list[int]]


def counts_of(record: MinuteAggregate) -> Counts:
    return Counts(
        key=(record.deployment_id, record.model_id or "", slot_of(record.minute)),
        rows=record.rows,
        features={name: list(bins.counts) for name, bins in record.features.items()},
        predictions={name: list(bins.counts) for name, bins in record.predictions.items()},
    )


def add_counts(session: Session, stored: Iterable[Counts]) -> None:
    """Add stored records' bin counts into their slots (one read and one write per slot)."""
    pending: dict[SlotKey, list[Counts]] = {}
    for counts in stored:
        if counts.features or counts.predictions or counts.rows:
            pending.setdefault(counts.key, []).append(counts)
    if not pending:
        return
    keys = sorted(pending)
    columns = tuple_(DriftSlot.deployment_id, DriftSlot.model_id, DriftSlot.minute)
    rows: dict[SlotKey, DriftSlot] = {}
    for start in range(0, len(keys), 100):
        query = select(DriftSlot).where(
            DriftSlot.width == SLOT_MINUTES, columns.in_(keys[start : start + 100])
        )
        for row in session.scalars(query):
            rows[(row.deployment_id, row.model_id, row.minute)] = row
    for key, batch in pending.items():
        found = rows.get(key)
        features: dict[str, list[int]] = {}
        predictions: dict[str, list[int]] = {}
        if found is not None:
            stored_features, stored_predictions = decode(found.counts)
            features, predictions = stored_features.as_dict(), stored_predictions.as_dict()
        for counts in batch:
            _add_lists(features, counts.features)
            _add_lists(predictions, counts.predictions)
        row = found or DriftSlot(
            deployment_id=key[0], model_id=key[1], width=SLOT_MINUTES, minute=key[2], rows=0
        )
        if found is None:
            session.add(row)
        row.rows = (row.rows or 0) + sum(c.rows for c in batch)
        row.counts = encode(features, predictions)


def roll_up(session: Session, before_minute: int, *, limit: int) -> int:
    """Add the 15-minute slots that start before ``before_minute`` (an hour boundary) into the
    hour slots that hold them, and delete them; at most ``limit`` a call, oldest first.

    Exact (counts add, the hour slot's own counts first) and idempotent: a slot is added and
    deleted in one transaction, so run again it is not there to add twice. Two service processes
    are safe on PostgreSQL because maintenance runs in the serialised write transaction: the
    second one waits for the first's commit, then finds nothing left to roll. A record stored
    late into a rolled-up hour makes a new 15-minute slot, rolled up by the next call; until then
    reads add both."""
    quarters = list(
        session.scalars(
            select(DriftSlot)
            .where(DriftSlot.width == SLOT_MINUTES, DriftSlot.minute < before_minute)
            .order_by(DriftSlot.minute, DriftSlot.id)
            .limit(limit)
        )
    )
    if not quarters:
        return 0
    groups: dict[SlotKey, list[DriftSlot]] = {}
    for quarter in quarters:
        key = (quarter.deployment_id, quarter.model_id, quarter.minute - quarter.minute % HOUR_MINUTES)
        groups.setdefault(key, []).append(quarter)
    keys = sorted(groups)
    columns = tuple_(DriftSlot.deployment_id, DriftSlot.model_id, DriftSlot.minute)
    hours: dict[SlotKey, DriftSlot] = {}
    for start in range(0, len(keys), 100):
        query = select(DriftSlot).where(
            DriftSlot.width == HOUR_MINUTES, columns.in_(keys[start : start + 100])
        )
        for row in session.scalars(query):
            hours[(row.deployment_id, row.model_id, row.minute)] = row
    for key, members in groups.items():
        hour = hours.get(key)
        parts = ([hour] if hour is not None else []) + members
        if hour is None:
            hour = DriftSlot(deployment_id=key[0], model_id=key[1], width=HOUR_MINUTES, minute=key[2])
            session.add(hour)
        hour.rows = sum(part.rows or 0 for part in parts)
        hour.counts = merged([part.counts for part in parts])
        for member in members:
            session.delete(member)
    return len(quarters)


def merged(blobs: Sequence[bytes]) -> bytes:
    """The sum of slots' counts as one slot: one numpy addition when they share a layout (the
    usual case), else by name, as reads add them (`_add_lists`: the first layout of a column wins)."""
    decoded = [decode(blob) for blob in blobs]
    first_features, first_predictions = decoded[0]
    same = all(
        f.names == first_features.names
        and f.sizes == first_features.sizes
        and p.names == first_predictions.names
        and p.sizes == first_predictions.sizes
        for f, p in decoded[1:]
    )
    if same:
        length = 8 + int.from_bytes(blobs[0][4:8], "big")
        total = np.sum([np.concatenate([f.values, p.values]) for f, p in decoded], axis=0, dtype=np.int64)
        return blobs[0][:length] + total.astype("<i8").tobytes()
    features: dict[str, list[int]] = {}
    predictions: dict[str, list[int]] = {}
    for f, p in decoded:
        _add_lists(features, f.as_dict())
        _add_lists(predictions, p.as_dict())
    return encode(features, predictions)


def expire(session: Session, before_minute: int) -> int:
    result: Any = session.execute(delete(DriftSlot).where(DriftSlot.minute < before_minute))
    count = getattr(result, "rowcount", 0)
    return int(count) if count and count > 0 else 0


# ---- the stored form of a slot's counts ----------------------------------------------------

MAGIC = b"SMD1"


@dataclass(frozen=True)
class Block:
    """One side of a slot (features or outputs): the columns' names and lengths, and all their
    counts in one array, so a query sums a slot with one numpy operation per layout length."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    values: np.ndarray

    def as_dict(self) -> dict[str, list[int]]:
        flat = self.values.tolist()
        out: dict[str, list[int]] = {}
        start = 0
        for name, size in zip(self.names, self.sizes, strict=True):
            out[name] = flat[start : start + size]
            start += size
        return out


def encode(features: dict[str, list[int]], predictions: dict[str, list[int]]) -> bytes:
    """``SMD1``, the header's length (4 bytes, big-endian), the header (JSON ``{"f": [feature names],
    "fs": [their lengths], "p": [output names], "ps": [...]}``), then every count as a little-endian
    int64, features first, in header order."""
    header = orjson.dumps(
        {
            "f": list(features),
            "fs": [len(c) for c in features.values()],
            "p": list(predictions),
            "ps": [len(c) for c in predictions.values()],
        }
    )
    counts = [c for side in (features, predictions) for column in side.values() for c in column]
    return MAGIC + len(header).to_bytes(4, "big") + header + np.asarray(counts, dtype="<i8").tobytes()


def decode(blob: bytes) -> tuple[Block, Block]:
    if blob[:4] != MAGIC:
        raise ValueError("not a drift slot")
    length = int.from_bytes(blob[4:8], "big")
    header = orjson.loads(blob[8 : 8 + length])
    values = np.frombuffer(blob, dtype="<i8", offset=8 + length)
    blocks = []
    start = 0
    for side in ("f", "p"):
        names, sizes = tuple(header[side]), tuple(header[side + "s"])
        end = start + sum(sizes)
        blocks.append(Block(names, sizes, values[start:end]))
        start = end
    return blocks[0], blocks[1]


# ---- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    metric: drift.Metric = drift.Metric.PSI
    min_rows: int = drift.DEFAULT_MIN_ROWS
    reference_since: dt.datetime | None = None
    reference_until: dt.datetime | None = None
    starred: tuple[str, ...] = ()
    updated_at: dt.datetime | None = None
    updated_by: str | None = None


def settings_of(session: Session, deployment_id: str) -> Settings:
    row = session.get(DriftSettings, deployment_id)
    if row is None:
        return Settings()
    return Settings(
        metric=drift.Metric(row.metric),
        min_rows=row.min_rows,
        reference_since=row.reference_since,
        reference_until=row.reference_until,
        starred=tuple(row.starred or ()),
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def save_settings(session: Session, deployment_id: str, settings: Settings, actor: str) -> Settings:
    row = session.get(DriftSettings, deployment_id)
    if row is None:
        row = DriftSettings(deployment_id=deployment_id)
        session.add(row)
    row.metric = settings.metric.value
    row.min_rows = settings.min_rows
    row.reference_since = settings.reference_since
    row.reference_until = settings.reference_until
    row.starred = list(settings.starred)
    row.updated_by = actor
    row.updated_at = utcnow()
    session.flush()
    return settings_of(session, deployment_id)


# ---- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    minute: int
    rows: int
    features: Block
    predictions: Block
    width: int = SLOT_MINUTES

    @property
    def end(self) -> int:
        return self.minute + self.width


def slots_between(
    session: Session,
    deployment_id: str,
    since_minute: int,
    until_minute: int,
    model_id: str | None = None,
) -> list[Slot]:
    """The deployment's slots that overlap [since, until), by time (an hour slot that starts
    before ``since`` included: callers widen their range to `covered`); the models' slots of one
    start and width are added together."""
    query = select(DriftSlot.minute, DriftSlot.width, DriftSlot.rows, DriftSlot.counts).where(
        *_overlapping(deployment_id, since_minute, until_minute)
    )
    if model_id is not None:
        query = query.where(DriftSlot.model_id == model_id)
    by_minute: dict[tuple[int, int], Slot] = {}
    for minute, width, rows, counts in session.execute(query.order_by(DriftSlot.minute)):
        if minute + width <= since_minute:
            continue
        features, predictions = decode(counts)
        found = by_minute.get((minute, width))
        if found is not None:  # two models in one slot: add (layouts that differ are not scored)
            merged_features, merged_predictions = found.features.as_dict(), found.predictions.as_dict()
            _add_lists(merged_features, features.as_dict())
            _add_lists(merged_predictions, predictions.as_dict())
            features, predictions = decode(encode(merged_features, merged_predictions))
            rows += found.rows
        by_minute[(minute, width)] = Slot(minute, rows, features, predictions, width)
    return [by_minute[k] for k in sorted(by_minute)]


def _overlapping(deployment_id: str, since_minute: int, until_minute: int) -> tuple[Any, ...]:
    """Conditions for the slots that may overlap [since, until) (on the unique key's index)."""
    return (
        DriftSlot.deployment_id == deployment_id,
        DriftSlot.minute > since_minute - HOUR_MINUTES,
        DriftSlot.minute < until_minute,
    )


def covered(slots: Sequence[Slot], since_minute: int, until_minute: int) -> tuple[int, int]:
    """[since, until) widened to the slots read (an hour slot cut by the range counts whole)."""
    if not slots:
        return since_minute, until_minute
    return min(since_minute, slots[0].minute), max(until_minute, max(s.end for s in slots))


def _add_lists(into: dict[str, list[int]], other: dict[str, list[int]]) -> None:
    """Add count lists by name; lists of another length (two baselines under one model id) are
    left out, the first one's counts kept."""
    for name, counts in other.items():
        mine = into.get(name)
        if mine is None:
            into[name] = list(counts)
        elif len(mine) == len(counts):
            into[name] = [a + b for a, b in zip(mine, counts, strict=True)]


def _totals(slots: Sequence[Slot], side: str, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """Each column's counts summed over the slots (columns of the expected length only; a column
    no slot has is absent): per slot and layout length, one gather and one addition."""
    by_size: dict[int, list[str]] = {}
    for name, size in sizes.items():
        by_size.setdefault(size, []).append(name)
    totals: dict[str, np.ndarray] = {}
    plans: dict[tuple[tuple[str, ...], tuple[int, ...], int], tuple[np.ndarray, np.ndarray]] = {}
    for size, names in by_size.items():
        total = np.zeros((len(names), size), dtype=np.int64)
        seen = np.zeros(len(names), dtype=bool)
        for slot in slots:
            block: Block = getattr(slot, side)
            plan_key = (block.names, block.sizes, size)
            plan = plans.get(plan_key)
            if plan is None:
                plan = plans[plan_key] = _plan(block, names, size)
            rows, gather = plan
            if len(rows):
                total[rows] += block.values[gather]
                seen[rows] = True
        totals.update((name, total[i]) for i, name in enumerate(names) if seen[i])
    return totals


def _plan(block: Block, names: list[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Which of ``names`` the block holds with ``size`` counts, and where its counts are."""
    starts: dict[str, int] = {}
    start = 0
    for name, length in zip(block.names, block.sizes, strict=True):
        if length == size:
            starts[name] = start
        start += length
    rows = [i for i, name in enumerate(names) if name in starts]
    offsets = np.array([starts[names[i]] for i in rows], dtype=np.intp)
    gather = offsets[:, None] + np.arange(size, dtype=np.intp)
    return np.array(rows, dtype=np.intp), gather


# ---- the answer ----------------------------------------------------------------------------


@dataclass
class Window:
    start_minute: int
    end_minute: int
    rows: int


@dataclass
class Result:
    deployment_id: str
    status: drift.DeploymentStatus
    metric: drift.Metric
    since: dt.datetime
    until: dt.datetime
    rows: int
    min_rows: int
    reference: str
    """``baseline`` (the package's) or ``window`` (the reference window in the settings)."""
    features: list[drift.ColumnDrift]
    predictions: list[drift.ColumnDrift]
    windows: list[Window] = field(default_factory=list)
    series: dict[str, list[drift.ColumnDrift]] = field(default_factory=dict)
    """Per column (``feature:<name>`` / ``prediction:<name>``), the column scored per window."""
    reason: str | None = None


class TooManyColumns(ValueError):
    """An answer that would read or score more than the service does in one request."""


MAX_COLUMN_SLOTS = 4_000_000
"""Column-slots one answer may read (about a minute of CPU at most): 1,000 columns over 41
days, 20 columns over the whole hour retention."""


def compute(
    session: Session,
    deployment: Deployment,
    since: dt.datetime,
    until: dt.datetime,
    *,
    metric: drift.Metric | None = None,
    features: Sequence[str] = (),
    model_id: str | None = None,
    windows: bool = False,
) -> Result:
    """Drift of a deployment over [since, until), widened to whole 15-minute slots."""
    settings = settings_of(session, deployment.id)
    metric = metric or settings.metric
    since_minute = slot_of(int(since.timestamp() // 60))
    until_minute = slot_end(until)
    manifest = deployment.model_package.manifest or {}
    columns = len(manifest.get("features") or []) + len(manifest.get("predictionBaseline") or {})
    if features:
        columns = min(columns, len(set(features)))
    stored = session.scalar(
        select(func.count()).where(*_overlapping(deployment.id, since_minute, until_minute))
    )
    if (stored or 0) * max(columns, 1) > MAX_COLUMN_SLOTS:
        raise TooManyColumns(
            f"{stored} slots of 15 minutes x {columns} columns is more than one answer reads "
            f"({MAX_COLUMN_SLOTS:,}): choose a shorter range or name the features wanted"
        )
    slots = slots_between(session, deployment.id, since_minute, until_minute, model_id)
    since_minute, until_minute = covered(slots, since_minute, until_minute)
    reference_slots: list[Slot] | None = None
    if settings.reference_since is not None and settings.reference_until is not None:
        reference_slots = slots_between(
            session,
            deployment.id,
            slot_of(int(settings.reference_since.timestamp() // 60)),
            slot_end(settings.reference_until),
            model_id,
        )
    importance = manifest.get("featureImportance") or {}
    starred = set(settings.starred)
    feature_specs = {
        str(f.get("name")): (manifest.get("baseline") or {}).get(str(f.get("name")), {}).get("bins")
        for f in manifest.get("features") or []
        if isinstance(f, dict)
    }
    output_specs = dict(manifest.get("predictionBaseline") or {})
    wanted = set(features)
    if wanted:
        feature_specs = {n: s for n, s in feature_specs.items() if n in wanted}
        output_specs = {n: s for n, s in output_specs.items() if n in wanted}
    if windows and len(feature_specs) + len(output_specs) > MAX_WINDOWS_COLUMNS:
        raise TooManyColumns(
            f"windows are scored for at most {MAX_WINDOWS_COLUMNS} columns; this deployment has "
            f"{len(feature_specs) + len(output_specs)}: name the features wanted"
        )
    groups = drift.group_windows([s.rows for s in slots], settings.min_rows) if windows else []
    result = Result(
        deployment_id=deployment.id,
        status=drift.DeploymentStatus.GREEN,
        metric=metric,
        since=dt.datetime.fromtimestamp(since_minute * 60, dt.UTC),
        until=dt.datetime.fromtimestamp(until_minute * 60, dt.UTC),
        rows=sum(s.rows for s in slots),
        min_rows=settings.min_rows,
        reference="window" if reference_slots is not None else "baseline",
        features=[],
        predictions=[],
        windows=[
            Window(slots[a].minute, max(s.end for s in slots[a:b]), sum(s.rows for s in slots[a:b]))
            for a, b in groups
        ],
    )
    for side, key, specs, into in (
        ("features", "feature", feature_specs, result.features),
        ("predictions", "prediction", output_specs, result.predictions),
    ):
        layouts: dict[str, drift.Layout] = {}
        for name, spec in specs.items():
            try:
                layouts[name] = drift.Layout.from_spec(spec if isinstance(spec, dict) else {})
            except ValueError:
                layouts.pop(name, None)
        sizes = {name: layout.size for name, layout in layouts.items()}
        totals = _totals(slots, side, sizes)
        references = _totals(reference_slots, side, sizes) if reference_slots is not None else {}
        per_window = [_totals(slots[a:b], side, sizes) for a, b in groups]
        for name in specs:
            weight = importance.get(name) if side == "features" else None
            weight = float(weight) if isinstance(weight, int | float) else None
            important = side == "predictions" or drift.is_important(weight, name in starred, bool(importance))
            layout = layouts.get(name)
            if layout is None:
                column = drift.ColumnDrift(name=name, metric=metric, importance=weight, important=important)
                column.reason = "the package has no monitoring bins for this column"
                into.append(column)
                continue
            reference = None
            if reference_slots is not None:
                found = references.get(name)
                reference = found if found is not None else np.zeros(layout.size, dtype=np.int64)

            def score(current: np.ndarray | None, *, name: str = name, layout: drift.Layout = layout,
                      reference: np.ndarray | None = reference, weight: float | None = weight,
                      important: bool = important) -> drift.ColumnDrift:  # fmt: skip
                return drift.score_column(
                    name,
                    layout,
                    current,
                    metric=metric,
                    min_rows=settings.min_rows,
                    reference=reference,
                    importance=weight,
                    important=important,
                )

            into.append(score(totals.get(name)))
            if windows:
                result.series[f"{key}:{name}"] = [score(window.get(name)) for window in per_window]
    result.status = drift.deployment_status([*result.features, *result.predictions])
    if not slots:
        result.reason = "no traffic counted in this range"
    elif not feature_specs and not output_specs:
        result.reason = "the package has no monitoring bins" if not wanted else "no such feature or output"
    return result


def deployment_drift_status(
    session: Session, deployment_id: str, since: dt.datetime, until: dt.datetime
) -> str:
    """The deployment's drift status over [since, until): ``green``, ``yellow`` or ``red``, with its
    own drift settings (for the alert engine; an unknown deployment is ``green``). Raises
    `TooManyColumns` for a range longer than one answer reads (weeks at 1,000 features)."""
    deployment = session.get(Deployment, deployment_id)
    if deployment is None:
        return drift.DeploymentStatus.GREEN.value
    return compute(session, deployment, since, until).status.value
