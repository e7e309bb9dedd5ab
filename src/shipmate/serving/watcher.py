"""Following a deployments directory (`shipmate.common.deployments_dir`) without restarts.

`scan` reads the directory (I/O); `plan` decides what to load, reload or unload
(pure, tested with tables); `DirectoryWatcher` carries the plan out, loading in a
worker thread and publishing only complete deployments. Dot-directories are being
written and are ignored; a deployment must be absent from ``unload_after`` scans
in a row before it is unloaded, so a replacement renamed into place is never
mistaken for a removal.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from shipmate.common import deployments_dir as layout
from shipmate.packages import ModelError, PackageError
from shipmate.serving.deployments import Failure, Registry, discard, load_deployment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Observed:
    """One deployment directory as found on disk."""

    key: str  # directory name
    path: Path
    fingerprint: str  # changes whenever the directory, its config or its package changes
    deployment_id: str | None = None
    model_id: str | None = None
    package: Path | None = None
    checksum: layout.Checksum | None = None  # as its info file records it
    error: str | None = None


class ChangeKind(StrEnum):
    LOAD = "load"
    RELOAD = "reload"
    UNLOAD = "unload"


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    key: str
    reason: str


def _stat_key(path: Path) -> str:
    st = path.stat()
    return f"{path.name}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _observe(path: Path, prefix: str, info_file: str) -> Observed:
    key = path.name
    parts = [_stat_key(path)]
    packages = sorted(p for p in path.glob("*.mlpkg") if p.is_file())
    config_path = path / info_file
    try:
        parts += [_stat_key(p) for p in packages]
        if config_path.is_file():
            parts.append(_stat_key(config_path))
    except FileNotFoundError:  # changed under us: the next scan sees the new state
        pass
    fingerprint = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    fallback_id = layout.deployment_id_of(key, prefix)

    def broken(error: str) -> Observed:
        return Observed(key=key, path=path, fingerprint=fingerprint, deployment_id=fallback_id, error=error)

    config: dict[str, Any] = {}
    if config_path.is_file():
        try:
            loaded = yaml.safe_load(config_path.read_text())
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
            return broken(f"{info_file} is not valid YAML: {exc}")
        if loaded is not None and not isinstance(loaded, dict):
            return broken(f"{info_file} must hold a mapping")
        config = loaded or {}
    named = config.get(layout.MODEL_FILE)  # the package's name, as its writer recorded it
    if isinstance(named, str) and named and "/" not in named and not named.startswith("."):
        if not (path / named).is_file():
            return broken(f"{info_file} names model_file {named!r}, which is not in the directory")
        packages = [path / named]
    if not packages:
        return broken("no .mlpkg package in the directory")
    if len(packages) > 1:
        return broken(f"several packages in the directory: {[p.name for p in packages]}")
    dep_id = config.get(layout.DEPLOYMENT_ID) or config.get("deploymentId") or fallback_id
    model_id = config.get(layout.MODEL_ID) or config.get("modelId")
    return Observed(
        key=key,
        path=path,
        fingerprint=fingerprint,
        deployment_id=str(dep_id),
        model_id=str(model_id) if model_id is not None else None,
        package=packages[0],
        checksum=layout.recorded_checksum(config),
    )


def scan(root: Path, prefix: str, info_file: str) -> dict[str, Observed]:
    """Every deployment directory under ``root``, skipping dot-directories (still being written)."""
    found: dict[str, Observed] = {}
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return found
    for entry in entries:
        if layout.is_work_in_progress(entry.name) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            found[entry.name] = _observe(Path(entry.path), prefix, info_file)
        except FileNotFoundError:
            continue  # renamed away while we looked
    return found


def plan(
    observed: Mapping[str, str],
    loaded: Mapping[str, str],
    failed: Mapping[str, str],
    absent: Mapping[str, int],
    unload_after: int,
) -> tuple[list[Change], dict[str, int]]:
    """What to do, given fingerprints on disk, loaded, and of failed attempts (by directory name).

    Returns the changes and the new count of consecutive scans each loaded deployment was absent.
    A failed attempt is retried only once its directory changes.
    """
    changes: list[Change] = []
    for key, fp in sorted(observed.items()):
        if failed.get(key) == fp:
            continue
        if key not in loaded:
            changes.append(Change(ChangeKind.LOAD, key, "new deployment directory"))
        elif loaded[key] != fp:
            changes.append(Change(ChangeKind.RELOAD, key, "its package or config changed"))
    still_absent: dict[str, int] = {}
    for key in sorted(set(loaded) | set(failed)):
        if key in observed:
            continue
        count = absent.get(key, 0) + 1
        if count >= unload_after:
            changes.append(Change(ChangeKind.UNLOAD, key, f"directory gone for {count} scans"))
        else:
            still_absent[key] = count
    return changes, still_absent


class DirectoryWatcher:
    """Keeps the registry in step with a deployments directory."""

    def __init__(
        self,
        registry: Registry,
        root: Path,
        *,
        work_dir: Path,
        prefix: str,
        info_file: str,
        poll_interval: float,
        unload_after: int,
        compile: bool = True,
    ) -> None:
        self.registry = registry
        self.compile = compile  # try compiled scorers (packages.compiled) for what it loads
        self.root = root
        self.work_dir = work_dir
        self.prefix = prefix
        self.info_file = info_file
        self.poll_interval = poll_interval
        self.unload_after = unload_after
        self._absent: dict[str, int] = {}
        self._lock = asyncio.Lock()

    @property
    def lock(self) -> asyncio.Lock:
        """Held while the registry is changed from disk; uploads hold it to swap directories."""
        return self._lock

    def observe(self, path: Path) -> Observed:
        return _observe(path, self.prefix, self.info_file)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.sync()
            except Exception:  # never let one bad scan stop the watcher
                log.exception("scanning %s failed", self.root)

    async def sync(self) -> list[Change]:
        async with self._lock:
            observed = await asyncio.to_thread(scan, self.root, self.prefix, self.info_file)
            loaded = {k: d.fingerprint for k, d in self.registry.by_key().items()}
            failed = {k: f.fingerprint for k, f in self.registry.failures.items()}
            changes, self._absent = plan(
                {k: o.fingerprint for k, o in observed.items()},
                loaded,
                failed,
                self._absent,
                self.unload_after,
            )
            if not self.registry.initialized:
                self.registry.pending.update(c.key for c in changes if c.kind is ChangeKind.LOAD)
            for change in changes:
                await self._apply(change, observed.get(change.key))
            return changes

    async def _apply(self, change: Change, seen: Observed | None) -> None:
        if change.kind is ChangeKind.UNLOAD or seen is None:
            old = self.registry.remove(change.key)
            if old is not None:
                log.info("unloaded deployment %s (%s)", old.id, change.reason)
                discard(old)
            return
        if seen.error or seen.package is None:
            self._failed(seen, seen.error or "no package")
            return
        log.info("%s deployment %s from %s (%s)", change.kind, seen.deployment_id, seen.key, change.reason)
        try:
            deployment = await asyncio.to_thread(
                load_deployment,
                seen.package,
                deployment_id=seen.deployment_id,
                key=seen.key,
                work_dir=self.work_dir,
                model_id=seen.model_id,
                fingerprint=seen.fingerprint,
                expected=seen.checksum,
                compile=self.compile,
            )
        except (PackageError, ModelError, OSError) as exc:
            self._failed(seen, str(exc))
            return
        old = self.registry.publish(deployment)
        if old is not None:
            discard(old)
        log.info(
            "deployment %s ready (%s %s, package %s)",
            deployment.id,
            deployment.manifest.name,
            deployment.manifest.version,
            deployment.package_sha256[:12],
        )

    def _failed(self, seen: Observed, error: str) -> None:
        log.error("deployment %s (%s) cannot be loaded: %s", seen.deployment_id, seen.key, error)
        self.registry.fail(
            Failure(key=seen.key, error=error, fingerprint=seen.fingerprint, deployment_id=seen.deployment_id)
        )
