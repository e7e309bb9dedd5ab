"""``shipmate env create|list|show|update|delete``: prediction environments."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shipmate.cli._common import (
    DEFAULT_URL,
    Json,
    Token,
    Url,
    client,
    details,
    emit_json,
    environment,
    fail,
    key_values,
    pending,
    table,
)

if TYPE_CHECKING:
    from shipmate.client import Deployment

env_app = typer.Typer(
    help="Prediction environments: create, list, show, update, delete.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(env_app, name="env")


def _plugin_config(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    import yaml

    if not path.is_file():
        fail(f"--plugin-config {path}: no such file")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        fail(f"--plugin-config {path}: not valid YAML: {exc}")
    if not isinstance(loaded, dict):
        fail(f"--plugin-config {path}: expected a mapping at the top level")
    return loaded


PluginConfig = Annotated[Path | None, typer.Option("--plugin-config", help="YAML/JSON pluginConfig file")]
Config = Annotated[list[str], typer.Option("--config", help="key=value (repeatable)")]


@env_app.command("create")
def env_create(
    name: str,
    platform: Annotated[str, typer.Option(help="filesystem, docker, kubernetes or command")],
    description: Annotated[str, typer.Option(help="free text")] = "",
    config: Config = [],  # noqa: B006
    plugin_config: PluginConfig = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Create a prediction environment."""
    plugin = _plugin_config(plugin_config) or {}
    with client(url, token) as made:
        created = made.create_environment(
            name,
            platform,
            description=description,
            config=key_values(config, "--config"),
            plugin_config=plugin,
        )
    emit_json(created) if as_json else details(f"environment {created.id}", created)


def health_summary(agent_status: str, deployments: Sequence[Deployment]) -> tuple[str, str]:
    """The environment's health beside the rows ``deployments list`` shows (the rule the UI uses too)."""
    from shipmate.common.health import DeploymentView, environment_health

    views = [
        DeploymentView(d.desired.state, d.observed.state.value, d.observed.status.value, pending(d))
        for d in deployments
    ]
    return environment_health(agent_status, views)


@env_app.command("list")
def env_list(url: Url = DEFAULT_URL, token: Token = "", as_json: Json = False) -> None:
    """List prediction environments; health joins the agent's check with its deployments' reports."""
    with client(url, token) as made:
        environments = made.list_environments()
        deployments = made.list_deployments(limit=1000).items if environments and not as_json else []
    if as_json:
        emit_json(environments)
        return
    rows = []
    for e in environments:
        health, summary = health_summary(
            e.health.status.value, [d for d in deployments if d.environment_id == e.id]
        )
        rows.append((e.id, e.name, e.platform, health, summary, e.last_seen_at, e.agent_version))
    table("environments", ["id", "name", "platform", "health", "deployments", "last seen", "agent"], rows)


@env_app.command("show")
def env_show(environment_ref: Annotated[str, typer.Argument(metavar="ENVIRONMENT", help="id or name")],
             url: Url = DEFAULT_URL, token: Token = "", as_json: Json = False) -> None:  # fmt: skip
    """Show one environment (by id or name)."""
    with client(url, token) as made:
        found = environment(made, environment_ref)
    emit_json(found) if as_json else details(f"environment {found.id}", found)


@env_app.command("update")
def env_update(
    environment_ref: Annotated[str, typer.Argument(metavar="ENVIRONMENT", help="id or name")],
    description: Annotated[str | None, typer.Option(help="free text")] = None,
    config: Config = [],  # noqa: B006
    plugin_config: PluginConfig = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Change an environment's description, config (replaced whole) or pluginConfig."""
    plugin = _plugin_config(plugin_config)
    if description is None and not config and plugin is None:
        fail("nothing to change: give --description, --config or --plugin-config")
    with client(url, token) as made:
        found = environment(made, environment_ref)
        updated = made.update_environment(
            found.id,
            description=description,
            config=key_values(config, "--config") if config else None,
            plugin_config=plugin,
        )
    emit_json(updated) if as_json else details(f"environment {updated.id}", updated)


@env_app.command("delete")
def env_delete(
    environment_ref: Annotated[str, typer.Argument(metavar="ENVIRONMENT", help="id or name")],
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Delete an environment (the service refuses while it still has deployments)."""
    with client(url, token) as made:
        found = environment(made, environment_ref)
        made.delete_environment(found.id)
    emit_json({"id": found.id, "deleted": True}) if as_json else typer.echo(f"deleted environment {found.id}")
