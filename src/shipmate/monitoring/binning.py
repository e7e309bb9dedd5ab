"""Counting a batch of values into a model's fixed baseline bins, vectorised (numpy).

`ModelBins` is compiled once per served model from its manifest (`bins_for`): one
`ColumnBins` per feature and per output column. `ModelBins.count` takes many scored
requests at once (a flush) and returns `BinCounts` per column, so the per-value cost is a
``searchsorted``/``get_indexer`` and a ``bincount`` over whole arrays, never Python per value.

The requests are duck-typed (``columns``, ``rows`` or ``frame``): this module does not
import the prediction server, so the service and the monitoring agent can import the rest of
``shipmate.monitoring`` without it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from shipmate.monitoring.records import BinCounts
from shipmate.packages import Manifest
from shipmate.packages.baseline import (
    bins_for,
    boolean_strings,
    categorical_index,
    numeric_index,
    numeric_layout_size,
    predicted_labels,
    text_lengths,
)

log = logging.getLogger(__name__)


class Rows(Protocol):
    """What the recorder reads of a scored request (`shipmate.serving.protocol.InferenceRequest`)."""

    columns: tuple[str, ...]
    rows: Sequence[Sequence[Any]] | np.ndarray | None
    frame: pd.DataFrame | None


class Output(Protocol):
    """What the recorder reads of a model's scores (`shipmate.packages.Scores`)."""

    probabilities: np.ndarray | None
    values: np.ndarray | None

    def __len__(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ColumnBins:
    """One column's bin spec, compiled: numeric edges, or the categories as an index."""

    kind: str  # numeric | text | categorical | boolean
    edges: np.ndarray
    categories: pd.Index
    size: int

    @classmethod
    def compile(cls, spec: dict[str, Any]) -> ColumnBins:
        kind = str(spec.get("type", "numeric"))
        if kind in ("numeric", "text"):
            edges = np.asarray(spec.get("edges") or [], dtype="float64")
            return cls(kind, edges, pd.Index([]), numeric_layout_size(edges))
        values = [str(v) for v in spec.get("values") or []]
        return cls(kind, np.empty(0), pd.Index(values), len(values) + 2)

    @property
    def numeric(self) -> bool:
        return self.kind in ("numeric", "text")

    def count(self, values: np.ndarray | pd.Series) -> BinCounts:
        """The values counted into the bins; numeric columns also get count, min, max, sum, sum of squares."""
        n = len(values)
        if not self.numeric:
            if self.kind == "boolean":
                values = boolean_strings(values)
            index = categorical_index(values, self.categories)
            counts = np.bincount(index, minlength=self.size)
            return BinCounts(counts=counts.tolist(), count=n, missing=int(counts[-1]))
        numbers = text_lengths(values) if self.kind == "text" else as_numbers(values)
        finite = np.isfinite(numbers)
        present = numbers[finite]
        if not finite.all():
            numbers = np.where(finite, numbers, np.nan)  # an infinite value counts as missing
        counts = np.bincount(numeric_index(numbers, self.edges), minlength=self.size)
        bins = BinCounts(counts=counts.tolist(), count=n, missing=n - len(present))
        if len(present):
            bins.minimum = float(present.min())
            bins.maximum = float(present.max())
            bins.total = float(present.sum())
            bins.total_sq = float(np.dot(present, present))
        return bins


def as_numbers(values: np.ndarray | pd.Series) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return values.astype("float64", copy=False)
    coerced = pd.to_numeric(pd.Series(values), errors="coerce")
    return np.asarray(coerced, dtype="float64")


class ModelBins:
    """A served model's compiled bins: features in manifest order, then output columns."""

    def __init__(self, manifest: Manifest) -> None:
        baseline = bins_for(manifest)
        self.manifest = manifest
        self.derived = baseline.derived
        self.features = {name: ColumnBins.compile(spec) for name, spec in baseline.features.items()}
        self.outputs = {name: ColumnBins.compile(spec) for name, spec in baseline.outputs.items()}
        self.labels = [str(label) for label in manifest.class_labels or []]

    def count(
        self, batch: Sequence[tuple[Rows, Output]]
    ) -> tuple[dict[str, BinCounts], dict[str, BinCounts]]:
        """Bin counts of every feature and every output column over many scored requests."""
        columns = self.columns([rows for rows, _ in batch])
        features = {name: bins.count(columns[name]) for name, bins in self.features.items()}
        return features, self.count_outputs([scores for _, scores in batch])

    def count_outputs(self, outputs: Sequence[Output]) -> dict[str, BinCounts]:
        probabilities = [o.probabilities for o in outputs if o.probabilities is not None]
        counts: dict[str, BinCounts] = {}
        if probabilities:
            matrix = np.concatenate(probabilities) if len(probabilities) > 1 else probabilities[0]
            for i, label in enumerate(self.labels):
                bins = self.outputs.get(f"p:{label}")
                if bins is not None and i < matrix.shape[1]:
                    counts[f"p:{label}"] = bins.count(matrix[:, i])
            label_bins = self.outputs.get("label")
            if label_bins is not None:
                index = predicted_labels(matrix, self.manifest)
                tally = np.bincount(index, minlength=label_bins.size)
                counts["label"] = BinCounts(counts=tally.tolist(), count=len(index))
            return counts
        values = [o.values for o in outputs if o.values is not None]
        value_bins = self.outputs.get("value")
        if values and value_bins is not None:
            counts["value"] = value_bins.count(np.concatenate(values) if len(values) > 1 else values[0])
        return counts

    def columns(self, requests: Sequence[Rows]) -> dict[str, np.ndarray | pd.Series]:
        """Each feature's values over all the requests, in request order (vectorised where the
        rows are already a float matrix in feature order, the prediction server's fast path)."""
        names = tuple(self.features)
        parts: dict[str, list[Any]] = {name: [] for name in names}
        matrices: list[np.ndarray] = []

        def flush_matrices() -> None:
            if matrices:
                matrix = np.concatenate(matrices) if len(matrices) > 1 else matrices[0]
                for i, name in enumerate(names):
                    parts[name].append(matrix[:, i])
                matrices.clear()

        for request in requests:
            rows = request.rows
            if (
                isinstance(rows, np.ndarray)
                and rows.ndim == 2
                and rows.shape[1] == len(names)
                and tuple(request.columns) == names
            ):
                matrices.append(rows)
                continue
            flush_matrices()
            frame = request.frame if request.frame is not None else _frame(request)
            for name in names:
                if name in frame.columns:
                    parts[name].append(frame[name].to_numpy())
                else:
                    parts[name].append(np.full(len(frame), np.nan))
        flush_matrices()
        return {name: _join(pieces) for name, pieces in parts.items()}


def _frame(request: Rows) -> pd.DataFrame:
    rows = request.rows
    if rows is None or len(rows) == 0:
        return pd.DataFrame(columns=list(request.columns))
    return pd.DataFrame(
        list(rows) if not isinstance(rows, np.ndarray) else rows, columns=list(request.columns)
    )


def _join(pieces: list[Any]) -> np.ndarray:
    if not pieces:
        return np.empty(0)
    if len(pieces) == 1:
        return np.asarray(pieces[0])
    if all(p.dtype.kind == "f" for p in pieces):
        return np.concatenate(pieces)
    return np.concatenate([np.asarray(p, dtype=object) for p in pieces])
