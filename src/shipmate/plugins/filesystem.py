"""The filesystem plugin: one directory per deployment, for a prediction server to read.

Layout (what ``shipmate serve --deployments-dir`` reads)::

    <baseDir>/<deploymentDirPrefix><deployment id>/
        <model artifact, basename kept>
        <deploymentInfoFile>   # YAML: deployment_id, model_id, model_file, model_crc32 (+ key/values)

Writes are atomic: a deployment is prepared beside its final place under a name
starting with ``.`` and renamed into place, and removed by renaming it aside
first, so a reader that skips dot-entries never sees a half-written or
half-deleted deployment. The checksum lets ``deployment_status`` notice a
corrupted or swapped artifact.
"""

from __future__ import annotations

import _thread
import os
import stat
import time
import zlib
from collections.abc import Mapping

from shipmate.plugin.base import PluginBase
from shipmate.plugin.config import merge_private_config
from shipmate.plugin.errors import ConfigError
from shipmate.plugin.info import DeploymentInfo, PEInfo
from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DataKey, DeploymentState
from shipmate.plugin.yamlio import import_yaml, safe_dump, safe_load

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the runner ms
if TYPE_CHECKING:
    import queue
    from typing import Any

RESERVED_INFO_KEYS = ("deployment_id", "model_id", "model_file", "model_crc32")
"""Keys of the info file the plugin owns; a deployment's key/values never override them."""

DEFAULTS: dict[str, str | None] = {
    "baseDir": ".",
    "deploymentDirPrefix": "deployment_",
    "deploymentInfoFile": "config.yml",
    "deploymentPredictionBaseUrl": None,
    "deploymentKVFile": None,
}
"""The documented private config keys, with the documentation's example values as defaults."""


class FilesystemSettings:
    """The plugin's validated settings (private config merged over pluginConfig)."""

    __slots__ = ("base_dir", "info_file", "kv_file", "prediction_base_url", "prefix")

    def __init__(
        self,
        base_dir: str = ".",
        prefix: str = "deployment_",
        info_file: str = "config.yml",
        prediction_base_url: str | None = None,
        kv_file: str | None = None,
    ) -> None:
        self.base_dir = base_dir
        self.prefix = prefix
        self.info_file = info_file
        self.prediction_base_url = prediction_base_url
        self.kv_file = kv_file

    @classmethod
    def from_config(cls, config: Mapping[str, Any], source: str = "plugin config") -> FilesystemSettings:
        values: dict[str, str | None] = {}
        for key, default in DEFAULTS.items():
            value = config.get(key, default)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{key} in {source}: expected a string, got {type(value).__name__}")
            values[key] = value
        base_dir = values["baseDir"] or ""
        if not base_dir.strip():
            raise ConfigError(f"baseDir in {source}: must not be empty")
        prefix = values["deploymentDirPrefix"] or ""
        if "/" in prefix or prefix.startswith("."):
            raise ConfigError(
                f"deploymentDirPrefix in {source}: {prefix!r} must not contain '/' or start with '.'"
            )
        for key in ("deploymentInfoFile", "deploymentKVFile"):
            name = values[key]
            if key == "deploymentInfoFile" and not name:
                raise ConfigError(f"{key} in {source}: must not be empty")
            if name is not None and not _is_plain_name(name):
                raise ConfigError(f"{key} in {source}: {name!r} must be a plain file name")
        base_url = values["deploymentPredictionBaseUrl"]
        return cls(
            base_dir=base_dir,
            prefix=prefix,
            info_file=values["deploymentInfoFile"] or "config.yml",
            prediction_base_url=base_url.rstrip("/") if base_url else None,
            kv_file=values["deploymentKVFile"] or None,
        )

    def deployment_dir(self, deployment_id: str) -> str:
        return os.path.join(self.base_dir, self.prefix + deployment_id)

    def prediction_url(self, deployment_id: str) -> str | None:
        """``<deploymentPredictionBaseUrl>/<deployment id>/predict`` (the documented form)."""
        if not self.prediction_base_url:
            return None
        return f"{self.prediction_base_url}/{deployment_id}/predict"


