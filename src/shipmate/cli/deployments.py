"""``shipmate deploy`` and ``shipmate deployments ...``: deployments and their changes.

A change is carried out by the environment's agent after the service accepts it,
so these commands say it is pending; ``--wait`` returns once it is done (and,
for a running deployment, once its prediction URL answers).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shipmate.cli._common import (
    DEFAULT_URL,
    DEPLOYMENT_COLUMNS,
    Json,
    Quiet,
    Token,
    Url,
    Wait,
    WaitTimeout,
    client,
    deployment_row,
    details,
    emit_json,
    environment,
    fail,
    key_values,
    progress,
    show_deployment,
    table,
    wait_for,
)

if TYPE_CHECKING:
    from shipmate.client import Deployment, ModelPackage, ShipmateClient

deployments_app = typer.Typer(help="Deployments: list, show and change them.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(deployments_app, name="deployments")
    app.command("deploy")(deploy)


def _package(made: ShipmateClient, model: str) -> ModelPackage:
    """A model package from a .mlpkg file (pushed first), an id, or a name (its newest version)."""
    from shipmate.client import NotFound

    path = Path(model)
    if path.is_file():
        with progress(f"uploading {path.name}") as advance:
            return made.upload_model_package(path, progress=advance)
    if model.endswith(".mlpkg"):
        fail(f"{model}: no such file")
    try:
        return made.get_model_package(model)
    except NotFound:
        newest = made.list_model_packages(name=model, limit=1)
        if newest:
            return made.get_model_package(newest[0].id)
    fail(f"no model package with id or name {model!r} (shipmate model list shows them)")


def deploy(
    model: Annotated[str, typer.Argument(help="model package id or name, or a .mlpkg file to push first")],
    env: Annotated[str, typer.Option("--env", help="environment id or name")],
    name: Annotated[str | None, typer.Option(help="deployment label (default: the model's name)")] = None,
    description: Annotated[str, typer.Option(help="free text")] = "",
    kv: Annotated[list[str], typer.Option("--kv", help="key=value config (repeatable)")] = [],  # noqa: B006
    inactive: Annotated[bool, typer.Option("--inactive", help="register it stopped")] = False,
    wait: Wait = False,
    timeout: WaitTimeout = 120.0,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Deploy a model package to an environment (pending until its agent acts; --wait for it)."""
    with client(url, token) as made:
        found = environment(made, env)
        package = _package(made, model)
        deployment = made.create_deployment(
            found.id,
            package.id,
            name=name or package.name,
            description=description,
            key_value_config=key_values(kv, "--kv"),
            active=not inactive,
        )
        if wait:
            deployment = wait_for(made, deployment.id, timeout) or deployment
    show_deployment(deployment, as_json, quiet)


@deployments_app.command("list")
def deployments_list(
    env: Annotated[str | None, typer.Option("--env", help="environment id or name")] = None,
    state: Annotated[str | None, typer.Option(help="observed state, e.g. ready or errored")] = None,
    desired: Annotated[str | None, typer.Option(help="desired state: running, stopped or deleted")] = None,
    name: Annotated[str | None, typer.Option(help="exact name")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """List deployments (newest first) with filters and paging."""
    with client(url, token) as made:
        env_id = environment(made, env).id if env else None
        page = made.list_deployments(
            environment_id=env_id, state=state, desired_state=desired, name=name, limit=limit, offset=offset
        )
    if as_json:
        emit_json(page)
        return
    shown = f"{offset + 1}-{offset + len(page.items)} of {page.total}" if page.items else f"0 of {page.total}"
    table(f"deployments ({shown})", DEPLOYMENT_COLUMNS, [deployment_row(d) for d in page.items])


@deployments_app.command("show")
def deployments_show(
    deployment_id: str, url: Url = DEFAULT_URL, token: Token = "", as_json: Json = False
) -> None:
    """Show one deployment: desired spec, observed state, last action."""
    with client(url, token) as made:
        deployment = made.get_deployment(deployment_id)
    emit_json(deployment) if as_json else details(f"deployment {deployment.id}", deployment)


def _change(
    deployment_id: str,
    url: str,
    token: str,
    as_json: bool,
    call: Callable[[ShipmateClient], Deployment],
    wait: bool = False,
    timeout: float = 120.0,
) -> None:
    with client(url, token) as made:
        deployment: Deployment | None = call(made)
        if wait:
            deployment = wait_for(made, deployment_id, timeout)
    show_deployment(deployment, as_json, ref=deployment_id)


@deployments_app.command("update")
def deployments_update(
    deployment_id: str,
    name: Annotated[str | None, typer.Option(help="new label")] = None,
    description: Annotated[str | None, typer.Option(help="free text")] = None,
    kv: Annotated[list[str], typer.Option("--kv", help="key=value config, replaced whole (repeatable)")] = [],  # noqa: B006
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Change a deployment's name, description or key-value config."""
    if name is None and description is None and not kv:
        fail("nothing to change: give --name, --description or --kv")
    config = key_values(kv, "--kv") if kv else None
    _change(
        deployment_id,
        url,
        token,
        as_json,
        lambda c: c.update_deployment(
            deployment_id, name=name, description=description, key_value_config=config
        ),
    )


@deployments_app.command("replace")
def deployments_replace(
    deployment_id: str,
    model: Annotated[str, typer.Argument(help="model package id or name, or a .mlpkg file to push first")],
    wait: Wait = False,
    timeout: WaitTimeout = 120.0,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Replace the deployment's model."""
    _change(
        deployment_id,
        url,
        token,
        as_json,
        lambda c: c.replace_model(deployment_id, _package(c, model).id),
        wait,
        timeout,
    )


@deployments_app.command("relaunch")
def deployments_relaunch(
    deployment_id: str,
    wait: Wait = False,
    timeout: WaitTimeout = 120.0,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Restart the deployment without changing it."""
    _change(deployment_id, url, token, as_json, lambda c: c.relaunch(deployment_id), wait, timeout)


@deployments_app.command("deactivate")
def deployments_deactivate(
    deployment_id: str,
    wait: Wait = False,
    timeout: WaitTimeout = 120.0,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Stop serving (the deployment is kept)."""
    _change(deployment_id, url, token, as_json, lambda c: c.deactivate(deployment_id), wait, timeout)


@deployments_app.command("activate")
def deployments_activate(
    deployment_id: str,
    wait: Wait = False,
    timeout: WaitTimeout = 120.0,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Serve again after a deactivate."""
    _change(deployment_id, url, token, as_json, lambda c: c.activate(deployment_id), wait, timeout)


@deployments_app.command("delete")
def deployments_delete(
    deployment_id: str,
    force: Annotated[
        bool, typer.Option("--force", help="remove it even if the environment cannot stop it")
    ] = False,
    wait: Wait = False,
    timeout: WaitTimeout = 120.0,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Stop and remove the deployment (the record goes once the agent confirms, at once with --force)."""
    _change(deployment_id, url, token, as_json, lambda c: c.delete(deployment_id, force=force), wait, timeout)
