"""Monitoring bins fixed at package time: what the prediction server counts traffic into.

Every feature and every model output gets a *bin spec* (JSON, stored in the manifest):
the layout its `BinCounts.counts` follow in every monitoring record, and the baseline's
count per bin, so drift is a comparison of two count vectors of the same length.

- numeric: ``{"type": "numeric", "edges": [e0..ek], "counts": [...]}``; counts are
  ``[underflow, bin_1..bin_k, overflow, missing]``. Inner bin i is ``[e(i-1), e(i))``, the
  last one closed ``[e(k-1), ek]``; underflow is ``< e0``, overflow ``> ek``. The edges are
  the sample's minimum, its quantiles at 1/k..(k-1)/k and its maximum, with repeated
  values merged (a feature with few distinct values gets fewer bins).
- categorical / boolean: ``{"type": ..., "values": [v1..vm], "counts": [...]}``; counts are
  ``[v1..vm, other, missing]``. Values are strings; booleans are ``["false", "true"]``.
- text: numeric bins over the text's length in characters, ``{"type": "text", "measure":
  "length", ...}``.

Baseline counts may be ``null`` (unknown) for bins derived from an older package (see
`bins_for`). Pure functions over numpy arrays; the layout is documented in docs/monitoring.md.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shipmate.packages.manifest import Feature, FeatureType, Manifest, TargetType

log = logging.getLogger(__name__)

DEFAULT_NUMERIC_BINS = 10
MIN_NUMERIC_BINS, MAX_NUMERIC_BINS = 5, 20
MAX_CATEGORIES = 50
CATEGORY_COVERAGE = 0.95
OUTPUT_SAMPLE_ROWS = 10_000
IMPORTANCE_ROWS = 1_000
IMPORTANCE_BUDGET_S = 10.0
BOOLEAN_VALUES = ("false", "true")
_TRUE = frozenset({"true", "1", "yes", "t", "y", "1.0"})
_FALSE = frozenset({"false", "0", "no", "f", "n", "0.0"})


def _count_list(counts: np.ndarray) -> list[int]:
    return [int(c) for c in counts]


# ---- numeric -------------------------------------------------------------------------------


def numeric_edges(values: np.ndarray, bins: int = DEFAULT_NUMERIC_BINS) -> list[float]:
    """Equal-mass edges of finite ``values``: min, the inner quantiles and max (all of them values
    of the sample, so a feature with few distinct values gets no invented edges), duplicates merged."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    qs = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1), method="inverted_cdf")  # sample values
    edges = sorted({float(q) for q in qs})
    return edges if len(edges) > 1 else [edges[0], edges[0]]


