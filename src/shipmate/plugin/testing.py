"""The conformance kit: drive a plugin through its whole lifecycle and report every contract violation.

For plugin authors' own tests::

    from shipmate.plugin.testing import check_plugin

    def test_my_plugin_conforms(tmp_path):
        report = check_plugin("my_package.my_plugin", private_config_file="my.conf.yaml", work_dir=tmp_path)
        assert report.passed, report.format()

and from the command line: ``shipmate plugin check --plugin X [--private-config Y]``.

The lifecycle: plugin_start, pe_status, two deployments started, their status,
the list holding both, a model replaced (and its status showing the new model),
a relaunch, one deployment stopped, the list without it, the stop repeated
(idempotent), pe_status with the remaining deployment, plugin_stop. Whatever
happens, the deployments the kit started are stopped at the end.

One file of a little over 500 lines on purpose: it is the single page a plugin author
reads to learn what "conforms" means, the lifecycle in order with each check beside the
step it follows; split by step, the order would have to be read across files.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

from shipmate.plugin.base import PluginBase, call_with_deployment
from shipmate.plugin.errors import StatusFileError
from shipmate.plugin.info import DeploymentInfo, PEInfo
from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DataKey, DeploymentState

DEFAULT_PE_ID = "conformance-pe"


class Violation:
    """One broken rule, in plain words."""

    __slots__ = ("action", "problem", "step")

    def __init__(self, step: str, action: str, problem: str) -> None:
        self.step = step
        self.action = action
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.step} ({self.action}): {self.problem}"

    def __repr__(self) -> str:
        return f"Violation({self.step!r}, {self.action!r}, {self.problem!r})"


class StepResult:
    """What one step of the lifecycle returned."""

    __slots__ = ("action", "duration", "result", "step", "violations")

    def __init__(self, step: str, action: str, result: ActionStatusInfo | None, duration: float) -> None:
        self.step = step
        self.action = action
        self.result = result
        self.duration = duration
        self.violations: list[Violation] = []

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "action": self.action,
            "status": self.result.status.value if self.result else None,
            "state": self.result.state.value if self.result and self.result.state else None,
            "msg": self.result.msg if self.result else None,
            "duration": round(self.duration, 4),
            "violations": [v.problem for v in self.violations],
        }


class ConformanceReport:
    """Every step and every violation; ``passed`` when there are none."""

    __slots__ = ("plugin", "steps")

    def __init__(self, plugin: str) -> None:
        self.plugin = plugin
        self.steps: list[StepResult] = []

    @property
    def violations(self) -> list[Violation]:
        return [v for step in self.steps for v in step.violations]

    @property
    def passed(self) -> bool:
        return bool(self.steps) and not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {
            "plugin": self.plugin,
            "passed": self.passed,
            "steps": [s.to_dict() for s in self.steps],
            "violations": [str(v) for v in self.violations],
        }

    def format(self) -> str:
        """A plain-text report: one line per step, then the violations."""
        lines = [f"Conformance of plugin {self.plugin}:"]
        for step in self.steps:
            mark = "ok  " if step.ok else "FAIL"
            status = step.result.status.value if step.result else "-"
            lines.append(f"  {mark} {step.step:<64} {status:<8} {step.duration * 1000:8.1f} ms")
            lines.extend(f"         - {v.problem}" for v in step.violations)
        count = len(self.violations)
        lines.append(
            "PASSED: the plugin follows the contract." if self.passed else f"FAILED: {count} violation(s)."
        )
        return "\n".join(lines)


def make_model_artifact(path: str, model_id: str) -> str:
    """A small model package (zip with a manifest) standing in for a real model."""
    import json

    manifest = {
        "formatVersion": 1,
        "name": "conformance",
        "version": model_id,
        "framework": "custom",
        "targetType": "regression",
        "classLabels": None,
        "features": [],
        "files": {},
    }
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
    return path


def check_plugin(
    plugin: str | type[PluginBase] | Callable[[PEInfo], PluginBase],
    private_config_file: str | None = None,
    plugin_config: Mapping[str, Any] | None = None,
    *,
    work_dir: str | os.PathLike[str] | None = None,
    model_artifacts: tuple[str, str, str] | None = None,
    runner: list[str] | None = None,
) -> ConformanceReport:
    """Run the lifecycle on ``plugin`` and return the report; never raises for a plugin's fault.

    ``plugin`` is what ``--plugin`` accepts, a plugin class, or a factory taking the
    ``PEInfo`` (for plugins whose construction needs more). ``model_artifacts``
    are three model files (first model of deployment A, of B, and A's replacement);
    small stand-ins are made in ``work_dir`` when not given. With ``runner`` (a
    command such as ``["bosun-plugin-runner"]``), every action runs through that
    command in its own process, as the agent's external-command driver runs it,
    and its status file is read back and validated.
    """
    from shipmate.plugin.config import inject_environment

    name = plugin if isinstance(plugin, str) else getattr(plugin, "__name__", type(plugin).__name__)
    report = ConformanceReport(str(name))
    owned_tmp = None
    if work_dir is None:
        owned_tmp = tempfile.TemporaryDirectory(prefix="shipmate-conformance-")
        work_dir = owned_tmp.name
    run_id = uuid.uuid4().hex[:8]
    ids = (f"conformance-{run_id}-a", f"conformance-{run_id}-b")
    if model_artifacts is None:
        model_artifacts = tuple(  # type: ignore[assignment]
            make_model_artifact(os.path.join(os.fspath(work_dir), f"model_{m}.mlpkg"), m)
            for m in (f"model-{run_id}-1", f"model-{run_id}-2", f"model-{run_id}-3")
        )
    assert model_artifacts is not None
    model_ids = tuple(
        os.path.splitext(os.path.basename(p))[0].removeprefix("model_") for p in model_artifacts
    )
    deployment_a = DeploymentInfo(
        id=ids[0], model_id=model_ids[0], name="conformance A", model_artifact=model_artifacts[0]
    )
    deployment_b = DeploymentInfo(
        id=ids[1], model_id=model_ids[1], name="conformance B", model_artifact=model_artifacts[1]
    )
    replacement = DeploymentInfo(
        id=ids[0],
        model_id=model_ids[0],
        new_model_id=model_ids[2],
        name="conformance A",
        model_artifact=model_artifacts[2],
    )
    config = dict(plugin_config or {})
    config.setdefault("MLOPS_BOSUN_PRED_ENV_ID", DEFAULT_PE_ID)
    config.setdefault("MLOPS_BOSUN_PRED_ENV_TYPE", "ExternalCommand")
    config.setdefault("MLOPS_BOSUN_PRED_ENV_PLATFORM", "os")
    config.setdefault("MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING", False)
    config = inject_environment(config)
    pe_id = str(config["MLOPS_BOSUN_PRED_ENV_ID"])

    def build(pe_deployments: list[DeploymentInfo | str]) -> PluginBase:
        pe_info = PEInfo(id=pe_id, name="conformance", deployments=pe_deployments)
        if isinstance(plugin, str) and runner is not None:
            assert work_dir is not None
            return RunnerPlugin(runner, plugin, config, private_config_file, pe_info, os.fspath(work_dir))
        if isinstance(plugin, str):
            from shipmate.plugin.loader import build_plugin

            return build_plugin(plugin, config, private_config_file, pe_info, False)
        built: PluginBase
        if isinstance(plugin, type):
            built = plugin(config, private_config_file, pe_info, False)
        else:
            built = plugin(pe_info)
        return built

    try:
        instance = build([])
    except Exception as exc:  # a plugin that cannot be built is a finding, not a crash
        step = StepResult("build the plugin", "__init__", None, 0.0)
        step.violations.append(Violation(step.step, step.action, f"the plugin could not be built: {exc}"))
        report.steps.append(step)
        if owned_tmp is not None:
            owned_tmp.cleanup()
        return report

    lifecycle = _Lifecycle(report, instance)
    try:
        lifecycle.run(deployment_a, deployment_b, replacement, build)
    finally:
        lifecycle.cleanup((deployment_a, deployment_b))
        if owned_tmp is not None:
            owned_tmp.cleanup()
    return report


class _Lifecycle:
    """The steps, each checked against the contract."""

    def __init__(self, report: ConformanceReport, plugin: PluginBase) -> None:
        self.report = report
        self.plugin = plugin

    # -- running one action ---------------------------------------------------------

    def call(
        self,
        step: str,
        action: str,
        deployment: DeploymentInfo | None = None,
        plugin: PluginBase | None = None,
    ) -> StepResult:
        target = plugin or self.plugin
        if deployment is not None:
            target._set_deployment_info(deployment.to_dict())
        method = getattr(target, action)
        started = time.perf_counter()
        raised: BaseException | None = None
        value: Any = None
        try:
            if deployment is None:
                value = method()
            elif action in ("deployment_stop", "deployment_status"):
                value = call_with_deployment(method, deployment)
            else:
                value = method(deployment)
        except Exception as exc:
            raised = exc
        duration = time.perf_counter() - started
        result = value if isinstance(value, ActionStatusInfo) else None
        outcome = StepResult(step, action, result, duration)
        self.report.steps.append(outcome)
        if raised is not None:
            self.violate(
                outcome, f"raised {type(raised).__name__}: {raised} (an action must return a failing status)"
            )
        elif result is None:
            self.violate(outcome, f"returned {type(value).__name__}, not an ActionStatusInfo")
        else:
            self._check_serializable(outcome, result)
        return outcome

    def violate(self, outcome: StepResult, problem: str) -> None:
        outcome.violations.append(Violation(outcome.step, outcome.action, problem))

    def _check_serializable(self, outcome: StepResult, result: ActionStatusInfo) -> None:
        import yaml

        if result.msg is not None and not isinstance(result.msg, str):
            self.violate(outcome, f"msg is a {type(result.msg).__name__}, not a string")
        if result.data is not None and not isinstance(result.data, Mapping):
            self.violate(outcome, f"data is a {type(result.data).__name__}, not a mapping")
            return
        try:
            text = result.to_yaml()
            ActionStatusInfo.from_dict(yaml.safe_load(text), source="status")
        except yaml.YAMLError as exc:
            self.violate(outcome, f"the status cannot be written as YAML: {exc}")
        except StatusFileError as exc:
            self.violate(outcome, f"the status does not read back: {exc}")

    # -- expectations ---------------------------------------------------------------

    def expect(
        self,
        outcome: StepResult,
        status: ActionStatus | tuple[ActionStatus, ...] = ActionStatus.OK,
        state: DeploymentState | None = None,
    ) -> bool:
        result = outcome.result
        if result is None:
            return False
        wanted = status if isinstance(status, tuple) else (status,)
        good = True
        if result.status not in wanted:
            names = " or ".join(s.value for s in wanted)
            self.violate(outcome, f"status is {result.status.value}, expected {names} (msg: {result.msg!r})")
            good = False
        if state is not None and result.state is not state:
            got = result.state.value if result.state else "null"
            self.violate(outcome, f"state is {got}, expected {state.value}")
            good = False
        return good

    def expect_model(self, outcome: StepResult, model_id: str) -> None:
        result = outcome.result
        if result is None or result.status is not ActionStatus.OK:
            return
        current = (result.data or {}).get(DataKey.CURRENT_MODEL_ID)
        if current is None:
            self.violate(outcome, f"data.{DataKey.CURRENT_MODEL_ID} is missing (expected {model_id})")
        elif str(current) != model_id:
            self.violate(outcome, f"data.{DataKey.CURRENT_MODEL_ID} is {current}, expected {model_id}")

    def expect_listed(
        self, outcome: StepResult, present: tuple[str, ...], absent: tuple[str, ...] = ()
    ) -> None:
        result = outcome.result
        if result is None or result.status is not ActionStatus.OK:
            return
        data = result.data if isinstance(result.data, Mapping) else {}
        listed = sorted(str(k) for k in data)
        for deployment_id in present:
            if deployment_id not in data:
                self.violate(outcome, f"data does not list deployment {deployment_id} (listed: {listed})")
        for deployment_id in absent:
            if deployment_id in data:
                self.violate(outcome, f"data still lists deployment {deployment_id}, which was stopped")

    # -- the lifecycle --------------------------------------------------------------

    def run(
        self,
        a: DeploymentInfo,
        b: DeploymentInfo,
        replacement: DeploymentInfo,
        build: Callable[[list[DeploymentInfo | str]], PluginBase],
    ) -> None:
        started = self.call("plugin_start", "plugin_start")
        if not self.expect(started):
            return  # nothing else can work without a reachable environment
        self.expect(self.call("pe_status", "pe_status"))
        for info in (a, b):
            outcome = self.call(f"deployment_start {info.id}", "deployment_start", info)
            self.expect(outcome, state=DeploymentState.READY)
        for info in (a, b):
            outcome = self.call(f"deployment_status {info.id}", "deployment_status", info)
            if self.expect(outcome, state=DeploymentState.READY):
                self.expect_model(outcome, info.model_id)
        listed = self.call("deployment_list after two starts", "deployment_list")
        if self.expect(listed):
            self.expect_listed(listed, (a.id, b.id))
        replaced = self.call(f"deployment_replace_model {a.id}", "deployment_replace_model", replacement)
        self.expect(replaced, state=DeploymentState.READY)
        after = self.call(f"deployment_status {a.id} after the replacement", "deployment_status", replacement)
        if self.expect(after, state=DeploymentState.READY):
            self.expect_model(after, replacement.current_model_id)
        relaunched = self.call(f"deployment_relaunch {a.id}", "deployment_relaunch", replacement)
        self.expect(relaunched, state=DeploymentState.READY)
        after = self.call(f"deployment_status {a.id} after the relaunch", "deployment_status", replacement)
        if self.expect(after, state=DeploymentState.READY):
            self.expect_model(after, replacement.current_model_id)
        stopped = self.call(f"deployment_stop {b.id}", "deployment_stop", b)
        self.expect(stopped, state=DeploymentState.STOPPED)
        listed = self.call("deployment_list after one stop", "deployment_list")
        if self.expect(listed):
            self.expect_listed(listed, (a.id,), absent=(b.id,))
        gone = self.call(f"deployment_status {b.id} after its stop", "deployment_status", b)
        if gone.result is not None and gone.result.status is ActionStatus.OK:
            self.violate(gone, "a stopped deployment is reported passing")
        again = self.call(f"deployment_stop {b.id} again (idempotent)", "deployment_stop", b)
        self.expect(again, state=DeploymentState.STOPPED)
        self._pe_status_with_deployments(a, b, build)
        self.expect(self.call("plugin_stop", "plugin_stop"))

    def _pe_status_with_deployments(
        self, a: DeploymentInfo, b: DeploymentInfo, build: Callable[[list[DeploymentInfo | str]], PluginBase]
    ) -> None:
        try:
            plugin = build([a.id, b.id])
        except Exception as exc:
            outcome = StepResult("pe_status with peInfo.deployments", "pe_status", None, 0.0)
            self.report.steps.append(outcome)
            self.violate(outcome, f"the plugin could not be built with peInfo.deployments: {exc}")
            return
        outcome = self.call("pe_status with peInfo.deployments", "pe_status", plugin=plugin)
        if not self.expect(outcome, (ActionStatus.OK, ActionStatus.WARN)):
            return
        assert outcome.result is not None
        statuses = (outcome.result.data or {}).get(DataKey.DEPLOYMENTS_STATUS)
        if statuses is None:
            return  # reporting per-deployment status is optional
        if not isinstance(statuses, Mapping):
            self.violate(outcome, f"data.{DataKey.DEPLOYMENTS_STATUS} is not a mapping of id to status")
            return
        for deployment_id, wanted in ((a.id, ActionStatus.OK), (b.id, None)):
            entry = statuses.get(deployment_id)
            if entry is None:
                self.violate(outcome, f"data.{DataKey.DEPLOYMENTS_STATUS} has no entry for {deployment_id}")
                continue
            try:
                parsed = entry if isinstance(entry, ActionStatusInfo) else ActionStatusInfo.from_dict(entry)
            except StatusFileError as exc:
                self.violate(outcome, f"status of {deployment_id} is not an ActionStatusInfo: {exc}")
                continue
            if wanted is ActionStatus.OK and parsed.status is not ActionStatus.OK:
                self.violate(outcome, f"running deployment {deployment_id} is reported {parsed.status.value}")
            if wanted is None and parsed.status is ActionStatus.OK:
                self.violate(outcome, f"stopped deployment {deployment_id} is reported passing")

    def cleanup(self, deployments: tuple[DeploymentInfo, ...]) -> None:
        """Stop whatever the kit started, quietly."""
        for info in deployments:
            try:
                self.plugin._set_deployment_info(info.to_dict())
                call_with_deployment(self.plugin.deployment_stop, info)
            except Exception:  # best effort: the report already says what went wrong
                pass


class RunnerPlugin(PluginBase):
    """A plugin seen through a runner command: each action is one process and one status file.

    Lets the kit check what the agent's external-command driver relies on: the
    command accepts the action config, exits, and leaves a valid status file.
    """

    def __init__(
        self,
        command: list[str],
        spec: str,
        plugin_config: Mapping[str, Any],
        private_config_file: str | None,
        pe_info: PEInfo | None,
        work_dir: str,
    ) -> None:
        super().__init__(plugin_config, private_config_file, pe_info, False)
        self.command = list(command)
        self.spec = spec
        self.work_dir = work_dir

    def _run(self, action: str, deployment_info: DeploymentInfo | None = None) -> ActionStatusInfo:
        import subprocess

        from shipmate.plugin.config import ActionConfig

        config_path = os.path.join(self.work_dir, f"action-{action}.yaml")
        status_path = os.path.join(self.work_dir, f"status-{action}.yaml")
        ActionConfig(self.plugin_config, self.pe_info, deployment_info).write(config_path)
        if os.path.exists(status_path):
            os.unlink(status_path)
        argv = [*self.command, "--plugin", self.spec, "--config", config_path, "--action", action]
        argv += ["--status-file", status_path]
        if self.private_config_file:
            argv += ["--private-config", self.private_config_file]
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
        if not os.path.exists(status_path):
            detail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"the runner exited {completed.returncode} without a status file: {detail[0]}")
        if completed.returncode != 0:
            raise RuntimeError(f"the runner exited {completed.returncode}: {completed.stderr.strip()}")
        return ActionStatusInfo.read(status_path)

    def plugin_start(self) -> ActionStatusInfo:
        return self._run("plugin_start")

    def plugin_stop(self) -> ActionStatusInfo:
        return self._run("plugin_stop")

    def deployment_list(self) -> ActionStatusInfo:
        return self._run("deployment_list")

    def deployment_start(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        return self._run("deployment_start", deployment_info)

    def deployment_stop(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        return self._run("deployment_stop", deployment_info)

    def deployment_replace_model(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        return self._run("deployment_replace_model", deployment_info)

    def pe_status(self) -> ActionStatusInfo:
        return self._run("pe_status")

    def deployment_status(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        return self._run("deployment_status", deployment_info)

    def deployment_relaunch(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        return self._run("deployment_relaunch", deployment_info)
