"""The management endpoints (multi-model mode): list, upload, replace and delete deployments."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from starlette.testclient import TestClient

KEY = "test-key-0123456789abcdef"
IRIS_ROW = {
    "sepal length (cm)": 6.9,
    "sepal width (cm)": 3.2,
    "petal length (cm)": 5.7,
    "petal width (cm)": 2.3,
}
DIABETES_ROW = dict.fromkeys(["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"], 0.02)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    d = tmp_path / "deployments"
    d.mkdir()
    return d


def test_management_needs_a_key(
    make_client: Callable[..., TestClient], root: Path, packages: dict[str, Path]
) -> None:
    client = make_client(deployments_dir=root)
    reply = client.post("/deployments/x", content=packages["iris"].read_bytes())
    assert reply.status_code == 403 and "API key" in reply.json()["message"]
    keyed = make_client(deployments_dir=root, api_key=KEY, allow_pickled_uploads=True)
    assert keyed.post("/deployments/x", content=packages["iris"].read_bytes()).status_code == 401
    bad = keyed.post("/deployments/x", content=packages["iris"].read_bytes(), headers={"x-api-key": "w" * 24})
    assert bad.status_code == 401
    assert not list(root.iterdir())


def test_upload_replace_and_delete(
    make_client: Callable[..., TestClient], root: Path, packages: dict[str, Path]
) -> None:
    client = make_client(deployments_dir=root, api_key=KEY, allow_pickled_uploads=True)
    auth = {"authorization": f"Bearer {KEY}"}
    created = client.post("/deployments/up1", content=packages["iris"].read_bytes(), headers=auth)
    assert created.status_code == 201, created.text
    assert created.json()["deploymentId"] == "up1"
    assert (root / "deployment_up1" / "config.yml").is_file()
    assert client.post("/deployments/up1/predictions", json=[IRIS_ROW]).json()["data"][0]["prediction"] == 2
    files = {"file": ("diabetes.mlpkg", packages["diabetes"].read_bytes(), "application/zip")}
    replaced = client.post("/deployments/up1", files=files, headers=auth)
    assert replaced.status_code == 200 and replaced.json()["name"] == "diabetes"
    assert [p.name for p in (root / "deployment_up1").glob("*.mlpkg")] == ["diabetes.mlpkg"]
    assert client.post("/deployments/up1/predictions", json=[DIABETES_ROW]).status_code == 200
    assert client.delete("/deployments/up1", headers=auth).status_code == 204
    assert not (root / "deployment_up1").exists()
    assert client.post("/deployments/up1/predictions", json=[DIABETES_ROW]).status_code == 404
    assert client.delete("/deployments/up1", headers=auth).status_code == 404
    assert [p.name for p in root.iterdir()] == []  # nothing staged left behind


def test_upload_refusals(
    make_client: Callable[..., TestClient], root: Path, packages: dict[str, Path], tmp_path: Path
) -> None:
    client = make_client(deployments_dir=root, api_key=KEY)  # pickled uploads not allowed
    auth = {"x-api-key": KEY}
    pickled = client.post("/deployments/p1", content=packages["iris"].read_bytes(), headers=auth)
    assert pickled.status_code == 422 and "execute code when loaded" in pickled.json()["message"]
    junk = client.post("/deployments/j1", content=b"not a zip", headers=auth)
    assert junk.status_code == 422 and "not a valid model package" in junk.json()["message"]
    bad_id = client.post("/deployments/..%2Fescape", content=b"x", headers=auth)
    assert bad_id.status_code in (404, 422)
    assert [p.name for p in root.iterdir()] == []


def test_onnx_upload_is_accepted_without_pickles(
    make_client: Callable[..., TestClient], root: Path, onnx_package: Path
) -> None:
    client = make_client(deployments_dir=root, api_key=KEY)
    reply = client.post("/deployments/o1", content=onnx_package.read_bytes(), headers={"x-api-key": KEY})
    assert reply.status_code == 201, reply.text
    assert reply.json()["framework"] == "onnx"
    data = client.post("/deployments/o1/predictions", json=[IRIS_ROW]).json()["data"]
    assert data[0]["prediction"] == 2


@pytest.mark.parametrize("kind", ["xgboost", "lightgbm"])
def test_native_booster_uploads_are_accepted_without_pickles(
    kind: str, make_client: Callable[..., TestClient], root: Path, tmp_path: Path
) -> None:
    import pandas as pd
    from sklearn.datasets import load_iris

    from shipmate.packages import BuildOptions, build_lightgbm_package, build_xgboost_package

    X, y = load_iris(return_X_y=True, as_frame=True)
    if kind == "xgboost":
        import xgboost

        model = xgboost.XGBClassifier(n_estimators=10, max_depth=3).fit(X, y)
        build = build_xgboost_package
    else:
        import lightgbm

        model = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, y)
        build = build_lightgbm_package
    names = ["setosa", "versicolor", "virginica"]
    package = tmp_path / f"{kind}.mlpkg"
    build(model, X, package, name=kind, options=BuildOptions(class_labels=names, importance=False))
    client = make_client(deployments_dir=root, api_key=KEY)  # pickled uploads not allowed
    reply = client.post(f"/deployments/{kind}", content=package.read_bytes(), headers={"x-api-key": KEY})
    assert reply.status_code == 201, reply.text
    assert reply.json()["framework"] == kind
    data = client.post(f"/deployments/{kind}/predictions", json=[IRIS_ROW]).json()["data"]
    expected = model.predict_proba(pd.DataFrame([IRIS_ROW]))[0]
    assert data[0]["prediction"] == names[int(expected.argmax())] == "virginica"
    assert [v["value"] for v in data[0]["predictionValues"]] == pytest.approx(expected.tolist(), abs=1e-6)


def test_a_failed_deployment_can_be_deleted(
    make_client: Callable[..., TestClient], deploy: Callable[..., Path], root: Path, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.mlpkg"
    junk.write_bytes(b"junk")
    deploy(root, "bad", junk)
    client = make_client(deployments_dir=root, api_key=KEY, ready=False)
    assert client.get("/ping").status_code == 503
    assert client.delete("/deployments/bad", headers={"x-api-key": KEY}).status_code == 204
    assert not (root / "deployment_bad").exists()
    assert client.get("/ping").status_code == 200


def test_once_the_last_deployment_is_deleted_the_unnamed_routes_answer_404(
    make_client: Callable[..., TestClient], root: Path, packages: dict[str, Path], deploy: Callable[..., Path]
) -> None:
    """Found by the fuzz: nothing left to serve is not "not loaded yet" (a 503 that never ends)."""
    deploy(root, "iris", packages["iris"])
    client = make_client(deployments_dir=root, api_key=KEY)
    assert client.delete("/deployments/iris", headers={"x-api-key": KEY}).status_code == 204
    for reply in (client.get("/info"), client.post("/predictions", json=[IRIS_ROW])):
        assert reply.status_code == 404, reply.text
        assert "no deployment is served" in reply.json()["message"]
