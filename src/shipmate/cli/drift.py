"""``shipmate drift``: a deployment's data and prediction drift, as the service computes it.

``print_drift`` is the piece other commands (the demo) call to show it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shipmate.cli._common import DEFAULT_URL, Json, Token, Url, client, fail
from shipmate.cli.monitoring import parse_since, sparkline

if TYPE_CHECKING:
    from rich.console import Console

    from shipmate.client import ColumnDrift, Drift, ShipmateClient

STATUS_STYLE = {"ok": "green", "warning": "yellow", "at_risk": "red", "green": "green", "yellow": "yellow",
                "red": "red"}  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command("drift")(drift)


def fetch_drift(
    client: ShipmateClient,
    deployment: str,
    *,
    since: str = "24h",
    features: list[str] | None = None,
    metric: str | None = None,
) -> Drift:
    """Drift of a deployment named by id or by its (unique) name, with its windows when the
    service scores them (at most 50 columns)."""
    from shipmate.client import BadRequest, NotFound

    now = dt.datetime.now(dt.UTC)
    query: dict[str, Any] = {
        "since": parse_since(since, now),
        "until": now,
        "features": features,
        "metric": metric,
    }

    def ask(dep_id: str) -> Drift:
        try:
            return client.drift(dep_id, windows=True, **query)
        except BadRequest:  # too many columns to score each window: the summary alone
            return client.drift(dep_id, **query)

    try:
        return ask(deployment)
    except NotFound:
        page = client.list_deployments(name=deployment, limit=2)
        if len(page.items) != 1:
            raise
        return ask(page.items[0].id)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _status(word: str) -> str:
    return f"[{STATUS_STYLE.get(word, 'white')}]{word}[/]"


def render_drift(result: Drift, console: Console | None = None) -> None:
    """The drift-versus-importance table, features by importance, then the model's outputs."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    title = (
        f"drift of {result.deployment_id} ({result.metric}, against the "
        f"{'package baseline' if result.reference == 'baseline' else 'reference window'}), "
        f"{result.since:%Y-%m-%d %H:%M} to {result.until:%H:%M} UTC, {result.rows:,} rows"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("column")
    for name in (
        "importance",
        result.metric,
        "warn / at risk",
        "rows",
        "missing",
        "out of range",
        "new category",
    ):
        table.add_column(name, justify="right")
    table.add_column("status")
    spark = bool(result.windows)
    if spark:
        table.add_column("by window")

    def add(column: ColumnDrift, label: str, key: str) -> None:
        importance = "-" if column.importance is None else f"{column.importance:.2f}"
        if key.startswith("prediction:"):
            importance = "output"
        elif column.important and (column.importance or 0.0) < 0.5:
            importance += " ★"  # starred, or the package has no importance: weighed as important
        thresholds = f"{_num(column.threshold_warning)} / {_num(column.threshold_at_risk)}"
        rates = (column.missing_rate, column.out_of_range_rate, column.new_category_rate)
        row = [label, importance, _num(column.value), thresholds, f"{column.rows:,}"]
        row += [*(_pct(rate) for rate in rates), _status(column.status)]
        if spark:
            values = [c.value or 0.0 for c in result.series.get(key, [])]
            row.append(sparkline(values))
        table.add_row(*row)

    features = sorted(result.features, key=lambda c: (-(c.importance or 0.0), c.name))
    for column in features:
        add(column, column.name, f"feature:{column.name}")
    for column in result.predictions:
        add(column, f"output {column.name}", f"prediction:{column.name}")
    console.print(table)
    console.print(f"deployment drift status: {_status(result.status)}", highlight=False)
    notes = [c for c in [*result.features, *result.predictions] if c.reason and c.status != "ok"]
    for column in notes[:10]:
        console.print(f"[dim]{column.name}: {column.reason}[/dim]", highlight=False)
    if result.reason:
        console.print(f"[dim]{result.reason}[/dim]", highlight=False)


def print_drift(
    client: ShipmateClient, deployment: str, *, since: str = "1h", console: Console | None = None
) -> Drift:
    """Fetch and print a deployment's drift (for the demo and other commands)."""
    result = fetch_drift(client, deployment, since=since)
    render_drift(result, console)
    return result


def drift(
    deployment: Annotated[str, typer.Argument(help="deployment id or name")],
    since: Annotated[
        str, typer.Option(help="start: a duration back from now (30m, 1h, 7d) or ISO 8601")
    ] = "24h",
    feature: Annotated[
        list[str] | None, typer.Option("--feature", help="only this feature or output (repeatable)")
    ] = None,
    metric: Annotated[
        str | None, typer.Option(help="psi, js or hellinger (default: the deployment's setting)")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """A deployment's data drift (features) and prediction drift (outputs), weighed by importance."""
    if metric is not None and metric not in ("psi", "js", "hellinger"):
        fail(f"--metric {metric!r}: expected psi, js or hellinger")
    try:
        parse_since(since, dt.datetime.now(dt.UTC))
    except ValueError as exc:
        fail(str(exc))
    with client(url, token) as service:
        result = fetch_drift(service, deployment, since=since, features=feature, metric=metric)
    if as_json:
        typer.echo(json.dumps(result.model_dump(mode="json", by_alias=True), indent=2))
    else:
        render_drift(result)
