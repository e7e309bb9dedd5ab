"""XGBoost and LightGBM packages: native formats, loaded without unpickling, labels right."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pandas as pd
import pytest
import xgboost
from sklearn.datasets import make_classification, make_regression
from threadpoolctl import threadpool_limits

from shipmate.packages import (
    BuildOptions,
    Framework,
    PackageError,
    build_lightgbm_package,
    build_xgboost_package,
    extract_package,
    load_model,
)
from shipmate.packages.proof import ScorerKind


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One OpenMP thread, as a server worker has on a busy machine: spin-waiting pools make the
    histogram-boosting models here many times slower on a loaded 2-core box."""
    with threadpool_limits(limits=1):
        yield


def _classes(n_classes: int) -> tuple[pd.DataFrame, np.ndarray]:
    X, y = make_classification(300, 6, n_informative=4, n_classes=n_classes, random_state=0)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    frame.iloc[::11, 1] = np.nan  # the boosters' own missing-value branches
    return frame, y


def _load(path: Path, tmp_path: Path) -> Any:
    return load_model(tmp_path / "x", extract_package(path, tmp_path / "x"))


BUILD = {"xgboost": build_xgboost_package, "lightgbm": build_lightgbm_package}


def _fit(kind: str, X: pd.DataFrame, y: Any, regression: bool = False) -> Any:
    if kind == "xgboost":
        return (xgboost.XGBRegressor if regression else xgboost.XGBClassifier)(
            n_estimators=15, max_depth=3
        ).fit(X, y)
    model = lightgbm.LGBMRegressor if regression else lightgbm.LGBMClassifier
    return model(n_estimators=15, verbose=-1).fit(X, y)


def _save(kind: str, model: Any, tmp_path: Path, suffix: str = ".json") -> Path:
    if kind == "xgboost":
        path = tmp_path / f"model{suffix}"
        model.get_booster().save_model(path)
    else:
        path = tmp_path / "model.txt"
        model.booster_.save_model(path)
    return path


