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
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
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
            bins.total = _bounded(float(present.sum()))
            bins.total_sq = _bounded(float(np.dot(present, present)))
        return bins


def _bounded(value: float) -> float:
    """A sum that overflowed (values beyond 1e154, squared) as the largest float: records hold finite ones."""
    return value if math.isfinite(value) else math.copysign(sys.float_info.max, value)


def as_numbers(values: np.ndarray | pd.Series) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return values.astype("float64", copy=False)
    coerced = pd.to_numeric(pd.Series(values), errors="coerce")
    return np.asarray(coerced, dtype="float64")


@dataclass(frozen=True, slots=True)
class NumericBlock:
    """Many numeric columns binned together, by sorting: the fast path of a flush.

    Looking 1,000 values up among 11 edges one by one (``searchsorted``) costs about 35 ns a
    value; sorting each column (one ``np.sort`` call for all of them) and looking the edges up
    in the sorted values costs a tenth of that, and gives the minimum and maximum for free.
    Every column's edges are padded with +inf to one width, so the bin counts of all columns
    are one ``np.diff`` and one ``tolist``; Python touches each column once, to slice its row.
    Per column the result is exactly `ColumnBins.count`'s (the sums may differ in the last
    bits, as any float sum taken in another order).
    """

    queries: np.ndarray  # per column: its edges but the last, then the one just above the last; +inf after
    widths: list[int]  # per column: how many of its counts come from the queries (its size less missing)

    @classmethod
    def of(cls, columns: Sequence[ColumnBins]) -> NumericBlock:
        rows = []
        for c in columns:
            if len(c.edges):  # x <= last edge is x < the next float above it
                rows.append(np.append(c.edges[:-1], np.nextafter(c.edges[-1], np.inf)))
            else:  # no edges: the layout is [present, 0, missing]
                rows.append(np.empty(0))
        width = max([1, *(len(r) for r in rows)])
        queries = np.full((len(rows), width), np.inf)
        for j, r in enumerate(rows):
            queries[j, : len(r)] = r
        return cls(queries, [c.size - 1 for c in columns])

    def count(self, matrix: np.ndarray) -> list[BinCounts]:
        return self.tally(matrix).bin_counts()

    def tally(self, matrix: np.ndarray) -> BlockTally:
        """The rows counted, as arrays (`BlockTally`): cheap to merge, made into `BinCounts` once."""
        n = matrix.shape[0]
        k = len(self.widths)
        columns = np.ascontiguousarray(matrix.T, dtype=np.float64)  # one row per column
        bad = ~np.isfinite(columns)  # missing, or infinite (counted as missing)
        any_bad = bool(bad.any())
        ordered = np.sort(np.where(bad, np.nan, columns) if any_bad else columns, axis=1)  # NaN last
        missing = bad.sum(axis=1) if any_bad else np.zeros(k, dtype=np.int64)
        present = n - missing
        zeroed = np.where(bad, 0.0, columns) if any_bad else columns
        below = np.empty((k, self.queries.shape[1] + 2), dtype=np.int64)  # values under each query
        below[:, 0] = 0
        below[:, -1] = present
        for j in range(k):  # NaN sorts last, so the present values are each row's first ones
            below[j, 1:-1] = np.searchsorted(ordered[j, : present[j]], self.queries[j], side="left")
        last = np.maximum(present - 1, 0)
        none = present == 0
        with np.errstate(over="ignore", invalid="ignore"):  # sums beyond the float range: see _bounded
            return BlockTally(
                self,
                n,
                np.diff(below, axis=1),  # padded queries (+inf) add zeros at the end
                missing.astype(np.int64, copy=False),
                np.where(none, np.inf, ordered[:, 0]),
                np.where(none, -np.inf, ordered[np.arange(k), last]),
                zeroed.sum(axis=1),
                np.einsum("ij,ij->i", zeroed, zeroed),
            )


