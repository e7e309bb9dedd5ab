"""Features and the training-data baseline, inferred from a sample (pure functions).

The baseline summarises each feature's distribution at training time so drift can
be measured later: numeric features keep quantiles and a histogram, categorical
ones their most frequent values, text its length, boolean its true rate.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from shipmate.packages.errors import PackageError
from shipmate.packages.manifest import Feature, FeatureType

_TOP_CATEGORIES = 20
_HISTOGRAM_BINS = 10
_TEXT_MIN_MEAN_WORDS = 4.0


def as_frame(X: Any, feature_names: list[str] | None = None) -> pd.DataFrame:
    """A DataFrame view of a training sample (DataFrame, ndarray or list of rows)."""
    if isinstance(X, pd.DataFrame):
        frame = X
    else:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise PackageError(f"the sample must be 2-dimensional (rows x features), got shape {arr.shape}")
        names = feature_names or [f"f{i}" for i in range(arr.shape[1])]
        if len(names) != arr.shape[1]:
            raise PackageError(f"{len(names)} feature names given for {arr.shape[1]} columns")
        frame = pd.DataFrame(arr, columns=names)
    if frame.empty:
        raise PackageError("the training sample is empty; at least one row is needed to validate the model")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def infer_feature_type(series: pd.Series) -> FeatureType:
    if pd.api.types.is_bool_dtype(series):
        return FeatureType.BOOLEAN
    if pd.api.types.is_numeric_dtype(series):
        return FeatureType.NUMERIC
    values = series.dropna().astype(str)
    if len(values) and values.str.split().str.len().mean() >= _TEXT_MIN_MEAN_WORDS:
        return FeatureType.TEXT
    return FeatureType.CATEGORICAL


def infer_features(frame: pd.DataFrame) -> list[Feature]:
    return [Feature(name=str(c), type=infer_feature_type(frame[c])) for c in frame.columns]


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def summarize(series: pd.Series, kind: FeatureType) -> dict[str, Any]:
    """The baseline of one feature (JSON-ready)."""
    n = len(series)
    missing = int(series.isna().sum())
    out: dict[str, Any] = {"count": n, "missing": missing}
    present = series.dropna()
    if kind is FeatureType.NUMERIC:
        values = pd.to_numeric(present, errors="coerce").dropna().astype("float64").to_numpy()
        values = values[np.isfinite(values)]
        if len(values):
            qs = np.quantile(values, [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
            counts, edges = np.histogram(values, bins=_HISTOGRAM_BINS)
            out.update(
                mean=_finite(values.mean()),
                std=_finite(values.std()),
                min=_finite(qs[0]),
                max=_finite(qs[-1]),
                quantiles={
                    k: _finite(v) for k, v in zip(("p5", "p25", "p50", "p75", "p95"), qs[1:-1], strict=True)
                },
                histogram={"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
            )
    elif kind is FeatureType.BOOLEAN:
        out["trueRate"] = float(present.astype(bool).mean()) if len(present) else None
    elif kind is FeatureType.TEXT:
        lengths = present.astype(str).str.len()
        out["meanLength"] = float(lengths.mean()) if len(lengths) else None
    else:
        freq = present.astype(str).value_counts()
        out["distinct"] = len(freq)
        top = freq.iloc[:_TOP_CATEGORIES]
        out["top"] = {str(k): int(v) for k, v in top.items()}
        out["other"] = int(freq.iloc[_TOP_CATEGORIES:].sum())
    return out


def compute_baseline(frame: pd.DataFrame, features: list[Feature]) -> dict[str, dict[str, Any]]:
    return {f.name: summarize(frame[f.name], f.type) for f in features}


def probe_frame(features: list[Feature], baseline: dict[str, dict[str, Any]], rows: int = 2) -> pd.DataFrame:
    """A few plausible rows built from the baseline, to check a loaded model scores at all."""
    columns: dict[str, list[Any]] = {}
    for f in features:
        b = baseline.get(f.name, {})
        if f.type is FeatureType.NUMERIC:
            lo, hi = b.get("min"), b.get("max")
            lo = 0.0 if lo is None else lo
            hi = lo if hi is None else hi
            columns[f.name] = list(np.linspace(lo, hi, rows))
        elif f.type is FeatureType.BOOLEAN:
            columns[f.name] = [i % 2 == 0 for i in range(rows)]
        else:
            top = list((b.get("top") or {"": 0}).keys())
            columns[f.name] = [top[i % len(top)] for i in range(rows)]
    return pd.DataFrame(columns)
