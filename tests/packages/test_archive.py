"""Reading packages safely: hostile and broken zips built here are refused with clear errors."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest

from shipmate.packages import PackageError, ReadLimits, extract_package, read_manifest, verify_package
from shipmate.packages.archive import check_member_name


def test_read_manifest_of_a_built_package(iris_package: Path) -> None:
    manifest = read_manifest(iris_package)
    assert manifest.framework == "sklearn"
    assert manifest.target_type == "multiclass"
    assert manifest.class_labels == [0, 1, 2]
    assert manifest.feature_names[0] == "sepal length (cm)"
    assert set(manifest.files) == {"model.joblib"}
    assert verify_package(iris_package) == manifest


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../evil.py", "escapes"),
        ("a/../../evil.py", "escapes"),
        ("/etc/passwd", "absolute"),
        ("C:/windows/evil.dll", "absolute"),
        ("a\\..\\evil.py", "backslash"),
        ("a//b", "escapes"),
        ("", "empty"),
    ],
)
def test_unsafe_member_names(name: str, problem: str) -> None:
    reason = check_member_name(name)
    assert reason is not None and problem in reason


def test_safe_member_names() -> None:
    assert check_member_name("model/MLmodel") is None
    assert check_member_name("dir/") is None


def test_path_traversal_member_is_refused(iris_package: Path, tmp_path: Path, rewrite: Any) -> None:
    bad = rewrite(iris_package, tmp_path / "bad.mlpkg", extra={"../../outside.txt": b"x"})
    with pytest.raises(PackageError, match=r"'\.\./\.\./outside\.txt' refused"):
        read_manifest(bad)
    with pytest.raises(PackageError):
        extract_package(bad, tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()
    assert not (tmp_path / "out").exists()


def test_absolute_member_is_refused(iris_package: Path, tmp_path: Path, rewrite: Any) -> None:
    bad = rewrite(iris_package, tmp_path / "bad.mlpkg", extra={"/tmp/evil": b"x"})
    with pytest.raises(PackageError, match="absolute path"):
        read_manifest(bad)


def test_symlink_member_is_refused(iris_package: Path, tmp_path: Path, rewrite: Any) -> None:
    bad = rewrite(iris_package, tmp_path / "bad.mlpkg")
    with zipfile.ZipFile(bad, "a") as zf:
        info = zipfile.ZipInfo("link")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(PackageError, match="'link' refused: links are not allowed"):
        read_manifest(bad)


def test_zip_bomb_is_refused(iris_package: Path, tmp_path: Path, rewrite: Any) -> None:
    bad = rewrite(iris_package, tmp_path / "bomb.mlpkg", extra={"zeros.bin": b"\0" * (20 << 20)})
    with pytest.raises(PackageError, match=r"'zeros\.bin' refused: compression ratio .* \(zip bomb\?\)"):
        read_manifest(bad)


def test_oversized_member_is_refused(iris_package: Path) -> None:
    with pytest.raises(
        PackageError, match=r"'manifest\.json' is \d+ bytes uncompressed, more than the limit of 10"
    ):
        read_manifest(iris_package, ReadLimits(max_member_bytes=10))


def test_too_many_members_is_refused(iris_package: Path) -> None:
    with pytest.raises(PackageError, match="more than the limit of 1"):
        read_manifest(iris_package, ReadLimits(max_members=1))


def test_duplicate_member_is_refused(iris_package: Path, tmp_path: Path) -> None:
    bad = tmp_path / "dup.mlpkg"
    bad.write_bytes(iris_package.read_bytes())
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(bad, "a") as zf:
        zf.writestr("model.joblib", b"other")
    with pytest.raises(PackageError, match="appears twice"):
        read_manifest(bad)


def test_tampered_member_fails_checksum(iris_package: Path, tmp_path: Path, rewrite: Any) -> None:
    bad = rewrite(iris_package, tmp_path / "tampered.mlpkg", replace={"model.joblib": b"not the model"})
    read_manifest(bad)  # structure is fine: checksums are checked on verify/extract
    with pytest.raises(PackageError, match=r"checksum mismatch for 'model\.joblib'"):
        verify_package(bad)
    with pytest.raises(PackageError, match="checksum mismatch"):
        extract_package(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unlisted_and_missing_members(iris_package: Path, tmp_path: Path, rewrite: Any) -> None:
    extra = rewrite(iris_package, tmp_path / "extra.mlpkg", extra={"sneaky.py": b"print()"})
    with pytest.raises(PackageError, match=r"not listed in the manifest: \['sneaky\.py'\]"):
        read_manifest(extra)
    missing = rewrite(iris_package, tmp_path / "missing.mlpkg", drop=("model.joblib",))
    with pytest.raises(PackageError, match=r"missing: \['model\.joblib'\]"):
        read_manifest(missing)


def test_not_a_zip_and_missing_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mlpkg"
    junk.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(PackageError, match="not a valid model package"):
        read_manifest(junk)
    with pytest.raises(PackageError, match="no such file"):
        read_manifest(tmp_path / "absent.mlpkg")


def test_no_manifest(tmp_path: Path) -> None:
    path = tmp_path / "empty.mlpkg"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model.joblib", b"x")
    with pytest.raises(PackageError, match=r"no manifest\.json"):
        read_manifest(path)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"framework": "tensorflow"}, "framework"),
        ({"targetType": "ranking"}, "targetType"),
        ({"formatVersion": 9}, "unsupported formatVersion 9"),
        ({"classLabels": None}, "classLabels are required"),
        ({"classLabels": [1, 1, 2]}, "distinct"),
        ({"features": [{"name": "a", "type": "image"}]}, r"features\.0\.type"),
        ({"createdAt": "yesterday"}, "createdAt"),
    ],
)
def test_invalid_manifest_fields(
    iris_package: Path, tmp_path: Path, rewrite: Any, patch: dict[str, Any], message: str
) -> None:
    bad = rewrite(iris_package, tmp_path / "bad.mlpkg", manifest_patch=patch)
    with pytest.raises(PackageError, match=message) as info:
        read_manifest(bad)
    assert "invalid manifest.json" in str(info.value)


def test_manifest_not_json(iris_package: Path, tmp_path: Path, rewrite: Any) -> None:
    bad = rewrite(iris_package, tmp_path / "bad.mlpkg")
    with zipfile.ZipFile(bad) as zin:
        members = {n: zin.read(n) for n in zin.namelist()}
    with zipfile.ZipFile(bad, "w") as zout:
        for n, b in members.items():
            zout.writestr(n, b"{not json" if n == "manifest.json" else b)
    with pytest.raises(PackageError, match="not valid JSON"):
        read_manifest(bad)


def test_extract_writes_files_and_manifest(iris_package: Path, tmp_path: Path) -> None:
    out = tmp_path / "x"
    manifest = extract_package(iris_package, out)
    assert (out / "model.joblib").is_file()
    assert json.loads((out / "manifest.json").read_text())["name"] == manifest.name == "iris"


def test_many_small_members_cannot_add_up_to_a_bomb(iris_package: Path, tmp_path: Path, rewrite: Any) -> None:
    """The ratio and size limits hold for the whole package, not only for each large member."""
    zeros = {f"part-{i:03d}.bin": b"\0" * (512 << 10) for i in range(400)}
    bomb = rewrite(iris_package, tmp_path / "bomb.mlpkg", extra=zeros, fix_checksums=False)
    assert bomb.stat().st_size < 1 << 20  # 200 MiB inside, under 1 MiB on disk
    with pytest.raises(PackageError, match=r"whole package .* compression ratio .* \(zip bomb\?\)"):
        read_manifest(bomb)
    with pytest.raises(PackageError, match="more than the limit of 1000 bytes uncompressed in all"):
        read_manifest(iris_package, ReadLimits(max_total_bytes=1000))


@pytest.mark.parametrize(
    ("members", "named"),
    [
        ({"a": b"x", "a/b": b"y"}, "'a/b' refused: 'a' is a file"),
        ({"manifest.json/x": b"y"}, "'manifest.json/x' refused: 'manifest.json' is a file"),
        ({"d/" + "n" * 300: b"y"}, "longer than 255 bytes"),
        ({"/".join(["d" * 200] * 30): b"y"}, "longer than 4000 bytes"),
    ],
)
def test_members_that_cannot_be_extracted_are_refused_when_read(
    iris_package: Path, tmp_path: Path, rewrite: Any, members: dict[str, bytes], named: str
) -> None:
    bad = rewrite(iris_package, tmp_path / "bad.mlpkg", replace=members, fix_checksums=True)
    with pytest.raises(PackageError, match=named):
        read_manifest(bad)
    with pytest.raises(PackageError, match=named):
        extract_package(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
