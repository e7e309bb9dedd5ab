"""Packages that verify but cannot be extracted, or that would expand into a bomb, are refused
by the prediction server's upload route with a 422 naming the member, never a bare 500."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from starlette.testclient import TestClient

KEY = "test-key-0123456789abcdef"


def _with_members(package: Path, out: Path, members: dict[str, bytes]) -> Path:
    """A copy of ``package`` with extra members, listed with their checksums (so it verifies)."""
    with zipfile.ZipFile(package) as zin:
        contents = {name: zin.read(name) for name in zin.namelist()}
    manifest = json.loads(contents.pop("manifest.json"))
    contents.update(members)
    manifest["files"] = {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        zout.writestr("manifest.json", json.dumps(manifest))
        for name, data in contents.items():
            zout.writestr(name, data)
    return out


@pytest.mark.parametrize(
    ("members", "named"),
    [
        ({"a": b"x", "a/b": b"y"}, "'a/b'"),
        ({"manifest.json/x": b"y"}, "'manifest.json/x'"),
        ({"d/" + "n" * 300: b"y"}, "longer than 255 bytes"),
        ({f"z{i}.bin": b"\0" * (256 << 10) for i in range(40)}, "zip bomb"),
    ],
    ids=["file-and-directory", "under-the-manifest", "long-name", "many-small-members"],
)
def test_unextractable_or_bomb_packages_get_a_422_naming_the_problem(
    make_client: Callable[..., TestClient],
    onnx_package: Path,
    tmp_path: Path,
    members: dict[str, bytes],
    named: str,
) -> None:
    root = tmp_path / "deployments"
    root.mkdir()
    client = make_client(deployments_dir=root, api_key=KEY)
    bad = _with_members(onnx_package, tmp_path / "bad.mlpkg", members)
    reply = client.post("/deployments/h1", content=bad.read_bytes(), headers={"x-api-key": KEY})
    assert reply.status_code == 422, reply.text
    assert named in reply.json()["message"]
    assert str(tmp_path) not in reply.text  # no server paths in the answer
    assert [p.name for p in root.iterdir()] == []
    good = client.post("/deployments/h1", content=onnx_package.read_bytes(), headers={"x-api-key": KEY})
    assert good.status_code == 201, good.text
