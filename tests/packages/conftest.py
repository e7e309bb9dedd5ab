"""Shared fixtures: tiny models trained on data shipped with scikit-learn, and zip helpers."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression


@pytest.fixture(scope="session")
def iris() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="session")
def iris_model(iris: tuple[pd.DataFrame, pd.Series]) -> Any:
    X, y = iris
    return LogisticRegression(max_iter=1000).fit(X, y)


@pytest.fixture(scope="session")
def diabetes() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="session")
def diabetes_model(diabetes: tuple[pd.DataFrame, pd.Series]) -> Any:
    X, y = diabetes
    return LinearRegression().fit(X, y)


@pytest.fixture(scope="session")
def cancer() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X.iloc[:, :6], y.map({0: "malignant", 1: "benign"})


@pytest.fixture
def iris_package(tmp_path: Path, iris: tuple[pd.DataFrame, pd.Series], iris_model: Any) -> Path:
    from shipmate.packages import build_sklearn_package

    path = tmp_path / "iris.mlpkg"
    build_sklearn_package(iris_model, iris[0], path, name="iris")
    return path


def rewrite_zip(
    src: Path,
    dst: Path,
    *,
    extra: dict[str, bytes] | None = None,
    replace: dict[str, bytes] | None = None,
    drop: tuple[str, ...] = (),
    manifest_patch: dict[str, Any] | None = None,
    fix_checksums: bool = False,
) -> Path:
    """Copy a package, altering members: the way hostile or broken packages are made in tests."""
    with zipfile.ZipFile(src) as zin:
        members = {n: zin.read(n) for n in zin.namelist()}
    for name in drop:
        members.pop(name)
    members.update(replace or {})
    manifest = json.loads(members["manifest.json"])
    manifest.update(manifest_patch or {})
    if fix_checksums:
        manifest["files"] = {
            n: hashlib.sha256(b).hexdigest() for n, b in members.items() if n != "manifest.json"
        }
    members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for name, data in {**members, **(extra or {})}.items():
            zout.writestr(name, data)
    return dst


@pytest.fixture
def rewrite() -> Any:
    """`rewrite_zip`, for test modules (importlib mode keeps them from importing conftest)."""
    return rewrite_zip
