"""Running actions: never an escaping exception, always a duration, both stop signatures, relaunch."""

from __future__ import annotations

import pytest

from shipmate.plugin import ActionStatus, ActionStatusInfo, BosunPluginBase, DeploymentState, PluginBase
from shipmate.plugin.actions import invoke
from shipmate.plugin.info import DeploymentInfo

INFO = {"id": "d1", "modelId": "m1", "modelExecutionType": "dedicated"}


class Recorder(PluginBase):
    """Records what each action received; behaviour set per test."""

    stop_raises = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, object]] = []

    def plugin_start(self):
        raise RuntimeError("cannot reach the environment")

    def plugin_stop(self):
        return "done"  # a contract violation

    def deployment_list(self):
        raise SystemExit(3)

    def deployment_start(self, deployment_info):
        self.calls.append(("start", deployment_info))
        return ActionStatusInfo(ActionStatus.OK, state=DeploymentState.READY)

    def deployment_stop(self, deployment_info):
        self.calls.append(("stop", deployment_info))
        if self.stop_raises:
            raise RuntimeError("stop failed")
        return ActionStatusInfo(ActionStatus.ERROR, state=DeploymentState.ERRORED)

    def deployment_replace_model(self, deployment_info):
        return ActionStatusInfo(ActionStatus.OK)

    def pe_status(self):
        return ActionStatusInfo(ActionStatus.OK)

    def deployment_status(self, deployment_info):
        self.calls.append(("status", deployment_info))
        return ActionStatusInfo(ActionStatus.OK)


class ById(Recorder):
    def deployment_stop(self, deployment_id):
        self.calls.append(("stop", deployment_id))
        return ActionStatusInfo(ActionStatus.OK, state=DeploymentState.STOPPED)

    def deployment_status(self, deployment_id: str):
        self.calls.append(("status", deployment_id))
        return ActionStatusInfo(ActionStatus.OK)


def test_bosun_name_is_the_base() -> None:
    assert BosunPluginBase is PluginBase


def test_exceptions_become_failing_statuses_with_duration() -> None:
    plugin = Recorder({})
    result = invoke(plugin, "plugin_start")
    assert result.status is ActionStatus.ERROR and result.state is DeploymentState.ERRORED
    assert (
        result.msg
        == "Exception occurred while running action plugin_start : error cannot reach the environment"
    )
    assert result.duration is not None
    assert invoke(plugin, "deployment_list").status is ActionStatus.ERROR  # even SystemExit


def test_non_status_return_is_a_contract_violation() -> None:
    result = invoke(Recorder({}), "plugin_stop")
    assert result.status is ActionStatus.ERROR
    assert result.msg == "Contract violation: Recorder.plugin_stop returned str, not ActionStatusInfo"


def test_unknown_action_and_missing_deployment_info() -> None:
    assert "Action is not supported: nope" in str(invoke(Recorder({}), "nope").msg)
    assert "needs a deploymentInfo" in str(invoke(Recorder({}), "deployment_start").msg)
    bad = invoke(Recorder({}), "deployment_start", {"id": "d1"})
    assert "deploymentInfo.modelId" in str(bad.msg) and "missing required field" in str(bad.msg)


def test_stop_and_status_receive_info_or_id_as_the_plugin_was_written() -> None:
    documented, package_style = Recorder({}), ById({})
    for plugin in (documented, package_style):
        invoke(plugin, "deployment_stop", INFO)
        invoke(plugin, "deployment_status", INFO)
    assert all(isinstance(arg, DeploymentInfo) for _, arg in documented.calls)
    assert package_style.calls == [("stop", "d1"), ("status", "d1")]


@pytest.mark.parametrize("stop_raises", [False, True])
def test_relaunch_is_stop_then_start_ignoring_a_failed_stop(stop_raises) -> None:
    plugin = Recorder({})
    plugin.stop_raises = stop_raises
    result = invoke(plugin, "deployment_relaunch", INFO)
    assert [name for name, _ in plugin.calls] == ["stop", "start"]
    assert result.ok and result.state is DeploymentState.READY
    by_id = ById({})
    invoke(by_id, "deployment_relaunch", INFO)
    assert by_id.calls[0] == ("stop", "d1")


def test_a_status_object_of_another_package_is_accepted() -> None:
    """A plugin built on DataRobot's own package (when installed) returns its ActionStatusInfo."""

    class ActionStatusInfo:  # the foreign class: same name, same fields
        def __init__(self, status, msg=None, state=None, duration=None, data=None) -> None:
            self.status, self.msg, self.state, self.duration, self.data = status, msg, state, duration, data
            self.timestamp = 1

    class Foreign(Recorder):
        def pe_status(self):
            return ActionStatusInfo("passing", msg="foreign", data={"x": 1})

        def deployment_replace_model(self, deployment_info):
            return ActionStatusInfo("excellent")

    result = invoke(Foreign({}), "pe_status")
    assert result.ok and result.msg == "foreign" and result.data == {"x": 1}
    bad = invoke(Foreign({}), "deployment_replace_model", INFO)
    assert bad.status is ActionStatus.ERROR and "Contract violation" in str(bad.msg)
