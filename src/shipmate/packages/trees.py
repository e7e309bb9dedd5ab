"""Scoring scikit-learn's forests and single trees exactly, all trees at once.

A forest's public ``predict_proba`` calls each tree's ``predict_proba`` in turn (through
joblib): for a 150-tree forest that is about 1.5 ms of Python for one row, whatever the
arithmetic. `tree_scorer` reads the fitted trees' node arrays once and then does what
those calls do, with far fewer Python steps:

- **small batches** walk every tree for every row together in numpy, one step per tree
  level: a row goes left where ``float32(x) <= threshold`` (the trees' own test after
  scikit-learn casts its input to float32), or where ``x`` is missing and the node sends
  missing values left; a leaf points to itself;
- **large batches** call each tree's compiled ``apply`` (scikit-learn's own traversal)
  and read the leaves' outputs, skipping the per-tree checks and array copies.

Either way each leaf's output is the row scikit-learn returns for it
(``value[leaf, 0, :n_classes]``) and the trees' outputs are added in the trees' order,
starting from zero, then divided by the number of trees, as the forest does: the result
is the public method's, bit for bit (the proof still checks it on probe and edge rows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

TreeScorer = Callable[[np.ndarray], np.ndarray]
"""A float matrix of the model's features in order → what the public method returns."""

SMALL_BATCH_CELLS = 6_000
"""Rows times trees up to which the all-trees numpy walk beats one ``apply`` call per tree
(measured with ``bench/compiled_bench.py``; see docs/serving.md)..."""
FEWEST_TREES_TO_WALK = 16
"""... when there are this many trees at least: the walk costs about 70 µs whatever the
number of trees, a tree's ``apply`` about 3 µs a call."""

GOES_LEFT: Callable[[np.ndarray, np.ndarray], np.ndarray] = np.less_equal
"""scikit-learn's split test, ``x <= threshold``."""


def tree_scorer(estimator: Any, probabilities: bool) -> TreeScorer | None:
    """``predict_proba`` (``probabilities``, classifiers) or ``predict`` (regressors) of a fitted
    ``RandomForest*``, ``ExtraTrees*``, ``DecisionTree*`` or ``ExtraTree*`` with one output;
    ``None`` for any other estimator or layout."""
    kind = _kind(estimator)
    if kind is None or int(getattr(estimator, "n_outputs_", 0)) != 1:
        return None
    classifier = hasattr(estimator, "classes_")
    if classifier != probabilities:
        return None
    trees = list(estimator.estimators_) if kind == "forest" else [estimator]
    try:
        return _Ensemble(
            trees,
            int(estimator.n_classes_) if classifier else 0,
            mean=kind == "forest",
            width=int(estimator.n_features_in_),
            takes_missing=_takes_missing(estimator),
        ).score
    except (AttributeError, ValueError, TypeError):  # a layout this module does not know
        return None


def _kind(estimator: Any) -> str | None:
    try:
        from sklearn.ensemble import (
            ExtraTreesClassifier,
            ExtraTreesRegressor,
            RandomForestClassifier,
            RandomForestRegressor,
        )
        from sklearn.tree import (
            DecisionTreeClassifier,
            DecisionTreeRegressor,
            ExtraTreeClassifier,
            ExtraTreeRegressor,
        )
    except ImportError:
        return None
    forests = (RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier, ExtraTreesRegressor)
    single = (DecisionTreeClassifier, DecisionTreeRegressor, ExtraTreeClassifier, ExtraTreeRegressor)
    if type(estimator) in forests:  # exactly these: a subclass may score differently
        return "forest"
    if type(estimator) in single:
        return "tree"
    return None


def _takes_missing(estimator: Any) -> bool:
    """Whether the public method scores a row with a missing value (a model fitted without
    them refuses it; then so does the scorer, and the public method gives its error)."""
    import warnings

    gaps = np.full((1, int(estimator.n_features_in_)), np.nan)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator.predict(gaps)
    except ValueError:
        return False
    return True


