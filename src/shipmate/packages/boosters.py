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
