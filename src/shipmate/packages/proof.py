"""Proving a faster scorer against the model's own public method before it serves.

A compiled scorer (`shipmate.packages.compiled`) is used only when, on the package's
probe rows (built from its baseline) and on generated edge rows — a missing value in
each feature, an unseen category in each categorical feature, inputs whose values, once
through the preprocessing, are the last to go left and the first to go right at split
thresholds the probe rows reach — it predicts the same label for every row (each batch
whole and each row alone) and gives probabilities or values within `TOLERANCE` of the
public method. Where the
public method refuses a row, the candidate must refuse it too (it then hands the batch
to the public method, whose error the client sees).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from shipmate.packages.compiled import is_float_check
from shipmate.packages.manifest import FeatureType, Manifest, TargetType
from shipmate.packages.schema import probe_frame

TOLERANCE = 1e-6
"""Largest difference allowed between a compiled scorer's output and the public method's."""

UNSEEN = "__shipmate_unseen__"
_THRESHOLDS_PER_FEATURE = 8


class ScorerKind(StrEnum):
    """What scores a model's requests (shown by ``/info`` and ``shipmate package inspect``)."""

    ORIGINAL = "original"  # the model's public methods
    DIRECT = "direct"  # the public method minus its input checks (sklearn_direct), exactly equal
    COMPILED = "compiled"  # a compiled scorer proven within TOLERANCE (compiled.py)
    NATIVE = "native"  # a native booster (XGBoost, LightGBM) through its own predict


@dataclass(frozen=True, slots=True)
class Scoring:
    """Which scorer serves a model, the largest difference measured against the public
    method on the proof rows, and why (e.g. why a model was not compiled)."""

    scorer: ScorerKind
    max_difference: float | None = None
    note: str = ""

    def with_note(self, note: str) -> Scoring:
        return replace(self, note=note)

    def to_json(self) -> dict[str, Any]:
        """The documented form (``/info`` ``scoring``, the manifest's ``scoring``)."""
        return {"scorer": str(self.scorer), "maxDifference": self.max_difference, "note": self.note}


@dataclass(frozen=True, slots=True)
class Proof:
    passed: bool
    max_difference: float
    rows: int
    summary: str


def _labels(out: np.ndarray, manifest: Manifest) -> np.ndarray | None:
    if out.ndim != 2:
        return None
    if manifest.target_type is TargetType.BINARY:
        return np.asarray(out[:, 1] > (manifest.threshold or 0.5))
    return np.asarray(out.argmax(axis=1))


def _rows_of(batch: Any) -> list[Any]:
    """A batch cut into one-row batches (matrices, DataFrames or runtime.Columns)."""
    if isinstance(batch, np.ndarray):
        return [batch[i : i + 1] for i in range(len(batch))]
    if isinstance(batch, pd.DataFrame):
        return [batch.iloc[i : i + 1] for i in range(len(batch))]
    return [type(batch)({k: v[i : i + 1] for k, v in batch.data.items()}, 1) for i in range(len(batch))]


def prove(
    original: Callable[[Any], np.ndarray],
    candidate: Callable[[Any], np.ndarray],
    batches: Sequence[Any],
    manifest: Manifest,
) -> Proof:
    """Compare ``candidate`` with ``original`` batch by batch (row by row where the original
    refuses a batch, so one refused row does not hide the others)."""
    worst, rows, pending = 0.0, 0, list(batches)
    while pending:
        batch = pending.pop(0)
        try:
            expected = original(batch)
        except Exception:
            if len(batch) > 1:
                pending[:0] = _rows_of(batch)
                continue
            try:
                candidate(batch)
            except Exception:
                continue  # both refuse the row: the public method's error is what the client gets
            return Proof(False, worst, rows, "it scores a row the model refuses")
        try:
            got = candidate(batch)
        except Exception as exc:
            return Proof(False, worst, rows, f"it raised {type(exc).__name__} where the model scores: {exc}")
        if got.shape != expected.shape:
            return Proof(False, worst, rows, f"output shape {got.shape}, the model's {expected.shape}")
        labels, expected_labels = _labels(got, manifest), _labels(expected, manifest)
        if labels is not None and expected_labels is not None and not np.array_equal(labels, expected_labels):
            return Proof(False, worst, rows, "a different predicted label")
        if not np.array_equal(np.isnan(got), np.isnan(expected)):
            return Proof(False, worst, rows, "missing scores differ")
        diff = float(np.nanmax(np.abs(got - expected))) if got.size else 0.0
        worst, rows = max(worst, diff), rows + len(batch)
        if not diff <= TOLERANCE:
            return Proof(False, worst, rows, f"a difference of {diff:.3g} (over {TOLERANCE:g})")
        if len(batch) > 1:  # a scorer may take another path for one row than for many
            for i, one in enumerate(_rows_of(batch)):
                failed = _differs(candidate, one, expected[i : i + 1], manifest)
                if failed:
                    return Proof(False, worst, rows, f"scored alone, a row gives {failed}")
    return Proof(True, worst, rows, f"{rows} proof rows, largest difference {worst:.3g}")


