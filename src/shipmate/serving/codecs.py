"""Converters at the wire edge: bodies to `InferenceRequest`, `InferenceResponse` to bodies.

Accepted in: a JSON array of records (DataRobot's PPS), a JSON object of columns,
MLflow's ``dataframe_split`` / ``dataframe_records``, CSV, and Open Inference
Protocol v2 tensors. Out: DataRobot's response shape (``data[]`` with
``prediction``, ``predictionValues`` and ``rowId``), DataRobot's CSV columns, or v2.
Bad bodies raise `InputError` naming the row and column.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
import pandas as pd

from shipmate.packages import Manifest, Scores, TargetType
from shipmate.serving.protocol import InferenceRequest, InferenceResponse, InputError

# ---------------------------------------------------------------- decoding


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"the body is not valid JSON: {exc}", status=400) from None


def _from_records(records: list[Any]) -> InferenceRequest:
    if not records:
        raise InputError("no rows to score", status=400)
    first = records[0]
    if not isinstance(first, dict) or not first:
        raise InputError("expected an object of column values", row=0, status=400)
    columns = tuple(first)
    getter = itemgetter(*columns)
    try:
        rows = list(map(getter, records))
    except (KeyError, TypeError):
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                raise InputError("expected an object of column values", row=i, status=400) from None
            for c in columns:
                if c not in record:
                    raise InputError(
                        "missing (row 0 has it; every row needs the same columns)", row=i, column=c
                    ) from None
        raise
    if len(columns) == 1:
        rows = [(v,) for v in rows]
    return InferenceRequest(columns=columns, rows=rows)


def _from_columns(columns: dict[str, Any]) -> InferenceRequest:
    names = tuple(columns)
    values = list(columns.values())
    if not all(isinstance(v, list) for v in values):
        if any(isinstance(v, list | dict) for v in values):
            raise InputError(
                "a JSON object must map every column to a list of values (or be one record)", status=400
            )
        return InferenceRequest(columns=names, rows=[tuple(values)])
    n = len(values[0])
    for name, v in columns.items():
        if len(v) != n:
            raise InputError(f"has {len(v)} values, but column {names[0]!r} has {n}", column=name, status=400)
    if n == 0:
        raise InputError("no rows to score", status=400)
    return InferenceRequest(columns=names, rows=list(zip(*values, strict=True)))


def _from_split(split: Any) -> InferenceRequest:
    if (
        not isinstance(split, dict)
        or not isinstance(split.get("columns"), list)
        or not isinstance(split.get("data"), list)
    ):
        raise InputError("dataframe_split needs 'columns' (a list) and 'data' (a list of rows)", status=400)
    columns = tuple(str(c) for c in split["columns"])
    rows = split["data"]
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise InputError(f"expected a list of {len(columns)} values", row=i, status=400)
    if not rows:
        raise InputError("no rows to score", status=400)
    return InferenceRequest(columns=columns, rows=rows)


def decode_json(body: bytes) -> InferenceRequest:
    """JSON records, columns, or MLflow's dataframe_split / dataframe_records."""
    obj = _json(body)
    if isinstance(obj, list):
        return _from_records(obj)
    if not isinstance(obj, dict) or not obj:
        raise InputError("expected a JSON array of records or an object of columns", status=400)
    if "dataframe_split" in obj:
        return _from_split(obj["dataframe_split"])
    if "dataframe_records" in obj:
        records = obj["dataframe_records"]
        if not isinstance(records, list):
            raise InputError("dataframe_records must be a list of records", status=400)
        return _from_records(records)
    return _from_columns(obj)


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


def decode_csv(body: bytes) -> InferenceRequest:
    """Comma-separated values with a header row (cells stay text until the model's types are known)."""
    if len(body) < _SMALL_CSV:
        return _decode_small_csv(body)
    try:
        frame = pd.read_csv(io.BytesIO(body), skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise InputError("the CSV body is empty", status=400) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"the body is not valid CSV: {exc}", status=400) from None
    if frame.empty:
        raise InputError("no rows to score", status=400)
    frame.columns = [str(c) for c in frame.columns]
    return InferenceRequest(columns=tuple(frame.columns), frame=frame)


_V2_NUMPY = {"BOOL": bool, "FP16": np.float64, "FP32": np.float64, "FP64": np.float64, "BYTES": object}


