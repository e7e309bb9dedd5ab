"""Scoring scikit-learn's tree models without their per-call input checks.

Each ``predict_proba`` of a gradient-boosting model checks its input twice (the
ensemble, then its first tree) before the trees run: about 0.15 ms a call measured
alone, and three times that inside a busy prediction server (most likely because those
many small Python calls run on caches the batch has just flushed). A random forest also hands
each tree to joblib: about 3.5 ms a call for 100 trees, whatever the number of rows.
The server has already checked the float matrix it scores (float64, one column per
feature in the model's order, finite, missing values only where the model takes
them), so there those checks only repeat it.

`direct_scorer` returns what the public method computes once its checks have passed:
for forests and single trees through each tree's public ``check_input=False``, for
gradient boosting through scikit-learn's private routines. Either way a scorer is only
a candidate: the caller uses it once it has given exactly the public method's output
on sample rows. A scikit-learn release that changes how a model scores makes that
proof fail (or raise), and the public method is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

DirectScorer = Callable[[np.ndarray], np.ndarray]
"""A checked float matrix → what the public method returns for it."""

_Build = Callable[[Any], DirectScorer | None]
"""A fitted estimator → its scorer of float32 matrices, or ``None`` when it is not of a known shape."""


def direct_scorer(estimator: Any, probabilities: bool) -> DirectScorer | None:
    """``predict_proba`` (``probabilities``) or ``predict`` of a fitted gradient-boosting model,
    forest or single tree, minus its input checks; ``None`` for any other estimator."""
    try:
        builders = _builders()
    except ImportError:  # no scikit-learn here
        return None
    build = builders.get((type(estimator), probabilities))  # exactly these: a subclass may score differently
    if build is None:
        return None
    try:
        width = int(estimator.n_features_in_)
        score = build(estimator)
    except (AttributeError, ImportError):  # not fitted, or not the layout this module knows
        return None
    if score is None:
        return None

    def scorer(rows: np.ndarray) -> np.ndarray:
        if rows.ndim != 2 or rows.shape[1] != width:  # unchecked, the trees would read past a row
            raise ValueError(f"expected a matrix of {width} columns, got shape {rows.shape}")
        return score(np.ascontiguousarray(rows, dtype=np.float32))  # what the public checks convert to

    return scorer


def _builders() -> dict[tuple[type, bool], _Build]:
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.tree import (
        DecisionTreeClassifier,
        DecisionTreeRegressor,
        ExtraTreeClassifier,
        ExtraTreeRegressor,
    )

    return {
        (GradientBoostingClassifier, True): _boosting,
        (GradientBoostingRegressor, False): _boosting,
        (RandomForestClassifier, True): _forest,
        (ExtraTreesClassifier, True): _forest,
        (RandomForestRegressor, False): _forest,
        (ExtraTreesRegressor, False): _forest,
        (DecisionTreeClassifier, True): _tree,
        (ExtraTreeClassifier, True): _tree,
        (DecisionTreeRegressor, False): _tree,
        (ExtraTreeRegressor, False): _tree,
    }


def _boosting(model: Any) -> DirectScorer:
    """The init estimator's raw predictions, plus every stage's trees, through the loss's link."""
    from sklearn.base import is_classifier
    from sklearn.ensemble._gb import _init_raw_predictions
    from sklearn.ensemble._gradient_boosting import predict_stages

    trees, rate, loss, init = model.estimators_, model.learning_rate, model._loss, model.init_
    per_row, classifier = int(model.n_trees_per_iteration_), is_classifier(model)
    zero_init = isinstance(init, str) and init == "zero"

    def raw(matrix: np.ndarray) -> np.ndarray:
        if zero_init:
            summed = np.zeros((len(matrix), per_row), dtype=np.float64)
        else:
            summed = _init_raw_predictions(matrix, init, loss, classifier)
        predict_stages(trees, matrix, rate, summed)
        return summed

    if not classifier:
        return lambda matrix: raw(matrix).ravel()

    def proba(matrix: np.ndarray) -> np.ndarray:
        summed = raw(matrix)
        return np.asarray(loss.predict_proba(summed.ravel() if summed.shape[1] == 1 else summed))

    return proba


def _forest(model: Any) -> DirectScorer | None:
    """The mean of the trees' outputs, added up in the trees' order as scikit-learn does."""
    if model.n_outputs_ != 1 or model.n_jobs not in (None, 1):  # trees in parallel: the owner's choice
        return None
    trees = list(model.estimators_)
    classes = int(model.n_classes_) if hasattr(model, "classes_") else 0

    def mean(matrix: np.ndarray) -> np.ndarray:
        total = np.zeros((len(matrix), classes) if classes else len(matrix), dtype=np.float64)
        for tree in trees:
            total += (
                tree.predict_proba(matrix, check_input=False)
                if classes
                else tree.predict(matrix, check_input=False)
            )
        total /= len(trees)
        return total

    return mean


def _tree(model: Any) -> DirectScorer | None:
    if model.n_outputs_ != 1:
        return None
    if hasattr(model, "classes_"):
        return lambda matrix: np.asarray(model.predict_proba(matrix, check_input=False))
    return lambda matrix: np.asarray(model.predict(matrix, check_input=False))