def _differs(
    candidate: Callable[[Any], np.ndarray], row: Any, expected: np.ndarray, manifest: Manifest
) -> str:
    """What is wrong with ``candidate``'s score of one row (empty when it matches)."""
    try:
        got = candidate(row)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    labels, expected_labels = _labels(got, manifest), _labels(expected, manifest)
    if got.shape != expected.shape or not np.array_equal(np.isnan(got), np.isnan(expected)):
        return "a different output"
    if labels is not None and expected_labels is not None and not np.array_equal(labels, expected_labels):
        return "a different predicted label"
    diff = float(np.nanmax(np.abs(got - expected))) if got.size else 0.0
    return "" if diff <= TOLERANCE else f"a difference of {diff:.3g} (over {TOLERANCE:g})"


def edge_inputs(manifest: Manifest, estimator: Any, *, with_missing: bool) -> list[pd.DataFrame]:
    """The proof's batches: probe rows from the baseline, then edge rows (see the module)."""
    probe = probe_frame(manifest.features, manifest.baseline, rows=8)
    batches = [probe]
    base = probe.iloc[[0]]
    edges: list[pd.DataFrame] = []
    for f in manifest.features:
        if with_missing:
            row = base.copy()
            row[f.name] = row[f.name].astype(object)
            row.loc[row.index[0], f.name] = np.nan if f.type is FeatureType.NUMERIC else None
            edges.append(row)
        if f.type in (FeatureType.CATEGORICAL, FeatureType.TEXT):
            row = base.copy()
            row[f.name] = UNSEEN
            edges.append(row)
    if with_missing:
        gaps = base.copy().astype(object)
        gaps.loc[gaps.index[0], :] = None
        edges.append(gaps)
    edges.extend(_threshold_rows(manifest, estimator, probe))
    if edges:
        batches.append(pd.concat(edges, ignore_index=True))
    return batches


def _threshold_rows(manifest: Manifest, estimator: Any, probe: pd.DataFrame) -> list[pd.DataFrame]:
    """Rows whose numbers land on split thresholds of the first trees and just either side,
    once through the preprocessing. Each threshold is one a probe row meets on its way down a
    tree (the first node on its path that reads that column), so the row, changed in that
    column only, still reaches the node; the rows are the largest input whose preprocessed
    value goes left and the next float, which goes right (read directly, the threshold
    itself and its neighbours too)."""
    traced = _origins(estimator, manifest.feature_names)
    if traced is None:
        return []
    final, origins = traced
    reads = _final_input(estimator, final, probe)
    if reads is None:
        return []
    as_float32 = not type(final).__name__.startswith("HistGradientBoosting")  # what the trees compare
    numeric = {f.name for f in manifest.features if f.type is FeatureType.NUMERIC}
    taken: dict[int, list[float]] = {}
    rows: list[pd.DataFrame] = []
    for tree in _first_trees(final):
        for i, values in enumerate(reads):
            for j, t in _path(tree, values, as_float32):
                origin = origins[j] if j < len(origins) else None
                seen = taken.setdefault(j, [])
                if (
                    origin is None
                    or origin[0] not in numeric
                    or t in seen
                    or len(seen) >= _THRESHOLDS_PER_FEATURE
                ):
                    continue
                seen.append(t)
                name, forward = origin
                points = _crossing(forward, t, as_float32)
                if forward is _identity:
                    points += [t, float(np.nextafter(t, -np.inf)), float(np.nextafter(t, np.inf))]
                for v in dict.fromkeys(points):
                    row = probe.iloc[[i]].copy()
                    row[name] = float(v)
                    rows.append(row)
    return rows


