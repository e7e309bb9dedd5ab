"""Carry plugin actions out: in this process, or through an external command prefix.

Both drivers take the same ``ActionRequest`` and never raise: a plugin that
crashes, hangs, or writes a bad status file becomes a ``failing`` result whose
message says what went wrong. The external form writes the contract's action
config (``pluginConfig``, ``peInfo``, ``deploymentInfo``) to a private 0600 file,
runs ``<prefix> --config F --action A --status-file S`` and passes the API token
in ``MLOPS_API_TOKEN`` only, so it drives DataRobot's published runner as well
as Shipmate's.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from shipmate.agent.command import kill_groups, run_command
from shipmate.agent.ports import ActionRequest, EnvironmentDescription
from shipmate.common.masking import mask
from shipmate.plugin.actions import invoke
from shipmate.plugin.base import PluginBase
from shipmate.plugin.config import (
    API_TOKEN_ENV,
    VERIFY_SSL_KEY,
    ActionConfig,
    inject_environment,
    scrub,
)
from shipmate.plugin.errors import PluginError, StatusFileError
from shipmate.plugin.info import DeploymentInfo, PEInfo
from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DeploymentState

log = logging.getLogger(__name__)

_AGENT_SECRETS_IN_ENV = ("SHIPMATE_AGENT_TOKEN", "SHIPMATE_TOKEN", "SHIPMATE_ADMIN_TOKEN")


def base_plugin_config(
    environment: EnvironmentDescription,
    service_url: str,
    extra: Mapping[str, Any],
    command: str | None = None,
) -> dict[str, Any]:
    """``pluginConfig`` in both the documented and the published package's keys (the contract's choice),
    then the environment's own entries from the service, then the agent's ``plugin.config`` (last wins)."""
    config: dict[str, Any] = {
        "MLOPS_BOSUN_PRED_ENV_ID": environment.id,
        "MLOPS_BOSUN_PRED_ENV_TYPE": "ExternalCommand" if command else "Plugin",
        "MLOPS_BOSUN_PRED_ENV_PLATFORM": "os",
        "MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING": False,
        "MLOPS_BOSUN_MONITORING_URL": service_url,
        "name": environment.name or environment.id,
        "type": "ExternalCommand" if command else "Plugin",
        "platform": "os",
        "mlopsUrl": service_url,
    }
    if command:
        config["command"] = command
        config["commandPrefix"] = command
    config.update(environment.plugin_config)
    config.update(extra)
    return config


def pe_info_for(environment: EnvironmentDescription, deployments: Sequence[DeploymentInfo]) -> PEInfo:
    return PEInfo(
        environment.id,
        name=environment.name,
        description=environment.description,
        created_on=environment.created_on,
        created_by=environment.created_by,
        deployments=list(deployments),
        key_value_config=dict(environment.key_value_config),
    )


def _failing(message: str, duration: float | None = None) -> ActionStatusInfo:
    return ActionStatusInfo(ActionStatus.ERROR, msg=message, state=DeploymentState.ERRORED, duration=duration)


class InProcessDriver:
    """Plugins built in this process; one instance per worker thread, so instances are never shared.

    An action runs in a helper thread joined with the timeout: a hung in-process
    action is reported ``failing`` and abandoned (Python cannot kill a thread);
    that worker then builds a fresh instance. Use the command form for plugins
    that may hang.
    """

    def __init__(
        self,
        factory: Callable[[PEInfo], PluginBase],
        environment: EnvironmentDescription,
        secrets: list[str],
    ) -> None:
        self._factory = factory
        self._environment = environment
        self._secrets = secrets
        self._local = threading.local()

    @classmethod
    def for_spec(
        cls,
        spec: str,
        plugin_config: Mapping[str, Any],
        private_config_file: str | None,
        environment: EnvironmentDescription,
        token: str,
        dry_run: bool = False,
    ) -> InProcessDriver:
        from shipmate.plugin.loader import build_plugin, load_plugin_class

        plugin_class = load_plugin_class(spec)  # fails now, with the loader's message, if the name is wrong
        environ = dict(os.environ)
        if token:
            environ[API_TOKEN_ENV] = token
        config = inject_environment(plugin_config, environ)

        def factory(pe_info: PEInfo) -> PluginBase:
            return build_plugin(plugin_class, config, private_config_file, pe_info, dry_run)

        factory(pe_info_for(environment, []))  # a bad private config stops start-up, not the first action
        return cls(factory, environment, [token] if token else [])

    def _plugin(self) -> PluginBase:
        plugin = getattr(self._local, "plugin", None)
        if plugin is None:
            plugin = self._factory(pe_info_for(self._environment, []))
            self._local.plugin = plugin
        return plugin

    def run(self, request: ActionRequest) -> ActionStatusInfo:
        try:
            if request.pe_deployments:
                plugin = self._factory(pe_info_for(self._environment, request.pe_deployments))
            else:
                plugin = self._plugin()
            info = request.deployment_info
        except PluginError as exc:
            return _failing(f"cannot prepare action {request.action}: {scrub(str(exc), self._secrets)}")
        box: list[ActionStatusInfo] = []

        def _call() -> None:
            box.append(invoke(plugin, request.action, deployment_info=info))

        helper = threading.Thread(target=_call, name=f"plugin-{request.action}", daemon=True)
        helper.start()
        helper.join(request.timeout)
        if not box:
            self._local.plugin = None
            return _failing(
                f"action {request.action} timed out after {request.timeout:g}s in the plugin; "
                "it was abandoned (an in-process action cannot be killed)",
                duration=request.timeout,
            )
        result = box[0]
        if result.msg:
            result.msg = scrub(result.msg, self._secrets)
        return result

    def close(self) -> None:
        self._local = threading.local()


class CommandDriver:
    """One process per action: ``<prefix> --config F --action A --status-file S``."""

    def __init__(
        self,
        command: list[str],
        plugin_config: Mapping[str, Any],
        environment: EnvironmentDescription,
        work_dir: Path,
        token: str,
        verify_ssl: bool = True,
    ) -> None:
        if not command:
            raise ValueError("the plugin command is empty")
        self._command = list(command)
        self._plugin_config = dict(plugin_config)
        self._environment = environment
        self._dir = work_dir
        self._dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self._dir, 0o700)
        self._token = token
        self._env = {k: v for k, v in os.environ.items() if k not in _AGENT_SECRETS_IN_ENV}
        if token:
            self._env[API_TOKEN_ENV] = token
        self._env[VERIFY_SSL_KEY] = "true" if verify_ssl else "false"
        self._counter = itertools.count(1)
        self._secrets = [token] if token else []
        self._running: set[int] = set()
        self._running_lock = threading.Lock()

    def describe(self) -> str:
        return " ".join(self._command)

    def run(self, request: ActionRequest) -> ActionStatusInfo:
        folder = Path(tempfile.mkdtemp(prefix=f"{next(self._counter):06d}-{request.action}-", dir=self._dir))
        try:
            return self._run_in(folder, request)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _run_in(self, folder: Path, request: ActionRequest) -> ActionStatusInfo:
        config_path = folder / "action-config.yaml"
        status_path = folder / "status.yaml"
        try:
            config = ActionConfig(
                plugin_config=self._plugin_config,
                pe_info=pe_info_for(self._environment, request.pe_deployments),
                deployment_info=request.deployment_info,
            )
            config.write(str(config_path), mode=0o600)
        except (PluginError, OSError) as exc:
            return _failing(f"cannot write the action config for {request.action}: {exc}")
        argv = [
            *self._command,
            "--config",
            str(config_path),
            "--action",
            request.action,
            "--status-file",
            str(status_path),
        ]
        outcome = run_command(
            argv, env=self._env, timeout=request.timeout, output_path=folder / "output.log", track=self._track
        )
        tail = scrub(outcome.output_tail, self._secrets)
        if outcome.start_error:
            return _failing(outcome.start_error, duration=outcome.duration)
        if outcome.timed_out:
            return _failing(
                f"action {request.action} timed out after {request.timeout:g}s; "
                f"the command's process group was killed{_last(tail)}",
                duration=round(outcome.duration, 4),
            )
        try:
            result = ActionStatusInfo.read(str(status_path))
        except StatusFileError as exc:
            problem = str(exc).replace(str(status_path), "status file")
            problem = problem.replace("status file status file", "status file")
            return _failing(
                f"action {request.action}: {problem} "
                f"(command exited with code {outcome.returncode}){_last(tail)}",
                duration=round(outcome.duration, 4),
            )
        if result.duration is None:
            result.duration = round(outcome.duration, 4)
        if result.msg:
            result.msg = scrub(result.msg, self._secrets)
        if outcome.returncode not in (0, None):
            log.debug(
                "command for %s exited with %s but wrote a status file", request.action, outcome.returncode
            )
        return result

    def _track(self, pid: int, running: bool) -> None:
        with self._running_lock:
            if running:
                self._running.add(pid)
            else:
                self._running.discard(pid)

    def close(self) -> None:
        """Kill the process groups of commands still running (shutdown after the grace period)."""
        with self._running_lock:
            left = sorted(self._running)
        if left:
            log.warning("killing %d plugin command(s) still running at shutdown", len(left))
            kill_groups(left)

    def __repr__(self) -> str:
        token = mask(self._token) if self._token else None
        return f"CommandDriver({self.describe()!r}, token={token!r})"


def _last(tail: str) -> str:
    if not tail:
        return ""
    lines = tail.splitlines()[-5:]
    return "; last output: " + " | ".join(line.strip() for line in lines if line.strip())[-600:]
