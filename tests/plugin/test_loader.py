"""Finding and building plugins from what ``--plugin`` says."""

from __future__ import annotations

import pytest

from shipmate.plugin.base import PluginBase
from shipmate.plugin.errors import PluginLoadError
from shipmate.plugin.loader import build_plugin, builtin_aliases, load_plugin_class

MINIMAL = """
from shipmate.plugin import ActionStatus, ActionStatusInfo, BosunPluginBase

class {name}(BosunPluginBase):
    def plugin_start(self): return ActionStatusInfo(ActionStatus.OK, msg="{name}")
    def plugin_stop(self): return ActionStatusInfo(ActionStatus.OK)
    def deployment_list(self): return ActionStatusInfo(ActionStatus.OK, data={{}})
    def deployment_start(self, deployment_info): return ActionStatusInfo(ActionStatus.OK, state="ready")
    def deployment_stop(self, deployment_info): return ActionStatusInfo(ActionStatus.OK, state="stopped")
    def deployment_replace_model(self, deployment_info): return ActionStatusInfo(ActionStatus.OK)
    def pe_status(self): return ActionStatusInfo(ActionStatus.OK)
    def deployment_status(self, deployment_info): return ActionStatusInfo(ActionStatus.OK)
"""


def test_the_documented_path_forms(tmp_path, write_plugin, monkeypatch) -> None:
    write_plugin("sample_plugin/sample_plugin.py", MINIMAL.format(name="SamplePlugin"))
    monkeypatch.chdir(tmp_path)
    for spec in (
        "sample_plugin/sample_plugin",
        "sample_plugin/sample_plugin.py",
        str(tmp_path / "sample_plugin/sample_plugin.py"),
    ):
        cls = load_plugin_class(spec)
        assert cls.__name__ == "SamplePlugin"
        assert issubclass(cls, PluginBase)


def test_dotted_module_and_explicit_class(tmp_path, write_plugin, monkeypatch) -> None:
    write_plugin(
        "pkgdir/my_plugins_mod.py",
        MINIMAL.format(name="First") + MINIMAL.format(name="Second").split("\n", 2)[2],
    )
    monkeypatch.syspath_prepend(str(tmp_path / "pkgdir"))
    with pytest.raises(
        PluginLoadError, match="more than one plugin class in module my_plugins_mod: First, Second"
    ):
        load_plugin_class("my_plugins_mod")
    assert load_plugin_class("my_plugins_mod:Second").__name__ == "Second"


def test_not_found_says_what_was_tried(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PluginLoadError) as caught:
        load_plugin_class("nowhere/none_such")
    message = str(caught.value)
    assert "not found" in message and "nowhere/none_such.py" in message and "shipmate.plugins" in message


