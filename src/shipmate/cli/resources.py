"""``shipmate model|env|deploy|deployments|events|token``: the service's resources from the shell.

Readable Rich tables by default, ``--json`` for scripts, progress bars for transfers.
Connection: ``--url`` / ``SHIPMATE_URL`` and ``--token`` / ``SHIPMATE_TOKEN``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from pydantic import BaseModel

    from shipmate.client import Deployment, Environment, ShipmateClient

T = TypeVar("T")

model_app = typer.Typer(help="Model packages: push, list, show, pull.", no_args_is_help=True)
env_app = typer.Typer(help="Prediction environments: create, list, show.", no_args_is_help=True)
deployments_app = typer.Typer(help="Deployments: list, show and change them.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens: create, list, revoke.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")
    app.add_typer(env_app, name="env")
    app.add_typer(deployments_app, name="deployments")
    app.add_typer(token_app, name="token")
    app.command("deploy")(deploy)
    app.command("events")(events)


Url = Annotated[str, typer.Option("--url", envvar="SHIPMATE_URL", help="service address")]
Token = Annotated[str, typer.Option("--token", envvar="SHIPMATE_TOKEN", help="API token", show_default=False)]
Json = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
DEFAULT_URL = "http://127.0.0.1:8000"


# ---- plumbing ----------------------------------------------------------------------------------


@contextmanager
def _client(url: str, token: str) -> Iterator[ShipmateClient]:
    """A client whose errors become one clear line on stderr and exit code 1."""
    from shipmate.client import ShipmateClient, ShipmateError

    if not token:
        _fail("no API token: pass --token or set SHIPMATE_TOKEN")
    try:
        with ShipmateClient(url, token) as client:
            yield client
    except ShipmateError as exc:
        field = getattr(exc, "field", None)
        _fail(f"{exc}" + (f" (field: {field})" if field else ""))


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _emit_json(value: Any) -> None:
    from pydantic import BaseModel

    def plain(item: Any) -> Any:
        if isinstance(item, BaseModel):
            return item.model_dump(mode="json", by_alias=True)
        if isinstance(item, list | tuple):
            return [plain(x) for x in item]
        return item

    typer.echo(json.dumps(plain(value), indent=2))


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*["" if cell is None else str(cell) for cell in row])
    Console().print(table)


def _details(title: str, model: BaseModel) -> None:
    flat = model.model_dump(mode="json", by_alias=True)
    _table(
        title,
        ["field", "value"],
        [(k, json.dumps(v) if isinstance(v, dict | list) else v) for k, v in flat.items()],
    )


@contextmanager
def _progress(description: str) -> Iterator[Callable[[int, int | None], None]]:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def advance(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def _key_values(pairs: Sequence[str], option: str) -> dict[str, Any]:
    """``key=value`` pairs; values parse as JSON when they can (numbers, booleans), else stay text."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            _fail(f"{option} {pair!r}: expected key=value")
        try:
            result[key] = json.loads(raw)
        except ValueError:
            result[key] = raw
    return result


def _environment(client: ShipmateClient, ref: str) -> Environment:
    """An environment by id or by name."""
    from shipmate.client import NotFound

    if ref.startswith("e-"):
        try:
            return client.get_environment(ref)
        except NotFound:
            pass
    for environment in client.list_environments():
        if environment.name == ref:
            return environment
    _fail(f"no environment with id or name {ref!r}")
    raise AssertionError  # unreachable


def _deployment_row(d: Deployment) -> tuple[Any, ...]:
    return (
        d.id,
        d.name,
        d.environment_id,
        f"{d.model_package.name} {d.model_package.version}",
        d.desired.state,
        d.observed.state.value,
        d.observed.status.value,
        d.generation,
        d.observed.prediction_url,
    )


DEPLOYMENT_COLUMNS = (
    "id",
    "name",
    "environment",
    "model",
    "desired",
    "state",
    "status",
    "gen",
    "prediction URL",
)


