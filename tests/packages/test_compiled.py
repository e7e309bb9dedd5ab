"""Compiled scorers: used only once proven against the public method, and only then."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
)
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

import shipmate.packages.compiled as compiled
from shipmate.packages import BuildOptions, Columns, build_sklearn_package, extract_package, load_model
from shipmate.packages.proof import UNSEEN, ScorerKind


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One OpenMP thread, as a server worker has on a busy machine: spin-waiting pools make the
    histogram-boosting models here many times slower on a loaded 2-core box."""
    with threadpool_limits(limits=1):
        yield


NUM = ["n0", "n1", "n2", "n3"]
CAT = ["plan", "region"]


def _data(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({c: rng.normal(size=n) for c in NUM})
    X["plan"] = rng.choice(["basic", "pro", "team"], n)
    X["region"] = rng.choice(["eu", "us", "apac", "latam"], n)
    for c in ["n0", "plan"]:
        X.loc[rng.random(n) < 0.08, c] = np.nan
    y = ((X.n1 + (X.plan == "pro") * 1.2 + rng.normal(size=n) * 0.4) > 0.4).map({True: "yes", False: "no"})
    return X, y


def _pre(encoder: Any = None) -> ColumnTransformer:
    encoder = encoder or OneHotEncoder(handle_unknown="ignore")
    return ColumnTransformer(
        [
            ("num", Pipeline([("imp", SimpleImputer(strategy="median")), ("sc", StandardScaler())]), NUM),
            ("cat", Pipeline([("imp", SimpleImputer(strategy="most_frequent")), ("enc", encoder)]), CAT),
        ]
    )


ORDINAL = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
PIPELINES: dict[str, Any] = {
    "forest": lambda: Pipeline([("pre", _pre()), ("m", RandomForestClassifier(20, random_state=0))]),
    "hist boosting": lambda: Pipeline([("pre", _pre()), ("m", HistGradientBoostingClassifier(max_iter=10))]),
    "logistic": lambda: Pipeline([("pre", _pre()), ("m", LogisticRegression(max_iter=500))]),
    "boosting, ordinal": lambda: Pipeline(
        [("pre", _pre(ORDINAL)), ("m", GradientBoostingClassifier(n_estimators=20, random_state=0))]
    ),
    "tree, min-max, passthrough": lambda: Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [("num", Pipeline([("imp", SimpleImputer()), ("mm", MinMaxScaler())]), ["n0", "n1"])],
                    remainder="passthrough",
                ),
            ),
            ("m", DecisionTreeClassifier(max_depth=5, random_state=0)),
        ]
    ),
}


def _load(model: Any, X: pd.DataFrame, tmp_path: Path, *, compile: bool = True) -> Any:
    path = tmp_path / "model.mlpkg"
    build_sklearn_package(model, X, path, name="m", options=BuildOptions(importance=False))
    return load_model(tmp_path / "x", extract_package(path, tmp_path / "x"), compile=compile)


def _columns(X: pd.DataFrame, numeric: list[str]) -> Columns:
    data = {
        c: X[c].to_numpy(dtype="float64") if c in numeric else X[c].astype(object).to_numpy()
        for c in X.columns
    }
    return Columns(data, len(X))


def _hostile(X: pd.DataFrame) -> pd.DataFrame:
    """Rows unlike the sample: gaps everywhere, unseen categories, numbers far out."""
    rng = np.random.default_rng(3)
    rows = X.sample(60, random_state=1).reset_index(drop=True)
    rows["plan"] = rows["plan"].astype(object)
    rows.loc[::4, "plan"] = UNSEEN
    rows.loc[1::5, "region"] = None
    rows.loc[2::3, "n1"] = np.nan
    rows.loc[::7, "n2"] = rng.normal(size=len(rows.loc[::7])) * 1e6
    return rows


