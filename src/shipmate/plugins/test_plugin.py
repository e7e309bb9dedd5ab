"""The test plugin: pretends to deploy, with configurable delays and injected faults.

Each deployment is a YAML file ``<tmp_dir>/deployment_<id>.yaml``; ``plugin_start``
writes ``<tmp_dir>/pe_<environment id>.yaml``. Every action sleeps for its
configured time first, so the agent's timing and concurrency can be exercised.

Private config (YAML; JSON works too), with the documented keys and defaults::

    tmp_dir: "/tmp"
    launch_time_sec: 1
    stop_time_sec: 1
    replace_model_time_sec: 1
    pe_status_time_sec: 1
    deployment_status_time_sec: 1
    deployment_list_time_sec: 1
    plugin_start_time: 1
    plugin_stop_time: 1

Fault injection, for testing what runs plugins (each a list of action names)::

    fail_actions: [deployment_start]     # return failing/errored
    raise_actions: [deployment_status]   # raise an exception
    hang_actions: [deployment_stop]      # sleep hang_sec (default 3600) before acting
    crash_actions: [pe_status]           # end the process at once (exit code crash_exit_code, default 70)
    invalid_result_actions: [plugin_stop]  # return something that is not an ActionStatusInfo
    raise_exception: false               # the package's switch: every action raises
    assert_has_api_token: false          # fail unless pluginConfig has mlopsApiToken and the service URL
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from shipmate.plugin.base import PluginBase
from shipmate.plugin.config import API_TOKEN_KEY, load_private_config
from shipmate.plugin.errors import ConfigError
from shipmate.plugin.info import DeploymentInfo, EndpointInfo, PEInfo
from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DataKey, DeploymentState
from shipmate.plugin.yamlio import import_yaml, safe_dump, safe_load

DELAY_KEYS = {
    "plugin_start": "plugin_start_time",
    "plugin_stop": "plugin_stop_time",
    "deployment_start": "launch_time_sec",
    "deployment_stop": "stop_time_sec",
    "deployment_replace_model": "replace_model_time_sec",
    "pe_status": "pe_status_time_sec",
    "deployment_status": "deployment_status_time_sec",
    "deployment_list": "deployment_list_time_sec",
}
"""Action -> the private config key holding its sleep time in seconds."""

FAULT_KEYS = ("fail_actions", "raise_actions", "hang_actions", "crash_actions", "invalid_result_actions")

DEFAULT_DELAY_SEC = 1.0


class TestPluginSettings:
    """Validated private config of the test plugin."""

    __slots__ = (
        "assert_has_api_token",
        "crash_exit_code",
        "delays",
        "faults",
        "hang_sec",
        "raise_exception",
        "tmp_dir",
    )

    def __init__(self, raw: Mapping[str, Any], source: str = "test plugin config") -> None:
        def fail(key: str, problem: str) -> ConfigError:
            return ConfigError(f"{key} in {source}: {problem}")

        tmp_dir = raw.get("tmp_dir", "/tmp")
        if not isinstance(tmp_dir, str) or not tmp_dir:
            raise fail("tmp_dir", "expected a directory path")
        self.tmp_dir = tmp_dir
        self.delays: dict[str, float] = {}
        for action, key in DELAY_KEYS.items():
            value = raw.get(key, DEFAULT_DELAY_SEC)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise fail(key, f"expected a number of seconds >= 0, got {value!r}")
            self.delays[action] = float(value)
        self.faults: dict[str, frozenset[str]] = {}
        for key in FAULT_KEYS:
            value = raw.get(key, [])
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise fail(key, f"expected a list of action names, got {value!r}")
            self.faults[key] = frozenset(value)
        hang_sec = raw.get("hang_sec", 3600)
        if isinstance(hang_sec, bool) or not isinstance(hang_sec, int | float) or hang_sec < 0:
            raise fail("hang_sec", f"expected a number of seconds >= 0, got {hang_sec!r}")
        self.hang_sec = float(hang_sec)
        code = raw.get("crash_exit_code", 70)
        if isinstance(code, bool) or not isinstance(code, int):
            raise fail("crash_exit_code", f"expected an integer, got {code!r}")
        self.crash_exit_code = code
        self.raise_exception = bool(raw.get("raise_exception", False))
        self.assert_has_api_token = bool(raw.get("assert_has_api_token", False))


def _faulty(action: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Sleep for the action's delay and apply any fault injected for it, then act."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        def run(self: TestPlugin, *args: Any) -> Any:
            settings = self.settings
            if action in settings.faults["crash_actions"]:
                os._exit(settings.crash_exit_code)
            if action in settings.faults["hang_actions"]:
                time.sleep(settings.hang_sec)
            time.sleep(settings.delays.get(action, 0.0))
            if settings.raise_exception or action in settings.faults["raise_actions"]:
                raise RuntimeError(f"test plugin: {action} raised, as configured")
            if action in settings.faults["invalid_result_actions"]:
                return {"status": "passing", "note": "not an ActionStatusInfo, as configured"}
            if action in settings.faults["fail_actions"]:
                data = {DataKey.OLD_MODEL_IN_USE: True} if action == "deployment_replace_model" else None
                return ActionStatusInfo(
                    ActionStatus.ERROR,
                    msg=f"test plugin: {action} failed, as configured",
                    state=DeploymentState.ERRORED,
                    data=data,
                )
            problem = self._token_problem()
            if problem:
                return ActionStatusInfo(ActionStatus.ERROR, msg=problem, state=DeploymentState.ERRORED)
            return method(self, *args)

        run.__name__ = method.__name__
        run.__doc__ = method.__doc__
        run.__wrapped__ = method  # type: ignore[attr-defined]
        return run

    return wrap


class TestPlugin(PluginBase):
    """A plugin that keeps its deployments as small YAML files; for tests and demos."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        plugin_config: Mapping[str, Any] | None,
        private_config_file: str | None = None,
        pe_info: PEInfo | Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> None:
        super().__init__(plugin_config, private_config_file, pe_info, dry_run)
        raw = load_private_config(private_config_file)
        source = f"private config {private_config_file}" if private_config_file else "test plugin config"
        self.settings = TestPluginSettings(raw, source)

    # -- files ----------------------------------------------------------------------

    def _pe_file(self) -> str:
        pe_id = self.plugin_config.get("MLOPS_BOSUN_PRED_ENV_ID") or (
            self.pe_info.id if self.pe_info else None
        )
        return os.path.join(self.settings.tmp_dir, f"pe_{pe_id or 'default'}.yaml")

    def _deployment_file(self, deployment_id: str) -> str:
        if not deployment_id or "/" in deployment_id or deployment_id.startswith("."):
            raise ValueError(f"deployment id {deployment_id!r} cannot be used in a file name")
        return os.path.join(self.settings.tmp_dir, f"deployment_{deployment_id}.yaml")

    def _token_problem(self) -> str | None:
        if not self.settings.assert_has_api_token:
            return None
        if not self.plugin_config.get(API_TOKEN_KEY):
            return "MLOps API token was not passed to the plugin (set MLOPS_API_TOKEN)"
        if not self.plugin_config.get("MLOPS_BOSUN_MONITORING_URL"):
            return "MLOPS_BOSUN_MONITORING_URL was not passed to the plugin"
        return None

    # -- actions --------------------------------------------------------------------

    @_faulty("plugin_start")
    def plugin_start(self) -> ActionStatusInfo:
        os.makedirs(self.settings.tmp_dir, exist_ok=True)
        _write_yaml(self._pe_file(), {"state": "running", "started": time.time()})
        return ActionStatusInfo(ActionStatus.OK, msg="Test plugin started")

    @_faulty("plugin_stop")
    def plugin_stop(self) -> ActionStatusInfo:
        _remove(self._pe_file())
        return ActionStatusInfo(ActionStatus.OK, msg="Test plugin stopped")

    @_faulty("deployment_start")
    def deployment_start(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        self._write_deployment(deployment_info)
        return ActionStatusInfo(
            ActionStatus.OK,
            msg="Launch successful",
            state=DeploymentState.READY,
            data={DataKey.CURRENT_MODEL_ID: deployment_info.current_model_id},
        )

    @_faulty("deployment_stop")
    def deployment_stop(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        _remove(self._deployment_file(deployment_info.id))
        return ActionStatusInfo(ActionStatus.OK, msg="Stop successful", state=DeploymentState.STOPPED)

    @_faulty("deployment_replace_model")
    def deployment_replace_model(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        if not os.path.exists(self._deployment_file(deployment_info.id)):
            return ActionStatusInfo(
                ActionStatus.ERROR,
                msg=f"Deployment {deployment_info.id} not found: start it before replacing its model",
                state=DeploymentState.ERRORED,
            )
        self._write_deployment(deployment_info)
        return ActionStatusInfo(
            ActionStatus.OK,
            msg=f"Model replaced successfully Path: {deployment_info.model_artifact}",
            state=DeploymentState.READY,
            data={DataKey.CURRENT_MODEL_ID: deployment_info.current_model_id},
        )

    @_faulty("deployment_status")
    def deployment_status(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        return self._status_of(deployment_info.id)

    @_faulty("deployment_list")
    def deployment_list(self) -> ActionStatusInfo:
        import glob

        found: dict[str, Any] = {}
        for path in sorted(glob.glob(os.path.join(glob.escape(self.settings.tmp_dir), "deployment_*.yaml"))):
            record = _read_yaml(path)
            if isinstance(record, dict) and record.get("id"):
                found[str(record["id"])] = record
        return ActionStatusInfo(ActionStatus.OK, msg="Deployment list", data=found)

    @_faulty("pe_status")
    def pe_status(self) -> ActionStatusInfo:
        if not os.path.exists(self._pe_file()):
            return ActionStatusInfo(ActionStatus.ERROR, msg="PE not found (run plugin_start first)")
        ids = self.pe_info.deployment_ids if self.pe_info else []
        data = {DataKey.DEPLOYMENTS_STATUS: {i: self._status_of(i).to_dict() for i in ids}} if ids else None
        return ActionStatusInfo(ActionStatus.OK, msg="PE Health looks awesome", data=data)

    def endpoint_update(self, endpoint_info: EndpointInfo) -> ActionStatusInfo:
        return ActionStatusInfo(
            ActionStatus.OK, msg="Endpoint update successful", state=DeploymentState.READY
        )

    def endpoint_status(self, endpoint_info: EndpointInfo) -> ActionStatusInfo:
        return ActionStatusInfo(
            ActionStatus.OK, msg="Endpoint status looks good", state=DeploymentState.READY
        )

    # -- helpers --------------------------------------------------------------------

    def _write_deployment(self, info: DeploymentInfo) -> None:
        os.makedirs(self.settings.tmp_dir, exist_ok=True)
        record = {
            "id": info.id,
            "name": info.name,
            "model_id": info.current_model_id,
            "key_value_config": dict(info.key_value_config),
            "model_execution_type": info.model_execution_type,
            "model_artifact": str(info.model_artifact) if info.model_artifact else None,
            "state": "running",
        }
        if info.new_model_id:
            record["new_model_id"] = info.new_model_id
        _write_yaml(self._deployment_file(info.id), record)

    def _status_of(self, deployment_id: str) -> ActionStatusInfo:
        record = _read_yaml(self._deployment_file(deployment_id))
        if not isinstance(record, dict):
            return ActionStatusInfo(
                ActionStatus.ERROR, msg="Deployment not found", state=DeploymentState.ERRORED
            )
        return ActionStatusInfo(
            ActionStatus.OK,
            msg="Deployment health looks good",
            state=DeploymentState.READY,
            data={DataKey.CURRENT_MODEL_ID: record.get("model_id")},
        )


def _write_yaml(path: str, content: Mapping[str, Any]) -> None:
    aside = f"{path}.{os.getpid()}.tmp"
    with open(aside, "w", encoding="utf-8") as handle:
        safe_dump(dict(content), handle, sort_keys=False)
    os.replace(aside, path)


def _read_yaml(path: str) -> Any:
    yaml = import_yaml()
    try:
        with open(path, encoding="utf-8") as handle:
            return safe_load(handle)
    except (OSError, yaml.YAMLError):
        return None


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
