"""Multi-model mode: the filesystem plugin's directory layout, followed without restarts; upload/delete."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def _ids(client: TestClient) -> set[str]:
    return {d["deploymentId"] for d in client.get("/deployments").json()["data"] if d.get("state") == "ready"}


def test_serves_existing_deployments_under_every_route(
    make_client: Callable[..., TestClient], deploy: Callable[..., Path], root: Path, packages: dict[str, Path]
) -> None:
    deploy(root, "d1", packages["iris"], model_id="m-iris")
    deploy(root, "d2", packages["diabetes"])
    (root / ".deployment_d3.tmp").mkdir()  # being written: ignored
    shutil.copy(packages["iris"], root / ".deployment_d3.tmp" / "iris.mlpkg")
    client = make_client(deployments_dir=root)
    assert _ids(client) == {"d1", "d2"}
    for url in (
        "/deployments/d1/predictions",
        "/deployments/deployment_d1/predictions",
        "/d1/predict",
        "/deployments/d1/predict",
        "/d1/predictions",
    ):
        reply = client.post(url, json=[IRIS_ROW])
        assert reply.status_code == 200, (url, reply.text)
        assert reply.json()["data"][0]["prediction"] == 2
    info = client.get("/deployments/d1/info").json()
    assert info["modelId"] == "m-iris" and info["name"] == "iris"
    assert client.post("/deployments/d2/predictions", json=[DIABETES_ROW]).status_code == 200
    missing = client.post("/deployments/nope/predictions", json=[IRIS_ROW])
    assert missing.status_code == 404 and "nope" in missing.json()["message"]
    several = client.post("/predictions", json=[IRIS_ROW])
    assert several.status_code == 404 and "several deployments" in several.json()["message"]


def test_directory_changes_are_followed(
    make_client: Callable[..., TestClient],
    deploy: Callable[..., Path],
    root: Path,
    packages: dict[str, Path],
    wait: Any,
) -> None:
    client = make_client(deployments_dir=root)
    assert _ids(client) == set()
    deploy(root, "d1", packages["iris"])
    wait(lambda: client.post("/deployments/d1/predictions", json=[IRIS_ROW]).status_code == 200)
    deploy(root, "d1", packages["diabetes"])  # replaced: a regression model now
    wait(lambda: client.get("/deployments/d1/info").json().get("name") == "diabetes")
    assert client.post("/deployments/d1/predictions", json=[DIABETES_ROW]).status_code == 200
    shutil.rmtree(root / "deployment_d1")
    wait(lambda: client.post("/deployments/d1/predictions", json=[DIABETES_ROW]).status_code == 404)
    assert _ids(client) == set()


def test_broken_deployment_is_reported_and_others_keep_serving(
    make_client: Callable[..., TestClient],
    deploy: Callable[..., Path],
    root: Path,
    packages: dict[str, Path],
    tmp_path: Path,
) -> None:
    deploy(root, "good", packages["iris"])
    junk = tmp_path / "junk.mlpkg"
    junk.write_bytes(b"not a zip")
    deploy(root, "bad", junk)
    client = make_client(deployments_dir=root, ready=False)
    ping = client.get("/ping")
    assert ping.status_code == 503 and "not a valid model package" in ping.json()["failed"]["bad"]
    listed = {d["deploymentId"]: d for d in client.get("/deployments").json()["data"]}
    assert listed["bad"]["state"] == "failed" and listed["good"]["state"] == "ready"
    assert client.post("/deployments/good/predictions", json=[IRIS_ROW]).status_code == 200
    reply = client.post("/deployments/bad/predictions", json=[IRIS_ROW])
    assert reply.status_code == 503 and "failed to load" in reply.json()["message"]
    shutil.rmtree(root / "deployment_bad")
    from time import monotonic, sleep

    deadline = monotonic() + 30
    while client.get("/ping").status_code != 200 and monotonic() < deadline:
        sleep(0.05)
    assert client.get("/ping").status_code == 200


def test_failed_replacement_keeps_the_old_model(
    make_client: Callable[..., TestClient],
    deploy: Callable[..., Path],
    root: Path,
    packages: dict[str, Path],
    tmp_path: Path,
    wait: Any,
) -> None:
    deploy(root, "d1", packages["iris"])
    client = make_client(deployments_dir=root)
    junk = tmp_path / "iris.mlpkg"
    junk.write_bytes(b"garbage")
    deploy(root, "d1", junk)
    wait(lambda: "replacementError" in client.get("/deployments").json()["data"][0])
    assert client.post("/deployments/d1/predictions", json=[IRIS_ROW]).status_code == 200
    assert client.get("/ping").status_code == 200


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


def test_leftover_rename_dirs_are_ignored(
    make_client: Callable[..., TestClient], deploy: Callable[..., Path], root: Path, packages: dict[str, Path]
) -> None:
    deploy(root, "d1", packages["iris"])
    os.rename(root / "deployment_d1", root / ".deployment_d1.old")
    client = make_client(deployments_dir=root)
    assert _ids(client) == set()


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


def test_model_file_named_in_config_is_used(
    make_client: Callable[..., TestClient], root: Path, packages: dict[str, Path]
) -> None:
    d = root / "deployment_named"
    d.mkdir()
    shutil.copy(packages["iris"], d / "artifact.bin")  # any name: config.yml says which file it is
    shutil.copy(packages["diabetes"], d / "other.mlpkg")
    (d / "config.yml").write_text("deployment_id: named\nmodel_id: m\nmodel_file: artifact.bin\n")
    client = make_client(deployments_dir=root)
    assert client.get("/deployments/named/info").json()["name"] == "iris"
