"""ActionConfig, private configs and secret masking."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from shipmate.plugin.config import (
    ActionConfig,
    inject_environment,
    load_private_config,
    mask_secret,
    merge_private_config,
    sanitized,
    scrub,
)
from shipmate.plugin.errors import ConfigError
from shipmate.plugin.info import DeploymentInfo, PEInfo


def test_load_reads_every_section(write_yaml, make_action_config) -> None:
    path = write_yaml("c.yaml", make_action_config(artifact="/tmp/m.mlpkg", pe_deployments=["dep-1"]))
    config = ActionConfig.load(str(path))
    assert config.plugin_config["MLOPS_BOSUN_PRED_ENV_ID"] == "pe-1"
    assert config.pe_info is not None and config.pe_info.deployment_ids == ["dep-1"]
    assert config.deployment_info is not None
    assert config.deployment_info.model_artifact == "/tmp/m.mlpkg"
    assert config.deployment_info.key_value_config == {"key1": "value1"}


def test_the_documented_example_loads(write_yaml) -> None:
    text = """
pluginConfig:
  name: "ExternalCommand-1"
  type: "ExternalCommand"
  platform: "os"
  commandPrefix: "python3 sample_plugin.py"
  mlopsUrl: "https://example.invalid"

peInfo:
   id: "0x2345"
   name: "Sample-PE"
   createdOn: "iso formatted date"
   deployments: ["deployment-1", "deployment-2"]
   keyValueConfig:
    max_models: 5

deploymentInfo:
  id: "deployment-1"
  modelId: "model-A"
  modelArtifact: "/tmp/model-A.txt"
  modelExecutionType: "dedicated"
