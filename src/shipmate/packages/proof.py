"""Proving a faster scorer against the model's own public method before it serves.

A compiled scorer (`shipmate.packages.compiled`) is used only when, on the package's
probe rows (built from its baseline) and on generated edge rows — a missing value in
each feature, an unseen category in each categorical feature, numbers exactly at the
trees' split thresholds and one step either side — it predicts the same label for every
row and gives probabilities or values within `TOLERANCE` of the public method. Where the
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

from shipmate.packages.manifest import FeatureType, Manifest, TargetType
from shipmate.packages.schema import probe_frame

TOLERANCE = 1e-6
"""Largest difference allowed between a compiled scorer's output and the public method's."""

UNSEEN = "__shipmate_unseen__"
_THRESHOLDS_PER_FEATURE = 4


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
    return Proof(True, worst, rows, f"{rows} proof rows, largest difference {worst:.3g}")


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
    edges.extend(_threshold_rows(manifest, estimator, base))
    if edges:
        batches.append(pd.concat(edges, ignore_index=True))
    return batches


def _threshold_rows(manifest: Manifest, estimator: Any, base: pd.DataFrame) -> list[pd.DataFrame]:
    """Rows whose numbers sit on the trees' split thresholds and one float step either side,
    for a tree model that reads the package's features directly (no preprocessing)."""
    names = manifest.feature_names
    if not all(f.type is FeatureType.NUMERIC for f in manifest.features):
        return []
    by_feature = _split_thresholds(estimator)
    rows: list[pd.DataFrame] = []
    for j, values in sorted(by_feature.items()):
        if j >= len(names):
            continue
        for t in values[:_THRESHOLDS_PER_FEATURE]:
            for v in (t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf)):
                row = base.copy()
                row[names[j]] = float(v)
                rows.append(row)
    return rows


def _split_thresholds(estimator: Any) -> dict[int, list[float]]:
    trees: list[Any] = []
    for attr in ("estimators_", "tree_"):
        found = getattr(estimator, attr, None)
        if found is None:
            continue
        trees = [found] if attr == "tree_" else list(np.ravel(np.asarray(found, dtype=object)))
        break
    out: dict[int, list[float]] = {}
    for tree in trees[:10]:
        inner = getattr(tree, "tree_", tree)
        features = getattr(inner, "feature", None)
        thresholds = getattr(inner, "threshold", None)
        if features is None or thresholds is None:
            continue
        for j, t in zip(features.tolist(), thresholds.tolist(), strict=True):
            if j >= 0:
                out.setdefault(j, []).append(t)
    for predictors in getattr(estimator, "_predictors", [])[:10]:  # HistGradientBoosting
        for predictor in predictors:
            nodes = predictor.nodes
            split = nodes["is_leaf"] == 0
            for j, t in zip(
                nodes["feature_idx"][split].tolist(), nodes["num_threshold"][split].tolist(), strict=True
            ):
                out.setdefault(j, []).append(t)
    return out