# ---- model packages ----------------------------------------------------------------------------


@model_app.command("push")
def model_push(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help=".mlpkg file")],
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Upload a model package (streamed, with a progress bar)."""
    with _client(url, token) as client, _progress(f"uploading {file.name}") as progress:
        package = client.upload_model_package(file, progress=progress)
    if as_json:
        _emit_json(package)
    else:
        _details(f"model package {package.id}", package.model_copy(update={"manifest": {}}))


@model_app.command("list")
def model_list(
    name: Annotated[str | None, typer.Option(help="only this package name")] = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """List model packages, newest first."""
    with _client(url, token) as client:
        packages = client.list_model_packages(name=name, limit=1000)
    if as_json:
        _emit_json(packages)
        return
    _table(
        "model packages",
        ["id", "name", "version", "framework", "target", "size", "sha256", "created"],
        [
            (p.id, p.name, p.version, p.framework, p.target_type, p.size, p.sha256[:12], p.created_at)
            for p in packages
        ],
    )


@model_app.command("show")
def model_show(package_id: str, url: Url = DEFAULT_URL, token: Token = "", as_json: Json = False) -> None:
    """Show one model package with its manifest."""
    with _client(url, token) as client:
        package = client.get_model_package(package_id)
    _emit_json(package) if as_json else _details(f"model package {package.id}", package)


@model_app.command("pull")
def model_pull(
    package_id: str,
    dest: Annotated[Path, typer.Argument(help="file to write")],
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Download a model package (verified against its SHA-256)."""
    with _client(url, token) as client, _progress(f"downloading {package_id}") as progress:
        sha = client.download_model_package(package_id, dest, progress=progress)
    typer.echo(f"{dest} sha256={sha}")


# ---- environments ------------------------------------------------------------------------------


