"""Prediction records: every scored row that carries an association id, with what was predicted.

With ``MLOPS_ASSOCIATION_ID_COLUMN_NAME`` set, the recorder keeps, per deployment, model and
minute, each row's association id and prediction (the predicted label and the class
probabilities, or the regression value) and spools them as records of kind
``"predictions"`` (documented in docs/monitoring.md). The service stores them and joins them
with the actuals reported later, which is how accuracy is measured. Rows without an id are
not recorded (nothing could be joined with them). Unlike samples, these records are not
sampled: every row with an id counts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shipmate.monitoring.binning import Output
from shipmate.monitoring.records import FORMAT_VERSION
from shipmate.packages import Manifest
from shipmate.packages.baseline import predicted_labels

KIND = "predictions"
MAX_ROWS_PER_RECORD = 1000
MAX_ID_LENGTH = 200
"""Longer association ids are cut to this many characters (the service stores at most this)."""


@dataclass(slots=True)
class PredictionBatch:
    """Predictions of one deployment, model and minute that carry association ids."""

    deployment_id: str
    model_id: str | None
    minute: int
    class_labels: list[str] | None
    ids: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    probabilities: list[list[float]] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, manifest: Manifest, scores: Output, ids: list[str | None]) -> None:
        """The rows of one scored request; ``ids`` aligned with its rows (``None``: no id)."""
        have = np.fromiter((i is not None and i != "" for i in ids), bool, len(ids))
        if not have.any():
            return
        self.ids.extend(str(i)[:MAX_ID_LENGTH] for i in ids if i is not None and i != "")
        if scores.probabilities is not None:
            probabilities = np.asarray(scores.probabilities, dtype=np.float64)[have]
            picked = predicted_labels(probabilities, manifest)
            labels = self.class_labels or []
            self.labels.extend(labels[i] for i in picked.tolist())
            self.probabilities.extend(probabilities.tolist())
        elif scores.values is not None:
            self.values.extend(np.asarray(scores.values, dtype=np.float64)[have].tolist())

    def extend(self, other: PredictionBatch) -> None:
        self.ids.extend(other.ids)
        self.labels.extend(other.labels)
        self.probabilities.extend(other.probabilities)
        self.values.extend(other.values)

    def records(self, flushed_at: float) -> list[dict[str, Any]]:
        """The prediction records (JSON documents), at most 1,000 rows each."""
        out = []
        classifier = self.class_labels is not None
        for start in range(0, len(self.ids), MAX_ROWS_PER_RECORD):
            end = start + MAX_ROWS_PER_RECORD
            out.append(
                {
                    "v": FORMAT_VERSION,
                    "kind": KIND,
                    "id": uuid.uuid4().hex,
                    "deploymentId": self.deployment_id,
                    "modelId": self.model_id,
                    "minute": self.minute,
                    "flushedAt": flushed_at,
                    "associationIds": self.ids[start:end],
                    "classLabels": self.class_labels,
                    "labels": self.labels[start:end] if classifier else None,
                    "probabilities": self.probabilities[start:end] if classifier else None,
                    "values": None if classifier else _finite(self.values[start:end]),
                }
            )
        return out


def _finite(values: list[float]) -> list[float | None]:
    return [v if v == v and abs(v) != float("inf") else None for v in values]


def class_labels_of(manifest: Manifest) -> list[str] | None:
    labels = manifest.class_labels
    return None if labels is None else [str(v) for v in labels]