def test_module_without_plugin_class(write_plugin, tmp_path, monkeypatch) -> None:
    write_plugin("empty_plugin_mod.py", "X = 1\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PluginLoadError, match="no plugin class in module empty_plugin_mod"):
        load_plugin_class("empty_plugin_mod.py")


def test_syntax_error_and_missing_dependency_are_reported(write_plugin, tmp_path, monkeypatch) -> None:
    write_plugin("broken_syntax_mod.py", "def (:\n")
    write_plugin("needs_dep_mod.py", "import surely_not_installed_xyz\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PluginLoadError, match=r"line 1: syntax error"):
        load_plugin_class("broken_syntax_mod.py")
    with pytest.raises(PluginLoadError, match="needs module 'surely_not_installed_xyz'"):
        load_plugin_class("needs_dep_mod.py")


def test_build_passes_arguments_positionally(write_plugin, tmp_path, monkeypatch) -> None:
    write_plugin("built_mod.py", MINIMAL.format(name="Built"))
    monkeypatch.chdir(tmp_path)
    plugin = build_plugin("built_mod.py", {"a": 1}, "/priv.yaml", {"id": "pe-1"}, True)
    assert plugin.plugin_config == {"a": 1}
    assert plugin.private_config_file == "/priv.yaml"
    assert plugin.pe_info is not None and plugin.pe_info.id == "pe-1"
    assert plugin.dry_run is True


def test_constructor_failure_is_a_load_error(write_plugin, tmp_path, monkeypatch) -> None:
    source = MINIMAL.format(name="Picky") + (
        "    def __init__(self, plugin_config, private_config_file=None, pe_info=None, dry_run=False):\n"
        "        raise ValueError('baseDir is required')\n"
    )
    write_plugin("picky_mod.py", source)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        PluginLoadError, match=r"could not build plugin picky_mod\.Picky: baseDir is required"
    ):
        build_plugin("picky_mod.py", {})


def test_abstract_plugin_names_missing_methods(write_plugin, tmp_path, monkeypatch) -> None:
    write_plugin(
        "partial_mod.py",
        "from shipmate.plugin import BosunPluginBase\nclass Partial(BosunPluginBase):\n    pass\n",
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PluginLoadError, match="abstract"):
        build_plugin("partial_mod.py", {})


def test_builtin_aliases_table() -> None:
    table = builtin_aliases()
    assert table["filesystem"][-1] == "filesystem"
    assert "filesystem_plugin" in table["filesystem"]
    assert "k8s" in table["kubernetes"]


BOSUN_STYLE = """
from bosun.plugin.action_status import ActionDataFields, ActionStatus, ActionStatusInfo
from bosun.plugin.bosun_plugin_base import BosunPluginBase
from bosun.plugin.constants import BosunPluginConfigConstants, DeploymentState
from bosun.plugin.deployment_info import DeploymentInfo


class BosunStyle(BosunPluginBase):
    def __init__(self, plugin_config, private_config_file, pe_info, dry_run):
        super().__init__(plugin_config, private_config_file, pe_info, dry_run)
        self.pe_id = plugin_config[BosunPluginConfigConstants.MLOPS_BOSUN_PRED_ENV_ID_KEY]

    def plugin_start(self): return ActionStatusInfo(ActionStatus.OK, msg=self.pe_id)
    def plugin_stop(self): return ActionStatusInfo(ActionStatus.OK)
    def deployment_list(self): return ActionStatusInfo(ActionStatus.OK, data={})
    def deployment_start(self, deployment_info: DeploymentInfo):
        return ActionStatusInfo(ActionStatus.OK, state=DeploymentState.READY,
                                data={ActionDataFields.CURRENT_MODEL_ID: deployment_info.current_model_id,
                                      "kv": deployment_info.kv_config})
    def deployment_stop(self, deployment_id: str):
        return ActionStatusInfo(ActionStatus.OK, msg=f"stopped {deployment_id}",
                                state=DeploymentState.STOPPED)
    def deployment_replace_model(self, deployment_info):
        return ActionStatusInfo(ActionStatus.ERROR, state=DeploymentState.ERROR)
    def pe_status(self): return ActionStatusInfo(ActionStatus.OK)
    def deployment_status(self, deployment_info): return ActionStatusInfo(ActionStatus.OK)
    def rebuild(self, raw): return DeploymentInfo(raw)
"""


def test_a_plugin_written_for_datarobots_package_runs_unchanged(write_plugin, tmp_path, monkeypatch) -> None:
    from shipmate.plugin.actions import invoke
    from shipmate.plugin.compat import real_bosun_installed

    if real_bosun_installed():
        pytest.skip("DataRobot's bosun package is installed here, so its own module paths are used")
    write_plugin("bosun_style_mod.py", BOSUN_STYLE)
    monkeypatch.chdir(tmp_path)
    plugin = build_plugin(
        "bosun_style_mod.py", {"MLOPS_BOSUN_PRED_ENV_ID": "pe-7"}, None, {"id": "pe-7"}, False
    )
    assert invoke(plugin, "plugin_start").msg == "pe-7"
    deployment = {
        "id": "d1",
        "modelId": "m1",
        "modelExecutionType": "dedicated",
        "keyValueConfig": {"k": "v"},
    }
    started = invoke(plugin, "deployment_start", deployment)
    assert started.status.value == "passing" and started.state is not None and started.state.value == "ready"
    assert started.data == {"currentModelId": "m1", "kv": {"k": "v"}}
    stopped = invoke(plugin, "deployment_stop", deployment)
    assert stopped.msg == "stopped d1"  # received the id string, as the package passes it
    assert invoke(plugin, "deployment_replace_model", deployment).state.value == "errored"  # type: ignore[union-attr]
    assert plugin.rebuild(deployment).model_id == "m1"  # type: ignore[attr-defined]
