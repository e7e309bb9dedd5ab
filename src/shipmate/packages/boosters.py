"""XGBoost and LightGBM models from their native formats, loaded without unpickling.

XGBoost's JSON/UBJSON and LightGBM's text format are data: loading one parses trees and
runs no code from the package, so these packages, like ONNX ones, may come from untrusted
sources (docs/packages.md). Each booster predicts through its own C++ (``inplace_predict``
for XGBoost, ``predict`` for LightGBM), which is already the compiled form; the server
hands it the checked float matrix.

What a booster computes is read from its objective: probabilities of the positive class
(binary), one per class (multiclass), or values (regression). Class ``i`` is the i-th
class label of the manifest, as scikit-learn's wrappers encode labels in sorted order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shipmate.packages.errors import ModelError
from shipmate.packages.manifest import Framework, TargetType

XGBOOST_SUFFIXES = (".json", ".ubj")
LIGHTGBM_SUFFIX = ".txt"


@dataclass(frozen=True, slots=True)
class Objective:
    """What a booster's output means: its target type and, for classification, its classes."""

    target_type: TargetType
    classes: int = 0


def xgboost_objective(booster: Any) -> Objective:
    config = json.loads(booster.save_config())["learner"]
    name = str(config["objective"]["name"])
    if name == "binary:logistic":
        return Objective(TargetType.BINARY, 2)
    if name == "multi:softprob":
        return Objective(TargetType.MULTICLASS, int(config["learner_model_param"]["num_class"]))
    if name.startswith(("binary:", "multi:", "rank:")):
        raise ModelError(
            f"XGBoost objective {name!r} gives no probabilities; train with binary:logistic or multi:softprob"
        )
    return Objective(TargetType.REGRESSION)


def lightgbm_objective(booster: Any) -> Objective:
    text = str(booster.dump_model(num_iteration=0).get("objective", "regression"))
    name = text.split()[0] if text else "regression"
    if name == "binary":
        return Objective(TargetType.BINARY, 2)
    if name in ("multiclass", "softmax"):
        return Objective(TargetType.MULTICLASS, int(booster.dump_model(num_iteration=0)["num_class"]))
    if name in ("multiclassova", "ova", "lambdarank", "rank_xendcg", "cross_entropy_lambda"):
        raise ModelError(f"LightGBM objective {name!r} is not served; train with binary or multiclass")
    return Objective(TargetType.REGRESSION)


def load_booster(framework: Framework, path: Path) -> Any:
    """Parse the model file (no code runs); `ModelError` saying what is wrong."""
    try:
        if framework is Framework.XGBOOST:
            import xgboost

            booster = xgboost.Booster()
            booster.load_model(str(path))
            return booster
        import lightgbm

        return lightgbm.Booster(model_file=str(path))
    except ImportError:
        raise ModelError(f"this package holds a {framework} model: install {framework} to serve it") from None
    except Exception as exc:
        raise ModelError(f"{path.name} is not a readable {framework} model: {exc}") from None


def booster_features(framework: Framework, booster: Any) -> list[str] | None:
    """The feature names the booster was trained with, when it has real ones."""
    if framework is Framework.XGBOOST:
        names = booster.feature_names
        return [str(n) for n in names] if names else None
    names = [str(n) for n in booster.feature_name()]
    return None if all(n == f"Column_{i}" for i, n in enumerate(names)) else names


def _plain_name(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "_", name)


def package_names(trained: Sequence[str], features: Sequence[str]) -> list[str] | None:
    """The package feature each of the booster's inputs is, by name (LightGBM writes
    characters other than letters, digits and ``_`` as ``_``); ``None`` when they do not match."""
    have = set(features)
    if all(n in have for n in trained):
        return list(trained)
    plain = {_plain_name(f): f for f in features}
    if len(plain) == len(features) and all(_plain_name(n) in plain for n in trained):
        return [plain[_plain_name(n)] for n in trained]
    return None


