"""Data drift and prediction drift from bin counts: a pure computation, no I/O.

The prediction server counts every feature and every model output into bins fixed at package
time (``shipmate.packages.baseline``); the service adds those counts up over time. Drift
compares a window's counts with the package's baseline counts (or with a reference window of
live traffic) bin by bin, so no raw data is needed and every figure is exact.

Decisions (documented in docs/monitoring.md, "Drift"):

* The distribution compared is that of the *present* values (the missing bin is left out: a
  rise in missing values is its own signal, not counted twice). Bins empty on both sides are
  left out; for PSI a bin empty on one side counts 1 there (DataRobot's smoothing).
* Thresholds scale with the window: PSI warns at ``max(0.1, 3(k-1)/n)`` and is at risk at
  ``max(0.25, 5(k-1)/n)``, k the bins compared and n the window's present values (with a
  reference of finite size N, ``n`` is ``nN/(n+N)``, since both sides are noisy). Under no
  drift PSI is about chi-squared(k-1)/n, so these are the same tail probability whatever n.
  Jensen-Shannon distance (base 2) and Hellinger distance get the thresholds equivalent to
  the same chi-squared level: JS = sqrt(PSI / (8 ln 2)) and Hellinger = sqrt(PSI / 8).
* Windows with fewer than ``min_rows`` rows are merged with their neighbours (`group_windows`);
  a whole range below it is not scored (status ``ok``, value kept, the reason says so).
* Missing-value rate, out-of-range rate (numeric values outside the training range) and
  new-category rate are separate signals (`rate_status`): a rise of at least 5 points or a
  doubling (at least 1 point) warns, 10 points or four times (at least 2 points) is at risk,
  and either must also exceed the binomial noise of the window (3 and 5 standard errors, plus
  one row, so a few rows in a rare bin are not news).
* The deployment's status weighs drift by importance: red when an important feature (or a
  model output) is at risk, yellow when a less important one is at risk or an important one
  warns, green otherwise. Important: importance >= 0.5 (the package's permutation importance,
  largest = 1), starred by the user, or every feature when the package has no importance.

Never NaN: an empty window, an all-missing feature, a baseline without counts or a layout that
does not match give a neutral result (``ok``, ``value`` None) and a reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

DEFAULT_MIN_ROWS = 200
IMPORTANT = 0.5
"""Importance (largest feature = 1.0) from which a feature counts as important."""

PSI_WARNING, PSI_AT_RISK = 0.1, 0.25
WARNING_FACTOR, AT_RISK_FACTOR = 3.0, 5.0

RATE_WARNING = (0.05, 2.0, 0.01, 3.0)
"""(absolute rise, relative factor, least rise for the factor, standard errors) that warn."""
RATE_AT_RISK = (0.10, 4.0, 0.02, 5.0)


class Metric(StrEnum):
    PSI = "psi"
    JS = "js"
    """Jensen-Shannon distance, base 2 (0..1)."""
    HELLINGER = "hellinger"


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"
    AT_RISK = "at_risk"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Status.OK: 0, Status.WARNING: 1, Status.AT_RISK: 2}


class DeploymentStatus(StrEnum):
    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


def worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=lambda s: s.rank, default=Status.OK)


# ---- bin layouts ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layout:
    """A column's bin layout (docs/monitoring.md) and its baseline counts, if known.

    Numeric and text: ``[underflow, bins.., overflow, missing]``; categorical and boolean:
    ``[values.., other, missing]``. The last bin is always missing.
    """

    kind: str
    size: int
    baseline: tuple[int, ...] | None

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Layout:
        """From a bin spec in the manifest; raises ValueError on one that has no layout."""
        kind = str(spec.get("type", ""))
        if kind in ("numeric", "text"):
            edges = spec.get("edges") or []
            size = (len(edges) - 1 if len(edges) else 0) + 3
        elif kind in ("categorical", "boolean"):
            size = len(spec.get("values") or []) + 2
        else:
            raise ValueError(f"unknown bin type {kind!r}")
        counts = spec.get("counts")
        baseline: tuple[int, ...] | None = None
        if isinstance(counts, list) and len(counts) == size and all(_whole(c) for c in counts):
            baseline = tuple(int(c) for c in counts)
        return cls(kind=kind, size=size, baseline=baseline)

    @property
    def numeric(self) -> bool:
        return self.kind in ("numeric", "text")

    @property
    def has_edges(self) -> bool:
        return not self.numeric or self.size > 3

    def out_of_range(self, counts: Sequence[int] | np.ndarray) -> int | None:
        """Present values below or above the training range (numeric with edges only)."""
        if not self.numeric or not self.has_edges:
            return None
        return int(counts[0]) + int(counts[-2])

    def new_category(self, counts: Sequence[int] | np.ndarray) -> int | None:
        """Present values outside the baseline's categories (categorical and boolean only)."""
        return None if self.numeric else int(counts[-2])


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# ---- metrics and thresholds ----------------------------------------------------------------


