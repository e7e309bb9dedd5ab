"""Raw-row samples: a deterministic share of the scored rows, with their association ids.

A sample record (kind ``"sample"``, documented in docs/monitoring.md) holds rows as the
model saw them, their predictions and, when the request carried the association id column
(``MLOPS_ASSOCIATION_ID_COLUMN_NAME``), their association ids, for later challenger and
accuracy work. Which rows are kept is deterministic:

- a row with an association id is kept when the first 8 hex digits of the SHA-256 of the id,
  as a number, fall under ``percentage`` % of 2**32, so the same id is always kept or always
  left out (actuals reported later can be matched the same way);
- a row without one (an all-numeric model's JSON fast path reads the feature columns only)
  is kept by its running row number, hashed the same way (Fibonacci hashing).

Samples are written after the aggregates and are the first records a full spool drops.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shipmate.monitoring.binning import Output, Rows
from shipmate.monitoring.records import FORMAT_VERSION

MAX_ROWS_PER_RECORD = 1000
_GOLDEN = 0x9E3779B1


def keep_ids(ids: list[str | None], percentage: float) -> np.ndarray:
    """Which association ids are sampled (the same answer for the same id, every time; a row
    without one is not)."""
    limit = int(percentage / 100.0 * 2**32)
    return np.array(
        [i is not None and int(hashlib.sha256(i.encode()).hexdigest()[:8], 16) < limit for i in ids],
        dtype=bool,
    )


def keep_numbers(first: int, count: int, percentage: float) -> np.ndarray:
    """Which of the running row numbers ``first .. first+count-1`` are sampled."""
    limit = int(percentage / 100.0 * 2**32)
    numbers = np.arange(first, first + count, dtype=np.uint64)
    return ((numbers * np.uint64(_GOLDEN)) & np.uint64(0xFFFFFFFF)) < np.uint64(limit)


def association_ids(request: Rows, column: str) -> list[str | None] | None:
    """The request's association ids as text, when it carries the column (or a decoder kept them)."""
    kept = getattr(request, "association_ids", None)
    if kept is not None:
        return kept  # type: ignore[no-any-return]
    if request.frame is not None:
        if column not in request.frame.columns:
            return None
        return [_text(v) for v in request.frame[column].tolist()]
    if column not in request.columns or request.rows is None or isinstance(request.rows, np.ndarray):
        return None
    at = list(request.columns).index(column)
    return [_text(row[at]) for row in request.rows]


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value)


def feature_rows(request: Rows, names: list[str], keep: np.ndarray) -> list[list[Any]]:
    """The kept rows' feature values, in feature order (JSON-ready)."""
    rows = request.rows
    if isinstance(rows, np.ndarray) and rows.ndim == 2 and tuple(request.columns) == tuple(names):
        return rows[keep].tolist()  # type: ignore[no-any-return]
    frame = request.frame
    if frame is None:
        frame = pd.DataFrame(list(rows or []), columns=list(request.columns))
    picked = frame.loc[keep, [n for n in names if n in frame.columns]]
    return [[_plain(v) for v in row] for row in picked.itertuples(index=False, name=None)]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


@dataclass(slots=True)
class SampleBatch:
    """Sampled rows of one deployment, model and minute, before they become sample records."""

    deployment_id: str
    model_id: str | None
    minute: int
    features: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)
    association_ids: list[str | None] = field(default_factory=list)

    def add(self, request: Rows, scores: Output, keep: np.ndarray, ids: list[str | None] | None) -> None:
        if not keep.any():
            return
        self.rows.extend(feature_rows(request, self.features, keep))
        output = scores.probabilities if scores.probabilities is not None else scores.values
        assert output is not None
        self.predictions.extend(output[keep].tolist())
        if ids is None:
            self.association_ids.extend([None] * int(keep.sum()))
        else:
            self.association_ids.extend(i for i, k in zip(ids, keep.tolist(), strict=True) if k)

    def records(self, flushed_at: float) -> list[dict[str, Any]]:
        """The sample records (JSON documents), at most 1,000 rows each."""
        out = []
        for start in range(0, len(self.rows), MAX_ROWS_PER_RECORD):
            end = start + MAX_ROWS_PER_RECORD
            out.append(
                {
                    "v": FORMAT_VERSION,
                    "kind": "sample",
                    "id": uuid.uuid4().hex,
                    "deploymentId": self.deployment_id,
                    "modelId": self.model_id,
                    "minute": self.minute,
                    "features": self.features,
                    "rows": self.rows[start:end],
                    "predictions": self.predictions[start:end],
                    "associationIds": self.association_ids[start:end],
                    "flushedAt": flushed_at,
                }
            )
        return out
