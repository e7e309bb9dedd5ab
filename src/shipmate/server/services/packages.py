"""Model packages: registered from an upload, immutable afterwards."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shipmate.server.artifacts import StagedUpload
from shipmate.server.errors import Conflict, InvalidPackage, NotFound
from shipmate.server.models import Deployment, ModelPackage
from shipmate.server.schemas import storable_json
from shipmate.server.services import events
from shipmate.server.services.ids import new_id


@dataclass(frozen=True)
class PackageMetadata:
    name: str
    version: str
    framework: str | None
    target_type: str | None
    manifest: dict[str, Any] = field(default_factory=dict)


def describe_package(path: Path, *, filename: str) -> PackageMetadata:
    """Read a staged upload's metadata from its manifest.

    The one place the service looks inside a package: ``shipmate.packages.read_manifest``
    checks the zip's structure and validates the manifest without loading or running anything.
    """
    from shipmate.packages import PackageError, read_manifest

    try:
        manifest = read_manifest(path)
    except PackageError as exc:
        reason = str(exc).replace(str(path), filename)  # never show the server's own paths
        raise InvalidPackage(f"{filename} is not a valid model package: {reason}", field="body") from None
    document = manifest.to_json_dict()
    try:
        storable_json(document, "manifest")
        for field_name, value, width in (("name", manifest.name, 200), ("version", manifest.version, 100)):
            if len(value) > width:
                raise ValueError(f"manifest.{field_name}: longer than {width} characters")
    except ValueError as exc:
        raise InvalidPackage(f"{filename} cannot be stored: {exc}", field="body") from None
    return PackageMetadata(
        name=manifest.name,
        version=manifest.version,
        framework=manifest.framework.value,
        target_type=manifest.target_type.value,
        manifest=document,
    )


def find_same(session: Session, *, name: str, version: str) -> ModelPackage | None:
    return session.scalar(
        select(ModelPackage).where(ModelPackage.name == name, ModelPackage.version == version)
    )


def register(
    session: Session, *, staged: StagedUpload, metadata: PackageMetadata, filename: str, actor: str
) -> tuple[ModelPackage, bool]:
    """Record a package; re-uploading identical bytes under the same name/version returns the existing one.

    Returns ``(package, created)``; a different package under an existing name/version is a conflict.
    """
    existing = find_same(session, name=metadata.name, version=metadata.version)
    if existing is not None:
        if existing.sha256 == staged.sha256:
            return existing, False
        raise Conflict(
            f"model package {metadata.name} version {metadata.version} already exists ({existing.id}) "
            "with different content; packages are immutable, give the new one another version",
            field="version",
        )
    package = ModelPackage(
        id=new_id("m"),
        name=metadata.name,
        version=metadata.version,
        framework=metadata.framework,
        target_type=metadata.target_type,
        filename=Path(filename).name[:255],
        sha256=staged.sha256,
        size=staged.size,
        manifest=metadata.manifest,
        created_by=actor,
    )
    session.add(package)
    session.flush()
    events.append(
        session,
        type=events.EventType.MODEL_PACKAGE_CREATED,
        actor=actor,
        message=f"model package {package.name} {package.version} uploaded",
        data={"modelPackageId": package.id, "sha256": package.sha256, "size": package.size},
    )
    return package, True


def get(session: Session, package_id: str) -> ModelPackage:
    package = session.get(ModelPackage, package_id)
    if package is None:
        raise NotFound(f"model package {package_id} not found", field="modelPackageId")
    return package


def list_all(
    session: Session, *, name: str | None = None, limit: int = 100, offset: int = 0
) -> list[ModelPackage]:
    statement = select(ModelPackage)
    if name is not None:
        statement = statement.where(ModelPackage.name == name)
    statement = (
        statement.order_by(ModelPackage.created_at.desc(), ModelPackage.id).limit(limit).offset(offset)
    )
    return list(session.scalars(statement))


def used_by_environment(session: Session, *, package_id: str, environment_id: str) -> bool:
    """Whether a deployment of the environment wants or runs this package (what its agent may download)."""
    statement = (
        select(Deployment.id)
        .where(
            Deployment.environment_id == environment_id,
            or_(
                Deployment.model_package_id == package_id, Deployment.observed_model_package_id == package_id
            ),
        )
        .limit(1)
    )
    return session.scalar(statement) is not None