def column_order(trained: Sequence[str] | None, features: Sequence[str], width: int) -> np.ndarray | None:
    """Where each of the booster's inputs is among the package's features (``None``: the same
    order); `ModelError` when they do not match."""
    if width != len(features):
        raise ModelError(f"the model takes {width} features, the package lists {len(features)}")
    if not trained:
        return None
    names = package_names(trained, features)
    if names is None:
        missing = [n for n in trained if n not in features]
        raise ModelError(f"the model was trained on features the package lacks: {missing}")
    index = np.array([list(features).index(n) for n in names])
    return None if np.array_equal(index, np.arange(len(index))) else index


def raw_predict(framework: Framework, booster: Any, matrix: np.ndarray) -> np.ndarray:
    if framework is Framework.XGBOOST:
        return np.asarray(booster.inplace_predict(matrix, validate_features=False))
    return np.asarray(booster.predict(matrix, validate_features=False))


def input_width(framework: Framework, booster: Any) -> int:
    return int(booster.num_features()) if framework is Framework.XGBOOST else int(booster.num_feature())


_XGB_ARGS = json.dumps(  # inplace_predict's defaults: values (not margins), every tree, NaN missing
    {
        "type": 0,
        "training": False,
        "iteration_begin": 0,
        "iteration_end": 0,
        "missing": float("nan"),
        "strict_shape": False,
        "cache_id": 0,
    }
).encode()


class XGBoostDirect:
    """XGBoost's C predictor (``XGBoosterPredictFromDense``, what ``inplace_predict`` calls)
    called with its arguments made once: ``inplace_predict`` spends about 0.15 ms of Python
    per call (a JSON config, an array-interface string, a class built per call for its
    output) around 0.06 ms of C++ for one row of a 100-tree model. Same function, same
    arguments, so the same floats; still proven equal before it serves (`proven_direct`)."""

    def __init__(self, booster: Any) -> None:
        import ctypes

        from xgboost.core import _LIB  # the library xgboost itself loaded, and its handle's owner

        self._ctypes = ctypes
        self._lib = _LIB
        self._call = _LIB.XGBoosterPredictFromDense
        self._booster = booster  # keeps the handle alive
        self._handle = booster.handle

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        ctypes = self._ctypes
        x = np.ascontiguousarray(matrix, dtype=np.float64)
        rows, cols = x.shape
        iface = b'{"data":[%d,true],"shape":[%d,%d],"strides":null,"typestr":"<f8","version":3}' % (
            x.ctypes.data,
            rows,
            cols,
        )
        shape = ctypes.POINTER(ctypes.c_uint64)()
        dims = ctypes.c_uint64()
        preds = ctypes.POINTER(ctypes.c_float)()
        status = self._call(
            self._handle, iface, _XGB_ARGS, None, ctypes.byref(shape), ctypes.byref(dims), ctypes.byref(preds)
        )
        if status != 0:
            raise ModelError(f"XGBoost could not score the rows: {self._lib.XGBGetLastError().decode()}")
        out_shape = tuple(int(shape[i]) for i in range(dims.value))
        size = int(np.prod(out_shape)) if out_shape else 0
        # the booster's own buffer, reused by its next call: copy it out now
        return np.ctypeslib.as_array(preds, shape=(size,)).reshape(out_shape).astype(np.float64)