def distance(metric: Metric, reference: np.ndarray, current: np.ndarray) -> tuple[float, int]:
    """The metric between two count vectors of one layout and the number of bins compared.

    Bins empty on both sides are left out. Both vectors must have at least one count.
    """
    keep = (reference + current) > 0
    ref = reference[keep].astype("float64")
    cur = current[keep].astype("float64")
    bins = int(keep.sum())
    if metric is Metric.PSI:
        ref = np.where(ref == 0, 1.0, ref)
        cur = np.where(cur == 0, 1.0, cur)
        q, p = ref / ref.sum(), cur / cur.sum()
        return float(np.sum((p - q) * np.log(p / q))), bins
    q, p = ref / ref.sum(), cur / cur.sum()
    if metric is Metric.HELLINGER:
        return min(1.0, math.sqrt(0.5 * float(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)))), bins
    m = (p + q) / 2
    divergence = 0.5 * _kl2(p, m) + 0.5 * _kl2(q, m)
    return math.sqrt(min(1.0, max(0.0, divergence))), bins


def _kl2(p: np.ndarray, m: np.ndarray) -> float:
    nz = p > 0
    return float(np.sum(p[nz] * np.log2(p[nz] / m[nz])))


def effective_rows(rows: int, reference_rows: int | None) -> float:
    """The window's size for the thresholds: with a reference of N rows, nN/(n+N)."""
    if not reference_rows:
        return float(rows)
    return rows * reference_rows / (rows + reference_rows)


def thresholds(metric: Metric, bins: int, rows: float) -> tuple[float, float]:
    """(warning, at risk) for a window of ``rows`` present values compared over ``bins`` bins."""
    free = max(bins - 1, 0)
    n = max(rows, 1.0)
    warning = max(PSI_WARNING, WARNING_FACTOR * free / n)
    at_risk = max(PSI_AT_RISK, AT_RISK_FACTOR * free / n)
    if metric is Metric.JS:
        return _js_of(warning), _js_of(at_risk)
    if metric is Metric.HELLINGER:
        return math.sqrt(warning / 8), math.sqrt(at_risk / 8)
    return warning, at_risk


def _js_of(psi: float) -> float:
    return min(1.0, math.sqrt(psi / (8 * math.log(2))))


def judge(value: float, warning: float, at_risk: float) -> Status:
    return Status.AT_RISK if value >= at_risk else Status.WARNING if value >= warning else Status.OK


def rate_status(rate: float, baseline_rate: float, rows: int) -> Status:
    """Whether a rate (missing, out of range, new category) rose beyond noise and the rule."""
    if rows <= 0:
        return Status.OK
    rise = rate - baseline_rate
    p = min(max(baseline_rate, 1.0 / rows), 0.5)
    noise = math.sqrt(p * (1 - p) / rows)
    for status, (absolute, factor, least, errors) in (
        (Status.AT_RISK, RATE_AT_RISK),
        (Status.WARNING, RATE_WARNING),
    ):
        relative = rate >= factor * baseline_rate and rise >= least
        if rise >= errors * noise + 1.0 / rows and (rise >= absolute or relative):
            return status
    return Status.OK


# ---- one column ----------------------------------------------------------------------------


@dataclass(slots=True)
class ColumnDrift:
    """One feature's (or model output's) drift over a window; ``to_json`` is the API's entry."""

    name: str
    metric: Metric
    value: float | None = None
    threshold_warning: float | None = None
    threshold_at_risk: float | None = None
    rows: int = 0
    status: Status = Status.OK
    drift_status: Status = Status.OK
    importance: float | None = None
    important: bool = False
    missing_rate: float | None = None
    out_of_range_rate: float | None = None
    new_category_rate: float | None = None
    signal_status: dict[str, Status] = field(default_factory=dict)
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "metric": self.metric.value,
            "value": self.value,
            "thresholdWarning": self.threshold_warning,
            "thresholdAtRisk": self.threshold_at_risk,
            "rows": self.rows,
            "status": self.status.value,
            "driftStatus": self.drift_status.value,
            "importance": self.importance,
            "important": self.important,
            "missingRate": self.missing_rate,
            "outOfRangeRate": self.out_of_range_rate,
            "newCategoryRate": self.new_category_rate,
            "signals": {name: status.value for name, status in self.signal_status.items()},
            "reason": self.reason,
        }


