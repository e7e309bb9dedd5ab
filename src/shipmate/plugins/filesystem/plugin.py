"""The filesystem plugin: one directory per deployment, for a prediction server to read.

The layout, its info file's keys, the checksum and the atomic replace are
`shipmate.common.deployments_dir`'s (``shipmate serve --deployments-dir`` reads the
same module's description). A deployment is prepared beside its final place under
a name starting with ``.`` and swapped into place, and removed by renaming it aside
first, so a reader that skips dot-entries never sees a half-written or half-deleted
deployment. The checksum lets ``deployment_status`` notice a corrupted or swapped
artifact.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from shipmate.common import deployments_dir as layout
from shipmate.plugin.base import PluginBase
from shipmate.plugin.config import merge_private_config
from shipmate.plugin.info import DeploymentInfo, PEInfo
from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DataKey, DeploymentState
from shipmate.plugin.yamlio import import_yaml, safe_dump, safe_load
from shipmate.plugins.filesystem.reaper import REAPER
from shipmate.plugins.filesystem.served import seconds_setting, wait_until_served
from shipmate.plugins.filesystem.settings import FilesystemSettings

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the runner ms
if TYPE_CHECKING:
    from typing import Any


class FilesystemPlugin(PluginBase):
    """Deploys a model by placing its package and a YAML config in a directory of its own."""

    def __init__(
        self,
        plugin_config: Mapping[str, Any] | None,
        private_config_file: str | None = None,
        pe_info: PEInfo | Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> None:
        super().__init__(plugin_config, private_config_file, pe_info, dry_run)
        merged = merge_private_config(self.plugin_config, private_config_file)
        source = f"private config {private_config_file}" if private_config_file else "pluginConfig"
        self.settings = FilesystemSettings.from_config(merged, source)
        self.serve_wait = seconds_setting(
            merged.get("waitForPredictionServer"), "waitForPredictionServer", source
        )
        """Seconds a start or replace waits for the prediction server to serve the new model (0: not)."""

    # -- environment ----------------------------------------------------------------

    def _environment_problem(self) -> str | None:
        base = self.settings.base_dir
        if not os.path.exists(base):
            return f"base directory {base} does not exist (create it, or set baseDir to an existing one)"
        if not os.path.isdir(base):
            return f"base directory {base} is not a directory"
        if not os.access(base, os.W_OK | os.X_OK):
            return f"base directory {base} is not writable"
        return None

    def plugin_start(self) -> ActionStatusInfo:
        problem = self._environment_problem()
        if problem:
            return ActionStatusInfo(ActionStatus.ERROR, msg=problem)
        self._sweep()
        return ActionStatusInfo(ActionStatus.OK, msg=f"base directory {self.settings.base_dir} is ready")

    def plugin_stop(self) -> ActionStatusInfo:
        return ActionStatusInfo(ActionStatus.OK, msg="nothing to tear down")

    def pe_status(self) -> ActionStatusInfo:
        problem = self._environment_problem()
        if problem:
            return ActionStatusInfo(ActionStatus.ERROR, msg=problem)
        ids = self.pe_info.deployment_ids if self.pe_info is not None else []
        if not ids:
            return ActionStatusInfo(ActionStatus.OK, msg=f"base directory {self.settings.base_dir} is usable")
        statuses = {deployment_id: self._check(deployment_id).to_dict() for deployment_id in ids}
        failing = sum(1 for s in statuses.values() if s["status"] != ActionStatus.OK.value)
        return ActionStatusInfo(
            ActionStatus.OK,
            msg=f"base directory {self.settings.base_dir} is usable; "
            f"{failing} of {len(ids)} deployments failing",
            data={DataKey.DEPLOYMENTS_STATUS: statuses},
        )

    # -- deployments ----------------------------------------------------------------

    def deployment_start(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        refusal = self._refuse(deployment_info)
        if refusal is not None:
            return refusal
        self._write_deployment(deployment_info)
        unserved = self._unserved(deployment_info)
        if unserved:
            return ActionStatusInfo(ActionStatus.ERROR, msg=unserved, state=DeploymentState.ERRORED)
        data: dict[str, Any] = {DataKey.CURRENT_MODEL_ID: deployment_info.current_model_id}
        url = self.settings.prediction_url(deployment_info.id)
        if url:
            data[DataKey.PREDICTION_URL] = url
        return ActionStatusInfo(
            ActionStatus.OK,
            msg=f"deployment {deployment_info.id} is in {self.settings.deployment_dir(deployment_info.id)}",
            state=DeploymentState.READY,
            data=data,
        )

    def deployment_replace_model(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        target = self.settings.deployment_dir(deployment_info.id)
        existed = os.path.isdir(target)
        refusal = self._refuse(deployment_info)
        if refusal is not None:
            if existed:
                refusal.data = {DataKey.OLD_MODEL_IN_USE: True}
                refusal.msg = f"{refusal.msg}; the old model is still in use"
            return refusal
        if not existed:
            return ActionStatusInfo(
                ActionStatus.ERROR,
                msg=f"deployment {deployment_info.id} has no directory {target}: "
                "start it before replacing its model",
                state=DeploymentState.ERRORED,
            )
        self._write_deployment(deployment_info)
        unserved = self._unserved(deployment_info)
        if unserved:
            return ActionStatusInfo(ActionStatus.ERROR, msg=unserved, state=DeploymentState.ERRORED)
        return ActionStatusInfo(
            ActionStatus.OK,
            msg=f"model of deployment {deployment_info.id} replaced by {deployment_info.current_model_id}",
            state=DeploymentState.READY,
            data={DataKey.CURRENT_MODEL_ID: deployment_info.current_model_id},
        )

    def _unserved(self, deployment_info: DeploymentInfo) -> str | None:
        """With ``waitForPredictionServer`` set, why the prediction server does not serve the model yet."""
        base = self.settings.prediction_base_url
        if not self.serve_wait or not base:
            return None
        model_id = deployment_info.current_model_id
        served = wait_until_served(base, deployment_info.id, model_id, self.serve_wait)
        if served is None:
            return None
        where = self.settings.deployment_dir(deployment_info.id)
        return (
            f"deployment {deployment_info.id} is written to {where}, "
            f"but the prediction server at {base} {served} after {self.serve_wait:g} s "
            f"(is shipmate serve --deployments-dir {self.settings.base_dir} running?)"
        )

    def deployment_stop(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        reason = layout.unsafe_id_reason(deployment_info.id)
        if reason:
            return ActionStatusInfo(ActionStatus.ERROR, msg=reason, state=DeploymentState.ERRORED)
        target = self.settings.deployment_dir(deployment_info.id)
        if not os.path.isdir(target):
            return ActionStatusInfo(
                ActionStatus.OK,
                msg=f"deployment {deployment_info.id} has no directory {target}: nothing to stop",
                state=DeploymentState.STOPPED,
            )
        self._remove(target)
        return ActionStatusInfo(
            ActionStatus.OK, msg=f"deployment {deployment_info.id} removed", state=DeploymentState.STOPPED
        )

    def deployment_status(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        reason = layout.unsafe_id_reason(deployment_info.id)
        if reason:
            return ActionStatusInfo(ActionStatus.ERROR, msg=reason, state=DeploymentState.ERRORED)
        return self._check(deployment_info.id, expected_model=deployment_info.current_model_id)

    def deployment_list(self) -> ActionStatusInfo:
        prefix = self.settings.prefix
        try:
            names = sorted(os.listdir(self.settings.base_dir))
        except OSError as exc:
            return ActionStatusInfo(
                ActionStatus.ERROR, msg=f"cannot list {self.settings.base_dir}: {exc.strerror}"
            )
        self._sweep(names)
        found: dict[str, Any] = {}
        unreadable: list[str] = []
        for name in names:
            if name.startswith(".") or not name.startswith(prefix) or len(name) == len(prefix):
                continue
            if not os.path.isdir(os.path.join(self.settings.base_dir, name)):
                continue
            if not _is_utf8(name):  # it could not travel in a report (JSON, YAML)
                unreadable.append(ascii(os.fsencode(name))[2:-1])
                continue
            deployment_id = name[len(prefix) :]
            found[deployment_id] = self._check(deployment_id, verify_checksum=False).to_dict()
        msg = f"Number of deployments: {len(found)}" if found else "No deployments"
        if unreadable:
            msg += f"; ignored {len(unreadable)} directories whose names are not valid UTF-8: " + ", ".join(
                unreadable
            )
        return ActionStatusInfo(ActionStatus.OK, msg=msg, data=found)

    # -- I/O ------------------------------------------------------------------------

    def _refuse(self, info: DeploymentInfo) -> ActionStatusInfo | None:
        """A failing status when ``info`` cannot be deployed, before anything is touched."""
        reason = layout.unsafe_id_reason(info.id)
        if reason is None and not info.model_artifact:
            reason = (
                f"deploymentInfo.modelArtifact is missing for deployment {info.id}: "
                "the agent places the model there before the action"
            )
        elif reason is None and not os.path.isfile(str(info.model_artifact)):
            reason = f"model artifact {info.model_artifact} for deployment {info.id} does not exist"
        if reason is None:
            return None
        return ActionStatusInfo(ActionStatus.ERROR, msg=reason, state=DeploymentState.ERRORED)

    def _write_deployment(self, info: DeploymentInfo) -> None:
        """Prepare the deployment beside its place (dot-name), then swap it in."""
        artifact = str(info.model_artifact)
        settings = self.settings
        target = settings.deployment_dir(info.id)
        staging = layout.staging_directory(target)
        try:
            model_file = os.path.basename(artifact)
            sha256 = layout.copy_with_sha256(artifact, os.path.join(staging, model_file))
            kv = dict(info.key_value_config)
            shared = settings.kv_file == settings.info_file
            record = layout.info_record(
                info.id, info.current_model_id, model_file, sha256, kv if shared else None
            )
            _write_yaml(os.path.join(staging, settings.info_file), record)
            if settings.kv_file and not shared:
                _write_yaml(os.path.join(staging, settings.kv_file), kv)
            layout.swap_into_place(staging, target, REAPER.discard)
        except BaseException:
            layout.remove_tree(staging)
            raise

    def _remove(self, target: str) -> None:
        """Rename the deployment aside (atomic, instant), then delete it in the background."""
        layout.move_aside(target, REAPER.discard)

    def _sweep(self, names: list[str] | None = None) -> None:
        """Clear what interrupted runs left aside (`shipmate.common.deployments_dir.leftovers`)."""
        layout.sweep(self.settings.base_dir, self.settings.prefix, REAPER.discard, names)

    def _check(
        self, deployment_id: str, expected_model: str | None = None, verify_checksum: bool = True
    ) -> ActionStatusInfo:
        """The status of one deployment directory: present, complete, uncorrupted."""
        directory = self.settings.deployment_dir(deployment_id)
        info_path = os.path.join(directory, self.settings.info_file)

        def failing(problem: str) -> ActionStatusInfo:
            return ActionStatusInfo(ActionStatus.ERROR, msg=problem, state=DeploymentState.ERRORED)

        if not os.path.isdir(directory):
            return failing(f"deployment {deployment_id}: directory {directory} is missing")
        record, problem = _read_info(info_path)
        if problem:
            return failing(f"deployment {deployment_id}: {problem}")
        assert record is not None
        missing = [k for k in (layout.DEPLOYMENT_ID, layout.MODEL_ID) if not record.get(k)]
        if missing:
            return failing(
                f"deployment {deployment_id}: info file {info_path} is missing {', '.join(missing)}"
            )
        if str(record[layout.DEPLOYMENT_ID]) != deployment_id:
            named = record[layout.DEPLOYMENT_ID]
            return failing(f"deployment {deployment_id}: info file {info_path} names deployment {named}")
        model_id = str(record[layout.MODEL_ID])
        model_file = record.get(layout.MODEL_FILE)
        if isinstance(model_file, str) and layout.is_plain_name(model_file):
            model_path = os.path.join(directory, model_file)
            if not os.path.isfile(model_path):
                return failing(f"deployment {deployment_id}: model artifact {model_path} is missing")
            checksum = layout.recorded_checksum(record) if verify_checksum else None
            if checksum is not None and checksum.problem(model_path) is not None:
                return failing(
                    f"deployment {deployment_id}: model artifact {model_path} is corrupted (checksum differs)"
                )
        data = {DataKey.CURRENT_MODEL_ID: model_id}
        if expected_model is not None and model_id != expected_model:
            return ActionStatusInfo(
                ActionStatus.WARN,
                msg=f"deployment {deployment_id} serves model {model_id}, expected {expected_model}",
                state=DeploymentState.READY,
                data=data,
            )
        return ActionStatusInfo(
            ActionStatus.OK,
            msg=f"deployment {deployment_id} is ready",
            state=DeploymentState.READY,
            data=data,
        )


def _write_yaml(path: str, content: Mapping[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        safe_dump(dict(content), handle, sort_keys=False)


def _read_info(path: str) -> tuple[dict[str, Any] | None, str | None]:
    yaml = import_yaml()
    try:
        with open(path, encoding="utf-8") as handle:
            raw = safe_load(handle)
    except FileNotFoundError:
        return None, f"info file {path} is missing"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"info file {path} cannot be read: {exc}"
    except yaml.YAMLError:
        return None, f"info file {path} is not valid YAML (corrupted)"
    if not isinstance(raw, dict):
        return None, f"info file {path} is not a mapping (corrupted)"
    return raw, None


def _is_utf8(name: str) -> bool:
    """False for a file name that is not valid UTF-8 (os.listdir keeps its bytes as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