@pytest.mark.parametrize("kind", ["xgboost", "lightgbm"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_a_saved_classifier_is_labelled_by_the_samples_target(
    kind: str, n_classes: int, tmp_path: Path
) -> None:
    X, y = _classes(n_classes)
    names = np.array(["ant", "bee", "cow"])[:n_classes]
    model = _fit(kind, X, y)
    shuffled = X[list(reversed(X.columns))]  # the booster's trained order wins over the sample's
    manifest = BUILD[kind](
        _save(kind, model, tmp_path),
        shuffled,
        tmp_path / "p.mlpkg",
        name="m",
        target_values=names[y],
        options=BuildOptions(importance=False),
    )
    assert manifest.framework is Framework(kind)
    assert not manifest.framework.executes_code_on_load
    assert manifest.class_labels == list(names)
    assert manifest.target_type == ("binary" if n_classes == 2 else "multiclass")
    loaded = _load(tmp_path / "p.mlpkg", tmp_path)
    # XGBoost's small batches and LightGBM's larger ones are compiled (below), once proven
    assert loaded.input_kind == "matrix" and loaded.scoring.scorer is ScorerKind.COMPILED
    rows = X.head(30)
    got = loaded.predict_checked(rows[manifest.feature_names].to_numpy(dtype="float64"))
    np.testing.assert_allclose(got.probabilities, model.predict_proba(rows), atol=1e-6)


@pytest.mark.parametrize("kind", ["xgboost", "lightgbm"])
def test_a_fitted_regressor_object_packages_and_scores(kind: str, tmp_path: Path) -> None:
    X, y = make_regression(200, 5, random_state=0)
    frame = pd.DataFrame(X, columns=[f"r{i}" for i in range(5)])
    model = _fit(kind, frame, y, regression=True)
    manifest = BUILD[kind](
        model, frame, tmp_path / "p.mlpkg", name="r", options=BuildOptions(importance=False)
    )
    assert manifest.target_type == "regression" and manifest.class_labels is None
    got = _load(tmp_path / "p.mlpkg", tmp_path).predict_checked(frame.head(20).to_numpy(dtype="float64"))
    np.testing.assert_allclose(got.values, model.predict(frame.head(20)), rtol=1e-6)


def test_xgboost_ubjson_files_are_kept_as_they_are(tmp_path: Path) -> None:
    X, y = _classes(2)
    model = _fit("xgboost", X, y)
    source = _save("xgboost", model, tmp_path, ".ubj")
    manifest = build_xgboost_package(
        source, X, tmp_path / "p.mlpkg", name="u", options=BuildOptions(importance=False)
    )
    assert manifest.model_path == "model.ubj" and manifest.class_labels == [0, 1]


def test_a_target_type_the_objective_contradicts_is_refused(tmp_path: Path) -> None:
    X, y = _classes(2)
    with pytest.raises(PackageError, match="the model's objective makes it a binary model"):
        build_lightgbm_package(
            _fit("lightgbm", X, y), X, tmp_path / "p.mlpkg", name="m", target_type="regression"
        )


def test_a_file_that_is_not_a_model_is_refused_in_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "model.json"
    bogus.write_text('{"not": "a model"}')
    with pytest.raises(PackageError, match="not a readable XGBoost model"):
        build_xgboost_package(bogus, pd.DataFrame({"a": [1.0]}), tmp_path / "p.mlpkg", name="m")


@pytest.mark.parametrize("kind", ["xgboost", "lightgbm"])
@pytest.mark.parametrize("target", ["binary", "multiclass", "regression"])
def test_the_c_predictor_is_called_directly_once_it_equals_the_public_method(
    kind: str, target: str, tmp_path: Path
) -> None:
    X, y = _classes(3 if target == "multiclass" else 2)
    model = _fit(
        kind, X, X["f0"].to_numpy() if target == "regression" else y, regression=target == "regression"
    )
    BUILD[kind](
        _save(kind, model, tmp_path),
        X,
        tmp_path / "p.mlpkg",
        name="m",
        options=BuildOptions(importance=False),
    )
    loaded = _load(tmp_path / "p.mlpkg", tmp_path)
    assert "called through its C API" in loaded.scoring.note
    rows = X.head(40).to_numpy(dtype="float64")  # every 11th row has a gap
    public = model.predict(X.head(40)) if target == "regression" else model.predict_proba(X.head(40))
    for batch, expected in [(rows, public), *((rows[i : i + 1], public[i : i + 1]) for i in range(12))]:
        got = loaded.predict_checked(batch)
        out = got.values if target == "regression" else got.probabilities
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["xgboost", "lightgbm"])
def test_no_compile_keeps_the_public_predict(kind: str, tmp_path: Path) -> None:
    X, y = _classes(2)
    BUILD[kind](
        _save(kind, _fit(kind, X, y), tmp_path),
        X,
        tmp_path / "p.mlpkg",
        name="m",
        options=BuildOptions(importance=False),
    )
    root = tmp_path / "x"
    loaded = load_model(root, extract_package(tmp_path / "p.mlpkg", root), compile=False)
    assert loaded.scoring.scorer is ScorerKind.NATIVE and "C API" not in loaded.scoring.note
    assert loaded.scoring.note == "compilation turned off for this server"


@pytest.mark.parametrize("kind", ["xgboost", "lightgbm"])
def test_the_proofs_edge_rows_sit_on_the_boosters_split_thresholds(kind: str, tmp_path: Path) -> None:
    from shipmate.packages import boosters

    X, y = _classes(2)
    model = _fit(kind, X, y)
    framework = Framework(kind)
    booster = boosters.load_booster(framework, _save(kind, model, tmp_path))
    thresholds = boosters.split_thresholds(framework, booster)
    assert thresholds and all(0 <= j < 6 for j in thresholds)
    base = X.iloc[0].to_numpy(dtype="float64")
    edges = boosters.threshold_rows(framework, booster, base)
    j, values = sorted(thresholds.items())[0]
    t = sorted(set(values))[0]
    column = edges[:, j]
    assert t in column and np.nextafter(t, np.inf) in column and np.nextafter(t, -np.inf) in column
    assert float(np.nextafter(np.float32(t), np.float32(np.inf))) in column


@pytest.mark.parametrize("target", ["binary", "multiclass", "regression"])
def test_xgboost_small_batches_are_scored_by_the_proven_onnx_rebuild(target: str, tmp_path: Path) -> None:
    from shipmate.packages import booster_onnx

    X, y = _classes(3 if target == "multiclass" else 2)
    regression = target == "regression"
    model = _fit("xgboost", X, X["f0"].to_numpy() if regression else y, regression=regression)
    build_xgboost_package(
        _save("xgboost", model, tmp_path),
        X,
        tmp_path / "p.mlpkg",
        name="m",
        options=BuildOptions(importance=False),
    )
    loaded = _load(tmp_path / "p.mlpkg", tmp_path)
    assert loaded.scoring.scorer is ScorerKind.COMPILED
    assert loaded.scoring.max_difference is not None and loaded.scoring.max_difference <= 1e-6
    assert "onnxruntime" in loaded.scoring.note and "called through its C API" in loaded.scoring.note
    big = pd.concat([X] * 2, ignore_index=True)  # over SMALL_BATCH rows: XGBoost's own predictor
    assert len(big) > booster_onnx.SMALL_BATCH
    for frame in (big, X.head(booster_onnx.SMALL_BATCH), X.iloc[[0]], X.iloc[[11]]):  # row 11 has a gap
        got = loaded.predict_checked(frame.to_numpy(dtype="float64"))
        out = got.values if regression else got.probabilities
        public = model.predict(frame) if regression else model.predict_proba(frame)
        np.testing.assert_allclose(out, public, rtol=0, atol=1e-6)
        if not regression:
            np.testing.assert_array_equal(out.argmax(axis=1), public.argmax(axis=1))


def test_an_xgboost_objective_the_rebuild_does_not_know_stays_native(tmp_path: Path) -> None:
    X, _ = _classes(2)
    target = np.abs(X["f0"].to_numpy()).round()
    model = xgboost.XGBRegressor(n_estimators=10, max_depth=3, objective="count:poisson").fit(X, target)
    build_xgboost_package(
        _save("xgboost", model, tmp_path),
        X,
        tmp_path / "p.mlpkg",
        name="m",
        options=BuildOptions(importance=False),
    )
    loaded = _load(tmp_path / "p.mlpkg", tmp_path)
    assert loaded.scoring.scorer is ScorerKind.NATIVE
    assert "not compiled: objective 'count:poisson'" in loaded.scoring.note
    got = loaded.predict_checked(X.head(3).to_numpy(dtype="float64")).values
    np.testing.assert_allclose(got, model.predict(X.head(3)), rtol=1e-6)


def test_a_closed_lightgbm_model_still_scores_a_late_row_through_the_public_predict(tmp_path: Path) -> None:
    X, y = _classes(2)
    model = _fit("lightgbm", X, y)
    build_lightgbm_package(
        _save("lightgbm", model, tmp_path),
        X,
        tmp_path / "p.mlpkg",
        name="m",
        options=BuildOptions(importance=False),
    )
    loaded = _load(tmp_path / "p.mlpkg", tmp_path)
    loaded.close()  # frees the single-row set-up; a request racing the unload must not reach it
    got = loaded.predict_checked(X.head(1).to_numpy(dtype="float64")).probabilities
    np.testing.assert_allclose(got, model.predict_proba(X.head(1)), atol=1e-6)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_lightgbm_batches_are_scored_by_the_proven_onnx_rebuild_and_single_rows_natively(
    n_classes: int, tmp_path: Path
) -> None:
    X, y = _classes(n_classes)
    model = _fit("lightgbm", X, y)
    build_lightgbm_package(
        _save("lightgbm", model, tmp_path),
        X,
        tmp_path / "p.mlpkg",
        name="m",
        options=BuildOptions(importance=False),
    )
    loaded = _load(tmp_path / "p.mlpkg", tmp_path)
    assert loaded.scoring.scorer is ScorerKind.COMPILED and "batches of 2 rows or more" in loaded.scoring.note
    for frame in (X, X.iloc[[10, 11]], X.iloc[[11]], X.iloc[[0]]):  # row 11 has a gap
        got = loaded.predict_checked(frame.to_numpy(dtype="float64")).probabilities
        public = model.predict_proba(frame)
        np.testing.assert_allclose(got, public, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(got.argmax(axis=1), public.argmax(axis=1))


def test_lightgbm_with_zeros_as_missing_is_not_rebuilt(tmp_path: Path) -> None:
    X, y = _classes(2)
    X = X.fillna(0.0)
    X.iloc[::5, 2] = 0.0
    model = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1, zero_as_missing=True).fit(X, y)
    build_lightgbm_package(
        _save("lightgbm", model, tmp_path),
        X,
        tmp_path / "p.mlpkg",
        name="m",
        options=BuildOptions(importance=False),
    )
    loaded = _load(tmp_path / "p.mlpkg", tmp_path)
    assert loaded.scoring.scorer is ScorerKind.NATIVE
    assert "not compiled: missing values of type 'Zero'" in loaded.scoring.note
    got = loaded.predict_checked(X.head(20).to_numpy(dtype="float64")).probabilities
    np.testing.assert_allclose(got, model.predict_proba(X.head(20)), atol=1e-6)
