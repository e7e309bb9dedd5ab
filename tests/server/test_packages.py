"""Model packages: streamed upload, metadata from the manifest, immutability, download, limits."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

import httpx

V1 = "/api/v1"


def post_bytes(api: httpx.Client, content: Any, filename: str = "m.mlpkg", **headers: str) -> httpx.Response:
    return api.post(
        f"{V1}/model-packages",
        params={"filename": filename},
        content=content,
        headers={"Content-Type": "application/octet-stream", **headers},
    )


def test_upload_records_the_manifest_and_download_returns_the_same_bytes(
    api: httpx.Client, make_package: Any, settings: Any
):
    path = make_package(
        name="churn",
        version="2.1",
        framework="sklearn",
        target_type="binary",
        extra_manifest={"classLabels": ["no", "yes"]},
    )
    response = post_bytes(api, path.read_bytes(), filename=path.name)
    assert response.status_code == 201, response.text
    package = response.json()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert {
        k: package[k] for k in ("name", "version", "framework", "targetType", "sha256", "size", "filename")
    } == {
        "name": "churn",
        "version": "2.1",
        "framework": "sklearn",
        "targetType": "binary",
        "sha256": digest,
        "size": path.stat().st_size,
        "filename": path.name,
    }
    assert package["createdBy"] == "admin:admin (configured)"
    assert package["manifest"]["classLabels"] == ["no", "yes"]
    stored = settings.artifact_dir / "sha256" / digest[:2] / digest
    assert stored.read_bytes() == path.read_bytes()

    download = api.get(f"{V1}/model-packages/{package['id']}/download")
    assert download.status_code == 200
    assert download.content == path.read_bytes()
    assert download.headers["X-Shipmate-Sha256"] == digest
    assert api.get(f"{V1}/model-packages/{package['id']}").json()["sha256"] == digest
    assert [p["id"] for p in api.get(f"{V1}/model-packages", params={"name": "churn"}).json()["items"]] == [
        package["id"]
    ]


def test_packages_are_immutable(api: httpx.Client, make_package: Any, tmp_path: Path):
    first = make_package(name="m", version="1", payload=b"one")
    created = post_bytes(api, first.read_bytes())
    assert created.status_code == 201
    again = post_bytes(api, first.read_bytes())
    assert again.status_code == 200 and again.json()["id"] == created.json()["id"]
    clash = make_package(name="m", version="1", payload=b"two")
    conflict = post_bytes(api, clash.read_bytes())
    assert conflict.status_code == 409
    assert conflict.json()["field"] == "version"
    assert api.put(f"{V1}/model-packages/{created.json()['id']}", content=b"x").status_code == 405


def test_a_streamed_upload_works_without_content_length(api: httpx.Client, make_package: Any):
    data = make_package().read_bytes()

    def chunks() -> Any:
        for start in range(0, len(data), 7):
            yield data[start : start + 7]

    response = post_bytes(api, chunks())
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()


def test_too_large_gets_413_and_leaves_nothing(api: httpx.Client, make_package: Any, settings: Any):
    big = make_package(payload=os.urandom(1024 * 1024 + 10))
    declared = post_bytes(api, big.read_bytes())
    assert declared.status_code == 413
    assert "limit" in declared.json()["detail"]

    def chunks() -> Any:  # no Content-Length: the limit is enforced while streaming
        data = big.read_bytes()
        for start in range(0, len(data), 65536):
            yield data[start : start + 65536]

    streamed = post_bytes(api, chunks())
    assert streamed.status_code == 413
    assert list((settings.artifact_dir / "staging").iterdir()) == []
    assert api.get(f"{V1}/model-packages").json()["items"] == []


def test_invalid_packages_get_422_naming_the_problem(api: httpx.Client, tmp_path: Path, settings: Any):
    not_zip = post_bytes(api, b"hello, I am not a zip")
    assert not_zip.status_code == 422
    assert not_zip.json()["field"] == "body" and "m.mlpkg" in not_zip.json()["detail"]
    assert str(settings.data_dir) not in not_zip.text  # the server's paths are not shown

    no_manifest = tmp_path / "bad.mlpkg"
    with zipfile.ZipFile(no_manifest, "w") as archive:
        archive.writestr("model.bin", b"x")
    response = post_bytes(api, no_manifest.read_bytes(), filename="bad.mlpkg")
    assert response.status_code == 422 and "manifest" in response.json()["detail"]

    traversal = tmp_path / "evil.mlpkg"
    with zipfile.ZipFile(traversal, "w") as archive:
        archive.writestr("../../etc/evil", b"x")
    assert post_bytes(api, traversal.read_bytes(), filename="evil.mlpkg").status_code == 422

    assert post_bytes(api, b"").status_code == 422
    assert api.get(f"{V1}/model-packages").json()["items"] == []


def test_unknown_package_is_404(api: httpx.Client):
    assert api.get(f"{V1}/model-packages/m-nope").status_code == 404
    assert api.get(f"{V1}/model-packages/m-nope/download").status_code == 404


def test_a_bomb_of_many_small_members_is_refused_like_everywhere_else(
    api: httpx.Client, make_package: Any, tmp_path: Path
) -> None:
    """The service applies the same whole-package limits as `shipmate serve` (shipmate.packages)."""
    import json

    source = make_package()
    with zipfile.ZipFile(source) as zin:
        contents = {name: zin.read(name) for name in zin.namelist()}
    manifest = json.loads(contents.pop("manifest.json"))
    contents.update({f"z{i}.bin": b"\0" * (256 << 10) for i in range(40)})
    manifest["files"] = {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}
    bomb = tmp_path / "bomb.mlpkg"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        zout.writestr("manifest.json", json.dumps(manifest))
        for name, data in contents.items():
            zout.writestr(name, data)
    response = api.post(
        f"{V1}/model-packages",
        params={"filename": "bomb.mlpkg"},
        content=bomb.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 422, response.text
    assert "zip bomb" in response.json()["detail"] and str(tmp_path) not in response.text