def _seconds(value: object, key: str, source: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{key} in {source}: expected a number of seconds >= 0, got {value!r}")
    return float(value)


def wait_until_served(base_url: str, deployment_id: str, model_id: str, seconds: float) -> str | None:
    """Ask ``<base>/deployments/<id>`` until it serves ``model_id``; None then, else what it said last."""
    import json
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + seconds
    last = "does not answer"
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/deployments/{deployment_id}", timeout=2) as response:
                served = json.loads(response.read()).get("modelId")
            if served == model_id:
                return None
            last = f"still serves model {served}"
        except urllib.error.HTTPError as exc:
            last = "does not serve it" if exc.code == 404 else f"answers {exc.code}"
        except (OSError, ValueError, AttributeError):
            last = "does not answer"
        if time.monotonic() >= deadline:
            return last
        time.sleep(0.2)


def _is_plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name


def unsafe_id_reason(deployment_id: str) -> str | None:
    """Why ``deployment_id`` cannot name a directory safely, or None when it can."""
    if not _is_plain_name(deployment_id) or deployment_id.startswith("."):
        return f"deployment id {deployment_id!r} cannot be used as a directory name"
    return None


STALE_STAGING_SEC = 3600.0
"""A ``.new`` staging directory this old belongs to a run that died; it is swept."""


class _Reaper:
    """Deletes directories in one background thread, so stop and replace return at once.

    Whatever is still queued when the interpreter exits is deleted then (the runner
    writes its status file first), so nothing is left behind; what a killed process
    leaves stays under a dot-name, invisible to readers, and is swept later.
    """

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()  # threading and queue are imported on first use only
        self._busy = _thread.allocate_lock()
        self._queue: queue.SimpleQueue[str] | None = None

    def discard(self, path: str) -> None:
        with self._lock:
            if self._queue is None:
                import atexit
                import queue
                import threading

                self._queue = queue.SimpleQueue()
                worker = threading.Thread(target=self._run, name="fs-plugin-reaper", daemon=True)
                worker.start()
                atexit.register(self.drain)
        self._queue.put(path)

    def drain(self) -> None:
        """Delete everything queued, now, and wait for the deletion under way."""
        if self._queue is None:
            return
        import queue
        import shutil

        while True:
            try:
                path = self._queue.get_nowait()
            except queue.Empty:
                break
            shutil.rmtree(path, ignore_errors=True)
        with self._busy:
            pass

    def _run(self) -> None:
        import shutil

        assert self._queue is not None
        while True:
            path = self._queue.get()
            with self._busy:
                shutil.rmtree(path, ignore_errors=True)


_REAPER = _Reaper()


def _random_suffix() -> str:
    return os.urandom(6).hex()


def checksum_of(path: str) -> str:
    """CRC-32 of a file, as 8 hex digits: detects a truncated or corrupted artifact.

    CRC-32 rather than a cryptographic hash: anyone able to alter the artifact can
    alter the info file too, so only accidental corruption is detectable here, and
    ``zlib`` is already loaded at interpreter start (``hashlib`` costs the runner ms).
    """
    checksum = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            checksum = zlib.crc32(block, checksum)
    return f"{checksum:08x}"


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
        self.serve_wait = _seconds(merged.get("waitForPredictionServer"), "waitForPredictionServer", source)
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
        reason = unsafe_id_reason(deployment_info.id)
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
        reason = unsafe_id_reason(deployment_info.id)
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
        for name in names:
            if name.startswith(".") or not name.startswith(prefix) or len(name) == len(prefix):
                continue
            if not os.path.isdir(os.path.join(self.settings.base_dir, name)):
                continue
            deployment_id = name[len(prefix) :]
            found[deployment_id] = self._check(deployment_id, verify_checksum=False).to_dict()
        msg = f"Number of deployments: {len(found)}" if found else "No deployments"
        return ActionStatusInfo(ActionStatus.OK, msg=msg, data=found)

    # -- I/O ------------------------------------------------------------------------

    def _refuse(self, info: DeploymentInfo) -> ActionStatusInfo | None:
        """A failing status when ``info`` cannot be deployed, before anything is touched."""
        reason = unsafe_id_reason(info.id)
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
        """Prepare the deployment beside its place (dot-name), then rename it in."""
        artifact = str(info.model_artifact)
        settings = self.settings
        target = settings.deployment_dir(info.id)
        staging = os.path.join(settings.base_dir, f".{settings.prefix}{info.id}.{_random_suffix()}.new")
        os.mkdir(staging)
        try:
            model_file = os.path.basename(artifact)
            checksum = _copy_with_checksum(artifact, os.path.join(staging, model_file))
            record: dict[str, Any] = {}
            kv = dict(info.key_value_config)
            if settings.kv_file == settings.info_file:
                record.update({k: v for k, v in kv.items() if k not in RESERVED_INFO_KEYS})
            record.update(
                deployment_id=info.id,
                model_id=info.current_model_id,
                model_file=model_file,
                model_crc32=checksum,
            )
            _write_yaml(os.path.join(staging, settings.info_file), record)
            if settings.kv_file and settings.kv_file != settings.info_file:
                _write_yaml(os.path.join(staging, settings.kv_file), kv)
            _swap_into_place(staging, target)
        except BaseException:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _remove(self, target: str) -> None:
        """Rename the deployment aside (atomic, instant), then delete it in the background."""
        aside = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.{_random_suffix()}.old")
        os.rename(target, aside)
        _REAPER.discard(aside)

    def _sweep(self, names: list[str] | None = None) -> None:
        """Clear what interrupted runs left aside.

        Every ``.old`` (a stopped deployment) is deleted; a ``.swap`` (the previous
        deployment of a replacement cut short) is put back when its place is empty,
        deleted otherwise; a ``.new`` (staging) is deleted once it is an hour old.
        """
        base = self.settings.base_dir
        try:
            names = os.listdir(base) if names is None else names
        except OSError:
            return
        marker = "." + self.settings.prefix
        now = time.time()
        for name in names:
            if not name.startswith(marker):
                continue
            path = os.path.join(base, name)
            if name.endswith(".old"):
                _REAPER.discard(path)
            elif name.endswith(".swap"):
                self._restore_or_discard(path, name)
            elif name.endswith(".new"):
                try:
                    if now - os.stat(path).st_mtime > STALE_STAGING_SEC:
                        _REAPER.discard(path)
                except OSError:
                    continue

    def _restore_or_discard(self, path: str, name: str) -> None:
        """``.<dir>.<suffix>.swap`` goes back to ``<dir>`` if nothing took that place."""
        target = os.path.join(self.settings.base_dir, name[1:].rsplit(".", 2)[0])
        if os.path.exists(target):
            _REAPER.discard(path)
            return
        try:
            os.rename(path, target)
        except OSError:
            _REAPER.discard(path)

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
        missing = [k for k in ("deployment_id", "model_id") if not record.get(k)]
        if missing:
            return failing(
                f"deployment {deployment_id}: info file {info_path} is missing {', '.join(missing)}"
            )
        if str(record["deployment_id"]) != deployment_id:
            named = record["deployment_id"]
            return failing(f"deployment {deployment_id}: info file {info_path} names deployment {named}")
        model_id = str(record["model_id"])
        model_file = record.get("model_file")
        if isinstance(model_file, str) and _is_plain_name(model_file):
            model_path = os.path.join(directory, model_file)
            if not os.path.isfile(model_path):
                return failing(f"deployment {deployment_id}: model artifact {model_path} is missing")
            if (
                verify_checksum
                and record.get("model_crc32")
                and checksum_of(model_path) != record["model_crc32"]
            ):
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


def _copy_with_checksum(source: str, destination: str) -> str:
    checksum = 0
    with open(source, "rb") as reader, open(destination, "wb") as writer:
        for block in iter(lambda: reader.read(1 << 20), b""):
            checksum = zlib.crc32(block, checksum)
            writer.write(block)
    os.chmod(destination, stat.S_IMODE(os.stat(source).st_mode))
    return f"{checksum:08x}"


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


def _swap_into_place(staging: str, target: str) -> None:
    """Put ``staging`` at ``target`` with no moment at which ``target`` is missing.

    On Linux the two directories are exchanged in one atomic ``renameat2`` call, so a
    reader (or a crash) never sees the deployment gone. Elsewhere the old one is
    renamed aside as ``.swap`` first; a crash in that short window leaves the
    ``.swap`` directory, which ``_sweep`` puts back.
    """
    try:
        os.rename(staging, target)
        return
    except OSError:
        if not os.path.isdir(target):
            raise
    if _exchange(staging, target):
        _REAPER.discard(staging)  # it now holds the previous deployment
        return
    aside = f"{os.path.join(os.path.dirname(target), '.' + os.path.basename(target))}.{_random_suffix()}.swap"
    os.rename(target, aside)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(aside, target)  # put the previous deployment back
        raise
    _REAPER.discard(aside)


def _exchange(first: str, second: str) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    import ctypes
    import errno

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False  # the kernel or file system cannot exchange: take the two-rename path
    raise OSError(code, os.strerror(code), second)