@dataclass(slots=True)
class BlockTally:
    """A `NumericBlock`'s counts over some rows, one array entry per column: merging two adds
    arrays (a few numpy calls whatever the number of columns), and the per-column `BinCounts`
    are made once, at the flush. Counts add up exactly; the sums are float sums."""

    block: NumericBlock
    rows: int
    counts: np.ndarray  # columns x queries+1: present values per bin (padding bins hold 0)
    missing: np.ndarray
    minimum: np.ndarray  # +inf where a column had no value
    maximum: np.ndarray  # -inf where a column had no value
    total: np.ndarray
    total_sq: np.ndarray

    def merge(self, other: BlockTally) -> None:
        if other.block is not self.block:
            raise ValueError("tallies of different bins cannot merge")
        self.rows += other.rows
        self.counts += other.counts
        self.missing += other.missing
        np.minimum(self.minimum, other.minimum, out=self.minimum)
        np.maximum(self.maximum, other.maximum, out=self.maximum)
        with np.errstate(over="ignore", invalid="ignore"):
            self.total += other.total
            self.total_sq += other.total_sq

    def bin_counts(self) -> list[BinCounts]:
        n = self.rows
        out = []
        columns = zip(
            self.block.widths,
            self.missing.tolist(),
            self.counts.tolist(),
            self.minimum.tolist(),
            self.maximum.tolist(),
            self.total.tolist(),
            self.total_sq.tolist(),
            strict=True,
        )
        for width, lost, row, least, greatest, total, squares in columns:
            bins = BinCounts(counts=[*row[:width], lost], count=n, missing=lost)
            if lost < n:
                bins.minimum, bins.maximum = least, greatest
                bins.total, bins.total_sq = _bounded(total), _bounded(squares)
            out.append(bins)
        return out


