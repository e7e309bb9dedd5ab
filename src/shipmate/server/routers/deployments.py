"""Deployments: create, list, get, update, and the lifecycle commands."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from shipmate.common.vocabulary import DesiredState
from shipmate.plugin.status import DeploymentState
from shipmate.server import schemas
from shipmate.server.deps import NO_NUL, AdminDep, CallerDep, RuntimeDep, check_environment_access
from shipmate.server.lifecycle import Command
from shipmate.server.services import deployments
from shipmate.server.services.deployments import DeploymentFilter
from shipmate.server.views import deployment_out

router = APIRouter(prefix="/deployments", tags=["deployments"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create_deployment(
    runtime: RuntimeDep, caller: AdminDep, body: schemas.DeploymentCreate
) -> schemas.DeploymentOut:
    with runtime.db.write() as session:
        deployment = deployments.create(
            session,
            environment_id=body.environment_id,
            model_package_id=body.model_package_id,
            name=body.name,
            description=body.description,
            key_value_config=body.key_value_config,
            active=body.active,
            actor=caller.actor,
        )
        return deployment_out(deployment)


@router.get("")
def list_deployments(
    runtime: RuntimeDep,
    caller: CallerDep,
    environment_id: Annotated[str | None, Query(alias="environmentId", max_length=40, pattern=NO_NUL)] = None,
    state: Annotated[DeploymentState | None, Query(description="observed state, e.g. ready")] = None,
    desired_state: Annotated[DesiredState | None, Query(alias="desiredState")] = None,
    name: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    model_package_id: Annotated[
        str | None, Query(alias="modelPackageId", max_length=40, pattern=NO_NUL)
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> schemas.DeploymentPage:
    """A page of deployments, newest first; an agent token lists only its environment's."""
    if not caller.is_admin:
        if environment_id is not None:
            check_environment_access(caller, environment_id)
        environment_id = caller.environment_id
    where = DeploymentFilter(
        environment_id=environment_id,
        state=state.value if state is not None else None,
        desired_state=desired_state,
        name=name,
        model_package_id=model_package_id,
    )
    with runtime.db.read() as session:
        rows, total = deployments.list_page(session, where=where, limit=limit, offset=offset)
        return schemas.DeploymentPage(
            items=[deployment_out(d) for d in rows], total=total, limit=limit, offset=offset
        )


@router.get("/{deployment_id}")
def get_deployment(runtime: RuntimeDep, caller: CallerDep, deployment_id: str) -> schemas.DeploymentOut:
    with runtime.db.read() as session:
        deployment = deployments.get(session, deployment_id, include_force_deleted=not caller.is_admin)
        check_environment_access(caller, deployment.environment_id)
        return deployment_out(deployment)


@router.patch("/{deployment_id}")
def update_deployment(
    runtime: RuntimeDep, caller: AdminDep, deployment_id: str, body: schemas.DeploymentUpdate
) -> schemas.DeploymentOut:
    """Change the label (name), description or key/value config; the desired state is untouched."""
    with runtime.db.write() as session:
        deployment = deployments.update(
            session,
            deployment_id=deployment_id,
            name=body.name,
            description=body.description,
            key_value_config=body.key_value_config,
            actor=caller.actor,
        )
        return deployment_out(deployment)


def _command(
    runtime: RuntimeDep,
    caller: AdminDep,
    deployment_id: str,
    command: Command,
    model_package_id: str | None = None,
) -> schemas.DeploymentOut:
    with runtime.db.write() as session:
        deployment = deployments.command(
            session,
            deployment_id=deployment_id,
            command=command,
            actor=caller.actor,
            model_package_id=model_package_id,
        )
        return deployment_out(deployment)


@router.post("/{deployment_id}/replace-model")
def replace_model(
    runtime: RuntimeDep, caller: AdminDep, deployment_id: str, body: schemas.ReplaceModel
) -> schemas.DeploymentOut:
    return _command(runtime, caller, deployment_id, Command.REPLACE_MODEL, body.model_package_id)


@router.post("/{deployment_id}/deactivate")
def deactivate(runtime: RuntimeDep, caller: AdminDep, deployment_id: str) -> schemas.DeploymentOut:
    return _command(runtime, caller, deployment_id, Command.DEACTIVATE)


@router.post("/{deployment_id}/activate")
def activate(runtime: RuntimeDep, caller: AdminDep, deployment_id: str) -> schemas.DeploymentOut:
    return _command(runtime, caller, deployment_id, Command.ACTIVATE)


@router.post("/{deployment_id}/relaunch")
def relaunch(runtime: RuntimeDep, caller: AdminDep, deployment_id: str) -> schemas.DeploymentOut:
    return _command(runtime, caller, deployment_id, Command.RELAUNCH)


@router.delete("/{deployment_id}", status_code=status.HTTP_202_ACCEPTED)
def delete_deployment(
    runtime: RuntimeDep,
    caller: AdminDep,
    deployment_id: str,
    force: Annotated[
        bool, Query(description="remove it from the service even if the agent cannot stop it")
    ] = False,
) -> schemas.DeploymentOut:
    """Ask the agent to stop and remove the deployment (202: the record goes when the agent confirms).

    With ``force`` the deployment disappears from the service at once; the agent still tries to
    stop it and its attempt is recorded in the event log.
    """
    return _command(runtime, caller, deployment_id, Command.FORCE_DELETE if force else Command.DELETE)
