"""Deployments: a loaded model plus where it came from, and the registry requests read.

The registry swaps whole entries: a request looks its deployment up once and keeps
that object to the end, so a replacement (loaded completely before it is
published) never lets a request see a half-loaded model, and an unloaded model
finishes the requests it already had.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from shipmate.common.deployments_dir import Checksum
from shipmate.packages import (
    InputKind,
    LoadedModel,
    Manifest,
    PackageError,
    extract_package,
    file_sha256,
    load_model,
    read_manifest,
)

log = logging.getLogger(__name__)


class DeploymentState(StrEnum):
    """A deployment's ``state`` in ``GET /deployments``: served, or failed to load."""

    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class Deployment:
    """A model being served under a deployment id."""

    id: str
    key: str  # the directory name (multi mode) or "default"
    manifest: Manifest
    model: LoadedModel
    package_path: Path
    package_sha256: str
    unpacked: Path
    model_id: str | None = None
    fingerprint: str = ""
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    features: tuple[str, ...] = ()

    @property
    def matrix_features(self) -> tuple[str, ...] | None:
        """The features, when the model takes a float matrix of them (bodies can then be
        decoded straight to it, and batches shared across workers); else ``None``."""
        return self.features if self.model.input_kind is InputKind.MATRIX else None

    @property
    def routes(self) -> tuple[str, ...]:
        return (self.id,) if self.key in ("default", self.id) else (self.id, self.key)

    def info(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "deploymentId": self.id,
            "modelId": self.model_id,
            "state": DeploymentState.READY,
            "name": m.name,
            "version": m.version,
            "framework": m.framework,
            "targetType": m.target_type,
            "targetName": m.target_name,
            "classLabels": m.class_labels,
            "predictionThreshold": m.threshold,
            "features": [{"name": f.name, "type": f.type} for f in m.features],
            "packageSha256": self.package_sha256,
            "packageFile": self.package_path.name,
            "createdAt": m.created_at.isoformat(),
            "loadedAt": self.loaded_at.isoformat(),
            "inputLayout": self.model.input_kind,
            "scoring": self.model.scoring.to_json(),
        }


@dataclass(frozen=True)
class Failure:
    key: str
    error: str
    """As logged, for the operator: may name paths of this machine."""
    fingerprint: str
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    deployment_id: str | None = None

    @property
    def public_error(self) -> str:
        """The error as health checks show it: every absolute path cut to its last component."""
        return _ABSOLUTE_PATH.sub(lambda match: match.group(1), self.error)


_ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:/[^/\s'\":,]+)+/([^/\s'\":,]+)")


def load_deployment(
    package: Path,
    *,
    deployment_id: str | None,
    key: str,
    work_dir: Path,
    model_id: str | None = None,
    fingerprint: str = "",
    expected: Checksum | None = None,
    compile: bool = True,
) -> Deployment:
    """Verify (against ``expected``, the checksum its directory records), unpack and load one
    package (blocking: run it in a thread); ``compile``: try a compiled scorer. Raises
    PackageError/ModelError."""
    sha = file_sha256(package)
    problem = expected.problem(str(package), sha256=sha) if expected is not None else None
    if problem is not None:
        raise PackageError(problem)
    read_manifest(package)  # cheap structural checks before unpacking anything
    work_dir.mkdir(parents=True, exist_ok=True)
    unpacked = Path(tempfile.mkdtemp(prefix=f"{key[:40]}-", dir=work_dir)) / "pkg"
    try:
        manifest = extract_package(package, unpacked)
        model = load_model(unpacked, manifest, compile=compile)
    except BaseException:
        shutil.rmtree(unpacked.parent, ignore_errors=True)
        raise
    return Deployment(
        id=deployment_id or manifest.name,
        key=key,
        manifest=manifest,
        model=model,
        package_path=package,
        package_sha256=sha,
        unpacked=unpacked,
        model_id=model_id,
        fingerprint=fingerprint,
        features=tuple(manifest.feature_names),
    )


def discard(deployment: Deployment) -> None:
    """Release an unloaded deployment's resources (requests already holding it keep the model object)."""
    try:
        deployment.model.close()
    except Exception:  # a model's close hook must not break unloading
        log.exception("closing model of deployment %s failed", deployment.id)
    shutil.rmtree(deployment.unpacked.parent, ignore_errors=True)


class Registry:
    """The deployments being served, by route id. Reads are lock-free dictionary look-ups."""

    def __init__(self) -> None:
        self._routes: dict[str, Deployment] = {}
        self._by_key: dict[str, Deployment] = {}
        self.failures: dict[str, Failure] = {}
        self.pending: set[str] = set()
        self.initialized = False  # the first load/scan has finished

    def get(self, route: str) -> Deployment | None:
        return self._routes.get(route)

    def get_key(self, key: str) -> Deployment | None:
        """The deployment served from directory ``key`` (``"default"`` in single mode)."""
        return self._by_key.get(key)

    def by_key(self) -> dict[str, Deployment]:
        return dict(self._by_key)

    def all(self) -> list[Deployment]:
        return sorted(self._by_key.values(), key=lambda d: d.id)

    def only(self) -> Deployment | None:
        """The single deployment, when exactly one is served."""
        return next(iter(self._by_key.values())) if len(self._by_key) == 1 else None

    def _rebuild(self, by_key: dict[str, Deployment]) -> None:
        routes: dict[str, Deployment] = {}
        for dep in by_key.values():
            for route in dep.routes:
                routes.setdefault(route, dep)
        self._by_key = by_key
        self._routes = routes  # one assignment: readers see the old map or the new one

    def publish(self, deployment: Deployment) -> Deployment | None:
        """Serve ``deployment`` under its key, returning the one it replaced."""
        by_key = dict(self._by_key)
        old = by_key.get(deployment.key)
        by_key[deployment.key] = deployment
        self._rebuild(by_key)
        self.failures.pop(deployment.key, None)
        self.pending.discard(deployment.key)
        return old

    def remove(self, key: str) -> Deployment | None:
        by_key = dict(self._by_key)
        old = by_key.pop(key, None)
        self._rebuild(by_key)
        self.failures.pop(key, None)
        self.pending.discard(key)
        return old

    def fail(self, failure: Failure) -> None:
        self.failures[failure.key] = failure
        self.pending.discard(failure.key)

    @property
    def ready(self) -> bool:
        """Every configured deployment has a model loaded (a failed replacement keeps the old one)."""
        return self.initialized and not self.pending and all(k in self._by_key for k in self.failures)
