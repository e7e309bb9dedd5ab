"""ONNX and MLflow packages: built, validated, loaded and scored like the server does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from shipmate.packages import (
    BuildOptions,
    InputKind,
    PackageError,
    build_mlflow_package,
    build_onnx_package,
    extract_package,
    load_model,
)


def _mlflow(module: str) -> Any:
    """Import an mlflow module (it warns about its own type hints on import, an error under pytest)."""
    import importlib
    import warnings

    pytest.importorskip("mlflow")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        importlib.import_module("mlflow.pyfunc")  # mlflow.sklearn imports it lazily, later
        return importlib.import_module(module)


def _load(path: Path, tmp_path: Path) -> Any:
    manifest = extract_package(path, tmp_path / "unpacked")
    return load_model(tmp_path / "unpacked", manifest)


@pytest.mark.parametrize("zipmap", [False, True])
def test_onnx_classifier(iris: Any, tmp_path: Path, zipmap: bool) -> None:
    from skl2onnx import to_onnx

    X, y = iris
    model = LogisticRegression(max_iter=1000).fit(X.to_numpy(), y)
    onx = to_onnx(model, X.to_numpy()[:1].astype(np.float32), options={"zipmap": zipmap})
    path = tmp_path / "iris-onnx.mlpkg"
    manifest = build_onnx_package(
        onx, X, path, name="iris-onnx", target_type="multiclass", options=BuildOptions(class_labels=[0, 1, 2])
    )
    assert manifest.framework == "onnx" and set(manifest.files) == {"model.onnx"}
    loaded = _load(path, tmp_path)
    assert loaded.input_kind is InputKind.MATRIX
    probs = loaded.predict(X.head(5).to_numpy()).probabilities
    np.testing.assert_allclose(probs, model.predict_proba(X.head(5).to_numpy()), atol=1e-5)


def test_onnx_regression_from_file(diabetes: Any, tmp_path: Path) -> None:
    from skl2onnx import to_onnx

    X, y = diabetes
    model = LinearRegression().fit(X.to_numpy(), y)
    onnx_file = tmp_path / "lr.onnx"
    onnx_file.write_bytes(to_onnx(model, X.to_numpy()[:1].astype(np.float64)).SerializeToString())
    path = tmp_path / "lr.mlpkg"
    build_onnx_package(onnx_file, X, path, name="lr", target_type="regression")
    values = _load(path, tmp_path).predict(X.head(3).to_numpy()).values
    np.testing.assert_allclose(values, model.predict(X.head(3).to_numpy()), rtol=1e-6)


def test_onnx_with_wrong_labels_fails_validation(iris: Any, tmp_path: Path) -> None:
    from skl2onnx import to_onnx

    X, y = iris
    model = LogisticRegression(max_iter=1000).fit(X.to_numpy(), y)
    onx = to_onnx(model, X.to_numpy()[:1].astype(np.float32), options={"zipmap": False})
    with pytest.raises(
        PackageError, match="validation failed: model returned 3 class probabilities, expected 2"
    ):
        build_onnx_package(
            onx,
            X,
            tmp_path / "x.mlpkg",
            name="x",
            target_type="binary",
            options=BuildOptions(class_labels=[0, 1]),
        )


def test_onnx_garbage_is_refused(iris: Any, tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="validation failed: onnxruntime cannot load"):
        build_onnx_package(b"not onnx", iris[0], tmp_path / "x.mlpkg", name="x", target_type="regression")


def test_mlflow_sklearn_model_unchanged(cancer: Any, tmp_path: Path) -> None:
    mlflow_sklearn = _mlflow("mlflow.sklearn")
    X, y = cancer
    model = LogisticRegression(max_iter=5000).fit(X, y)
    model_dir = tmp_path / "mlflow_model"
    mlflow_sklearn.save_model(model, str(model_dir), serialization_format="pickle")
    path = tmp_path / "mlflow.mlpkg"
    manifest = build_mlflow_package(model_dir, X, path, name="cancer-mlflow")
    assert manifest.framework == "mlflow" and manifest.target_type == "binary"
    assert manifest.class_labels == ["benign", "malignant"]
    assert "model/MLmodel" in manifest.files
    loaded = _load(path, tmp_path)
    np.testing.assert_allclose(loaded.predict(X.head(4)).probabilities, model.predict_proba(X.head(4)))


def test_mlflow_pyfunc_python_model(tmp_path: Path) -> None:
    mlflow_pyfunc = _mlflow("mlflow.pyfunc")

    class Doubler(mlflow_pyfunc.PythonModel):  # type: ignore[name-defined,misc]
        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return model_input["x"] * 2

    model_dir = tmp_path / "pyfunc_model"
    mlflow_pyfunc.save_model(str(model_dir), python_model=Doubler())
    X = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    path = tmp_path / "pyfunc.mlpkg"
    build_mlflow_package(model_dir, X, path, name="doubler", target_type="regression")
    np.testing.assert_allclose(_load(path, tmp_path).predict(X).values, [2.0, 4.0, 6.0])


def test_mlflow_dir_must_be_a_model(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="no MLmodel file"):
        build_mlflow_package(tmp_path, pd.DataFrame({"x": [1.0]}), tmp_path / "x.mlpkg", name="x")