@pytest.mark.parametrize("kind", list(PIPELINES))
def test_a_pipeline_serves_compiled_and_scores_like_its_public_method(kind: str, tmp_path: Path) -> None:
    X, y = _data()
    if kind == "tree, min-max, passthrough":
        X = X[NUM]
    model = PIPELINES[kind]().fit(X, y)
    loaded = _load(model, X, tmp_path)
    assert loaded.scoring.scorer is ScorerKind.COMPILED, loaded.scoring
    assert loaded.scoring.max_difference <= 1e-6
    rows = _hostile(X) if kind != "tree, min-max, passthrough" else X.sample(60, random_state=2)
    if loaded.input_kind == "matrix":
        got = loaded.predict_checked(rows[NUM].to_numpy(dtype="float64")).probabilities
    else:
        got = loaded.predict(_columns(rows, NUM)).probabilities
    expected = model.predict_proba(rows)  # classes ["no", "yes"]: the package's label order too
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: LogisticRegression(max_iter=500),
        lambda: HistGradientBoostingRegressor(max_iter=10),
        lambda: Ridge(alpha=0.5),
        lambda: Pipeline([("sc", StandardScaler()), ("m", Ridge())]),
    ],
    ids=["logistic", "hist boosting regressor", "ridge", "scaled ridge"],
)
def test_bare_numeric_models_serve_compiled_from_the_matrix(make: Any, tmp_path: Path) -> None:
    X, y = _data()
    X = X[NUM].fillna(0.0)
    target = y if isinstance(make(), LogisticRegression) else X.n1 * 3 + X.n2
    model = make().fit(X, target)
    loaded = _load(model, X, tmp_path)
    assert loaded.input_kind == "matrix"
    assert loaded.scoring.scorer is ScorerKind.COMPILED, loaded.scoring
    matrix = X.sample(50, random_state=4).to_numpy(dtype="float64") * 3
    got = loaded.predict_checked(matrix)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        public = model.predict_proba(matrix) if got.probabilities is not None else model.predict(matrix)
    np.testing.assert_allclose(
        got.probabilities if got.probabilities is not None else got.values, public, atol=1e-6
    )


def test_bare_gradient_boosting_keeps_the_exact_direct_scorer(tmp_path: Path) -> None:
    X, y = _data()
    X = X[NUM].fillna(0.0)
    loaded = _load(GradientBoostingClassifier(n_estimators=10).fit(X, y), X, tmp_path)
    assert loaded.scoring.scorer is ScorerKind.DIRECT


def test_what_cannot_be_compiled_serves_through_the_public_method(tmp_path: Path) -> None:
    X, y = _data()
    model = Pipeline(
        [
            ("pre", _pre(OneHotEncoder(drop="first"))),
            ("log", FunctionTransformer(np.tanh)),
            ("m", LogisticRegression()),
        ]
    ).fit(X, y)
    loaded = _load(model, X, tmp_path)
    assert loaded.scoring.scorer is ScorerKind.ORIGINAL
    assert "not compiled" in loaded.scoring.note


def test_a_compiled_scorer_that_differs_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _data()
    model = PIPELINES["logistic"]().fit(X, y)
    real = compiled._standard

    def drifting(scaler: Any) -> Any:
        step = real(scaler)
        return lambda block: [col + 1e-3 for col in step(block)]

    monkeypatch.setitem(compiled._TRANSFORMERS, "StandardScaler", drifting)
    loaded = _load(model, X, tmp_path)
    assert loaded.scoring.scorer is ScorerKind.ORIGINAL
    assert "refused" in loaded.scoring.note
    rows = X.head(5)
    np.testing.assert_array_equal(
        loaded.predict(_columns(rows, NUM)).probabilities, model.predict_proba(rows)
    )


def test_a_row_the_model_refuses_gets_the_public_methods_error(tmp_path: Path) -> None:
    X, y = _data()
    model = Pipeline([("pre", _pre(OneHotEncoder(handle_unknown="error"))), ("m", LogisticRegression())]).fit(
        X, y
    )
    loaded = _load(model, X, tmp_path)
    assert loaded.scoring.scorer is ScorerKind.COMPILED
    rows = X.head(3).copy()
    rows.loc[rows.index[1], "region"] = "mars"
    with pytest.raises(ValueError) as public:
        model.predict_proba(rows)
    with pytest.raises(ValueError) as served:
        loaded.predict(_columns(rows, NUM))
    assert str(served.value) == str(public.value)


def test_the_build_flag_and_the_load_flag_turn_compilation_off(tmp_path: Path) -> None:
    X, y = _data()
    model = PIPELINES["logistic"]().fit(X, y)
    path = tmp_path / "off.mlpkg"
    manifest = build_sklearn_package(
        model, X, path, name="m", options=BuildOptions(importance=False), compile=False
    )
    assert manifest.compiled_scoring is False
    assert manifest.scoring is not None and manifest.scoring["scorer"] == "original"
    loaded = load_model(tmp_path / "b", extract_package(path, tmp_path / "b"))
    assert loaded.scoring.scorer is ScorerKind.ORIGINAL
    assert "when the package was built" in loaded.scoring.note
    served_off = _load(model, X, tmp_path / "c", compile=False)
    assert served_off.scoring.scorer is ScorerKind.ORIGINAL
    assert "this server" in served_off.scoring.note
