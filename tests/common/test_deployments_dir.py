"""The deployments-directory layout: its info record, its one checksum (and the old one), the sweep."""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path

import pytest

from shipmate.common import deployments_dir as layout


def test_the_layouts_keys_win_over_key_values() -> None:
    record = layout.info_record("d1", "m1", "model.mlpkg", "ab" * 32, {"replicas": 2, "deployment_id": "x"})
    assert record == {
        "replicas": 2,
        "deployment_id": "d1",
        "model_id": "m1",
        "model_file": "model.mlpkg",
        "package_sha256": "ab" * 32,
    }
    assert layout.recorded_checksum(record) == layout.Checksum("sha256", "ab" * 32)


def test_checksums_of_every_era_are_read_and_checked(tmp_path: Path) -> None:
    package = tmp_path / "model.mlpkg"
    package.write_bytes(os.urandom(4096))
    sha, crc = hashlib.sha256(package.read_bytes()).hexdigest(), f"{zlib.crc32(package.read_bytes()):08x}"
    for record in ({"package_sha256": sha}, {"model_package_sha256": sha.upper()}, {"model_crc32": crc}):
        checksum = layout.recorded_checksum(record)
        assert checksum is not None and checksum.problem(str(package)) is None, record
    assert layout.recorded_checksum({"model_id": "m"}) is None
    problem = layout.Checksum("crc32", "00000000").problem(str(package))
    assert problem is not None and problem.startswith("model.mlpkg: CRC-32")
    assert (
        layout.Checksum("sha256", sha).problem(str(package), sha256="f" * 64) is not None
    )  # trusts the given


def test_a_copy_records_the_sha256_of_what_was_copied(tmp_path: Path) -> None:
    source = tmp_path / "a.mlpkg"
    source.write_bytes(b"x" * 3_000_000)
    os.chmod(source, 0o640)
    digest = layout.copy_with_sha256(str(source), str(tmp_path / "b.mlpkg"))
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()
    assert (tmp_path / "b.mlpkg").stat().st_mode & 0o777 == 0o640


def test_a_swap_replaces_the_deployment_and_discards_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "deployment_d1"
    for round_ in range(3):
        staging = Path(layout.staging_directory(str(target)))
        assert staging.name.startswith(".deployment_d1.") and staging.name.endswith(".new")
        (staging / "round").write_text(str(round_))
        assert layout.swap_into_place(str(staging), str(target)) is (round_ > 0)
        assert (target / "round").read_text() == str(round_)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["deployment_d1"]
    layout.move_aside(str(target))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "age", "place_taken", "expected"),
    [
        (".deployment_d1.abc.old", 0, False, "discard"),
        (".deployment_d1.abc.swap", 0, False, "restore"),
        (".deployment_d1.abc.swap", 0, True, "discard"),
        (".deployment_d1.abc.new", 10, False, None),  # another writer may be at work in it
        (".deployment_d1.abc.new", 2 * layout.STALE_STAGING_SEC, False, "discard"),
        (".unrelated.old", 0, False, None),  # not ours
        ("deployment_d1", 0, False, None),
    ],
)
def test_leftovers_of_interrupted_runs(
    tmp_path: Path, name: str, age: float, place_taken: bool, expected: str | None
) -> None:
    if place_taken:
        (tmp_path / "deployment_d1").mkdir()
    found = layout.leftovers(str(tmp_path), [name], "deployment_", 10_000.0, lambda path: 10_000.0 - age)
    assert [item.action for item in found] == ([expected] if expected else [])
    if expected == "restore":
        assert found[0].target == str(tmp_path / "deployment_d1")


def test_unsafe_ids_and_names() -> None:
    assert layout.unsafe_id_reason("d-1.ok") is None
    for bad in ("", ".", "..", ".hidden", "a/b", "a\0b"):
        assert layout.unsafe_id_reason(bad) is not None, bad
    assert layout.deployment_id_of("deployment_d1", "deployment_") == "d1"
    assert layout.deployment_id_of("other", "deployment_") == "other"


def test_a_killed_writers_staging_is_swept_at_once(tmp_path: Path) -> None:
    """A process SIGKILLed mid-write leaves a ``.new`` copy of the model: swept at the next
    sweep when its writer is gone, not an hour later; a live writer's is left alone."""
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    target = str(tmp_path / "deployment_d1")
    mine = layout.staging_directory(target)
    assert f".{os.getpid()}-" in os.path.basename(mine)
    dead = os.path.join(str(tmp_path), f".deployment_d2.{gone.pid}-abcdef.new")
    os.mkdir(dead)
    layout.sweep(str(tmp_path), "deployment_")
    assert not os.path.exists(dead)
    assert os.path.exists(mine)