def numeric_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin index of every value in the numeric layout (vectorised; NaN is missing)."""
    k = max(len(edges) - 1, 0)
    if len(edges) == 0:
        index = np.zeros(values.shape, dtype=np.intp)
        index[np.isnan(values)] = 2
        return index
    index = np.searchsorted(edges[:-1], values, side="right")  # < e0 -> 0, [e(i-1), e(i)) -> i
    index[values > edges[-1]] = k + 1
    index[np.isnan(values)] = k + 2
    return index


def numeric_layout_size(edges: list[float] | np.ndarray) -> int:
    return (len(edges) - 1 if len(edges) else 0) + 3


def numeric_bins(
    values: np.ndarray, bins: int = DEFAULT_NUMERIC_BINS, kind: str = "numeric"
) -> dict[str, Any]:
    values = values.astype("float64", copy=False)
    values = np.where(np.isinf(values), np.nan, values)  # an infinite value counts as missing
    edges = numeric_edges(values, bins)
    index = numeric_index(values, np.asarray(edges, dtype="float64"))
    counts = np.bincount(index, minlength=numeric_layout_size(edges))
    return {"type": kind, "edges": edges, "counts": _count_list(counts)}


# ---- categorical ---------------------------------------------------------------------------


def top_values(present: pd.Series) -> list[str]:
    """The most frequent values, up to 50, stopping once they cover 95 % of the present ones."""
    freq = present.astype(str).value_counts()
    if freq.empty:
        return []
    share = freq.cumsum() / freq.sum()
    needed = int(np.searchsorted(share.to_numpy(), CATEGORY_COVERAGE, side="left")) + 1
    return [str(v) for v in freq.index[: min(needed, MAX_CATEGORIES)]]


def categorical_index(values: np.ndarray | pd.Series, categories: pd.Index) -> np.ndarray:
    """The bin index of every value in the categorical layout (``other`` = m, missing = m + 1)."""
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    missing = series.isna().to_numpy()
    index = categories.get_indexer(series.astype(str))
    index[index < 0] = len(categories)
    index[missing] = len(categories) + 1
    return np.asarray(index, dtype=np.intp)


def boolean_strings(values: np.ndarray | pd.Series) -> pd.Series:
    """Booleans, 0/1 and the usual words as ``"false"``/``"true"``; anything else kept (``other``)."""
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)

    def word(v: Any) -> Any:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        text = str(v).strip().lower()
        return "true" if text in _TRUE else "false" if text in _FALSE else text

    return series.map(word)


def categorical_bins(series: pd.Series, kind: str = "categorical") -> dict[str, Any]:
    if kind == "boolean":
        series = boolean_strings(series)
        values = list(BOOLEAN_VALUES)
    else:
        values = top_values(series.dropna())
    index = categorical_index(series, pd.Index(values))
    counts = np.bincount(index, minlength=len(values) + 2)
    return {"type": kind, "values": values, "counts": _count_list(counts)}


def text_lengths(values: np.ndarray | pd.Series) -> np.ndarray:
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    lengths = np.array(series.astype(str).str.len(), dtype="float64")
    lengths[series.isna().to_numpy()] = np.nan
    return np.asarray(lengths)


# ---- features and outputs ------------------------------------------------------------------


def feature_bins(series: pd.Series, kind: FeatureType, bins: int = DEFAULT_NUMERIC_BINS) -> dict[str, Any]:
    """The bin spec of one feature from its training sample."""
    if kind is FeatureType.NUMERIC:
        return numeric_bins(pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64"), bins)
    if kind is FeatureType.TEXT:
        spec = numeric_bins(text_lengths(series), bins, kind="text")
        spec["measure"] = "length"
        return spec
    return categorical_bins(series, "boolean" if kind is FeatureType.BOOLEAN else "categorical")


def check_bin_count(bins: int) -> int:
    if not MIN_NUMERIC_BINS <= bins <= MAX_NUMERIC_BINS:
        raise ValueError(
            f"monitoring bins must be between {MIN_NUMERIC_BINS} and {MAX_NUMERIC_BINS}, got {bins}"
        )
    return bins


def predicted_labels(probabilities: np.ndarray, manifest: Manifest) -> np.ndarray:
    """The index of the predicted class of every row: for a binary model the positive class only
    when its probability *exceeds* the threshold (a tie is negative, as scikit-learn's ``predict``
    decides 0.5 and as DataRobot documents its prediction threshold); else the first largest.
    The one rule for serving, monitoring and the baseline."""
    if manifest.target_type is TargetType.BINARY:
        threshold = manifest.threshold if manifest.threshold is not None else 0.5
        return (probabilities[:, 1] > threshold).astype(np.intp)
    return np.asarray(np.argmax(probabilities, axis=1), dtype=np.intp)


def output_bins(
    manifest: Manifest,
    probabilities: np.ndarray | None,
    values: np.ndarray | None,
    bins: int = DEFAULT_NUMERIC_BINS,
) -> dict[str, dict[str, Any]]:
    """The output's bin specs: ``p:<label>`` and ``label`` for classifiers, ``value`` for regression."""
    if probabilities is not None:
        labels = [str(label) for label in manifest.class_labels or []]
        out = {f"p:{label}": numeric_bins(probabilities[:, i], bins) for i, label in enumerate(labels)}
        counts = np.bincount(predicted_labels(probabilities, manifest), minlength=len(labels))
        out["label"] = {"type": "categorical", "values": labels, "counts": [*_count_list(counts), 0, 0]}
        return out
    assert values is not None
    return {"value": numeric_bins(values, bins)}


def permutation_importance(
    score: Callable[[pd.DataFrame], np.ndarray], frame: pd.DataFrame, seed: int = 0
) -> dict[str, float]:
    """How much the model's output moves when one feature's values are shuffled, per feature.

    The sample carries no target, so this is the mean absolute change of the output (a
    class's probabilities, or the value) rather than a loss; scaled so the largest is 1.
    """
    rng = np.random.default_rng(seed)
    base = score(frame)
    raw: dict[str, float] = {}
    for name in frame.columns:
        shuffled = frame.copy()
        shuffled[name] = rng.permutation(shuffled[name].to_numpy())
        raw[str(name)] = float(np.mean(np.abs(score(shuffled) - base)))
    top = max(raw.values(), default=0.0)
    return {name: (value / top if top > 0 else 0.0) for name, value in raw.items()}


