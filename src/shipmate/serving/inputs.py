"""Turning a canonical request into the rows a model takes, checking columns and types.

The fast path (all-numeric model, rows already in feature order) is one
``np.array`` call; only when that fails are the rows scanned to name the first
bad row and column, so validation costs nothing on good input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from shipmate.packages import Columns, FeatureType, InputKind, Manifest
from shipmate.serving.protocol import InferenceRequest, InputError

_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


def _missing_columns(columns: Sequence[str], features: Sequence[str]) -> None:
    have = set(columns)
    missing = [f for f in features if f not in have]
    if missing:
        unexpected = [c for c in columns if c not in set(features)]
        hint = f"; unexpected columns {unexpected}" if unexpected else ""
        raise InputError(f"missing (the model needs {list(features)}{hint})", row=0, column=missing[0])


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _numeric_problem(value: Any) -> str | None:
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return f"expected a number, got {_describe(value)}"
        return None
    return f"expected a number, got {type(value).__name__} {_describe(value)}"


def _locate_matrix_problem(rows: Sequence[Sequence[Any]] | np.ndarray, features: Sequence[str]) -> InputError:
    for i, row in enumerate(rows):
        if not isinstance(row, list | tuple | np.ndarray) or len(row) != len(features):
            size = len(row) if isinstance(row, list | tuple | np.ndarray) else 1
            return InputError(f"has {size} values, expected {len(features)}", row=i, status=400)
        for name, value in zip(features, row, strict=True):
            problem = _numeric_problem(value)
            if problem:
                return InputError(problem, row=i, column=name)
    return InputError("the rows cannot be converted to numbers")


def _as_matrix(request: InferenceRequest, features: tuple[str, ...]) -> np.ndarray:
    if request.frame is not None:
        _missing_columns(request.columns, features)
        # selecting columns copies the frame: skip it when the columns already are the features
        sub = request.frame if request.columns == features else request.frame[list(features)]
        try:
            matrix: np.ndarray = sub.to_numpy(dtype=np.float64)
            return matrix
        except (ValueError, TypeError):
            for name in features:
                _check_numeric_column(sub[name], name)
            raise
    rows = request.rows
    assert rows is not None
    if request.columns != features:
        _missing_columns(request.columns, features)
        index = [request.columns.index(f) for f in features]
        getter = itemgetter(*index)
        try:
            rows = list(map(getter, rows)) if len(index) > 1 else [(getter(r),) for r in rows]
        except (IndexError, TypeError):
            raise _locate_matrix_problem(rows, request.columns) from None
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except (ValueError, TypeError):
        raise _locate_matrix_problem(rows, features) from None
    if matrix.ndim != 2 or matrix.shape[1] != len(features):
        raise _locate_matrix_problem(rows, features)
    return matrix


def _check_numeric_column(col: pd.Series, name: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return col.astype(np.float64)
    converted = pd.to_numeric(col.map(lambda v: v if not isinstance(v, bool) else float(v)), errors="coerce")
    bad = converted.isna() & col.notna()
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"expected a number, got {_describe(col.iloc[position])}", row=position, column=name)
    return converted.astype(np.float64)


def _to_bool(value: Any, row: int, name: str) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)) or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InputError(f"expected true or false, got {_describe(value)}", row=row, column=name)


def _numeric_values(values: list[Any], name: str) -> np.ndarray:
    """A column of a JSON body as float64 (numbers, numeric text, booleans, null as NaN), or
    `InputError` naming the first value that is none of those."""
    try:
        column = np.asarray(values, dtype=np.float64)
        if column.ndim == 1:
            return column
    except (ValueError, TypeError):
        pass
    for i, value in enumerate(values):
        problem = _numeric_problem(value)
        if problem:
            raise InputError(problem, row=i, column=name)
    raise InputError("expected numbers", row=0, column=name)


def _text_values(values: list[Any]) -> np.ndarray:
    """Categories as text; a missing value (null, an empty CSV cell) is NaN, as pandas reads a
    training CSV and as scikit-learn's imputers look for it by default."""
    out = np.empty(len(values), dtype=object)
    out[:] = [np.nan if v is None or (isinstance(v, float) and v != v) else str(v) for v in values]
    return out


def _as_columns(request: InferenceRequest, manifest: Manifest) -> Columns:
    """One array per feature, checked and typed; no DataFrame is built for a JSON body."""
    features = manifest.feature_names
    _missing_columns(request.columns, features)
    frame = request.frame
    if frame is not None:
        rows = len(frame)

        def values(name: str) -> list[Any]:
            return list(frame[name].tolist())

    else:
        records = request.rows if request.rows is not None else ()
        width = len(request.columns)
        if any(not isinstance(r, list | tuple | np.ndarray) or len(r) != width for r in records):
            raise _locate_matrix_problem(records, request.columns)
        rows = len(records)
        transposed = list(zip(*records, strict=True)) if rows else [() for _ in request.columns]
        by_name = dict(zip(request.columns, transposed, strict=True))

        def values(name: str) -> list[Any]:
            return list(by_name[name])

    data: dict[str, np.ndarray] = {}
    for feature in manifest.features:
        if feature.type is FeatureType.NUMERIC:
            if frame is not None:
                data[feature.name] = _check_numeric_column(frame[feature.name], feature.name).to_numpy()
            else:
                data[feature.name] = _numeric_values(values(feature.name), feature.name)
        elif feature.type is FeatureType.BOOLEAN:
            data[feature.name] = np.asarray(
                [_to_bool(v, i, feature.name) for i, v in enumerate(values(feature.name))]
            )
        else:
            data[feature.name] = _text_values(values(feature.name))
    return Columns(data, rows)


def model_input(
    request: InferenceRequest, manifest: Manifest, kind: InputKind, features: tuple[str, ...]
) -> np.ndarray | Columns:
    """The request's rows in the layout the model takes, or `InputError` naming the bad row/column."""
    if len(request) == 0:
        raise InputError("no rows to score", status=400)
    if kind is InputKind.MATRIX:
        return _as_matrix(request, features)
    return _as_columns(request, manifest)


def check_finite(matrix: np.ndarray, features: Sequence[str]) -> None:
    """No model takes an infinite value (CSV can carry ``inf``): name the first one (a 422, not a 500)."""
    infinite = np.isinf(matrix)
    if infinite.any():
        row, col = (int(v) for v in np.argwhere(infinite)[0])
        raise InputError(f"{matrix[row, col]} is not a finite number", row=row, column=features[col])


def check_no_missing(matrix: np.ndarray, features: Sequence[str]) -> None:
    """For models that cannot take missing values: name the first one (a 422, not the model's 500)."""
    gaps = np.isnan(matrix)
    if gaps.any():
        row, col = (int(v) for v in np.argwhere(gaps)[0])
        raise InputError(
            "missing value; this model does not accept missing values", row=row, column=features[col]
        )


def first_missing(
    rows: np.ndarray | pd.DataFrame | Columns, features: Sequence[str]
) -> tuple[int, str] | None:
    """The row and column of the first missing value in what the model was given, if any."""
    if isinstance(rows, Columns):
        rows = rows.frame()
    if isinstance(rows, pd.DataFrame):
        gaps = rows.isna().to_numpy()
        names: Sequence[str] = [str(c) for c in rows.columns]
    else:
        if rows.dtype.kind != "f":
            return None
        gaps, names = np.isnan(rows), features
    if not gaps.any():
        return None
    row, col = (int(v) for v in np.argwhere(gaps)[0])
    return row, names[col]
