"""The deployments-directory watcher: its pure planning step as a table of cases, and what it reads
from directories written by each writer (the filesystem plugin and the upload route)."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

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
