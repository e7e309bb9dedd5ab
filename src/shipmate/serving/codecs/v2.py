"""The Open Inference Protocol v2, in one place: model metadata, request tensors, response outputs.

Every v2 datatype table lives here: which numpy type a request tensor becomes, which
v2 type a feature is declared as, and which type an output is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd

from shipmate.packages import Manifest
from shipmate.serving.codecs.json import parse
from shipmate.serving.protocol import InferenceRequest, InferenceResponse, InputError

_FEATURE_TYPES = {"numeric": "FP64", "boolean": "BOOL"}
"""A manifest feature type's v2 datatype (any other is ``BYTES``)."""


def metadata(name: str, manifest: Manifest) -> dict[str, Any]:
    """The model metadata response (``GET /v2/models/{name}``)."""
    outputs: list[dict[str, Any]] = [
        {"name": "predict", "datatype": "FP64" if manifest.class_labels is None else "BYTES", "shape": [-1]}
    ]
    if manifest.class_labels:
        outputs.append(
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(manifest.class_labels)]}
        )
    return {
        "name": name,
        "versions": [manifest.version],
        "platform": str(manifest.framework),
        "inputs": [
            {"name": f.name, "datatype": _FEATURE_TYPES.get(f.type, "BYTES"), "shape": [-1]}
            for f in manifest.features
        ],
        "outputs": outputs,
    }


_TENSOR_TYPES = {"BOOL": bool, "FP16": np.float64, "FP32": np.float64, "FP64": np.float64, "BYTES": object}
_INTEGER_TYPES = {
    name: np.dtype(name.lower())
    for name in ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
}
"""The v2 integer datatypes: scored as floats once each value is known to fit the declared type."""
DATATYPES = (*_TENSOR_TYPES, *_INTEGER_TYPES)
"""Every datatype a request tensor may declare."""


def decode(body: bytes, manifest: Manifest) -> InferenceRequest:
    """An Open Inference Protocol v2 request: one [rows, features] tensor, or one tensor per feature."""
    obj = parse(body)
    inputs = obj.get("inputs") if isinstance(obj, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise InputError("a v2 inference request needs a non-empty 'inputs' list", status=400)
    tensors: list[np.ndarray] = []
    names: list[str] = []
    for k, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or not {"name", "shape", "datatype", "data"} <= tensor.keys():
            raise InputError(f"inputs[{k}] needs name, shape, datatype and data", status=400)
        datatype = str(tensor["datatype"])
        integer = _INTEGER_TYPES.get(datatype)
        dtype = np.float64 if integer is not None else _TENSOR_TYPES.get(datatype)
        if dtype is None:
            raise InputError(f"inputs[{k}]: unsupported datatype {tensor['datatype']!r}", status=400)
        try:
            if integer is not None:
                _check_integers(tensor["data"], integer, f"inputs[{k}]", datatype)
            arr = np.asarray(tensor["data"], dtype=dtype).reshape(tensor["shape"])
        except InputError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:
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


def _check_integers(data: Any, dtype: np.dtype[Any], where: str, datatype: str) -> None:
    """Integers must fit the declared datatype: numpy would otherwise wrap or truncate them."""
    values = np.asarray(data)
    if values.dtype.kind in "iub":
        return
    limits = np.iinfo(dtype)
    if values.dtype.kind == "f":
        bad = (values != np.trunc(values)) | (values < limits.min) | (values > limits.max)
        if bad.any():
            value = values.ravel()[int(np.argmax(bad.ravel()))]
            raise InputError(f"{where}: {value} is not a whole number within {datatype}", status=400)
        return
    for value in values.ravel().tolist():  # e.g. an integer beyond 64 bits (object array)
        if not isinstance(value, int) or not limits.min <= value <= limits.max:
            raise InputError(f"{where}: {value!r} is not a whole number within {datatype}", status=400)


def _output_datatype(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "INT64"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "FP64"
    return "BYTES"


def encode(response: InferenceResponse, model_name: str) -> bytes:
    """An Open Inference Protocol v2 response: ``predict`` (labels or values) and ``predict_proba``."""
    manifest, scores = response.manifest, response.scores
    n = len(scores)
    outputs: list[dict[str, Any]]
    if scores.probabilities is None:
        assert scores.values is not None
        outputs = [{"name": "predict", "shape": [n], "datatype": "FP64", "data": scores.values.tolist()}]
    else:
        labels = np.array(manifest.class_labels, dtype=object)[response.predicted_classes()].tolist()
        probs = scores.probabilities
        outputs = [
            {
                "name": "predict",
                "shape": [n],
                "datatype": _output_datatype(labels),
                "data": labels if _output_datatype(labels) != "BYTES" else [str(v) for v in labels],
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
