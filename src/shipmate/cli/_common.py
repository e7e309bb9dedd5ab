"""Plumbing the resource commands share: the client, one-line errors, tables, JSON, waiting.

Connection: ``--url`` / ``SHIPMATE_URL`` and ``--token`` / ``SHIPMATE_TOKEN``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from pydantic import BaseModel

    from shipmate.client import Deployment, Environment, ShipmateClient

DEFAULT_URL = "http://127.0.0.1:8000"
Url = Annotated[str, typer.Option("--url", envvar="SHIPMATE_URL", help="service address")]


def _token(ctx: typer.Context, param: typer.CallbackParam, value: str) -> str:
    """``@FILE`` reads the token from a file. A token typed on the command line is visible to
    every user of the machine in the process list: said once, on stderr."""
    if value.startswith("@"):
        path = value[1:]
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError as exc:
            fail(f"--token {value}: cannot read {path}: {exc.strerror}")
    source = ctx.get_parameter_source(param.name) if param.name else None
    if value and getattr(source, "name", "") == "COMMANDLINE":
        typer.echo(
            "warning: a token given with --token shows in the process list to every user of this machine;"
            " use SHIPMATE_TOKEN or --token @FILE",
            err=True,
        )
    return value


Token = Annotated[
    str,
    typer.Option(
        "--token",
        envvar="SHIPMATE_TOKEN",
        help="API token, or @FILE to read it from a file",
        show_default=False,
        callback=_token,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="print only the id (for scripts)")]
Wait = Annotated[bool, typer.Option("--wait", help="return once the environment has carried the change out")]
WaitTimeout = Annotated[float, typer.Option("--timeout", help="seconds --wait waits at most")]


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def client(url: str, token: str) -> Iterator[ShipmateClient]:
    """A client whose errors become one clear line on stderr and exit code 1."""
    from shipmate.client import NotFound, ShipmateClient, ShipmateError, Unauthorized

    if not token:
        fail("no API token: pass --token or set SHIPMATE_TOKEN")
    try:
        with ShipmateClient(url, token) as made:
            yield made
    except Unauthorized as exc:
        fail(f"the service at {url} refused the token ({exc}): check --token / SHIPMATE_TOKEN")
    except NotFound as exc:
        hint = service_problem(url)
        fail(hint if hint else str(exc))
    except ShipmateError as exc:
        field = getattr(exc, "field", None)
        fail(f"{exc}" + (f" (field: {field})" if field else ""))


def service_problem(url: str) -> str | None:
    """Why ``url`` is not a Shipmate service, or None when it is (its health route answers like one)."""
    import httpx

    try:
        response = httpx.get(f"{url.rstrip('/')}/api/v1/health", timeout=5)
        body = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        body = None
    if isinstance(body, dict) and "status" in body:
        return None
    return (
        f"{url} is not a Shipmate service (no /api/v1/health there): check --url / SHIPMATE_URL "
        "(the service listens on port 8000 by default, the prediction server on 8080)"
    )


def emit_json(value: Any) -> None:
    from pydantic import BaseModel

    def plain(item: Any) -> Any:
        if isinstance(item, BaseModel):
            return item.model_dump(mode="json", by_alias=True)
        if isinstance(item, list | tuple):
            return [plain(x) for x in item]
        if isinstance(item, dict):
            return {k: plain(v) for k, v in item.items()}
        return item

    typer.echo(json.dumps(plain(value), indent=2))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    shown = Table(title=title, title_justify="left")
    for column in columns:
        shown.add_column(column, overflow="fold")
    for row in rows:
        shown.add_row(*["" if cell is None else str(cell) for cell in row])
    Console().print(shown)


def details(title: str, model: BaseModel) -> None:
    flat = model.model_dump(mode="json", by_alias=True)
    table(
        title,
        ["field", "value"],
        [(k, json.dumps(v) if isinstance(v, dict | list) else v) for k, v in flat.items()],
    )


@contextmanager
def progress(description: str) -> Iterator[Callable[[int, int | None], None]]:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),  # stdout stays clean for --json and --quiet
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def advance(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def key_values(pairs: Sequence[str], option: str) -> dict[str, Any]:
    """``key=value`` pairs; values parse as JSON when they can (numbers, booleans), else stay text."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            fail(f"{option} {pair!r}: expected key=value")
        try:
            result[key] = json.loads(raw)
        except ValueError:
            result[key] = raw
    return result


