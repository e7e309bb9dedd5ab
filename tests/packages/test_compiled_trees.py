"""Forests and trees scored all at once, proven at their split thresholds (through the
preprocessing too), and histogram boosting with categorical features."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from threadpoolctl import threadpool_limits

import shipmate.packages.trees as trees
from shipmate.packages import BuildOptions, Columns, build_sklearn_package, extract_package, load_model
from shipmate.packages.compiled import compile_model
from shipmate.packages.proof import ScorerKind, edge_inputs
from shipmate.packages.trees import tree_scorer


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with threadpool_limits(limits=1):
        yield


NUM = ["n0", "n1", "n2"]


def _data(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    # coarse values: many split thresholds are then exactly representable in float32
    X = pd.DataFrame({c: np.round(rng.normal(size=n) * 8) / 4 for c in NUM})
    X["plan"] = rng.choice(["basic", "pro", "team"], n)
    X.loc[rng.random(n) < 0.1, "n0"] = np.nan
    y = ((X.n1 + (X.plan == "pro") + rng.normal(size=n) * 0.3) > 0.3).map({True: "yes", False: "no"})
    return X, y


def _pipeline(model: Any) -> Pipeline:
    pre = ColumnTransformer(
        [
            (
                "std",
                Pipeline([("imp", SimpleImputer(strategy="median")), ("sc", StandardScaler())]),
                ["n0", "n1"],
            ),
            ("mm", MinMaxScaler(), ["n2"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ]
    )
    return Pipeline([("pre", pre), ("m", model)])


def _load(model: Any, X: pd.DataFrame, tmp_path: Path, *, compile: bool = True) -> Any:
    path = tmp_path / "model.mlpkg"
    build_sklearn_package(model, X, path, name="m", options=BuildOptions(importance=False))
    return load_model(tmp_path / "x", extract_package(path, tmp_path / "x"), compile=compile)


def _columns(X: pd.DataFrame) -> Columns:
    data = {
        c: X[c].to_numpy(dtype="float64") if X[c].dtype.kind == "f" else X[c].astype(object).to_numpy()
        for c in X.columns
    }
    return Columns(data, len(X))


ESTIMATORS: dict[str, Callable[[], Any]] = {
    "forest": lambda: RandomForestClassifier(30, max_depth=8, random_state=0),
    "extra trees": lambda: ExtraTreesClassifier(30, random_state=0),
    "tree": lambda: DecisionTreeClassifier(random_state=0),
    "forest regressor": lambda: RandomForestRegressor(20, random_state=0),
    "extra trees regressor": lambda: ExtraTreesRegressor(20, random_state=0),
    "tree regressor": lambda: DecisionTreeRegressor(max_depth=6, random_state=0),
}


@pytest.mark.parametrize("kind", list(ESTIMATORS))
def test_all_trees_at_once_give_the_public_methods_output_bit_for_bit(kind: str) -> None:
    X, y = _data(600)
    X = X[NUM]  # missing values in n0: these models take them
    model = ESTIMATORS[kind]()
    target = y if hasattr(model, "predict_proba") else X.n1 * 2 + X.n2
    model.fit(X.to_numpy(), target)
    score = tree_scorer(model, hasattr(model, "predict_proba"))
    assert score is not None
    public = model.predict_proba if hasattr(model, "predict_proba") else model.predict
    rng = np.random.default_rng(5)
    for n in (1, 7, 400):  # the numpy walk for small batches, each tree's apply for large ones
        rows = rng.normal(size=(n, 3)) * 2
        rows[rng.random((n, 3)) < 0.1] = np.nan
        np.testing.assert_array_equal(score(rows), public(rows))


def test_threshold_rows_land_on_the_thresholds_after_the_preprocessing(tmp_path: Path) -> None:
    """For thresholds of the final forest on each scaled column, the edge rows hold inputs whose
    preprocessed float32 values are the last to go left and the first to go right."""
    X, y = _data()
    model = _pipeline(RandomForestClassifier(10, random_state=0)).fit(X, y)
    manifest = build_sklearn_package(
        model, X, tmp_path / "m.mlpkg", name="m", options=BuildOptions(importance=False)
    )
    rows = pd.concat(edge_inputs(manifest, model, with_missing=True), ignore_index=True)
    seen = np.asarray(model[:-1].transform(rows), dtype=np.float64).astype(np.float32)
    for j in (0, 1, 2):  # n0, n1, n2 after imputing and scaling
        thresholds = np.unique(
            np.concatenate([e.tree_.threshold[e.tree_.feature == j] for e in model[-1].estimators_[:10]])
        )
        values = np.unique(seen[:, j])
        straddled = [
            t
            for t in thresholds
            if (values <= t).any()
            and (values > t).any()
            and np.nextafter(values[values <= t].max(), np.float32(np.inf)) == values[values > t].min()
        ]
        assert len(straddled) >= 4, (j, straddled)


WRONG: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "< instead of <=": np.less,
    "thresholds rounded to float32": lambda x, t: x <= t.astype(np.float32),
}


@pytest.mark.parametrize("wrong", list(WRONG))
@pytest.mark.parametrize("shape", ["pipeline", "bare"])
def test_a_scorer_that_flips_at_a_threshold_is_refused(
    wrong: str, shape: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = _data()
    if wrong == "thresholds rounded to float32":  # (on the coarse values, they are float32 already)
        X[NUM] += np.random.default_rng(1).normal(size=(len(X), len(NUM))) * 1e-3
    forest = RandomForestClassifier(20, random_state=0)  # enough trees for the all-trees walk
    if shape == "pipeline":
        model = _pipeline(forest).fit(X, y)
    else:
        X = X[NUM].fillna(0.0)
        model = forest.fit(X, y)
    assert _load(model, X, tmp_path / "right").scoring.scorer is ScorerKind.COMPILED
    monkeypatch.setattr(trees, "GOES_LEFT", WRONG[wrong])
    loaded = _load(model, X, tmp_path / "wrong")
    assert loaded.scoring.scorer is not ScorerKind.COMPILED
    assert "refused" in loaded.scoring.note


@pytest.mark.parametrize("kind", ["forest", "extra trees", "tree"])
def test_a_forest_pipeline_serves_compiled_exactly(kind: str, tmp_path: Path) -> None:
    X, y = _data()
    model = _pipeline(ESTIMATORS[kind]()).fit(X, y)
    loaded = _load(model, X, tmp_path)
    assert loaded.scoring.scorer is ScorerKind.COMPILED, loaded.scoring
    assert loaded.scoring.max_difference == 0.0
    rows = X.sample(80, random_state=3).reset_index(drop=True)
    rows.loc[::5, "n2"] = np.nan  # not imputed: the trees send it down their missing-value branches
    np.testing.assert_array_equal(loaded.predict(_columns(rows)).probabilities, model.predict_proba(rows))


def test_a_bare_forest_is_compiled_and_direct_without_compilation(tmp_path: Path) -> None:
    X, _ = _data()
    X = X[NUM].fillna(0.0)
    model = ExtraTreesRegressor(10, random_state=0).fit(X, X.n1)
    loaded = _load(model, X, tmp_path / "on")
    assert loaded.scoring.scorer is ScorerKind.COMPILED and loaded.scoring.max_difference == 0.0
    assert _load(model, X, tmp_path / "off", compile=False).scoring.scorer is ScorerKind.DIRECT


# -- histogram boosting with categorical features ------------------------------------------------


def _categorical_data() -> tuple[pd.DataFrame, pd.Series]:
    X, y = _data(500)
    X["region"] = np.random.default_rng(2).choice(["eu", "us", "apac"], len(X))
    y = y.where(X.region != "apac", "yes")
    return X, y


def _hgb_cases() -> dict[str, Callable[[pd.DataFrame], tuple[Any, pd.DataFrame]]]:
    def from_dtype(X: pd.DataFrame) -> tuple[Any, pd.DataFrame]:
        X = X[[*NUM, "plan", "region"]].astype({"plan": "category", "region": "category"})
        return HistGradientBoostingClassifier(max_iter=15, categorical_features="from_dtype"), X

    def by_index(X: pd.DataFrame) -> tuple[Any, pd.DataFrame]:
        X = X[NUM].assign(code=(X.region == "us") * 2.0 + (X.region == "apac") * 1.0)
        return HistGradientBoostingClassifier(max_iter=15, categorical_features=[3]), X

    def in_pipeline(X: pd.DataFrame) -> tuple[Any, pd.DataFrame]:
        pre = ColumnTransformer(
            [
                ("num", StandardScaler(), NUM),
                (
                    "cat",
                    OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                    ["plan", "region"],
                ),
            ]
        )
        hgb = HistGradientBoostingClassifier(max_iter=15, categorical_features=[3, 4])
        return Pipeline([("pre", pre), ("m", hgb)]), X[[*NUM, "plan", "region"]]

    return {"from_dtype, bare": from_dtype, "by index, bare": by_index, "in a pipeline": in_pipeline}


@pytest.mark.parametrize("case", list(_hgb_cases()))
def test_histogram_boosting_with_categorical_features_serves_compiled(case: str, tmp_path: Path) -> None:
    X, y = _categorical_data()
    model, X = _hgb_cases()[case](X)
    model.fit(X, y)
    loaded = _load(model, X, tmp_path)
    assert loaded.scoring.scorer is ScorerKind.COMPILED, loaded.scoring
    assert loaded.scoring.max_difference <= 1e-6
    rows = X.sample(60, random_state=4).reset_index(drop=True)
    text = [c for c in ("plan", "region") if c in rows]
    rows[text] = rows[text].astype(object)
    if text:
        rows.loc[::4, text[0]] = "unseen"
        rows.loc[1::5, text[-1]] = np.nan
    rows.loc[2::3, "n2"] = np.nan
    if "code" in rows:
        rows.loc[::4, "code"] = 7.0  # a code the model never saw
    expected = model.predict_proba(rows)
    if loaded.input_kind == "matrix":
        got = loaded.predict_checked(rows.to_numpy(dtype="float64")).probabilities
    else:
        got = loaded.predict(_columns(rows)).probabilities
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["forest", "tree"])
def test_an_infinite_number_gets_the_public_methods_error(kind: str, tmp_path: Path) -> None:
    """Frame input is not checked for infinities before the model (CSV can carry ``inf``); the
    pipeline's own steps refuse them, so the compiled scorer must not score them."""
    X, y = _data()
    model = _pipeline(ESTIMATORS[kind]()).fit(X, y)
    loaded = _load(model, X, tmp_path)
    assert loaded.scoring.scorer is ScorerKind.COMPILED
    rows = X.head(3).copy()
    rows.loc[rows.index[1], "n2"] = np.inf
    with pytest.raises(ValueError) as public:
        model.predict_proba(rows)
    with pytest.raises(ValueError) as served:
        loaded.predict(_columns(rows))
    assert str(served.value) == str(public.value)


@pytest.mark.parametrize("classes", [2, 3, 0], ids=["binary", "three classes", "regressor"])
def test_histogram_boosting_small_batches_walk_all_trees_bit_for_bit(classes: int) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    X, _ = _data(600)
    X = X[NUM].to_numpy()  # with gaps in n0
    rng = np.random.default_rng(7)
    if classes:
        model: Any = HistGradientBoostingClassifier(max_iter=20).fit(X, rng.integers(0, classes, len(X)))
    else:
        model = HistGradientBoostingRegressor(max_iter=20).fit(X, X[:, 1] * 2 + rng.normal(size=len(X)))
    walk = trees.HistWalk(model._predictors, model._baseline_prediction)
    rows = rng.normal(size=(600, 3)) * 2
    rows[rng.random(rows.shape) < 0.1] = np.nan
    np.testing.assert_array_equal(walk.raw(rows[:30]), model._raw_predict(rows[:30]))
    public = model.predict_proba if classes else model.predict
    compiled = compile_model(model, NUM, bool(classes))
    for n in (1, 30, 600):  # 600 rows: the predictors' own predict
        np.testing.assert_array_equal(compiled.from_matrix(rows[:n]), public(rows[:n]))