def _final_input(estimator: Any, final: Any, probe: pd.DataFrame) -> np.ndarray | None:
    """The matrix the final estimator reads for the probe rows (scikit-learn's own transforms)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data: Any = probe
            if final is not estimator:
                data = estimator[:-1].transform(probe)
            own = getattr(final, "_preprocessor", None)
            if own is not None and type(final).__name__.startswith("HistGradientBoosting"):
                data = own.transform(data)
            if hasattr(data, "toarray"):
                data = data.toarray()
            return np.asarray(data, dtype=np.float64)
    except Exception:  # the probe rows do not go through: no threshold rows
        return None


@dataclass(frozen=True, slots=True)
class _Tree:
    """One tree's nodes: children (-1 at a leaf, or where this walk stops), feature, threshold,
    and where a missing value goes."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray


def _first_trees(estimator: Any, count: int = 10) -> list[_Tree]:
    found = getattr(estimator, "estimators_", None)
    members = [estimator] if found is None else list(np.ravel(np.asarray(found, dtype=object)))
    out: list[_Tree] = []
    for member in members[:count]:
        inner = getattr(member, "tree_", None)
        if inner is not None and hasattr(inner, "children_left"):
            out.append(
                _Tree(
                    inner.children_left,
                    inner.children_right,
                    inner.feature,
                    inner.threshold,
                    np.asarray(inner.missing_go_to_left, dtype=bool),
                )
            )
    for predictors in getattr(estimator, "_predictors", [])[:count]:  # HistGradientBoosting
        for predictor in predictors:
            nodes = predictor.nodes
            stop = (nodes["is_leaf"] != 0) | (nodes["is_categorical"] != 0)
            out.append(
                _Tree(
                    np.where(stop, -1, nodes["left"].astype(np.int64)),
                    nodes["right"],
                    nodes["feature_idx"],
                    nodes["num_threshold"],
                    nodes["missing_go_to_left"].astype(bool),
                )
            )
    return out


def _path(tree: _Tree, values: np.ndarray, as_float32: bool) -> list[tuple[int, float]]:
    """The (column, threshold) of the first node on ``values``' path reading each column."""
    out: dict[int, float] = {}
    node = 0
    while tree.left[node] >= 0:
        j, t = int(tree.feature[node]), float(tree.threshold[node])
        out.setdefault(j, t)
        x = float(np.float32(values[j])) if as_float32 else float(values[j])
        goes_left = bool(tree.missing_left[node]) if x != x else x <= t
        node = int(tree.left[node] if goes_left else tree.right[node])
    return list(out.items())


Forward = Callable[[np.ndarray], np.ndarray]
"""An input column's values → the values the final estimator reads for it (float64)."""
Origin = tuple[str, Forward] | None
"""The input column a final column comes from and how; ``None``: not one invertible number."""


def _identity(values: np.ndarray) -> np.ndarray:
    return values


def _origins(estimator: Any, names: Sequence[str]) -> tuple[Any, list[Origin]] | None:
    """The final estimator of ``estimator`` and, for each column it reads, where it comes from;
    ``None`` when a step is not one whose numeric columns can be traced."""
    from sklearn.pipeline import Pipeline

    if type(estimator) is not Pipeline:
        return _final_origins(estimator, [(n, _identity) for n in names])
    steps = [s for _, s in estimator.steps if s not in (None, "passthrough")]
    fitted = getattr(estimator, "feature_names_in_", None)
    origins: list[Origin] | None = [(str(n), _identity) for n in (names if fitted is None else fitted)]
    for step in steps[:-1]:
        origins = _through(step, origins) if origins is not None else None
    return None if origins is None else _final_origins(steps[-1], origins)


