"""The deployments-directory watcher: its pure planning step as a table of cases; directories
followed without restarts; and what it reads from directories written by each writer (the
filesystem plugin and the upload route)."""

from __future__ import annotations

import hashlib
import os
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from shipmate.common.deployments_dir import Checksum
from shipmate.plugin.actions import invoke
from shipmate.plugin.info import DeploymentInfo
from shipmate.plugins.filesystem import FilesystemPlugin
from shipmate.serving.watcher import Change, ChangeKind, plan, scan

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

L, R, U = ChangeKind.LOAD, ChangeKind.RELOAD, ChangeKind.UNLOAD


@pytest.mark.parametrize(
    ("observed", "loaded", "failed", "absent", "expected", "still_absent"),
    [
        ({"a": "1"}, {}, {}, {}, [(L, "a")], {}),
        ({"a": "1"}, {"a": "1"}, {}, {}, [], {}),
        ({"a": "2"}, {"a": "1"}, {}, {}, [(R, "a")], {}),
        ({}, {"a": "1"}, {}, {}, [], {"a": 1}),  # first scan without it: wait (a rename may be under way)
        ({}, {"a": "1"}, {}, {"a": 1}, [(U, "a")], {}),
        ({"a": "1"}, {"a": "1"}, {}, {"a": 1}, [], {}),  # back again: the count resets
        ({"a": "1"}, {}, {"a": "1"}, {}, [], {}),  # failed with this content: not retried
        ({"a": "2"}, {}, {"a": "1"}, {}, [(L, "a")], {}),  # changed since it failed: retried
        ({"a": "2"}, {"a": "1"}, {"a": "2"}, {}, [], {}),  # replacement failed: keep serving the old one
        ({}, {}, {"a": "1"}, {"a": 1}, [(U, "a")], {}),  # a failed one that disappeared is forgotten
        ({"b": "1", "a": "1"}, {}, {}, {}, [(L, "a"), (L, "b")], {}),
    ],
)
def test_plan(
    observed: dict[str, str],
    loaded: dict[str, str],
    failed: dict[str, str],
    absent: dict[str, int],
    expected: list[tuple[ChangeKind, str]],
    still_absent: dict[str, int],
) -> None:
    changes, counts = plan(observed, loaded, failed, absent, unload_after=2)
    assert [(c.kind, c.key) for c in changes] == expected
    assert counts == still_absent
    assert all(isinstance(c, Change) and c.reason for c in changes)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    d = tmp_path / "deployments"
    d.mkdir()
    return d


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rewrite_info(directory: Path, **changes: object) -> None:
    record = yaml.safe_load((directory / "config.yml").read_text())
    record.update(changes)
    (directory / "config.yml").write_text(yaml.safe_dump({k: v for k, v in record.items() if v is not None}))


def failures(client: TestClient) -> dict[str, str]:
    return {d["deploymentId"]: d["error"] for d in client.get("/deployments").json()["data"] if "error" in d}


def test_both_writers_directories_are_read_with_their_checksum_verified(
    make_client: Callable[..., TestClient], tmp_path: Path, packages: dict[str, Path]
) -> None:
    root = tmp_path / "deployments"
    root.mkdir()
    plugin = FilesystemPlugin({"baseDir": str(root)}, None, None, False)
    info = DeploymentInfo(id="p1", model_id="m1", model_artifact=str(packages["iris"]))
    assert invoke(plugin, "deployment_start", info).ok
    writer = make_client(deployments_dir=root, api_key=KEY, allow_pickled_uploads=True)
    uploaded = writer.post(
        "/deployments/u1", content=packages["diabetes"].read_bytes(), headers={"x-api-key": KEY}
    )
    assert uploaded.status_code == 201, uploaded.text

    observed = scan(root, "deployment_", "config.yml")
    assert observed["deployment_p1"].checksum == Checksum("sha256", sha256(packages["iris"]))
    assert observed["deployment_u1"].checksum == Checksum("sha256", sha256(packages["diabetes"]))
    reader = make_client(deployments_dir=root)  # another server: its watcher loads both from disk
    served = {d["deploymentId"]: d["packageSha256"] for d in reader.get("/deployments").json()["data"]}
    assert served == {"p1": sha256(packages["iris"]), "u1": sha256(packages["diabetes"])}

    # verified, not only read: a recorded checksum that differs keeps the package from loading
    for name in ("deployment_p1", "deployment_u1"):
        rewrite_info(root / name, package_sha256="0" * 64)
    refusing = make_client(deployments_dir=root, ready=False)
    failed = failures(refusing)
    assert set(failed) == {"p1", "u1"}
    assert all(
        "SHA-256" in error and "differs from the recorded 000000000000" in error for error in failed.values()
    )


@pytest.mark.parametrize("matches", [True, False])
def test_a_directory_of_the_crc32_era_still_loads_and_is_verified(
    make_client: Callable[..., TestClient],
    deploy: Callable[..., Path],
    tmp_path: Path,
    packages: dict[str, Path],
    matches: bool,
) -> None:
    """Directories the filesystem plugin wrote before the one checksum recorded ``model_crc32``."""
    root = tmp_path / "deployments"
    directory = deploy(root, "old", packages["iris"])
    crc = f"{zlib.crc32(packages['iris'].read_bytes()):08x}" if matches else "00000000"
    rewrite_info(directory, model_file=packages["iris"].name, model_crc32=crc)
    client = make_client(deployments_dir=root, ready=matches)
    if matches:
        assert client.get("/deployments/old/info").json()["packageSha256"] == sha256(packages["iris"])
    else:
        assert "CRC-32" in failures(client)["old"]


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


def test_leftover_rename_dirs_are_ignored(
    make_client: Callable[..., TestClient], deploy: Callable[..., Path], root: Path, packages: dict[str, Path]
) -> None:
    deploy(root, "d1", packages["iris"])
    os.rename(root / "deployment_d1", root / ".deployment_d1.old")
    client = make_client(deployments_dir=root)
    assert _ids(client) == set()


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
