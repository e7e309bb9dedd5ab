"""``shipmate events``: the event log, as a table with fixed columns or as JSON lines."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from shipmate.cli._common import DEFAULT_URL, Json, Token, Url, client, emit_json, environment

COLUMNS = ("id", "time", "type", "status", "environment", "deployment", "gen", "message")
WIDTHS = (6, 19, 26, 8, 14, 14, 4)
"""Fixed widths (the message takes the rest), so rows line up while --follow streams them."""


def register(app: typer.Typer) -> None:
    app.command("events")(events)


def event_line(cells: tuple[str, ...]) -> str:
    """Pure: one row of the table; a cell wider than its column is cut with an ellipsis."""
    parts = []
    for cell, width in zip(cells, WIDTHS, strict=False):
        text = cell if len(cell) <= width else cell[: width - 1] + "…"
        parts.append(text.ljust(width))
    return "  ".join([*parts, *cells[len(WIDTHS) :]]).rstrip()


def event_cells(event: Any) -> tuple[str, ...]:
    return (
        str(event.id),
        f"{event.timestamp:%Y-%m-%d %H:%M:%S}",
        event.type,
        event.status or "",
        event.environment_id or "",
        event.deployment_id or "",
        "" if event.generation is None else str(event.generation),
        (event.message or "").replace("\n", " "),
    )


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

    def show(event: Any) -> None:
        if as_json:
            typer.echo(json.dumps(event.model_dump(mode="json", by_alias=True)))
        else:
            typer.echo(event_line(event_cells(event)))

    with client(url, token) as made:
        env_id = environment(made, env).id if env else None
        filters: dict[str, Any] = {"environment_id": env_id, "deployment_id": deployment, "types": type_}
        if not follow:
            page = made.events(after=after, limit=limit, **filters)
            if as_json:
                emit_json(page.events)
                return
        if not as_json:
            typer.echo(event_line(COLUMNS))
        if not follow:
            for event in page.events:
                show(event)
            return
        try:
            for event in made.follow_events(after=after, **filters):
                show(event)
        except KeyboardInterrupt:
            pass
