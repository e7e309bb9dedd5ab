"""The test plugin: the documented config, its files, and fault injection."""

from __future__ import annotations

import pytest
import yaml

from shipmate.plugin.actions import invoke
from shipmate.plugin.errors import ConfigError
from shipmate.plugin.info import DeploymentInfo, PEInfo
from shipmate.plugins.test_plugin import DELAY_KEYS, TestPlugin


def make(private, pe_ids=None) -> TestPlugin:
    return TestPlugin(
        {"MLOPS_BOSUN_PRED_ENV_ID": "pe-1"}, str(private), PEInfo(id="pe-1", deployments=pe_ids or [])
    )


def test_documented_config_loads_with_its_defaults(tmp_path) -> None:
    documented = tmp_path / "plugin.test.conf.yaml"
    documented.write_text(
        'tmp_dir: "/tmp"\nlaunch_time_sec: 1\nstop_time_sec: 1\nreplace_model_time_sec: 1\n'
        "pe_status_time_sec: 1\ndeployment_status_time_sec: 1\ndeployment_list_time_sec: 1\n"
        "plugin_start_time: 1\nplugin_stop_time: 1\n"
    )
    plugin = TestPlugin({}, str(documented))
    assert plugin.settings.tmp_dir == "/tmp"
    assert set(plugin.settings.delays) == set(DELAY_KEYS)
    assert TestPlugin({}).settings.delays["deployment_start"] == 1.0  # the documented value is the default
    as_json = tmp_path / "plugin.test.conf.json"
    as_json.write_text('{"tmp_dir": "/tmp", "launch_time_sec": 0.5}')
    assert TestPlugin({}, str(as_json)).settings.delays["deployment_start"] == 0.5


def test_bad_config_names_the_key(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("launch_time_sec: soon\n")
    with pytest.raises(ConfigError, match=f"launch_time_sec in private config {bad}: expected a number"):
        TestPlugin({}, str(bad))
    bad.write_text("fail_actions: 3\n")
    with pytest.raises(ConfigError, match="fail_actions"):
        TestPlugin({}, str(bad))


def test_lifecycle_files(tmp_path, test_plugin_config) -> None:
    plugin = make(test_plugin_config(), pe_ids=["d1", "d2"])
    files = tmp_path / "test-plugin"
    assert invoke(plugin, "pe_status").status.value == "failing"  # before plugin_start
    assert invoke(plugin, "plugin_start").ok
    assert (files / "pe_pe-1.yaml").exists()
    info = DeploymentInfo(id="d1", model_id="m1", model_artifact="/models/a.mlpkg", key_value_config={"k": 1})
    started = invoke(plugin, "deployment_start", info)
    assert started.ok and started.msg == "Launch successful"
    record = yaml.safe_load((files / "deployment_d1.yaml").read_text())
    assert record["model_id"] == "m1" and record["key_value_config"] == {"k": 1}
    listed = invoke(plugin, "deployment_list")
    assert list(listed.data or {}) == ["d1"]
    pe = invoke(plugin, "pe_status")
    statuses = (pe.data or {})["deploymentsStatus"]
    assert statuses["d1"]["status"] == "passing" and statuses["d2"]["status"] == "failing"
    assert invoke(plugin, "deployment_stop", info).ok
    assert invoke(plugin, "deployment_status", info).msg == "Deployment not found"
    assert invoke(plugin, "plugin_stop").ok
    assert not (files / "pe_pe-1.yaml").exists()


def test_fail_and_raise_and_invalid_result_faults(test_plugin_config) -> None:
    plugin = make(
        test_plugin_config(
            fail_actions=["deployment_replace_model"],
            raise_actions=["deployment_status"],
            invalid_result_actions=["deployment_list"],
        )
    )
    info = DeploymentInfo(id="d1", model_id="m1", new_model_id="m2")
    failed = invoke(plugin, "deployment_replace_model", info)
    assert failed.status.value == "failing" and failed.data == {"oldModelInUse": True}
    raised = invoke(plugin, "deployment_status", info)
    assert raised.status.value == "failing"
    assert raised.msg == (
        "Exception occurred while running action deployment_status : error "
        "test plugin: deployment_status raised, as configured"
    )
    invalid = invoke(plugin, "deployment_list")
    assert invalid.status.value == "failing" and "Contract violation" in str(invalid.msg)
    assert invalid.duration is not None


def test_delays_are_applied(test_plugin_config) -> None:
    plugin = make(test_plugin_config(plugin_start_time=0.2))
    result = invoke(plugin, "plugin_start")
    assert result.duration is not None and result.duration >= 0.2


def test_assert_has_api_token(test_plugin_config) -> None:
    private = test_plugin_config(assert_has_api_token=True)
    without = TestPlugin({"MLOPS_BOSUN_PRED_ENV_ID": "pe"}, str(private))
    assert "token was not passed" in str(invoke(without, "plugin_start").msg)
    config = {
        "MLOPS_BOSUN_PRED_ENV_ID": "pe",
        "mlopsApiToken": "t" * 20,
        "MLOPS_BOSUN_MONITORING_URL": "http://x",
    }
    assert invoke(TestPlugin(config, str(private)), "plugin_start").ok
