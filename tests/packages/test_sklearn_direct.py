"""Tree models scored without scikit-learn's per-call input checks, only once proven equal."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sklearn.ensemble._gradient_boosting as gradient_boosting
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from shipmate.packages import BuildOptions, build_sklearn_package, extract_package, load_model
from shipmate.packages.sklearn_direct import direct_scorer


class TweakedBoosting(GradientBoostingClassifier):
    """A subclass may score differently: it gets no direct scorer."""

    def predict_proba(self, X: Any) -> Any:
        return super().predict_proba(X)[:, ::-1]


def _public(model: Any, rows: np.ndarray, probabilities: bool) -> np.ndarray:
    with warnings.catch_warnings():  # fitted on a DataFrame, given a matrix
        warnings.simplefilter("ignore", UserWarning)
        return np.asarray(model.predict_proba(rows) if probabilities else model.predict(rows))


def _rows(X: pd.DataFrame, n: int = 40) -> np.ndarray:
    """Rows around and beyond the training data, so every tree takes both branches somewhere."""
    rng = np.random.default_rng(7)
    base = X.to_numpy(dtype="float64")
    return base[rng.integers(0, len(base), n)] * rng.uniform(0.5, 1.5, (n, base.shape[1]))


MODELS: dict[str, Any] = {
    "boosting, binary": lambda: GradientBoostingClassifier(n_estimators=30, random_state=0),
    "boosting, multiclass": lambda: GradientBoostingClassifier(n_estimators=30, random_state=0),
    "boosting, zero init": lambda: GradientBoostingClassifier(n_estimators=30, init="zero", random_state=0),
    "boosting, estimator init": lambda: GradientBoostingClassifier(
        n_estimators=30, init=LogisticRegression(max_iter=5000), random_state=0
    ),
    "boosting, regression": lambda: GradientBoostingRegressor(n_estimators=30, random_state=0),
    "forest, binary": lambda: RandomForestClassifier(n_estimators=30, random_state=0),
    "forest, multiclass": lambda: ExtraTreesClassifier(n_estimators=30, random_state=0),
    "forest, regression": lambda: RandomForestRegressor(n_estimators=30, random_state=0),
    "tree, multiclass": lambda: DecisionTreeClassifier(max_depth=6, random_state=0),
    "tree, regression": lambda: DecisionTreeRegressor(max_depth=6, random_state=0),
}


@pytest.mark.parametrize("case", list(MODELS))
def test_direct_scorer_gives_exactly_the_public_methods_output(
    case: str, cancer: Any, iris: Any, diabetes: Any
) -> None:
    data = diabetes if "regression" in case else iris if "multiclass" in case else cancer
    X, y = data
    model = MODELS[case]().fit(X, y)
    probabilities = "regression" not in case
    direct = direct_scorer(model, probabilities)
    assert direct is not None
    rows = _rows(X)
    np.testing.assert_array_equal(direct(rows), _public(model, rows, probabilities))


def test_only_fitted_tree_models_of_the_kind_asked_get_a_direct_scorer(cancer: Any) -> None:
    X, y = cancer
    fitted = GradientBoostingClassifier(n_estimators=5, random_state=0).fit(X, y)
    assert direct_scorer(fitted, probabilities=False) is None  # a classifier scored by predict
    assert direct_scorer(GradientBoostingClassifier(), probabilities=True) is None  # not fitted
    assert direct_scorer(TweakedBoosting(n_estimators=5).fit(X, y), probabilities=True) is None
    assert direct_scorer(LogisticRegression().fit(X, y), probabilities=True) is None
    two_outputs = RandomForestRegressor(n_estimators=5).fit(
        X, np.column_stack([y == "benign", y == "malignant"])
    )
    assert direct_scorer(two_outputs, probabilities=False) is None
    in_parallel = RandomForestClassifier(n_estimators=5, n_jobs=2).fit(X, y)  # kept: trees on several cores
    assert direct_scorer(in_parallel, probabilities=True) is None


def test_a_matrix_of_the_wrong_width_is_refused_before_the_trees_read_it(cancer: Any) -> None:
    X, y = cancer
    direct = direct_scorer(GradientBoostingClassifier(n_estimators=5).fit(X, y), probabilities=True)
    assert direct is not None
    with pytest.raises(ValueError, match="expected a matrix of 6 columns, got shape"):
        direct(X.to_numpy()[:, :5])


def _package(model: Any, X: pd.DataFrame, tmp_path: Path, **kwargs: Any) -> Any:
    path = tmp_path / "model.mlpkg"
    build_sklearn_package(model, X, path, name="boosted", options=BuildOptions(**kwargs))
    return load_model(tmp_path / "unpacked", extract_package(path, tmp_path / "unpacked"))


@pytest.mark.parametrize("kind", [GradientBoostingClassifier, RandomForestClassifier])
def test_a_served_tree_model_scores_checked_matrices_directly(
    kind: type, cancer: Any, tmp_path: Path
) -> None:
    X, y = cancer
    model = kind(n_estimators=20, random_state=0).fit(X, y)
    loaded = _package(model, X, tmp_path, class_labels=["malignant", "benign"])  # not sklearn's order
    rows = _rows(X)
    np.testing.assert_array_equal(
        loaded.predict_checked(rows).probabilities, loaded.predict(rows).probabilities
    )
    np.testing.assert_allclose(
        loaded.predict_checked(rows).probabilities, _public(model, rows, True)[:, [1, 0]]
    )
    with pytest.raises(ValueError, match="expected a matrix of 6 columns"):  # the direct scorer's own check
        loaded.predict_checked(rows[:, :5])


def test_when_scikit_learns_internals_differ_the_public_method_is_kept(
    cancer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release whose private routine no longer does what the public method does fails the proof."""
    X, y = cancer
    model = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(X, y)
    original = gradient_boosting.predict_stages

    def drifted(trees: Any, matrix: Any, rate: float, out: np.ndarray) -> None:
        original(trees, matrix, rate, out)
        out += 1e-9

    monkeypatch.setattr(gradient_boosting, "predict_stages", drifted)  # seen only by the direct scorer
    loaded = _package(model, X, tmp_path)
    rows = _rows(X)
    np.testing.assert_array_equal(loaded.predict_checked(rows).probabilities, _public(model, rows, True))
    with pytest.raises(ValueError, match="X has 5 features"):  # scikit-learn's own check ran
        loaded.predict_checked(rows[:, :5])