def importance_affordable(seconds_per_score: float, features: int) -> bool:
    """Whether permutation importance fits its time budget (one scoring per feature)."""
    return seconds_per_score * (features + 1) <= IMPORTANCE_BUDGET_S


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


# ---- reading a manifest --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MonitoringBaseline:
    """The bins one model's traffic is counted into: per feature and per output column."""

    features: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    derived: bool
    """True when the package predates stored bins and they were derived from its quantiles."""


_LEGACY_QUANTILES = (("min", 0.0), ("p5", 0.05), ("p25", 0.25), ("p50", 0.5), ("p75", 0.75), ("p95", 0.95))


def _legacy_numeric(summary: dict[str, Any]) -> dict[str, Any]:
    """Numeric bins from an older package's min, quantiles and max: the baseline count of each
    bin is the quantile mass between its edges, times the present count (an estimate)."""
    quantiles = summary.get("quantiles") or {}
    points = [
        (summary.get("min") if key == "min" else quantiles.get(key), mass) for key, mass in _LEGACY_QUANTILES
    ]
    points.append((summary.get("max"), 1.0))
    known = [(float(v), mass) for v, mass in points if v is not None]
    present = int(summary.get("count", 0)) - int(summary.get("missing", 0))
    edges: list[float] = []
    masses: list[float] = []
    for value, mass in known:
        if edges and value <= edges[-1]:
            continue  # a repeated edge: values equal to it fall in the bin it starts
        edges.append(value)
        masses.append(mass)
    if len(edges) == 1:
        edges.append(edges[0])
        masses.append(1.0)
    inner = [round((b - a) * present) for a, b in itertools.pairwise(masses)]
    return {
        "type": "numeric",
        "edges": edges,
        "counts": [0, *inner, 0, int(summary.get("missing", 0))] if edges else [present, 0, 0],
    }


def _legacy_feature(feature: Feature, summary: dict[str, Any]) -> dict[str, Any]:
    missing = int(summary.get("missing", 0))
    present = int(summary.get("count", 0)) - missing
    if feature.type is FeatureType.NUMERIC:
        return _legacy_numeric(summary)
    if feature.type is FeatureType.BOOLEAN:
        rate = summary.get("trueRate")
        if rate is None:
            return {"type": "boolean", "values": list(BOOLEAN_VALUES), "counts": None}
        trues = round(float(rate) * present)
        return {
            "type": "boolean",
            "values": list(BOOLEAN_VALUES),
            "counts": [present - trues, trues, 0, missing],
        }
    if feature.type is FeatureType.TEXT:
        mean = summary.get("meanLength")
        edges = [0.0, float(mean)] if mean else [0.0, 0.0]
        return {"type": "text", "measure": "length", "edges": edges, "counts": None}
    top: dict[str, int] = summary.get("top") or {}
    return {
        "type": "categorical",
        "values": list(top),
        "counts": [*(int(c) for c in top.values()), int(summary.get("other", 0)), missing],
    }


def _legacy_outputs(manifest: Manifest) -> dict[str, dict[str, Any]]:
    """Older packages stored no output baseline: probabilities get fixed tenths, labels their
    classes (baseline counts unknown); regression values get no bins, only their moments."""
    if manifest.target_type.is_classification:
        labels = [str(label) for label in manifest.class_labels or []]
        tenths = [i / 10 for i in range(11)]
        out: dict[str, dict[str, Any]] = {
            f"p:{label}": {"type": "numeric", "edges": tenths, "counts": None} for label in labels
        }
        out["label"] = {"type": "categorical", "values": labels, "counts": None}
        return out
    return {"value": {"type": "numeric", "edges": [], "counts": None}}


def bins_for(manifest: Manifest) -> MonitoringBaseline:
    """The monitoring bins of a package: the stored ones, or for a package built before bins
    were stored, bins derived from the quantiles and frequencies it does store."""
    stored = {f.name: (manifest.baseline.get(f.name) or {}).get("bins") for f in manifest.features}
    outputs = manifest.prediction_baseline
    if all(spec is not None for spec in stored.values()) and outputs:
        return MonitoringBaseline(
            features={name: spec for name, spec in stored.items() if spec is not None},
            outputs=dict(outputs),
            derived=False,
        )
    features = {
        f.name: stored[f.name] or _legacy_feature(f, manifest.baseline.get(f.name) or {})
        for f in manifest.features
    }
    return MonitoringBaseline(
        features=features, outputs=dict(outputs) or _legacy_outputs(manifest), derived=True
    )
