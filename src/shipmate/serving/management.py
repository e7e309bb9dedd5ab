"""Uploading and deleting deployments over HTTP (multi-model mode), in the deployments-directory
layout (`shipmate.common.deployments_dir`) the filesystem plugin writes too.

An upload is staged in a dot-directory (ignored by the watcher), verified, loaded
and only then swapped into place and published, so a package that does not load
never replaces a working one. Packages whose models execute code when loaded are
refused unless the operator allowed them (see the trust model in docs/packages.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import yaml

from shipmate.common import deployments_dir as layout
from shipmate.packages import ModelError, PackageError, read_manifest
from shipmate.serving.deployments import Deployment, Registry, discard, load_deployment
from shipmate.serving.errors import DeploymentNotFound, UploadRefused
from shipmate.serving.watcher import DirectoryWatcher

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_id(deployment_id: str) -> str:
    if not _SAFE_ID.match(deployment_id):
        raise UploadRefused(
            f"invalid deployment id {deployment_id!r}: use letters, digits, '.', '_' and '-' (at most 128)"
        )
    return deployment_id


class Manager:
    def __init__(self, registry: Registry, watcher: DirectoryWatcher, *, allow_pickled: bool) -> None:
        self.registry = registry
        self.watcher = watcher
        self.allow_pickled = allow_pickled

    def _directory(self, deployment_id: str) -> Path:
        return self.watcher.root / layout.directory_name(self.watcher.prefix, deployment_id)

    async def receive(
        self, deployment_id: str, pieces: AsyncIterator[bytes], filename: str
    ) -> tuple[Deployment, bool]:
        """`upload` a package arriving as ``pieces``, streamed to disk first (packages can be large)."""
        fd, tmp = tempfile.mkstemp(suffix=".mlpkg", dir=self.watcher.root)
        try:
            with os.fdopen(fd, "wb") as out:
                async for piece in pieces:
                    out.write(piece)
            return await self.upload(deployment_id, Path(tmp), filename)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    async def upload(self, deployment_id: str, package_file: Path, filename: str) -> tuple[Deployment, bool]:
        """Serve the package under ``deployment_id``; returns the deployment and whether it replaced one."""
        check_id(deployment_id)
        try:
            manifest = read_manifest(package_file)
        except PackageError as exc:
            raise UploadRefused(str(exc).replace(str(package_file), filename)) from None
        if manifest.framework.executes_code_on_load and not self.allow_pickled:
            raise UploadRefused(
                f"{filename}: {manifest.framework} models execute code when loaded; this server accepts "
                "only ONNX, XGBoost and LightGBM packages over HTTP (start it with --allow-pickled-uploads "
                "to accept others from holders of the API key)"
            )
        final = self._directory(deployment_id)
        staging = Path(layout.staging_directory(str(final)))
        try:
            target_pkg = staging / (Path(filename).name if filename.endswith(".mlpkg") else "model.mlpkg")
            shutil.move(str(package_file), target_pkg)
            model_id = f"{manifest.name}:{manifest.version}"
            try:
                loaded = await asyncio.to_thread(
                    load_deployment,
                    target_pkg,
                    deployment_id=deployment_id,
                    key=final.name,
                    work_dir=self.watcher.work_dir,
                    model_id=model_id,
                    compile=self.watcher.compile,
                )
            except (PackageError, ModelError) as exc:
                raise UploadRefused(str(exc).replace(str(target_pkg), filename)) from None
            record = layout.info_record(deployment_id, model_id, target_pkg.name, loaded.package_sha256)
            (staging / self.watcher.info_file).write_text(yaml.safe_dump(record, sort_keys=False))
            async with self.watcher.lock:
                replaced = layout.swap_into_place(str(staging), str(final))
                seen = self.watcher.observe(final)
                deployment = dataclasses.replace(
                    loaded, package_path=final / target_pkg.name, fingerprint=seen.fingerprint
                )
                old = self.registry.publish(deployment)
            if old is not None:
                discard(old)
            log.info("deployment %s uploaded (%s %s)", deployment_id, manifest.name, manifest.version)
            return deployment, replaced
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    async def delete(self, route: str) -> str:
        """Unload a deployment and remove its directory; returns the deployment id."""
        dep = self.registry.get(route)
        failure = next(
            (f for f in self.registry.failures.values() if route in (f.key, f.deployment_id)), None
        )
        if dep is not None:
            key, deployment_id = dep.key, dep.id
        elif failure is not None:
            key, deployment_id = failure.key, failure.deployment_id or failure.key
        else:
            raise DeploymentNotFound(route)
        async with self.watcher.lock:
            path = self.watcher.root / key
            if path.exists():
                layout.move_aside(str(path))
            old = self.registry.remove(key)
        if old is not None:
            discard(old)
        log.info("deployment %s deleted", deployment_id)
        return deployment_id
