"""Model packages: upload (streamed), list, get, download."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from shipmate.server import schemas
from shipmate.server.deps import NO_NUL, AdminDep, CallerDep, RuntimeDep
from shipmate.server.errors import Forbidden, InvalidInput, PayloadTooLarge
from shipmate.server.security import Principal
from shipmate.server.services import packages
from shipmate.server.views import package_out

router = APIRouter(prefix="/model-packages", tags=["model packages"])

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_UPLOAD_BODY,
    responses={
        200: {"model": schemas.ModelPackageOut, "description": "identical package already registered"}
    },
)
async def upload_model_package(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    caller: AdminDep,
    filename: Annotated[str, Query(min_length=1, max_length=255, pattern=r"^[^\x00/\\]+$")] = "package.mlpkg",
) -> schemas.ModelPackageOut:
    """Upload a ``.mlpkg`` as the raw request body; it is streamed to disk and hashed on the way."""
    limit = runtime.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidInput("Content-Length must be a number of bytes", field="Content-Length")
        if int(declared) > limit:
            raise PayloadTooLarge(f"model package is larger than the limit of {limit} bytes", field="body")
    staged = await runtime.store.stage(request.stream(), max_bytes=limit)
    try:
        metadata = await run_in_threadpool(packages.describe_package, staged.path, filename=filename)

        def _register() -> tuple[schemas.ModelPackageOut, bool]:
            with runtime.db.write() as session:
                package, created = packages.register(
                    session, staged=staged, metadata=metadata, filename=filename, actor=caller.actor
                )
                if created:
                    runtime.store.commit(staged)
                return package_out(package), created

        out, created = await run_in_threadpool(_register)
    finally:
        runtime.store.discard(staged)
    if not created:
        response.status_code = status.HTTP_200_OK
    return out


@router.get("")
def list_model_packages(
    runtime: RuntimeDep,
    caller: AdminDep,
    name: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> schemas.ModelPackageList:
    with runtime.db.read() as session:
        rows = packages.list_all(session, name=name, limit=limit, offset=offset)
        return schemas.ModelPackageList(items=[package_out(p) for p in rows])


def _check_agent_may_read(session: Session, caller: Principal, package_id: str) -> None:
    """An agent may read the packages its environment's deployments use (now or as observed)."""
    if caller.is_admin:
        return
    if caller.environment_id is None or not packages.used_by_environment(
        session, package_id=package_id, environment_id=caller.environment_id
    ):
        raise Forbidden(f"model package {package_id} is not used by this agent's environment")


@router.get("/{package_id}")
def get_model_package(runtime: RuntimeDep, caller: CallerDep, package_id: str) -> schemas.ModelPackageOut:
    with runtime.db.read() as session:
        package = packages.get(session, package_id)
        _check_agent_may_read(session, caller, package_id)
        return package_out(package)


@router.get(
    "/{package_id}/download",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "the package bytes"}},
)
def download_model_package(runtime: RuntimeDep, caller: CallerDep, package_id: str) -> FileResponse:
    """The package bytes, streamed from the store, with their SHA-256 in ``X-Shipmate-Sha256``."""
    with runtime.db.read() as session:
        package = packages.get(session, package_id)
        _check_agent_may_read(session, caller, package_id)
        sha256, filename = package.sha256, package.filename
    return FileResponse(
        runtime.store.path_for(sha256),
        media_type="application/octet-stream",
        filename=filename,
        headers={"X-Shipmate-Sha256": sha256},
    )
