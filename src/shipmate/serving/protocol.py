"""The canonical inference request and response, independent of any wire format.

Every wire format (JSON records or columns, CSV, the Open Inference Protocol v2)
is converted to an `InferenceRequest` at the edge (`shipmate.serving.codecs`); the
data plane only ever sees this type, and hands back an `InferenceResponse` that the
edge encodes again. Rows are kept in whichever layout the wire gave most cheaply
(row tuples from JSON, a DataFrame from CSV) and turned into the layout the model
takes exactly once, in `shipmate.serving.dataplane`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shipmate.packages import Manifest, Scores


@dataclass(slots=True)
class InferenceRequest:
    """A batch of rows to score. Exactly one of ``rows`` and ``frame`` is set."""

    columns: tuple[str, ...]
    rows: Sequence[Sequence[Any]] | np.ndarray | None = None  # row-major, aligned with columns
    frame: pd.DataFrame | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None
    association_ids: list[str | None] | None = None
    """The association id column's values, when a decoder took only the feature columns (the
    fast paths) and was asked to keep them; otherwise the column stays in ``columns``."""

    def __len__(self) -> int:
        if self.frame is not None:
            return len(self.frame)
        return 0 if self.rows is None else len(self.rows)


@dataclass(frozen=True, slots=True)
class InferenceResponse:
    """Scores for one request, with what an encoder needs to label them.

    ``predicted``: for a classifier, each row's predicted class as an index into the
    manifest's class labels, decided by the data plane (`shipmate.serving.dataplane.respond`)
    so that every wire dialect labels rows alike.
    """

    deployment_id: str
    manifest: Manifest
    scores: Scores
    predicted: np.ndarray | None = None
    request_id: str | None = None
    association_ids: list[str | None] | None = None
    """The association id column's values, when a decoder took only the feature columns (the
    fast paths) and was asked to keep them; otherwise the column stays in ``columns``."""

    def __len__(self) -> int:
        return len(self.scores)

    def predicted_classes(self) -> np.ndarray:
        """``predicted``, which a classifier's response must carry."""
        if self.predicted is None:
            raise ValueError("a classifier's response needs its predicted classes (dataplane.respond)")
        return self.predicted


class InputError(ValueError):
    """The request's rows do not fit the model: names the row and column when it can.

    ``status`` is 400 for a malformed body and 422 for well-formed rows the model cannot take.
    """

    def __init__(
        self, message: str, *, row: int | None = None, column: str | None = None, status: int = 422
    ) -> None:
        where = []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.row = row
        self.column = column
        self.status = status