def _final_origins(final: Any, origins: list[Origin]) -> tuple[Any, list[Origin]] | None:
    """Through the preprocessor a ``HistGradientBoosting*`` model with categorical features runs
    first (its trees read the categories' codes, then the numbers)."""
    own = getattr(final, "_preprocessor", None)
    if own is None or not type(final).__name__.startswith("HistGradientBoosting"):
        return final, origins
    traced = _through(own, origins)
    return None if traced is None else (final, traced)


def _then(origin: Origin, step: Callable[[np.ndarray], np.ndarray]) -> Origin:
    if origin is None:
        return None
    name, forward = origin
    return name, (step if forward is _identity else lambda v: step(forward(v)))


def _through(step: Any, origins: list[Origin]) -> list[Origin] | None:
    """``origins`` after one fitted transformer (as `compiled` computes it, in float64)."""
    kind = type(step).__name__ if type(step).__module__.startswith("sklearn.") else ""
    if kind == "Pipeline":
        out: list[Origin] | None = origins
        for inner in [s for _, s in step.steps if s not in (None, "passthrough")]:
            out = _through(inner, out) if out is not None else None
        return out
    if kind == "ColumnTransformer":
        out = []
        for name, trans, _ in step.transformers_:
            picked = [origins[int(i)] for i in step._transformer_to_input_indices[name]]
            if isinstance(trans, str):
                if trans == "drop":
                    continue
                if trans != "passthrough":
                    return None
                part: list[Origin] | None = picked
            else:
                part = _through(trans, picked)
            if part is None:
                return None
            out.extend(part)
        return out
    if kind == "SimpleImputer":
        dropped = any(isinstance(s, float) and np.isnan(s) for s in list(step.statistics_))
        return None if step.add_indicator or (dropped and not step.keep_empty_features) else origins
    if kind == "FunctionTransformer":
        return origins if step.func is None or is_float_check(step.func) else None
    if kind == "StandardScaler":
        mean = step.mean_ if step.with_mean else np.zeros(len(origins))
        scale = step.scale_ if step.with_std else np.ones(len(origins))
        return [_then(o, _standardize(m, s)) for o, m, s in zip(origins, mean, scale, strict=True)]
    if kind == "MinMaxScaler":
        low, high = step.feature_range if step.clip else (-np.inf, np.inf)
        return [
            _then(o, _rescale(s, m, low, high))
            for o, s, m in zip(origins, step.scale_, step.min_, strict=True)
        ]
    if kind == "OneHotEncoder":  # categories: covered by the category rows
        return [None] * sum(len(c) for c in step.categories_)
    if kind == "OrdinalEncoder":
        return [None] * len(step.categories_)
    return None


def _standardize(mean: float, scale: float) -> Forward:
    return lambda v: (v - mean) / scale  # StandardScaler's arithmetic, in its order


def _rescale(scale: float, low: float, clip_low: float, clip_high: float) -> Forward:
    return lambda v: np.clip(v * scale + low, clip_low, clip_high)  # MinMaxScaler's


def _crossing(forward: Forward, threshold: float, as_float32: bool) -> list[float]:
    """The largest input whose value after ``forward`` goes left at ``threshold`` (``<=``, after a
    float32 cast when the trees read float32), and the next float up, which goes right: found by
    bisection over the ordered float64 values. Empty when no finite input crosses it."""

    def left(key: int) -> bool:
        with np.errstate(over="ignore", invalid="ignore"):  # far out, values overflow: still ordered
            value = forward(np.array([_from_key(key)], dtype=np.float64))
            if as_float32:
                value = value.astype(np.float32)
        return bool(value[0] <= threshold)

    low, high = _key(-np.finfo(np.float64).max), _key(np.finfo(np.float64).max)
    if not left(low) or left(high):
        return []
    while high - low > 1:  # left(low) and not left(high)
        mid = (low + high) // 2
        if left(mid):
            low = mid
        else:
            high = mid
    return [_from_key(low), _from_key(high)]


_SIGN = 1 << 63


def _key(x: float) -> int:
    """Float64 values as integers in the same order (one apart for adjacent floats)."""
    bits = int(np.array([x], dtype=np.float64).view(np.uint64)[0])
    return bits if bits < _SIGN else -(bits - _SIGN)


def _from_key(key: int) -> float:
    bits = key if key >= 0 else (-key) | _SIGN
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])