def score_column(
    name: str,
    layout: Layout,
    current: Sequence[int] | np.ndarray | None,
    *,
    metric: Metric = Metric.PSI,
    min_rows: int = DEFAULT_MIN_ROWS,
    reference: Sequence[int] | np.ndarray | None = None,
    importance: float | None = None,
    important: bool = False,
) -> ColumnDrift:
    """Drift of one column's window counts against its reference (default: the baseline)."""
    result = ColumnDrift(name=name, metric=metric, importance=importance, important=important)
    if current is None or len(current) != layout.size:
        result.reason = (
            "no traffic counted in this range"
            if current is None
            else f"the window's counts have {len(current)} bins, the baseline {layout.size} (another package)"
        )
        return result
    cur = np.asarray(current, dtype=np.int64)
    ref_source = reference if reference is not None else layout.baseline
    result.rows = rows = int(cur.sum())
    if rows == 0:
        result.reason = "no rows in this range"
        return result
    result.missing_rate = int(cur[-1]) / rows
    present = rows - int(cur[-1])
    outside, other = layout.out_of_range(cur), layout.new_category(cur)
    if present:
        result.out_of_range_rate = None if outside is None else outside / present
        result.new_category_rate = None if other is None else other / present
    if ref_source is None or len(ref_source) != layout.size or sum(ref_source) == 0:
        result.reason = (
            "the package has no baseline counts for this column (built before monitoring bins)"
            if reference is None
            else "the reference window has no rows for this column"
        )
        return result
    ref = np.asarray(ref_source, dtype=np.int64)
    ref_rows = int(ref.sum())
    ref_present = ref_rows - int(ref[-1])
    signals = {"missing": rate_status(result.missing_rate, int(ref[-1]) / ref_rows, rows)}
    if ref_present and present:
        if result.out_of_range_rate is not None:
            base = (layout.out_of_range(ref) or 0) / ref_present
            signals["outOfRange"] = rate_status(result.out_of_range_rate, base, present)
        if result.new_category_rate is not None:
            base = (layout.new_category(ref) or 0) / ref_present
            signals["newCategory"] = rate_status(result.new_category_rate, base, present)
    result.signal_status = signals
    reasons = [
        f"{signal} rate {status.value.replace('_', ' ')}"
        for signal, status in signals.items()
        if status is not Status.OK
    ]
    if present == 0 or ref_present == 0:
        empty = "no present values to compare" if present == 0 else "the reference has no present values"
        reasons.insert(0, empty)
    elif not layout.has_edges:
        reasons.insert(0, "the baseline had no finite value: only the missing rate is watched")
    else:
        value, bins = distance(metric, ref[:-1], cur[:-1])
        n = effective_rows(present, ref_present)
        warning, at_risk = thresholds(metric, bins, n)
        result.value, result.threshold_warning, result.threshold_at_risk = value, warning, at_risk
        if present < min_rows:
            reasons.insert(0, f"{present} values, fewer than min_rows ({min_rows}): not scored")
        else:
            result.drift_status = judge(value, warning, at_risk)
    result.status = worst([result.drift_status, *signals.values()])
    result.reason = "; ".join(reasons) or None
    return result


# ---- windows and the deployment ------------------------------------------------------------


def group_windows(rows: Sequence[int], min_rows: int) -> list[tuple[int, int]]:
    """Consecutive windows merged so each group has at least ``min_rows`` rows, from the newest
    backwards (so the latest group is the one that is complete); [start, end) indices, in order.
    A leading remainder below ``min_rows`` stays a group of its own (too small to be scored)."""
    groups: list[tuple[int, int]] = []
    end = len(rows)
    total = 0
    for index in range(len(rows) - 1, -1, -1):
        total += rows[index]
        if total >= min_rows:
            groups.append((index, end))
            end, total = index, 0
    if end > 0:
        groups.append((0, end))
    return groups[::-1]


def deployment_status(columns: Iterable[ColumnDrift]) -> DeploymentStatus:
    """Red: an important column at risk; yellow: a less important one at risk or an important one
    warning; green otherwise."""
    status = DeploymentStatus.GREEN
    for column in columns:
        if column.status is Status.AT_RISK and column.important:
            return DeploymentStatus.RED
        if column.status is Status.AT_RISK or (column.status is Status.WARNING and column.important):
            status = DeploymentStatus.YELLOW
    return status


def is_important(importance: float | None, starred: bool, package_has_importance: bool) -> bool:
    return starred or not package_has_importance or (importance is not None and importance >= IMPORTANT)
