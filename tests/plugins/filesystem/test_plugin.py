"""The filesystem plugin: layout, atomic writes, status checks, idempotence."""

from __future__ import annotations

import hashlib
import os
import time
import zlib
from pathlib import Path

import pytest
import yaml

from shipmate.plugin.actions import invoke
from shipmate.plugin.errors import ConfigError
from shipmate.plugin.info import DeploymentInfo, PEInfo
from shipmate.plugins.filesystem import FilesystemPlugin, FilesystemSettings


@pytest.fixture
def base(tmp_path: Path) -> Path:
    path = tmp_path / "base"
    path.mkdir()
    return path


def visible(base: Path) -> list[str]:
    """What a reader sees: entries not starting with a dot."""
    return sorted(p.name for p in base.iterdir() if not p.name.startswith("."))


def settled(base: Path, timeout: float = 30.0) -> list[str]:
    """Every entry, once the background removal of renamed-aside directories is done."""
    deadline = time.monotonic() + timeout
    while any(p.name.startswith(".") for p in base.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return sorted(p.name for p in base.iterdir())


def make_plugin(base: Path, pe_ids: list[str] | None = None, **settings) -> FilesystemPlugin:
    config = {"baseDir": str(base), "MLOPS_BOSUN_PRED_ENV_ID": "pe-1", **settings}
    pe = PEInfo(id="pe-1", deployments=list(pe_ids or []))
    return FilesystemPlugin(config, None, pe, False)


def deployment(artifact: Path, deployment_id: str = "d1", model_id: str = "m1", **extra) -> DeploymentInfo:
    return DeploymentInfo(id=deployment_id, model_id=model_id, model_artifact=str(artifact), **extra)


def test_start_lays_out_one_directory_per_deployment(base, model_artifact) -> None:
    plugin = make_plugin(base, deploymentPredictionBaseUrl="http://127.0.0.1:8080/")
    info = deployment(model_artifact, key_value_config={"replicas": 2})
    result = invoke(plugin, "deployment_start", info)
    assert (result.status.value, result.state.value) == ("passing", "ready")  # type: ignore[union-attr]
    assert result.data == {"currentModelId": "m1", "predictionUrl": "http://127.0.0.1:8080/d1/predict"}
    directory = base / "deployment_d1"
    assert sorted(p.name for p in directory.iterdir()) == ["config.yml", "model_A.mlpkg"]
    assert (directory / "model_A.mlpkg").read_bytes() == model_artifact.read_bytes()
    record = yaml.safe_load((directory / "config.yml").read_text())
    assert record["deployment_id"] == "d1" and record["model_id"] == "m1"
    assert record["package_sha256"] == hashlib.sha256(model_artifact.read_bytes()).hexdigest()
    assert "model_crc32" not in record  # one checksum
    assert [p.name for p in base.iterdir()] == ["deployment_d1"]  # nothing left aside


def test_no_prediction_url_without_base_url(base, model_artifact) -> None:
    result = invoke(make_plugin(base), "deployment_start", deployment(model_artifact))
    assert result.data == {"currentModelId": "m1"}


def test_key_values_merge_into_the_info_file_without_overriding_it(base, model_artifact) -> None:
    plugin = make_plugin(base, deploymentKVFile="config.yml")
    info = deployment(model_artifact, key_value_config={"replicas": 3, "model_id": "forged"})
    assert invoke(plugin, "deployment_start", info).ok
    record = yaml.safe_load((base / "deployment_d1" / "config.yml").read_text())
    assert record["replicas"] == 3 and record["model_id"] == "m1"
    assert invoke(plugin, "deployment_status", info).ok


def test_key_values_in_their_own_file(base, model_artifact) -> None:
    plugin = make_plugin(base, deploymentKVFile="kv.yaml")
    assert invoke(plugin, "deployment_start", deployment(model_artifact, key_value_config={"a": "b"})).ok
    assert yaml.safe_load((base / "deployment_d1" / "kv.yaml").read_text()) == {"a": "b"}


def test_start_is_idempotent_and_replace_swaps_the_model(base, model_artifact, tmp_path) -> None:
    plugin = make_plugin(base)
    info = deployment(model_artifact)
    assert invoke(plugin, "deployment_start", info).ok
    assert invoke(plugin, "deployment_start", info).ok
    new_model = tmp_path / "model_B.mlpkg"
    new_model.write_bytes(b"model B")
    replacement = deployment(new_model, new_model_id="m2")
    result = invoke(plugin, "deployment_replace_model", replacement)
    assert result.ok and result.data == {"currentModelId": "m2"}
    assert sorted(p.name for p in (base / "deployment_d1").iterdir()) == ["config.yml", "model_B.mlpkg"]
    status = invoke(plugin, "deployment_status", replacement)
    assert status.ok and status.data == {"currentModelId": "m2"}
    assert settled(base) == ["deployment_d1"]


def test_failed_replace_keeps_the_old_model(base, model_artifact, tmp_path) -> None:
    plugin = make_plugin(base)
    assert invoke(plugin, "deployment_start", deployment(model_artifact)).ok
    result = invoke(
        plugin, "deployment_replace_model", deployment(tmp_path / "missing.mlpkg", new_model_id="m2")
    )
    assert result.status.value == "failing" and result.data == {"oldModelInUse": True}
    assert "does not exist" in str(result.msg)
    assert invoke(plugin, "deployment_status", deployment(model_artifact)).data == {"currentModelId": "m1"}


def test_replace_of_an_unknown_deployment_fails(base, model_artifact) -> None:
    result = invoke(
        make_plugin(base), "deployment_replace_model", deployment(model_artifact, new_model_id="m2")
    )
    assert result.status.value == "failing" and "start it before" in str(result.msg)


def test_start_without_artifact_fails_clearly(base, tmp_path) -> None:
    plugin = make_plugin(base)
    result = invoke(plugin, "deployment_start", DeploymentInfo(id="d1", model_id="m1"))
    assert result.status.value == "failing" and "modelArtifact is missing" in str(result.msg)
    result = invoke(plugin, "deployment_start", deployment(tmp_path / "nope.mlpkg"))
    assert "does not exist" in str(result.msg)
    assert list(base.iterdir()) == []


@pytest.mark.parametrize("hostile", ["../escape", ".hidden", "a/b", ".."])
def test_hostile_deployment_ids_are_refused(base, model_artifact, hostile) -> None:
    plugin = make_plugin(base)
    for action in ("deployment_start", "deployment_stop", "deployment_status"):
        result = invoke(plugin, action, deployment(model_artifact, deployment_id=hostile))
        assert result.status.value == "failing", action
        assert "cannot be used as a directory name" in str(result.msg)
    assert list(base.iterdir()) == []
    assert not (base.parent / "deployment_../escape").exists()


def test_status_detects_missing_and_corrupted_deployments(base, model_artifact) -> None:
    plugin = make_plugin(base)
    info = deployment(model_artifact)
    assert invoke(plugin, "deployment_start", info).ok
    artifact = base / "deployment_d1" / "model_A.mlpkg"
    artifact.write_bytes(b"tampered")
    result = invoke(plugin, "deployment_status", info)
    assert result.status.value == "failing" and "corrupted (checksum differs)" in str(result.msg)
    artifact.unlink()
    assert "is missing" in str(invoke(plugin, "deployment_status", info).msg)
    (base / "deployment_d1" / "config.yml").write_text("deployment_id: [unclosed\n")
    assert "not valid YAML" in str(invoke(plugin, "deployment_status", info).msg)
    (base / "deployment_d1" / "config.yml").unlink()
    assert "info file" in str(invoke(plugin, "deployment_status", info).msg)
    assert invoke(plugin, "deployment_stop", info).ok
    result = invoke(plugin, "deployment_status", info)
    assert result.status.value == "failing" and "directory" in str(result.msg)


@pytest.mark.parametrize("corrupt", [False, True])
def test_status_still_verifies_a_directory_of_the_crc32_era(base, model_artifact, corrupt: bool) -> None:
    """Directories written before the one checksum recorded ``model_crc32``: still checked."""
    plugin = make_plugin(base)
    info = deployment(model_artifact)
    assert invoke(plugin, "deployment_start", info).ok
    directory = base / "deployment_d1"
    record = yaml.safe_load((directory / "config.yml").read_text())
    del record["package_sha256"]
    record["model_crc32"] = f"{zlib.crc32(model_artifact.read_bytes()):08x}"
    (directory / "config.yml").write_text(yaml.safe_dump(record))
    if corrupt:
        (directory / "model_A.mlpkg").write_bytes(b"tampered")
    result = invoke(plugin, "deployment_status", info)
    assert result.ok is not corrupt
    assert ("corrupted (checksum differs)" in str(result.msg)) is corrupt


def test_status_warns_when_another_model_serves(base, model_artifact) -> None:
    plugin = make_plugin(base)
    assert invoke(plugin, "deployment_start", deployment(model_artifact)).ok
    result = invoke(plugin, "deployment_status", deployment(model_artifact, new_model_id="m9"))
    assert result.status.value == "warning" and result.data == {"currentModelId": "m1"}


def test_list_returns_every_deployment_and_ignores_the_rest(base, model_artifact) -> None:
    plugin = make_plugin(base)
    assert invoke(plugin, "deployment_list").data == {}
    for deployment_id in ("d1", "d2", "d3"):
        assert invoke(plugin, "deployment_start", deployment(model_artifact, deployment_id=deployment_id)).ok
    (base / ".deployment_d4.abc.new").mkdir()  # a write in progress
    (base / "unrelated").mkdir()
    (base / "deployment_file").write_text("not a directory")
    result = invoke(plugin, "deployment_list")
    assert result.ok and sorted(result.data or {}) == ["d1", "d2", "d3"]
    assert result.data["d1"]["status"] == "passing"  # type: ignore[index]
    assert result.msg == "Number of deployments: 3"


def test_stop_is_idempotent(base, model_artifact) -> None:
    plugin = make_plugin(base)
    info = deployment(model_artifact)
    assert invoke(plugin, "deployment_start", info).ok
    first = invoke(plugin, "deployment_stop", info)
    second = invoke(plugin, "deployment_stop", info)
    assert (first.state.value, second.state.value) == ("stopped", "stopped")  # type: ignore[union-attr]
    assert first.ok and second.ok and "nothing to stop" in str(second.msg)
    assert visible(base) == [] and settled(base) == []


def test_pe_status_checks_base_dir_and_reports_listed_deployments(base, model_artifact, tmp_path) -> None:
    assert invoke(make_plugin(base), "deployment_start", deployment(model_artifact)).ok
    result = invoke(make_plugin(base, pe_ids=["d1", "d2"]), "pe_status")
    statuses = (result.data or {})["deploymentsStatus"]
    assert result.ok and statuses["d1"]["status"] == "passing" and statuses["d2"]["status"] == "failing"
    assert invoke(make_plugin(base), "pe_status").data is None
    missing = invoke(make_plugin(tmp_path / "absent"), "pe_status")
    assert missing.status.value == "failing" and "does not exist" in str(missing.msg)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert "not a directory" in str(invoke(make_plugin(a_file), "plugin_start").msg)


def test_unwritable_base_dir_is_reported(base) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere, so an unwritable directory cannot be made")
    base.chmod(0o500)
    try:
        assert "not writable" in str(invoke(make_plugin(base), "plugin_start").msg)
    finally:
        base.chmod(0o700)


def test_settings_defaults_and_validation(tmp_path) -> None:
    defaults = FilesystemSettings.from_config({})
    assert (defaults.base_dir, defaults.prefix, defaults.info_file) == (".", "deployment_", "config.yml")
    assert defaults.prediction_base_url is None and defaults.kv_file is None
    with pytest.raises(ConfigError, match="baseDir in pluginConfig: expected a string"):
        FilesystemPlugin({"baseDir": 3})
    with pytest.raises(ConfigError, match=r"deploymentInfoFile .* must be a plain file name"):
        FilesystemSettings.from_config({"deploymentInfoFile": "../x.yml"})
    with pytest.raises(ConfigError, match="deploymentDirPrefix"):
        FilesystemSettings.from_config({"deploymentDirPrefix": "a/b"})


def test_private_config_wins_over_plugin_config(tmp_path) -> None:
    private = tmp_path / "fs.yaml"
    private.write_text("baseDir: /from/private\n")
    plugin = FilesystemPlugin({"baseDir": "/from/plugin/config", "deploymentDirPrefix": "x_"}, str(private))
    assert plugin.settings.base_dir == "/from/private" and plugin.settings.prefix == "x_"
    private.write_text("baseDir: [1, 2]\n")
    with pytest.raises(ConfigError, match=f"baseDir in private config {private}"):
        FilesystemPlugin({}, str(private))


def test_a_reader_never_sees_a_half_written_deployment(base, tmp_path) -> None:
    """While the model is replaced again and again, every complete read is consistent."""
    import threading

    models = []
    for index in range(2):
        path = tmp_path / f"model_{index}.mlpkg"
        path.write_bytes(os.urandom(256 * 1024))
        models.append(path)
    plugin = make_plugin(base)
    assert invoke(plugin, "deployment_start", deployment(models[0])).ok
    done = threading.Event()
    problems: list[str] = []
    complete_reads = 0

    def read_like_a_server() -> None:
        nonlocal complete_reads
        while not done.is_set():
            for name in os.listdir(base):
                if name.startswith("."):
                    continue
                try:
                    fd = os.open(base / name, os.O_RDONLY | os.O_DIRECTORY)
                except FileNotFoundError:
                    continue
                try:
                    with open(os.open("config.yml", os.O_RDONLY, dir_fd=fd)) as handle:
                        record = yaml.safe_load(handle)
                    with open(os.open(record["model_file"], os.O_RDONLY, dir_fd=fd), "rb") as handle:
                        digest = hashlib.sha256(handle.read()).hexdigest()
                except FileNotFoundError:
                    continue  # the deployment was swapped out under us: retry, as a reader should
                finally:
                    os.close(fd)
                if digest != record["package_sha256"]:
                    problems.append(f"{name}: artifact does not match its config")
                complete_reads += 1

    reader = threading.Thread(target=read_like_a_server)
    reader.start()
    try:
        for round_ in range(60):
            result = invoke(
                plugin, "deployment_replace_model", deployment(models[round_ % 2], new_model_id=f"m{round_}")
            )
            assert result.ok, result.msg
    finally:
        done.set()
        reader.join(timeout=60)
    assert problems == []
    assert complete_reads > 0
    assert settled(base) == ["deployment_d1"]


def test_a_replaced_deployment_is_never_missing(base, tmp_path) -> None:
    """The old and new directories are exchanged atomically: its place is never empty,
    so neither a reader nor a crash at any instant finds the deployment gone."""
    import threading

    model = tmp_path / "model.mlpkg"
    model.write_bytes(os.urandom(64 * 1024))
    plugin = make_plugin(base)
    assert invoke(plugin, "deployment_start", deployment(model)).ok
    target = base / "deployment_d1"
    done = threading.Event()
    missing = 0
    looks = 0

    def watch() -> None:
        nonlocal missing, looks
        while not done.is_set():
            looks += 1
            if not target.is_dir():
                missing += 1

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for round_ in range(40):
            assert invoke(plugin, "deployment_replace_model", deployment(model, new_model_id=f"m{round_}")).ok
    finally:
        done.set()
        watcher.join(timeout=60)
    assert looks > 0
    assert missing == 0
    assert yaml.safe_load((target / "config.yml").read_text())["model_id"] == "m39"


def test_a_replacement_cut_short_is_put_back_at_start(base, model_artifact) -> None:
    """A crash between the two renames of the fallback swap leaves ``.swap``: it goes back."""
    plugin = make_plugin(base)
    assert invoke(plugin, "deployment_start", deployment(model_artifact)).ok
    (base / "deployment_d1").rename(base / ".deployment_d1.abc.swap")
    (base / "deployment_d2").mkdir()
    (base / ".deployment_d2.abc.swap").mkdir()  # its place is taken: the leftover is deleted
    assert invoke(make_plugin(base), "plugin_start").ok
    assert invoke(plugin, "deployment_status", deployment(model_artifact)).ok
    assert settled(base) == ["deployment_d1", "deployment_d2"]


def test_leftovers_of_interrupted_runs_are_swept(base, model_artifact) -> None:
    (base / ".deployment_d9.abc.old").mkdir()
    fresh = base / ".deployment_d8.abc.new"
    fresh.mkdir()  # another process may be writing it: kept
    stale = base / ".deployment_d7.abc.new"
    stale.mkdir()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    (base / ".unrelated").mkdir()
    assert invoke(make_plugin(base), "plugin_start").ok
    deadline = time.monotonic() + 30
    while (base / ".deployment_d9.abc.old").exists() or stale.exists():
        assert time.monotonic() < deadline, "leftovers were not swept"
        time.sleep(0.01)
    assert fresh.exists() and (base / ".unrelated").exists()


def test_a_directory_whose_name_is_not_utf8_is_named_not_fatal(base, model_artifact) -> None:
    """Such a name cannot travel in a report (JSON, YAML): the listing says it ignored it."""
    import json

    plugin = make_plugin(base)
    plugin.deployment_start(deployment(model_artifact, "d1"))
    os.mkdir(os.path.join(os.fsencode(base), b"deployment_caf\xe9"))
    status = plugin.deployment_list()
    assert status.status.value == "passing"
    assert list(status.data or {}) == ["d1"]
    json.dumps(status.to_dict(), ensure_ascii=False).encode("utf-8")  # reportable as it is
    assert "not valid UTF-8" in status.msg and "deployment_caf\\xe9" in status.msg
