"""Builders: each validates the model by scoring a sample through the serving runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from shipmate.packages import (
    BuildOptions,
    Feature,
    FeatureType,
    InputKind,
    PackageError,
    build_custom_package,
    build_sklearn_package,
    extract_package,
    load_model,
    read_manifest,
)


def _load(path: Path, tmp_path: Path) -> Any:
    manifest = extract_package(path, tmp_path / "unpacked")
    return load_model(tmp_path / "unpacked", manifest)


def test_sklearn_regression_package(diabetes: Any, diabetes_model: Any, tmp_path: Path) -> None:
    X, _ = diabetes
    path = tmp_path / "diabetes.mlpkg"
    manifest = build_sklearn_package(
        diabetes_model, X, path, name="diabetes", options=BuildOptions(version="3", target_name="progression")
    )
    assert manifest.target_type == "regression" and manifest.class_labels is None
    assert read_manifest(path).version == "3"
    base = manifest.baseline["bmi"]
    assert base["count"] == len(X) and base["missing"] == 0
    assert base["min"] == pytest.approx(X["bmi"].min()) and base["max"] == pytest.approx(X["bmi"].max())
    assert sum(base["histogram"]["counts"]) == len(X)
    model = _load(path, tmp_path)
    assert model.input_kind is InputKind.MATRIX
    scores = model.predict(X.head(5).to_numpy())
    np.testing.assert_allclose(scores.values, diabetes_model.predict(X.head(5)))


def test_sklearn_binary_with_string_labels(cancer: Any, tmp_path: Path) -> None:
    X, y = cancer
    model = LogisticRegression(max_iter=5000).fit(X, y)
    path = tmp_path / "cancer.mlpkg"
    manifest = build_sklearn_package(model, X, path, name="cancer")
    assert manifest.target_type == "binary"
    assert manifest.class_labels == ["benign", "malignant"]  # sklearn's sorted classes_
    assert manifest.threshold == 0.5
    loaded = _load(path, tmp_path)
    probs = loaded.predict(X.head(4)).probabilities
    np.testing.assert_allclose(probs, model.predict_proba(X.head(4)))


def test_checked_matrices_are_not_checked_again_except_by_pipelines(iris: Any, tmp_path: Path) -> None:
    """``predict_checked`` trusts the caller's check for infinite values; a pipeline keeps its
    own checks, since its steps compute values the caller never saw."""
    X, y = iris
    rows = X.head(3).to_numpy()
    infinite = rows.copy()
    infinite[0, 0] = np.inf
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)  # takes an infinity in its stride
    build_sklearn_package(tree, X, tmp_path / "plain.mlpkg", name="plain")
    plain = _load(tmp_path / "plain.mlpkg", tmp_path / "a")
    np.testing.assert_array_equal(
        plain.predict_checked(rows).probabilities, plain.predict(rows).probabilities
    )
    with pytest.raises(ValueError, match="infinity"):
        plain.predict(infinite)
    assert plain.predict_checked(infinite).probabilities.shape == (3, 3)  # scikit-learn did not look
    pipe = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=1000))]).fit(X, y)
    vote = VotingClassifier([("pipe", pipe), ("tree", tree)], voting="soft").fit(X, y)
    for name, model in {"pipe": pipe, "vote": vote}.items():  # a pipeline, alone or inside another
        build_sklearn_package(model, X, tmp_path / f"{name}.mlpkg", name=name)
        loaded = _load(tmp_path / f"{name}.mlpkg", tmp_path / name)
        assert loaded.input_kind is InputKind.MATRIX
        with pytest.raises(ValueError, match="infinity"):
            loaded.predict_checked(infinite)


def test_label_order_given_differently_is_respected(iris: Any, iris_model: Any, tmp_path: Path) -> None:
    X, _ = iris
    path = tmp_path / "iris.mlpkg"
    build_sklearn_package(iris_model, X, path, name="iris", options=BuildOptions(class_labels=[2, 0, 1]))
    probs = _load(path, tmp_path).predict(X.head(3)).probabilities
    np.testing.assert_allclose(probs, iris_model.predict_proba(X.head(3))[:, [2, 0, 1]])


def test_pipeline_with_categorical_features_uses_dataframes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"colour": rng.choice(["red", "green", "blue"], 200), "size": rng.normal(size=200)})
    y = (X["colour"] == "red") | (X["size"] > 1)
    pipe = Pipeline(
        [
            ("prep", ColumnTransformer([("cat", OneHotEncoder(), ["colour"])], remainder="passthrough")),
            ("clf", LogisticRegression()),
        ]
    ).fit(X, y)
    path = tmp_path / "pipe.mlpkg"
    manifest = build_sklearn_package(pipe, X, path, name="pipe")
    kinds = {f.name: f.type for f in manifest.features}
    assert kinds == {"colour": FeatureType.CATEGORICAL, "size": FeatureType.NUMERIC}
    assert set(manifest.baseline["colour"]["top"]) == {"red", "green", "blue"}
    model = _load(path, tmp_path)
    assert model.input_kind is InputKind.FRAME
    np.testing.assert_allclose(model.predict(X.head(3)).probabilities, pipe.predict_proba(X.head(3)))


def test_model_that_cannot_score_the_sample_is_not_packaged(
    iris: Any, iris_model: Any, tmp_path: Path
) -> None:
    X, _ = iris
    wrong = X.rename(columns={"petal width (cm)": "something else"})
    path = tmp_path / "bad.mlpkg"
    with pytest.raises(
        PackageError, match=r"lacks columns the model was fitted on: \['petal width \(cm\)'\]"
    ):
        build_sklearn_package(iris_model, wrong, path, name="bad")
    with pytest.raises(PackageError, match="validation failed"):
        build_sklearn_package(
            iris_model,
            wrong,
            path,
            name="bad",
            options=BuildOptions(features=[Feature(name=c, type=FeatureType.NUMERIC) for c in wrong.columns]),
        )
    assert not path.exists()
    assert not list(tmp_path.glob(".mlpkg-*"))


def test_custom_package(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "weights.txt").write_text("2.5")
    (src / "custom.py").write_text(
        "from pathlib import Path\n"
        "def load_model(model_dir):\n"
        "    return float((Path(model_dir) / 'weights.txt').read_text())\n"
        "def score(model, data):\n"
        "    return data['x'] * model\n"
    )
    X = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    path = tmp_path / "custom.mlpkg"
    manifest = build_custom_package(src, X, path, name="scaler", target_type="regression")
    assert set(manifest.files) == {"custom.py", "weights.txt"}
    np.testing.assert_allclose(_load(path, tmp_path).predict(X).values, [2.5, 5.0, 7.5])


def test_custom_package_whose_score_raises(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "custom.py").write_text("def score(model, data):\n    raise RuntimeError('boom')\n")
    with pytest.raises(PackageError, match=r"validation failed: .*RuntimeError: boom"):
        build_custom_package(
            src, pd.DataFrame({"x": [1.0]}), tmp_path / "c.mlpkg", name="c", target_type="regression"
        )