@dataclass(slots=True)
class Tally:
    """A model's counts over some scored requests (`ModelBins.tally`), kept mergeable until the
    flush makes them `BinCounts` per column (`finish`): numeric features and class
    probabilities as `BlockTally`, the other columns as `BinCounts`."""

    bins: ModelBins
    numeric: BlockTally | None = None
    probabilities: BlockTally | None = None
    features: dict[str, BinCounts] = field(default_factory=dict)
    outputs: dict[str, BinCounts] = field(default_factory=dict)

    def merge(self, other: Tally) -> None:
        """Add ``other`` (of the same `ModelBins`) to this tally."""
        if other.bins is not self.bins:
            raise ValueError("tallies of different bins cannot merge")
        for name in ("numeric", "probabilities"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is None:
                setattr(self, name, theirs)
            elif theirs is not None:
                mine.merge(theirs)
        for into, extra in ((self.features, other.features), (self.outputs, other.outputs)):
            for name, counts in extra.items():
                have = into.get(name)
                if have is None:
                    into[name] = counts
                else:
                    have.merge(counts, name)

    def finish(self) -> tuple[dict[str, BinCounts], dict[str, BinCounts]]:
        """Bin counts per feature (in manifest order) and per output column."""
        features = dict(self.features)
        if self.numeric is not None:
            features.update(zip(self.bins.numeric, self.numeric.bin_counts(), strict=True))
        outputs: dict[str, BinCounts] = {}
        if self.probabilities is not None:
            outputs.update(zip(self.bins.probability_names, self.probabilities.bin_counts(), strict=True))
        outputs.update(self.outputs)
        ordered = {name: features[name] for name in self.bins.features if name in features}
        return ordered, outputs


class ModelBins:
    """A served model's compiled bins: features in manifest order, then output columns."""

    def __init__(self, manifest: Manifest) -> None:
        baseline = bins_for(manifest)
        self.manifest = manifest
        self.derived = baseline.derived
        self.features = {name: ColumnBins.compile(spec) for name, spec in baseline.features.items()}
        self.outputs = {name: ColumnBins.compile(spec) for name, spec in baseline.outputs.items()}
        self.labels = [str(label) for label in manifest.class_labels or []]
        self.numeric = [name for name, bins in self.features.items() if bins.kind == "numeric"]
        self.numeric_block = NumericBlock.of([self.features[name] for name in self.numeric])
        self.probability_names = [f"p:{label}" for label in self.labels]
        self.probability_block = (
            NumericBlock.of([self.outputs[name] for name in self.probability_names])
            if self.probability_names
            and all(self.outputs.get(name) is not None for name in self.probability_names)
            else None
        )

    def count(
        self, batch: Sequence[tuple[Rows, Output]]
    ) -> tuple[dict[str, BinCounts], dict[str, BinCounts]]:
        """Bin counts of every feature and every output column over many scored requests."""
        return self.tally(batch).finish()

    def tally(self, batch: Sequence[tuple[Rows, Output]]) -> Tally:
        """Many scored requests counted into the bins, kept mergeable (`Tally`)."""
        requests = [rows for rows, _ in batch]
        names = tuple(self.features)
        numeric: np.ndarray | None
        matrix = _matrix(requests, names) if self.numeric else None
        if matrix is not None:  # the server's fast path
            positions = [names.index(name) for name in self.numeric]
            numeric = matrix if len(positions) == len(names) else matrix[:, positions]
            columns: dict[str, Any] = {}
        else:
            columns = self.columns(requests)
            numeric = (
                np.column_stack([as_numbers(columns[name]) for name in self.numeric])
                if self.numeric
                else None
            )
        tally = Tally(self)
        if numeric is not None and self.numeric:
            tally.numeric = self.numeric_block.tally(numeric)
        for name, bins in self.features.items():
            if bins.kind != "numeric":
                tally.features[name] = bins.count(columns[name])
        self.tally_outputs([scores for _, scores in batch], tally)
        return tally

    def count_outputs(self, outputs: Sequence[Output]) -> dict[str, BinCounts]:
        tally = Tally(self)
        self.tally_outputs(outputs, tally)
        return tally.finish()[1]

    def tally_outputs(self, outputs: Sequence[Output], tally: Tally) -> None:
        probabilities = [o.probabilities for o in outputs if o.probabilities is not None]
        counts = tally.outputs
        if probabilities:
            matrix = np.concatenate(probabilities) if len(probabilities) > 1 else probabilities[0]
            by_block = self.probability_block is not None and matrix.shape[1] == len(self.labels)
            if self.probability_block is not None and by_block:
                tally.probabilities = self.probability_block.tally(matrix)
            for i, label in enumerate([] if by_block else self.labels):
                bins = self.outputs.get(f"p:{label}")
                if bins is not None and i < matrix.shape[1]:
                    counts[f"p:{label}"] = bins.count(matrix[:, i])
            label_bins = self.outputs.get("label")
            if label_bins is not None:
                index = predicted_labels(matrix, self.manifest)
                counted = np.bincount(index, minlength=label_bins.size)
                counts["label"] = BinCounts(counts=counted.tolist(), count=len(index))
            return
        values = [o.values for o in outputs if o.values is not None]
        value_bins = self.outputs.get("value")
        if values and value_bins is not None:
            counts["value"] = value_bins.count(np.concatenate(values) if len(values) > 1 else values[0])

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


def _matrix(requests: Sequence[Rows], names: tuple[str, ...]) -> np.ndarray | None:
    """The requests' rows as one float matrix, when each holds a 2-D float array of the features
    in order (the server's fast path; checked in bulk, as a flush may hold thousands of requests)."""
    first = requests[0].columns
    same = all(r.columns is first for r in requests)
    if not (tuple(first) == names if same else all(tuple(r.columns) == names for r in requests)):
        return None
    parts = [r.rows for r in requests]
    if any(type(p) is not np.ndarray for p in parts):
        return None
    arrays: list[np.ndarray] = parts  # type: ignore[assignment]
    if any(p.ndim != 2 or p.dtype.kind != "f" for p in arrays):
        return None
    try:
        matrix = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    except ValueError:  # rows of different widths
        return None
    return matrix if matrix.shape[1] == len(names) else None


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