class LightGBMDirect:
    """LightGBM's C predictor called without ``Booster.predict``'s Python: one row through
    its single-row fast path (``LGBM_BoosterPredictForMatSingleRowFast``, whose set-up is
    made once at load), batches through ``LGBM_BoosterPredictForMat`` — the function
    ``predict`` calls, with the same arguments (every tree unless the model names a best
    iteration, no extra parameters), so the same doubles; proven equal before it serves."""

    def __init__(self, booster: Any, width: int) -> None:
        import ctypes
        import threading

        from lightgbm.basic import _LIB  # type: ignore[attr-defined]  # the library lightgbm loaded

        self._ctypes = ctypes
        self._lib = _LIB
        self._booster = booster  # keeps the handle alive
        self._handle = booster._handle
        self._width = width
        self._iterations = int(booster.best_iteration) if int(booster.best_iteration or 0) > 0 else 0
        classes = ctypes.c_int(0)
        self._check(_LIB.LGBM_BoosterGetNumClasses(self._handle, ctypes.byref(classes)))
        self._per_row = int(classes.value)
        self._fast = ctypes.c_void_p()
        self._check(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                self._handle,
                ctypes.c_int(0),  # C_API_PREDICT_NORMAL
                ctypes.c_int(0),  # start iteration
                ctypes.c_int(self._iterations),
                ctypes.c_int(1),  # C_API_DTYPE_FLOAT64
                ctypes.c_int32(width),
                ctypes.c_char_p(b""),
                ctypes.byref(self._fast),
            )
        )
        self._lock = threading.Lock()  # the single-row fast path's buffers are one per set-up

    def _check(self, status: int) -> None:
        if status != 0:
            raise ModelError(f"LightGBM could not score the rows: {self._lib.LGBM_GetLastError().decode()}")

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        ctypes = self._ctypes
        x = np.ascontiguousarray(matrix, dtype=np.float64)
        rows = x.shape[0]
        out = np.empty(rows * self._per_row, dtype=np.float64)
        written = ctypes.c_int64(0)
        result = out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        if rows == 1 and self._fast:
            with self._lock:
                self._check(
                    self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                        self._fast, x.ctypes.data_as(ctypes.c_void_p), ctypes.byref(written), result
                    )
                )
        else:
            self._check(
                self._lib.LGBM_BoosterPredictForMat(
                    self._handle,
                    x.ctypes.data_as(ctypes.c_void_p),
                    ctypes.c_int(1),  # C_API_DTYPE_FLOAT64
                    ctypes.c_int32(rows),
                    ctypes.c_int32(x.shape[1]),
                    ctypes.c_int(1),  # row-major
                    ctypes.c_int(0),  # C_API_PREDICT_NORMAL
                    ctypes.c_int(0),
                    ctypes.c_int(self._iterations),
                    ctypes.c_char_p(b""),
                    ctypes.byref(written),
                    result,
                )
            )
        if written.value != out.size:
            raise ModelError(f"LightGBM wrote {written.value} scores for {rows} rows")
        return out if self._per_row == 1 else out.reshape(rows, self._per_row)

    def close(self) -> None:
        """Free the single-row set-up (later calls take the batch path)."""
        with self._lock:
            fast, self._fast = self._fast, self._ctypes.c_void_p()
            if fast:
                self._lib.LGBM_FastConfigFree(fast)


def split_thresholds(framework: Framework, booster: Any, trees: int = 10) -> dict[int, list[float]]:
    """The split thresholds of the first ``trees`` trees, by input column (for the proof's
    edge rows: a value at a threshold and one float step either side)."""
    out: dict[int, list[float]] = {}
    if framework is Framework.XGBOOST:
        model = json.loads(bytes(booster.save_raw("json")))["learner"]["gradient_booster"]["model"]
        for tree in model["trees"][:trees]:
            for left, j, t in zip(
                tree["left_children"], tree["split_indices"], tree["split_conditions"], strict=True
            ):
                if left != -1:
                    out.setdefault(int(j), []).append(float(t))
        return out
    for info in booster.dump_model(num_iteration=trees)["tree_info"][:trees]:
        stack = [info["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_feature" in node and isinstance(node.get("threshold"), int | float):
                out.setdefault(int(node["split_feature"]), []).append(float(node["threshold"]))
                stack += [node["left_child"], node["right_child"]]
    return out


def threshold_rows(framework: Framework, booster: Any, base: np.ndarray, per_feature: int = 4) -> np.ndarray:
    """Copies of the row ``base`` (booster column order) with one column set to a split
    threshold, or one step away from it in float64 and in float32 (XGBoost compares in float32)."""
    rows: list[np.ndarray] = []
    for j, values in sorted(split_thresholds(framework, booster).items()):
        if j >= base.shape[0]:
            continue
        for t in sorted(set(values))[:per_feature]:
            t32 = np.float32(t)
            steps = {
                t,
                float(np.nextafter(t, -np.inf)),
                float(np.nextafter(t, np.inf)),
                float(np.nextafter(t32, np.float32(-np.inf))),
                float(np.nextafter(t32, np.float32(np.inf))),
            }
            for v in sorted(steps):
                row = base.copy()
                row[j] = v
                rows.append(row)
    return np.array(rows).reshape(-1, base.shape[0])
