"""``shipmate server``: run the control-plane service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("server")(server)


def server(
    data_dir: Annotated[
        Path,
        typer.Option("--data-dir", envvar="SHIPMATE_DATA_DIR", help="SQLite file, artifacts, admin token"),
    ] = Path("./shipmate-data"),
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="SHIPMATE_DATABASE_URL",
            help="e.g. postgresql+psycopg://user@host:5432/db (default: SQLite in the data directory)",
        ),
    ] = None,
    max_upload_bytes: Annotated[
        int | None, typer.Option("--max-upload-bytes", help="largest model package accepted")
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning, error")] = "info",
) -> None:
    """Run the Shipmate service (REST API under /api/v1, OpenAPI at /api/v1/openapi.json).

    The admin token comes from SHIPMATE_ADMIN_TOKEN; without it, one is generated at first
    start into <data-dir>/admin-token. Several processes on one PostgreSQL act as one service.
    """
    import logging

    import uvicorn
    from pydantic import ValidationError

    from shipmate.server.app import create_app
    from shipmate.server.settings import ServerSettings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides: dict[str, object] = {"data_dir": data_dir, "database_url": database_url}
    if max_upload_bytes is not None:
        overrides["max_upload_bytes"] = max_upload_bytes
    try:
        settings = ServerSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        for error in exc.errors():
            typer.echo(f"error: {'.'.join(map(str, error['loc']))}: {error['msg']}", err=True)
        raise typer.Exit(2) from None
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
