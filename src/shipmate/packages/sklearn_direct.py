"""Scoring scikit-learn's gradient boosting without its per-call input checks.

Each ``predict_proba`` of a gradient-boosting model checks its input twice (the
ensemble, then its first tree) before the trees run: about 0.15 ms a call measured
alone, and three times that inside a busy prediction server, where those many small
Python calls run on caches the batch has just flushed. The server has already checked
the float matrix it scores (float64, one column per feature in the model's order,
finite, missing values only where the model takes them), so there those checks only
repeat it.

`direct_scorer` returns what the public method computes once its checks have passed,
built from scikit-learn's own routines. Those routines are private, so a scorer is
only a candidate: the caller uses it once it has given exactly the public method's
output on sample rows. A scikit-learn release that changes them makes that proof fail
or raise, and the public method is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

DirectScorer = Callable[[np.ndarray], np.ndarray]
"""A checked float matrix → what the public method returns for it."""


def direct_scorer(estimator: Any, probabilities: bool) -> DirectScorer | None:
    """``predict_proba`` (``probabilities``) or ``predict`` of a fitted gradient-boosting
    classifier or regressor, minus its input checks; ``None`` for any other estimator."""
    try:
        from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
        from sklearn.ensemble._gb import _init_raw_predictions
        from sklearn.ensemble._gradient_boosting import predict_stages
    except ImportError:  # a scikit-learn without them: the public method it is
        return None
    kind = type(estimator)  # exactly these: a subclass may score differently
    if (kind, probabilities) not in ((GradientBoostingClassifier, True), (GradientBoostingRegressor, False)):
        return None
    try:
        width = int(estimator.n_features_in_)
        trees, rate, loss, init = (
            estimator.estimators_,
            estimator.learning_rate,
            estimator._loss,
            estimator.init_,
        )
        per_row = int(estimator.n_trees_per_iteration_)
    except AttributeError:  # not fitted, or not the layout this module knows
        return None
    zero_init = isinstance(init, str) and init == "zero"

    def raw(rows: np.ndarray) -> np.ndarray:
        if rows.ndim != 2 or rows.shape[1] != width:  # the trees index columns unchecked
            raise ValueError(f"expected a matrix of {width} columns, got shape {rows.shape}")
        matrix = np.ascontiguousarray(rows, dtype=np.float32)
        if zero_init:
            summed = np.zeros((len(matrix), per_row), dtype=np.float64)
        else:
            summed = _init_raw_predictions(matrix, init, loss, probabilities)
        predict_stages(trees, matrix, rate, summed)
        return summed

    if not probabilities:
        return lambda rows: raw(rows).ravel()

    def proba(rows: np.ndarray) -> np.ndarray:
        summed = raw(rows)
        return np.asarray(loss.predict_proba(summed.ravel() if summed.shape[1] == 1 else summed))

    return proba