def decode_v2(body: bytes, manifest: Manifest) -> InferenceRequest:
    """An Open Inference Protocol v2 request: one [rows, features] tensor, or one tensor per feature."""
    obj = _json(body)
    inputs = obj.get("inputs") if isinstance(obj, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise InputError("a v2 inference request needs a non-empty 'inputs' list", status=400)
    tensors: list[np.ndarray] = []
    names: list[str] = []
    for k, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or not {"name", "shape", "datatype", "data"} <= tensor.keys():
            raise InputError(f"inputs[{k}] needs name, shape, datatype and data", status=400)
        dtype = _V2_NUMPY.get(
            str(tensor["datatype"]), np.float64 if str(tensor["datatype"])[:1] in "IU" else None
        )
        if dtype is None:
            raise InputError(f"inputs[{k}]: unsupported datatype {tensor['datatype']!r}", status=400)
        try:
            arr = np.asarray(tensor["data"], dtype=dtype).reshape(tensor["shape"])
        except (ValueError, TypeError) as exc:
            raise InputError(
                f"inputs[{k}] ({tensor['name']!r}): data does not fit shape {tensor['shape']}: {exc}",
                status=400,
            ) from None
        tensors.append(arr)
        names.append(str(tensor["name"]))
    features = manifest.feature_names
    if len(tensors) == 1 and tensors[0].ndim == 2:
        arr = tensors[0]
        if arr.shape[1] != len(features):
            raise InputError(
                f"inputs[0] has {arr.shape[1]} columns; the model takes {len(features)} features {features}",
                status=422,
            )
        return InferenceRequest(
            columns=tuple(features),
            rows=arr,
            parameters=obj.get("parameters") or {},
            request_id=obj.get("id"),
        )
    columns = []
    for name, arr in zip(names, tensors, strict=True):
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise InputError(
                f"expected shape [rows] or [rows, 1], got {list(arr.shape)}", column=name, status=400
            )
        columns.append(arr)
    n = len(columns[0])
    for name, arr in zip(names, columns, strict=True):
        if len(arr) != n:
            raise InputError(f"has {len(arr)} rows, but {names[0]!r} has {n}", column=name, status=400)
    frame = pd.DataFrame(dict(zip(names, columns, strict=True)))
    return InferenceRequest(
        columns=tuple(names), frame=frame, parameters=obj.get("parameters") or {}, request_id=obj.get("id")
    )


# ---------------------------------------------------------------- encoding


def predicted_indices(scores: Scores, manifest: Manifest) -> np.ndarray:
    """The index of the predicted class per row: threshold for binary, arg-max for multiclass."""
    probs = scores.probabilities
    assert probs is not None
    if manifest.target_type is TargetType.BINARY:
        return (probs[:, 1] > (manifest.threshold or 0.5)).astype(np.intp)
    return np.asarray(probs.argmax(axis=1))


def predicted_labels(scores: Scores, manifest: Manifest) -> list[Any]:
    labels = np.array(manifest.class_labels, dtype=object)
    return list(labels[predicted_indices(scores, manifest)].tolist())


def encode_datarobot(response: InferenceResponse) -> bytes:
    """DataRobot's prediction response: ``{"data": [{"rowId", "prediction", "predictionValues", …}]}``."""
    manifest, scores = response.manifest, response.scores
    if scores.probabilities is None:
        assert scores.values is not None
        target = manifest.target_name or "Prediction"
        data: list[dict[str, Any]] = [
            {"rowId": i, "prediction": v, "predictionValues": [{"label": target, "value": v}]}
            for i, v in enumerate(scores.values.tolist())
        ]
    else:
        labels = list(manifest.class_labels or [])
        predicted = predicted_labels(scores, manifest)
        probs = scores.probabilities.tolist()
        if manifest.target_type is TargetType.BINARY:
            threshold = manifest.threshold
            neg, pos = labels
            data = [
                {
                    "rowId": i,
                    "prediction": p,
                    "predictionThreshold": threshold,
                    "predictionValues": [{"label": neg, "value": r[0]}, {"label": pos, "value": r[1]}],
                }
                for i, (p, r) in enumerate(zip(predicted, probs, strict=True))
            ]
        else:
            data = [
                {
                    "rowId": i,
                    "prediction": p,
                    "predictionValues": [
                        {"label": label, "value": v} for label, v in zip(labels, r, strict=True)
                    ],
                }
                for i, (p, r) in enumerate(zip(predicted, probs, strict=True))
            ]
    return orjson.dumps({"data": data})


def _csv_value(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    text = str(v)
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv_lines(header: Sequence[str], columns: Sequence[Sequence[Any]]) -> bytes:
    out = [",".join(_csv_value(h) for h in header)]
    out.extend(",".join(map(_csv_value, row)) for row in zip(*columns, strict=True))
    return ("\n".join(out) + "\n").encode()


def encode_csv(response: InferenceResponse) -> bytes:
    """DataRobot's CSV columns: ``<label>_PREDICTION`` per class, ``PREDICTION``, and for binary
    models ``THRESHOLD`` and ``POSITIVE_CLASS``."""
    manifest, scores = response.manifest, response.scores
    if scores.probabilities is None:
        assert scores.values is not None
        return _csv_lines(["PREDICTION"], [scores.values.tolist()])
    labels = list(manifest.class_labels or [])
    header = [f"{label}_PREDICTION" for label in labels] + ["PREDICTION"]
    columns: list[Sequence[Any]] = [scores.probabilities[:, j].tolist() for j in range(len(labels))]
    columns.append(predicted_labels(scores, manifest))
    n = len(scores)
    if manifest.target_type is TargetType.BINARY:
        header += ["THRESHOLD", "POSITIVE_CLASS"]
        columns += [[manifest.threshold] * n, [labels[1]] * n]
    return _csv_lines(header, columns)


def _v2_datatype(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "INT64"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "FP64"
    return "BYTES"


def encode_v2(response: InferenceResponse, model_name: str) -> bytes:
    """An Open Inference Protocol v2 response: ``predict`` (labels or values) and ``predict_proba``."""
    manifest, scores = response.manifest, response.scores
    n = len(scores)
    outputs: list[dict[str, Any]]
    if scores.probabilities is None:
        assert scores.values is not None
        outputs = [{"name": "predict", "shape": [n], "datatype": "FP64", "data": scores.values.tolist()}]
    else:
        labels = predicted_labels(scores, manifest)
        probs = scores.probabilities
        outputs = [
            {
                "name": "predict",
                "shape": [n],
                "datatype": _v2_datatype(labels),
                "data": labels if _v2_datatype(labels) != "BYTES" else [str(v) for v in labels],
            },
            {
                "name": "predict_proba",
                "shape": [n, probs.shape[1]],
                "datatype": "FP64",
                "data": probs.ravel().tolist(),
            },
        ]
    body: dict[str, Any] = {"model_name": model_name, "model_version": manifest.version, "outputs": outputs}
    if response.request_id is not None:
        body["id"] = response.request_id
    return orjson.dumps(body)