def environment(made: ShipmateClient, ref: str) -> Environment:
    """An environment by id or by name."""
    from shipmate.client import NotFound

    if ref.startswith("e-"):
        try:
            return made.get_environment(ref)
        except NotFound:
            pass
    for found in made.list_environments():
        if found.name == ref:
            return found
    fail(f"no environment with id or name {ref!r} (shipmate env list shows them)")


# ---- deployments as people read them -----------------------------------------------------------

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


def pending(d: Deployment) -> bool:
    """The environment has not yet reported on the deployment's latest generation."""
    from shipmate.common.health import is_pending

    return is_pending(d.generation, d.observed.generation, d.observed.phase)


def deployment_row(d: Deployment) -> tuple[Any, ...]:
    """One row; while a change is pending, its state says so instead of repeating the old report."""
    state, status = d.observed.state.value, d.observed.status.value
    if pending(d):
        state, status = f"pending (was {state})", "-"
    return (
        d.id,
        d.name,
        d.environment_id,
        f"{d.model_package.name} {d.model_package.version}",
        d.desired.state,
        state,
        status,
        d.generation,
        d.observed.prediction_url,
    )


def show_deployment(d: Deployment | None, as_json: bool, quiet: bool = False, ref: str = "") -> None:
    if d is None:  # waited for a deletion
        emit_json({"id": ref, "deleted": True}) if as_json else typer.echo(f"deleted deployment {ref}")
        return
    if quiet:
        typer.echo(d.id)
    elif as_json:
        emit_json(d)
    else:
        table("deployment", DEPLOYMENT_COLUMNS, [deployment_row(d)])
        if pending(d):
            typer.echo(
                f"pending: the environment's agent has not carried out generation {d.generation} yet "
                f"(follow it with: shipmate deployments show {d.id}, or pass --wait)",
                err=True,
            )


def settled(d: Deployment) -> str | None:
    """Pure: None while the change is under way; else "done" or the reason it failed."""
    if pending(d):
        return None
    observed = d.observed
    if observed.status.value == "failing" or observed.state.value == "errored":
        return observed.message or f"the environment reports {observed.state.value}"
    wanted = {"running": "ready", "stopped": "stopped"}.get(d.desired.state)
    if wanted is not None and observed.state.value != wanted:
        return None
    return "done"


def answers(url: str) -> bool:
    """The prediction URL serves the deployment: anything but a connection error, 404 or 503."""
    import httpx

    try:
        status = httpx.post(url, json=[], timeout=5).status_code
    except httpx.HTTPError:
        return False
    return status not in (404, 502, 503)


def wait_for(made: ShipmateClient, deployment_id: str, timeout: float) -> Deployment | None:
    """Poll until the deployment's latest generation is carried out (and its URL answers); fail clearly.

    None once a deployment being deleted is gone."""
    from shipmate.client import NotFound

    deadline = time.monotonic() + timeout
    last: Deployment | None = None
    while time.monotonic() < deadline:
        try:
            last = made.get_deployment(deployment_id)
        except NotFound:
            if last is None or last.desired.state == "deleted":
                return None  # removed: a deletion is done
            raise
        outcome = settled(last)
        if outcome is not None and outcome != "done":
            fail(f"deployment {deployment_id}: generation {last.generation} failed: {outcome}")
        url = last.observed.prediction_url
        if last.desired.state == "deleted":
            pass  # done only once the record is gone (the agent confirmed the stop)
        elif outcome == "done" and (last.desired.state != "running" or not url or answers(url)):
            return last
        time.sleep(0.25)
    where = f"; last report: {deployment_row(last)[5]} {last.observed.message or ''}" if last else ""
    fail(
        f"deployment {deployment_id} not ready after {timeout:.0f} s{where} "
        "(is the environment's agent running? shipmate env list shows when it last reported)"
    )
