"""CSV: a header row and comma-separated values in, DataRobot's CSV columns out.

Numeric CSV for an all-numeric model takes a fast path straight to a float matrix
(`numeric_csv`); anything else is read by the csv module (small bodies) or pandas.
Bad bodies raise `InputError` naming the row.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np
import orjson
import pandas as pd

from shipmate.packages import TargetType
from shipmate.serving.codecs.rows import interleave, numbers, pick
from shipmate.serving.protocol import InferenceRequest, InferenceResponse, InputError

# ---------------------------------------------------------------- decoding


_NOT_IN_NUMBERS = (b'"', b"[", b"]", b"t", b"f", b"n")  # quotes, brackets, true, false, null, nan


def numeric_csv(body: bytes, features: Sequence[str]) -> np.ndarray | None:
    """CSV whose every cell is a number, straight to a float matrix of ``features``, or ``None``.

    The fast path for all-numeric models. Each data line becomes a JSON array of the
    same numbers (``1.5,2`` reads as ``[1.5,2]``), which orjson parses with no
    DataFrame on the way: pandas' fixed cost per call matters most for the chunks of a
    fanned-out batch (measured in docs/serving.md). Only what the general path reads as the very same
    numbers gets through: a plain, unquoted header; no quote, bracket or word in the
    data (``true``, ``null``, ``NaN``); every line as wide as the header; every cell a
    JSON number. Anything else is left to pandas (``None``).
    """
    header_end = body.find(b"\n")
    if header_end < 0:
        return None
    header = body[:header_end].removeprefix(b"\xef\xbb\xbf").rstrip(b"\r")
    if b'"' in header:
        return None
    try:
        columns = header.decode().split(",")
    except UnicodeDecodeError:
        return None
    data = body[header_end + 1 :].rstrip()
    if not data or any(c != c.strip() or not c for c in columns) or len(set(columns)) < len(columns):
        return None
    if any(mark in data for mark in _NOT_IN_NUMBERS):
        return None
    try:
        lines = orjson.loads(b"[[" + data.replace(b"\n", b"],[") + b"]]")
        if set(map(len, lines)) != {len(columns)}:
            return None
        matrix = np.fromiter(chain.from_iterable(lines), np.float64, count=len(lines) * len(columns))
    except (orjson.JSONDecodeError, ValueError, TypeError, OverflowError):
        return None
    matrix = matrix.reshape(len(lines), len(columns))
    if tuple(columns) == tuple(features):
        return matrix
    where = {name: i for i, name in enumerate(columns)}
    if not all(name in where for name in features):
        return None  # the general path names the missing column
    return matrix[:, [where[name] for name in features]]


def decode_csv_matrix(
    body: bytes, features: tuple[str, ...], id_column: str | None = None
) -> InferenceRequest:
    """`decode_csv` for a model that takes a float matrix: the fast path when the body allows it
    (not with an association id column to keep: the general path keeps every column as text)."""
    if id_column is not None and id_column not in features:
        return decode_csv(body)
    matrix = numeric_csv(body, features)
    if matrix is not None:
        return InferenceRequest(columns=features, rows=matrix)
    return decode_csv(body)


_SMALL_CSV = 32 * 1024  # below this the csv module beats pandas' start-up cost


def _decode_small_csv(body: bytes) -> InferenceRequest:
    try:
        lines = [
            row for row in csv.reader(io.StringIO(body.decode("utf-8-sig")), skipinitialspace=True) if row
        ]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"the body is not valid CSV: {exc}", status=400) from None
    if not lines:
        raise InputError("the CSV body is empty", status=400)
    header = tuple(c.strip() for c in lines[0])
    rows = []
    for i, row in enumerate(lines[1:]):
        if len(row) != len(header):
            raise InputError(f"has {len(row)} fields, the header has {len(header)}", row=i, status=400)
        rows.append(tuple(v if v != "" else None for v in row))
    if not rows:
        raise InputError("no rows to score", status=400)
    return InferenceRequest(columns=header, rows=rows)


def _refuse_repeated_columns(columns: Sequence[str]) -> None:
    """A column named twice would be scored from one of its copies, silently: refuse it."""
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise InputError(f"column {name!r} appears twice in the header", status=400)
        seen.add(name)


def decode_csv(body: bytes) -> InferenceRequest:
    """Comma-separated values with a header row (cells stay text until the model's types are known)."""
    if len(body) < _SMALL_CSV:
        request = _decode_small_csv(body)
        _refuse_repeated_columns(request.columns)
        return request
    first_line = body[: body.find(b"\n")] if b"\n" in body else body
    try:
        header = next(csv.reader([first_line.decode("utf-8-sig")], skipinitialspace=True), [])
    except (UnicodeDecodeError, csv.Error):
        header = []  # pandas names what is wrong with it
    _refuse_repeated_columns([c.strip() for c in header])
    try:
        frame = pd.read_csv(io.BytesIO(body), skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise InputError("the CSV body is empty", status=400) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"the body is not valid CSV: {exc}", status=400) from None
    if frame.empty:
        raise InputError("no rows to score", status=400)
    columns = tuple(str(c) for c in frame.columns.tolist())  # header cells are text: numbers too
    if columns != tuple(frame.columns.tolist()):
        frame.columns = list(columns)
    return InferenceRequest(columns=columns, frame=frame)


# ---------------------------------------------------------------- encoding


def _csv_value(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    text = str(v)
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv_numbers(values: np.ndarray) -> list[bytes]:
    """Each value as CSV text: the shortest text that reads back as the same float; NaN is empty."""
    text = numbers(values)
    return [b"" if v == b"null" else v for v in text] if np.isnan(values).any() else text


def csv_header(response: InferenceResponse) -> bytes:
    """DataRobot's CSV columns: ``<label>_PREDICTION`` per class, ``PREDICTION``, and for binary
    models ``THRESHOLD`` and ``POSITIVE_CLASS``."""
    manifest, scores = response.manifest, response.scores
    if scores.probabilities is None:
        return b"PREDICTION\n"
    labels = list(manifest.class_labels or [])
    header = [f"{label}_PREDICTION" for label in labels] + ["PREDICTION"]
    if manifest.target_type is TargetType.BINARY:
        header += ["THRESHOLD", "POSITIVE_CLASS"]
    return ",".join(_csv_value(h) for h in header).encode() + b"\n"


def csv_rows(response: InferenceResponse) -> bytes:
    """The data lines of the CSV response (`csv_header`'s columns), each ending in a line break."""
    manifest, scores = response.manifest, response.scores
    n = len(scores)
    if scores.probabilities is None:
        assert scores.values is not None
        return interleave(n, [_csv_numbers(scores.values), b"\n"])
    labels = list(manifest.class_labels or [])
    cells = [_csv_value(label).encode() for label in labels]
    tail = b"\n"
    if manifest.target_type is TargetType.BINARY:
        tail = f",{_csv_value(manifest.threshold)},".encode() + cells[1] + b"\n"
    pieces: list[bytes | list[bytes]] = []
    for j in range(len(labels)):
        pieces += [_csv_numbers(scores.probabilities[:, j]), b","]
    pieces.append(pick([cell + tail for cell in cells], response.predicted_classes()))
    return interleave(n, pieces)


def encode_csv(response: InferenceResponse) -> bytes:
    """The CSV response: `csv_header` and `csv_rows`."""
    return csv_header(response) + csv_rows(response)
