"""``shipmate server``: run the control-plane service; ``shipmate wait``: until it answers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shipmate.cli._ports import port_problem


def register(app: typer.Typer) -> None:
    app.command("server")(server)
    app.command("reset-admin-token")(reset_admin_token)
    app.command("wait")(wait)


DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="SHIPMATE_DATA_DIR", help="SQLite file, artifacts, admin token"),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="SHIPMATE_DATABASE_URL",
        help="e.g. postgresql+psycopg://user@host:5432/db (default: SQLite in the data directory)",
    ),
]


def server(
    data_dir: DataDir = Path("./shipmate-data"),
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="SHIPMATE_PORT", help="port to listen on")] = 8000,
    database_url: DatabaseUrl = None,
    max_upload_bytes: Annotated[
        int | None,
        typer.Option("--max-upload-bytes", help="largest model package accepted", show_default="4 GiB"),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning, error")] = "info",
) -> None:
    """Run the Shipmate service (REST API under /api/v1, OpenAPI at /api/v1/openapi.json, UI at /ui).

    The admin token comes from SHIPMATE_ADMIN_TOKEN; without it, one is generated at first
    start into <data-dir>/admin-token, before the service answers (so after `shipmate wait`
    the file is there). Several processes on one PostgreSQL act as one service.
    """
    import logging

    import uvicorn
    from pydantic import ValidationError

    from shipmate.server.app import create_app
    from shipmate.server.settings import ServerSettings

    problem = port_problem(host, port)
    if problem:
        typer.echo(f"error: --port {port}: {problem}; choose another with --port or SHIPMATE_PORT", err=True)
        raise typer.Exit(2)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Alembic announces every plugin and migration step at INFO on each start: noise, not news.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    overrides: dict[str, object] = {"data_dir": data_dir, "database_url": database_url}
    if max_upload_bytes is not None:
        overrides["max_upload_bytes"] = max_upload_bytes
    try:
        settings = ServerSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        for error in exc.errors():
            typer.echo(f"error: {'.'.join(map(str, error['loc']))}: {error['msg']}", err=True)
        raise typer.Exit(2) from None
    if settings.data_dir.exists() and not settings.data_dir.is_dir():
        typer.echo(f"error: --data-dir {settings.data_dir}: exists and is not a directory", err=True)
        raise typer.Exit(2)
    # Long polls and event streams would otherwise hold a shutdown for up to their
    # full wait; their clients resume from their cursor, so cutting them is safe.
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level.lower(),
        proxy_headers=True,
        timeout_graceful_shutdown=3,
    )


def reset_admin_token(data_dir: DataDir = Path("./shipmate-data"), database_url: DatabaseUrl = None) -> None:
    """Recover from a lost admin token: write a new one to <data-dir>/admin-token (mode 0600).

    Works on the service's store directly (whoever can read the data directory or the
    database already holds everything), with the service running or stopped; other
    tokens are left as they are. Revoke the lost ones afterwards.
    """
    from shipmate.server.app import write_admin_token
    from shipmate.server.db import Database
    from shipmate.server.services import tokens
    from shipmate.server.settings import ServerSettings

    settings = ServerSettings(data_dir=data_dir, database_url=database_url)
    if database_url is None and not (data_dir / "shipmate.db").exists():
        typer.echo(
            f"error: no Shipmate store in {data_dir} (no shipmate.db): give --data-dir or --database-url",
            err=True,
        )
        raise typer.Exit(2)
    db = Database(settings.resolved_database_url())
    try:
        db.migrate()
        with db.write() as session:
            secret = tokens.reset_admin(session)
    finally:
        db.dispose()
    data_dir.mkdir(parents=True, exist_ok=True)
    path = write_admin_token(data_dir, secret)
    typer.echo(f"a new admin token is in {path} (readable only by this user)")


def wait(
    url: Annotated[str, typer.Option("--url", envvar="SHIPMATE_URL", help="service address")] = (
        "http://127.0.0.1:8000"
    ),
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait at most")] = 60.0,
) -> None:
    """Wait until the service answers its health check (exit 1 after --timeout).

    A service started in the background writes its generated admin token before it
    answers, so a script can read <data-dir>/admin-token right after this.
    """
    import time

    import httpx

    from shipmate.cli._common import fail, service_problem

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url.rstrip('/')}/api/v1/health", timeout=2)
        except httpx.HTTPError as exc:
            last = f"cannot reach it ({type(exc).__name__})"
        else:
            if response.status_code == 200:
                problem = service_problem(url)
                if problem:
                    fail(problem)
                typer.echo(f"ok: the service at {url} answers")
                return
            last = f"it answered {response.status_code}"
        time.sleep(0.2)
    fail(
        f"the service at {url} did not answer within {timeout:.0f} s: {last} (is `shipmate server` running?)"
    )