class _Ensemble:
    """The trees' nodes in one set of arrays (tree after tree), and each tree's leaf outputs."""

    def __init__(
        self, trees: list[Any], classes: int, *, mean: bool, width: int, takes_missing: bool
    ) -> None:
        inner = [t.tree_ for t in trees]
        counts = np.array([tree.node_count for tree in inner])
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
        self._trees = inner
        self._roots = offsets
        self._depth = max(int(tree.max_depth) for tree in inner)
        left = np.concatenate([tree.children_left for tree in inner]).astype(np.intp)
        right = np.concatenate([tree.children_right for tree in inner]).astype(np.intp)
        leaf = left < 0
        own = np.arange(len(left), dtype=np.intp)
        shift = np.repeat(offsets, counts)
        self._left = np.where(leaf, own, left + shift)
        self._right = np.where(leaf, own, right + shift)
        self._feature = np.where(leaf, 0, np.concatenate([tree.feature for tree in inner])).astype(np.intp)
        self._threshold = np.concatenate([tree.threshold for tree in inner]).astype(np.float64)
        self._missing_left = np.concatenate(
            [np.asarray(tree.missing_go_to_left, dtype=bool) for tree in inner]
        )
        # what scikit-learn returns for a row that ends in each node (only leaves are read)
        per_tree = [
            np.asarray(tree.value[:, 0, :classes] if classes else tree.value[:, 0, 0]) for tree in inner
        ]
        self._outputs = [np.ascontiguousarray(v, dtype=np.float64) for v in per_tree]
        self._leaf_output = np.concatenate(self._outputs)
        self._classes, self._mean, self._width = classes, mean, width
        self._takes_missing = takes_missing

    def score(self, matrix: np.ndarray) -> np.ndarray:
        if matrix.ndim != 2 or matrix.shape[1] != self._width:  # unchecked, a row would be misread
            raise ValueError(f"expected a matrix of {self._width} columns, got shape {matrix.shape}")
        rows = np.ascontiguousarray(matrix, dtype=np.float32)  # what the public checks convert to
        if not self._takes_missing and np.isnan(rows).any():
            raise ValueError("a missing value the model does not take")  # the public method says which
        total: np.ndarray
        if len(self._trees) >= FEWEST_TREES_TO_WALK and len(rows) * len(self._trees) <= SMALL_BATCH_CELLS:
            outputs = self._leaf_output[self._walk(rows)]  # trees, rows (, classes)
            total = np.cumsum(outputs, axis=0)[-1]  # added up in the trees' order, as the forest does
        else:
            total = self._applied(rows)
        if self._mean:
            total /= len(self._trees)
        return total

    def _walk(self, rows: np.ndarray) -> np.ndarray:
        """Each tree's leaf for each row (global node numbers, trees by rows), all trees at once."""
        n = len(rows)
        node = np.repeat(self._roots, n)
        row = np.tile(np.arange(n, dtype=np.intp), len(self._roots))
        flat = rows.ravel()
        at = row * self._width
        has_gaps = self._takes_missing and bool(np.isnan(rows).any())
        for _ in range(self._depth):
            x = flat[at + self._feature[node]]
            left = GOES_LEFT(x, self._threshold[node])
            if has_gaps:
                left |= np.isnan(x) & self._missing_left[node]
            node = np.where(left, self._left[node], self._right[node])
        return node.reshape(len(self._roots), n)

    def _applied(self, rows: np.ndarray) -> np.ndarray:
        """The trees' outputs added up through each tree's compiled ``apply`` (faster once
        batches are large), in the trees' order."""
        total = np.zeros((len(rows), self._classes) if self._classes else len(rows), dtype=np.float64)
        for tree, outputs in zip(self._trees, self._outputs, strict=True):
            total += outputs.take(tree.apply(rows), axis=0)
        return total


class HistWalk:
    """A ``HistGradientBoosting*`` model's raw predictions for small batches, all trees at once
    (its predictors' compiled ``predict`` is one Python call per tree: about 8 µs each).

    Numeric splits only: a row goes left where ``x <= threshold`` (float64, as the
    predictors compare) or where ``x`` is missing and the node sends missing values left.
    Each class's raw score starts from the model's baseline and adds the trees' values in
    the iterations' order, as scikit-learn does, so the sums are the same to the bit."""

    def __init__(self, predictors: list[list[Any]], baseline: np.ndarray) -> None:
        per_row = len(predictors[0]) if predictors else 0
        nodes = [stage[k].nodes for stage in predictors for k in range(per_row)]
        if not nodes or any(bool(n["is_categorical"].any()) for n in nodes):
            raise ValueError("categorical splits are not walked here")
        counts = np.array([len(n) for n in nodes])
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
        shift = np.repeat(offsets, counts)
        leaf = np.concatenate([n["is_leaf"] for n in nodes]).astype(bool)
        own = np.arange(len(leaf), dtype=np.intp)
        self._left = np.where(leaf, own, np.concatenate([n["left"] for n in nodes]).astype(np.intp) + shift)
        self._right = np.where(leaf, own, np.concatenate([n["right"] for n in nodes]).astype(np.intp) + shift)
        self._feature = np.where(leaf, 0, np.concatenate([n["feature_idx"] for n in nodes])).astype(np.intp)
        self._threshold = np.concatenate([n["num_threshold"] for n in nodes]).astype(np.float64)
        self._missing_left = np.concatenate([n["missing_go_to_left"] for n in nodes]).astype(bool)
        self._value = np.concatenate([n["value"] for n in nodes]).astype(np.float64)
        self._roots = offsets
        self._depth = max(int(n["depth"].max()) for n in nodes)
        self._per_row = per_row
        self._baseline = np.asarray(baseline, dtype=np.float64).reshape(-1)
        self.trees = len(nodes)

    def raw(self, matrix: np.ndarray) -> np.ndarray:
        """Raw predictions, rows by classes (a float64 matrix of the model's features in order)."""
        n, width = matrix.shape
        flat = np.ascontiguousarray(matrix, dtype=np.float64).ravel()
        node = np.repeat(self._roots, n)
        at = np.tile(np.arange(n, dtype=np.intp) * width, len(self._roots))
        has_gaps = bool(np.isnan(flat).any())
        for _ in range(self._depth):
            x = flat[at + self._feature[node]]
            left = GOES_LEFT(x, self._threshold[node])
            if has_gaps:
                left |= np.isnan(x) & self._missing_left[node]
            node = np.where(left, self._left[node], self._right[node])
        values = self._value[node].reshape(-1, self._per_row, n)  # iterations, classes, rows
        out = np.empty((n, self._per_row), dtype=np.float64)
        for k in range(self._per_row):
            start = np.full((1, n), self._baseline[k])
            out[:, k] = np.cumsum(np.concatenate([start, values[:, k, :]]), axis=0)[-1]
        return out