"""
    config = ActionConfig.load(str(write_yaml("doc.yaml", text)))
    assert config.pe_info is not None
    assert config.pe_info.created_on == "iso formatted date"
    assert config.pe_info.deployment_ids == ["deployment-1", "deployment-2"]


def test_malformed_yaml_names_the_line(write_yaml) -> None:
    path = write_yaml("bad.yaml", "pluginConfig:\n  a: 1\npeInfo: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        ActionConfig.load(str(path))
    assert str(path) in str(caught.value)
    assert "malformed YAML at line" in str(caught.value)


def test_wrongly_typed_field_names_field_file_and_line(write_yaml, make_action_config) -> None:
    raw = make_action_config()
    raw["deploymentInfo"]["modelId"] = ["not", "a", "string"]
    path = write_yaml("typed.yaml", yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ConfigError) as caught:
        ActionConfig.load(str(path))
    message = str(caught.value)
    expected_line = path.read_text().splitlines().index("  modelId:") + 1
    assert message.startswith(f"{path}, line {expected_line}: deploymentInfo.modelId")
    assert "expected a string" in message


def test_missing_field_names_the_field(write_yaml, make_action_config) -> None:
    raw = make_action_config()
    del raw["deploymentInfo"]["id"]
    path = write_yaml("missing.yaml", raw)
    with pytest.raises(ConfigError, match=r"deploymentInfo\.id: missing required field"):
        ActionConfig.load(str(path))


def test_missing_file_and_missing_section(tmp_path: Path, write_yaml) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        ActionConfig.load(str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match=r"pluginConfig .*missing required section"):
        ActionConfig.load(str(write_yaml("nopc.yaml", {"peInfo": {"id": "x"}})))
    with pytest.raises(ConfigError, match="empty"):
        ActionConfig.load(str(write_yaml("empty.yaml", "")))


def test_check_for_reports_missing_sections(make_action_config) -> None:
    raw = make_action_config(with_deployment=False)
    raw["peInfo"] = None
    config = ActionConfig.from_dict(raw, source="c.yaml")
    config.check_for("plugin_start")  # peInfo: null is fine for plugin_start
    config.check_for("deployment_list")
    with pytest.raises(
        ConfigError, match=r"deploymentInfo in c\.yaml: missing, but action deployment_start needs it"
    ):
        config.check_for("deployment_start")
    with pytest.raises(ConfigError, match=r"peInfo in c\.yaml: missing, but action pe_status needs it"):
        config.check_for("pe_status")
    with pytest.raises(ConfigError, match="Action is not supported: nope"):
        config.check_for("nope")


def test_write_round_trips_with_mode_0600(tmp_path: Path, make_action_config) -> None:
    original = ActionConfig.from_dict(make_action_config(artifact="/tmp/a.mlpkg", pe_deployments=["dep-1"]))
    path = tmp_path / "out.yaml"
    original.write(str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = ActionConfig.load(str(path))
    assert again.plugin_config == original.plugin_config
    assert again.deployment_info == original.deployment_info
    assert again.pe_info == original.pe_info


def test_to_dict_has_what_datarobots_runner_needs() -> None:
    config = ActionConfig(
        plugin_config={"MLOPS_BOSUN_PRED_ENV_ID": "pe-9", "MLOPS_BOSUN_MONITORING_URL": "http://127.0.0.1:1"},
        deployment_info=DeploymentInfo(id="d", model_id="m"),
    )
    out = yaml.safe_load(config.to_yaml())
    assert out["peInfo"]["id"] == "pe-9"  # never null when the PE id is known
    assert out["deploymentInfo"] == {
        "id": "d",
        "modelId": "m",
        "modelExecutionType": "dedicated",
        "keyValueConfig": {},
    }
    with_pe = ActionConfig(plugin_config={}, pe_info=PEInfo(id="pe-2"))
    assert yaml.safe_load(with_pe.to_yaml())["peInfo"]["id"] == "pe-2"


def test_private_config(write_yaml) -> None:
    path = write_yaml("private.yaml", "baseDir: /srv\ndeploymentDirPrefix: d_\n")
    assert load_private_config(str(path)) == {"baseDir": "/srv", "deploymentDirPrefix": "d_"}
    json_path = write_yaml("private.json", '{"tmp_dir": "/tmp", "launch_time_sec": 0}')
    assert load_private_config(str(json_path))["launch_time_sec"] == 0
    assert load_private_config(str(write_yaml("empty.yaml", ""))) == {}
    merged = merge_private_config({"baseDir": "/old", "keep": 1}, str(path))
    assert merged == {"baseDir": "/srv", "deploymentDirPrefix": "d_", "keep": 1}
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_private_config(str(write_yaml("list.yaml", "- a\n- b\n")))
    with pytest.raises(ConfigError, match=r"malformed YAML at line \d+, column \d+"):
        load_private_config(str(write_yaml("broken.yaml", "a: 1\nb: [\n")))


def test_masking() -> None:
    token = "abcdefghijklmnopqrstuvwxyz"
    assert mask_secret(token) == "abcdefghijkl*******"
    clean = sanitized({"mlopsApiToken": token, "nested": {"password": "hunter22"}, "baseDir": "/x"})
    assert clean == {
        "mlopsApiToken": "abcdefghijkl*******",
        "nested": {"password": "hunter22*******"},
        "baseDir": "/x",
    }
    scrubbed = scrub({"msg": f"bad token {token}!", "list": [token]}, [token])
    assert token not in str(scrubbed)
    assert scrubbed["msg"] == "bad token abcdefghijkl*******!"


def test_inject_environment() -> None:
    out = inject_environment({"mlopsApiToken": "from-file"}, {"MLOPS_API_TOKEN": "from-env"})
    assert out == {"mlopsApiToken": "from-env", "MLOPS_AGENT_VERIFY_SSL": True}
    out = inject_environment({"mlopsApiToken": "from-file"}, {"MLOPS_AGENT_VERIFY_SSL": "FALSE"})
    assert out == {"mlopsApiToken": "from-file", "MLOPS_AGENT_VERIFY_SSL": False}


def test_the_runner_imports_yaml_with_its_big_regex_compiled_lazily() -> None:
    """The start-up shortcut changes nothing a YAML user can see."""
    import subprocess
    import sys

    code = (
        "from shipmate.plugin.yamlio import import_yaml\n"
        "yaml = import_yaml()\n"
        "import yaml.reader\n"
        "assert type(yaml.reader.Reader.NON_PRINTABLE).__name__ == '_LazyPattern'\n"
        "assert yaml.load('a: [1, 2]', Loader=yaml.SafeLoader) == {'a': [1, 2]}\n"
        "try:\n"
        "    yaml.load('a: \\x07', Loader=yaml.SafeLoader)\n"
        "except yaml.YAMLError as exc:\n"
        "    assert 'special characters are not allowed' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('non-printable character accepted')\n"
        "import re\n"
        "assert re.compile is re.__dict__['compile'] and re.compile.__module__ == 're'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