@env_app.command("create")
def env_create(
    name: str,
    platform: Annotated[str, typer.Option(help="filesystem, docker, kubernetes or command")],
    description: Annotated[str, typer.Option(help="free text")] = "",
    config: Annotated[list[str], typer.Option("--config", help="key=value (repeatable)")] = [],  # noqa: B006
    plugin_config: Annotated[
        Path | None,
        typer.Option("--plugin-config", exists=True, dir_okay=False, help="YAML/JSON pluginConfig"),
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Create a prediction environment."""
    plugin: dict[str, Any] = {}
    if plugin_config is not None:
        import yaml

        try:
            loaded = yaml.safe_load(plugin_config.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            _fail(f"{plugin_config}: not valid YAML: {exc}")
        if not isinstance(loaded, dict):
            _fail(f"{plugin_config}: expected a mapping at the top level")
        plugin = loaded
    with _client(url, token) as client:
        environment = client.create_environment(
            name,
            platform,
            description=description,
            config=_key_values(config, "--config"),
            plugin_config=plugin,
        )
    _emit_json(environment) if as_json else _details(f"environment {environment.id}", environment)


@env_app.command("list")
def env_list(url: Url = DEFAULT_URL, token: Token = "", as_json: Json = False) -> None:
    """List prediction environments with their health."""
    with _client(url, token) as client:
        environments = client.list_environments()
    if as_json:
        _emit_json(environments)
        return
    _table(
        "environments",
        ["id", "name", "platform", "health", "last seen", "agent"],
        [
            (e.id, e.name, e.platform, e.health.status.value, e.last_seen_at, e.agent_version)
            for e in environments
        ],
    )


@env_app.command("show")
def env_show(environment: str, url: Url = DEFAULT_URL, token: Token = "", as_json: Json = False) -> None:
    """Show one environment (by id or name)."""
    with _client(url, token) as client:
        found = _environment(client, environment)
    _emit_json(found) if as_json else _details(f"environment {found.id}", found)


# ---- deployments -------------------------------------------------------------------------------


def deploy(
    model: Annotated[str, typer.Argument(help="model package id, or a .mlpkg file to push first")],
    env: Annotated[str, typer.Option("--env", help="environment id or name")],
    name: Annotated[str | None, typer.Option(help="deployment label (default: the model's name)")] = None,
    description: Annotated[str, typer.Option(help="free text")] = "",
    kv: Annotated[list[str], typer.Option("--kv", help="key=value config (repeatable)")] = [],  # noqa: B006
    inactive: Annotated[bool, typer.Option("--inactive", help="register it stopped")] = False,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Deploy a model package to an environment."""
    with _client(url, token) as client:
        environment = _environment(client, env)
        path = Path(model)
        if path.is_file():
            with _progress(f"uploading {path.name}") as progress:
                package = client.upload_model_package(path, progress=progress)
        else:
            package = client.get_model_package(model)
        deployment = client.create_deployment(
            environment.id,
            package.id,
            name=name or package.name,
            description=description,
            key_value_config=_key_values(kv, "--kv"),
            active=not inactive,
        )
    _emit_json(deployment) if as_json else _table(
        "deployment", DEPLOYMENT_COLUMNS, [_deployment_row(deployment)]
    )


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
    with _client(url, token) as client:
        env_id = _environment(client, env).id if env else None
        page = client.list_deployments(
            environment_id=env_id, state=state, desired_state=desired, name=name, limit=limit, offset=offset
        )
    if as_json:
        _emit_json(page)
        return
    shown = f"{offset + 1}-{offset + len(page.items)} of {page.total}" if page.items else f"0 of {page.total}"
    _table(f"deployments ({shown})", DEPLOYMENT_COLUMNS, [_deployment_row(d) for d in page.items])


@deployments_app.command("show")
def deployments_show(
    deployment_id: str, url: Url = DEFAULT_URL, token: Token = "", as_json: Json = False
) -> None:
    """Show one deployment: desired spec, observed state, last action."""
    with _client(url, token) as client:
        deployment = client.get_deployment(deployment_id)
    _emit_json(deployment) if as_json else _details(f"deployment {deployment.id}", deployment)


def _change(
    deployment_id: str, url: str, token: str, as_json: bool, call: Callable[[ShipmateClient], Deployment]
) -> None:
    with _client(url, token) as client:
        deployment = call(client)
    _emit_json(deployment) if as_json else _table(
        "deployment", DEPLOYMENT_COLUMNS, [_deployment_row(deployment)]
    )


@deployments_app.command("replace")
def deployments_replace(
    deployment_id: str,
    model: Annotated[str, typer.Argument(help="model package id, or a .mlpkg file to push first")],
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Replace the deployment's model."""

    def call(client: ShipmateClient) -> Deployment:
        path = Path(model)
        package_id = model
        if path.is_file():
            with _progress(f"uploading {path.name}") as progress:
                package_id = client.upload_model_package(path, progress=progress).id
        return client.replace_model(deployment_id, package_id)

    _change(deployment_id, url, token, as_json, call)


@deployments_app.command("relaunch")
def deployments_relaunch(
    deployment_id: str, url: Url = DEFAULT_URL, token: Token = "", as_json: Json = False
) -> None:
    """Restart the deployment without changing it."""
    _change(deployment_id, url, token, as_json, lambda c: c.relaunch(deployment_id))


@deployments_app.command("deactivate")
def deployments_deactivate(
    deployment_id: str, url: Url = DEFAULT_URL, token: Token = "", as_json: Json = False
) -> None:
    """Stop serving (the deployment is kept)."""
    _change(deployment_id, url, token, as_json, lambda c: c.deactivate(deployment_id))


@deployments_app.command("activate")
def deployments_activate(
    deployment_id: str, url: Url = DEFAULT_URL, token: Token = "", as_json: Json = False
) -> None:
    """Serve again after a deactivate."""
    _change(deployment_id, url, token, as_json, lambda c: c.activate(deployment_id))


@deployments_app.command("delete")
def deployments_delete(
    deployment_id: str,
    force: Annotated[
        bool, typer.Option("--force", help="remove it even if the environment cannot stop it")
    ] = False,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Stop and remove the deployment (the record goes once the agent confirms, at once with --force)."""
    _change(deployment_id, url, token, as_json, lambda c: c.delete(deployment_id, force=force))


# ---- events ------------------------------------------------------------------------------------


def events(
    env: Annotated[str | None, typer.Option("--env", help="environment id or name")] = None,
    deployment: Annotated[str | None, typer.Option("--deployment", help="deployment id")] = None,
    type_: Annotated[list[str], typer.Option("--type", help="event type (repeatable)")] = [],  # noqa: B006
    after: Annotated[int, typer.Option(help="start after this event id")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new events")] = False,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Show the event log; with --follow, stream new events as they happen (Ctrl-C to stop)."""
    from rich.console import Console

    console = Console()

    def show(event: Any) -> None:
        if as_json:
            typer.echo(json.dumps(event.model_dump(mode="json", by_alias=True)))
            return
        where = " ".join(x for x in (event.environment_id, event.deployment_id) if x)
        generation = f" gen {event.generation}" if event.generation is not None else ""
        status = f" [{event.status}]" if event.status else ""
        console.print(
            f"{event.id:>6} {event.timestamp:%Y-%m-%d %H:%M:%S} [bold]{event.type}[/bold]{status} "
            f"{where}{generation} {event.message or ''}",
            highlight=False,
        )

    with _client(url, token) as client:
        env_id = _environment(client, env).id if env else None
        filters: dict[str, Any] = {"environment_id": env_id, "deployment_id": deployment, "types": type_}
        if not follow:
            page = client.events(after=after, limit=limit, **filters)
            if as_json:
                _emit_json(page.events)
            else:
                for event in page.events:
                    show(event)
            return
        try:
            for event in client.follow_events(after=after, **filters):
                show(event)
        except KeyboardInterrupt:
            pass


# ---- tokens ------------------------------------------------------------------------------------


@token_app.command("create")
def token_create(
    kind: Annotated[str, typer.Option(help="agent (bound to one environment) or admin")] = "agent",
    env: Annotated[str | None, typer.Option("--env", help="environment id or name (agent tokens)")] = None,
    name: Annotated[str | None, typer.Option(help="label to recognise it by")] = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Create a token. The secret is printed once and never again."""
    with _client(url, token) as client:
        env_id = _environment(client, env).id if env else None
        info, secret = client.create_token(kind, env_id, name=name)
    if as_json:
        _emit_json({"token": info.model_dump(mode="json", by_alias=True), "secret": secret})
        return
    _details(f"token {info.id}", info)
    typer.echo(f"secret (shown once, store it now): {secret}")


@token_app.command("list")
def token_list(
    include_revoked: Annotated[bool, typer.Option("--all", help="include revoked tokens")] = False,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """List tokens (prefixes only; secrets are never stored)."""
    with _client(url, token) as client:
        tokens = client.list_tokens(include_revoked=include_revoked)
    if as_json:
        _emit_json(tokens)
        return
    _table(
        "tokens",
        ["id", "name", "kind", "environment", "prefix", "created", "revoked"],
        [
            (t.id, t.name, t.kind, t.environment_id, t.prefix + "*******", t.created_at, t.revoked_at)
            for t in tokens
        ],
    )


@token_app.command("revoke")
def token_revoke(token_id: str, url: Url = DEFAULT_URL, token: Token = "", as_json: Json = False) -> None:
    """Revoke a token; it stops working at once."""
    with _client(url, token) as client:
        info = client.revoke_token(token_id)
    _emit_json(info) if as_json else typer.echo(f"revoked {info.id} ({info.prefix}*******)")
