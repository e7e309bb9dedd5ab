"""An XGBoost model rebuilt as an onnxruntime tree ensemble, for small batches.

Why: XGBoost's C++ predictor spends about 0.1 ms on set-up for every call, whatever the
rows (one row of a 100-tree, depth-6 model: 0.12 ms CPU through its C API, 0.26 ms through
``inplace_predict``), where onnxruntime's ``TreeEnsembleRegressor`` scores that row in about
0.01 ms. For 1,000 rows XGBoost's own loop is the faster one, so the model serves small
batches here and larger ones natively (`SMALL_BATCH`).

Why it can be exact: XGBoost casts every input to float32 and sends a row left when
``x < split`` (float32), and a missing value to the node's default side; the ONNX ensemble
gets the same float32 inputs and thresholds with ``BRANCH_LT`` and, for missing values,
``nodes_missing_value_tracks_true`` set from ``default_left``. Only the leaf sums may differ
in the last bits (summation order), and the link (sigmoid or softmax) is taken in float64
here against float32 in XGBoost, so the proof (`shipmate.packages.proof`) allows 1e-6.

Rebuilt: ``gbtree`` boosters with numeric splits only and one output per tree, with
``binary:logistic``, ``multi:softprob`` or an identity-link regression objective; anything
else raises `Unsupported` and the model is served natively. LightGBM is not rebuilt: it
compares in float64 and has its own missing-value modes (zero as missing, none), which a
float32 ensemble cannot reproduce at the split thresholds.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

SMALL_BATCH = 64
"""Largest batch scored by the ensemble; larger ones go to XGBoost's own predictor, which
is cheaper per row (1,000 rows: about 2.1 ms against 2.9 ms CPU, one thread)."""

_IDENTITY = frozenset(
    {"reg:squarederror", "reg:linear", "reg:pseudohubererror", "reg:absoluteerror", "reg:quantileerror"}
)


_NODE_ATTRIBUTES = (
    "treeids",
    "nodeids",
    "featureids",
    "values",
    "modes",
    "truenodeids",
    "falsenodeids",
    "missing_value_tracks_true",
)


class Unsupported(Exception):
    """Why this booster is not rebuilt (told in the scoring note)."""


def _floats(text: Any) -> list[float]:
    """XGBoost writes base_score as "5E-1" (2.x) or "[5E-1]" (3.x, one per output)."""
    return [float(v) for v in str(text).strip("[]").split(",") if v.strip()]


class OnnxBooster:
    """The rebuilt ensemble: ``__call__`` takes the booster's float64 matrix and returns what
    ``inplace_predict`` returns (probabilities of the positive class, one per class, or values)."""

    def __init__(self, booster: Any) -> None:
        try:
            import onnx
            import onnxruntime as ort
        except ImportError:
            raise Unsupported("onnx is not installed") from None
        learner = json.loads(bytes(booster.save_raw("json")))["learner"]
        objective = str(learner["objective"]["name"])
        gbm = learner["gradient_booster"]
        if gbm.get("name") != "gbtree":
            raise Unsupported(f"booster {gbm.get('name')!r} (only gbtree is rebuilt)")
        param = learner["learner_model_param"]
        outputs = max(1, int(param.get("num_class", "0") or 0))
        if objective == "binary:logistic":
            self._link = "sigmoid"
        elif objective == "multi:softprob":
            self._link = "softmax"
        elif objective in _IDENTITY:
            self._link = "identity"
        else:
            raise Unsupported(f"objective {objective!r}")
        if int(param.get("num_target", "1") or 1) != 1:
            raise Unsupported("several targets")
        model = gbm["model"]
        trees, tree_info = model["trees"], model["tree_info"]
        attrs: dict[str, list[Any]] = {f"nodes_{k}": [] for k in _NODE_ATTRIBUTES}
        attrs.update({f"target_{k}": [] for k in ("treeids", "nodeids", "ids", "weights")})
        for t, tree in enumerate(trees):
            if any(int(s) != 0 for s in tree.get("split_type", [])):
                raise Unsupported("categorical splits")
            if int(tree["tree_param"].get("size_leaf_vector", "1") or 1) > 1:
                raise Unsupported("vector leaves")
            left, right = tree["left_children"], tree["right_children"]
            features, values, default_left = (
                tree["split_indices"],
                tree["split_conditions"],
                tree["default_left"],
            )
            for n in range(len(left)):
                leaf = left[n] == -1
                attrs["nodes_treeids"].append(t)
                attrs["nodes_nodeids"].append(n)
                attrs["nodes_featureids"].append(0 if leaf else int(features[n]))
                attrs["nodes_values"].append(0.0 if leaf else float(values[n]))
                attrs["nodes_modes"].append("LEAF" if leaf else "BRANCH_LT")
                attrs["nodes_truenodeids"].append(0 if leaf else int(left[n]))
                attrs["nodes_falsenodeids"].append(0 if leaf else int(right[n]))
                attrs["nodes_missing_value_tracks_true"].append(0 if leaf else int(default_left[n]))
                if leaf:
                    attrs["target_treeids"].append(t)
                    attrs["target_nodeids"].append(n)
                    attrs["target_ids"].append(int(tree_info[t]) if outputs > 1 else 0)
                    attrs["target_weights"].append(float(values[n]))
        base = np.asarray(_floats(param["base_score"]) or [0.5], dtype=np.float32)
        if self._link == "sigmoid":  # XGBoost keeps the intercept as a probability
            base = -np.log(np.float32(1) / base - np.float32(1))
        margins = [float(v) for v in np.broadcast_to(base.astype(np.float32), (outputs,))]
        width = int(param["num_feature"])
        helper, tensor = onnx.helper, onnx.TensorProto
        node = helper.make_node(
            "TreeEnsembleRegressor",
            ["X"],
            ["Y"],
            domain="ai.onnx.ml",
            n_targets=outputs,
            aggregate_function="SUM",
            base_values=margins,
            **attrs,  # type: ignore[arg-type]  # make_node takes any attribute by keyword
        )
        graph = helper.make_graph(
            [node],
            "xgboost",
            [helper.make_tensor_value_info("X", tensor.FLOAT, [None, width])],
            [helper.make_tensor_value_info("Y", tensor.FLOAT, [None, outputs])],
        )
        onnx_model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # the server scales with worker processes instead
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            onnx_model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self._outputs = outputs

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # beyond float32's range: infinite, as XGBoost casts it
            x = matrix.astype(np.float32)
        (margin,) = self._session.run(["Y"], {"X": x})
        m = np.asarray(margin, dtype=np.float64)
        if self._link == "sigmoid":
            return np.asarray(1.0 / (1.0 + np.exp(-m[:, 0])))
        if self._link == "softmax":
            e = np.exp(m - m.max(axis=1, keepdims=True))
            return np.asarray(e / e.sum(axis=1, keepdims=True))
        return m[:, 0] if self._outputs == 1 else m
