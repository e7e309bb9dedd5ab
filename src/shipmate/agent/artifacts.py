"""The local model-package cache: download once, verify the SHA-256, then hand the path to plugins.

A package is downloaded beside its final name and renamed into place only after
its checksum matched, so no plugin ever sees a partial or tampered file, and a
cached file is re-verified before reuse.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import defaultdict
from pathlib import Path

from shipmate.agent.model import ModelPackageRef
from shipmate.agent.ports import ControlPlane

log = logging.getLogger(__name__)


class ArtifactError(Exception):
    """The package could not be fetched or did not match its checksum."""


class ArtifactCache:
    def __init__(self, directory: Path, service: ControlPlane) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._service = service
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()
        self._verified: dict[str, str] = {}

    def path_for(self, package_id: str) -> Path:
        return self._dir / _safe(package_id) / f"model_{_safe(package_id)}.mlpkg"

    def fetch(self, package: ModelPackageRef) -> Path:
        """The verified local path of ``package``; downloads it when missing or corrupt."""
        with self._guard:
            lock = self._locks[package.id]
        with lock:
            path = self.path_for(package.id)
            if path.is_file() and self._still_good(package, path):
                return path
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
            try:
                reported = self._service.download_model_package(package.id, partial)
                actual = _sha256(partial)
                if reported and reported.lower() != actual:
                    raise ArtifactError(
                        f"model package {package.id}: download was cut short or altered "
                        f"(service sent SHA-256 {reported}, received bytes hash to {actual})"
                    )
                if package.sha256 and package.sha256.lower() != actual:
                    raise ArtifactError(
                        f"model package {package.id}: SHA-256 mismatch "
                        f"(expected {package.sha256}, got {actual}); not handing it to the plugin"
                    )
                os.replace(partial, path)
            finally:
                partial.unlink(missing_ok=True)
            self._verified[package.id] = actual
            log.info("model package %s cached at %s", package.id, path)
            return path

    def _still_good(self, package: ModelPackageRef, path: Path) -> bool:
        known = self._verified.get(package.id)
        if known is None:
            known = _sha256(path)
            self._verified[package.id] = known
        if package.sha256 and package.sha256.lower() != known:
            log.warning("cached model package %s does not match its SHA-256; downloading again", package.id)
            self._verified.pop(package.id, None)
            return False
        return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe(package_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in package_id)
