"""``shipmate health`` (a deployment's service health) and ``shipmate monitor`` (the monitoring agent).

``print_service_health`` is the piece other commands (the demo) call to show a deployment's
health read back from the service.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shipmate.cli._common import DEFAULT_URL, Json, Token, Url, client, fail

if TYPE_CHECKING:
    from rich.console import Console

    from shipmate.client import ServiceHealth, ShipmateClient

SPARK = "▁▂▃▄▅▆▇█"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def register(app: typer.Typer) -> None:
    app.command("health")(health)
    app.command("monitor")(monitor)


def parse_since(value: str, now: dt.datetime) -> dt.datetime:
    """``1h``, ``30m``, ``2d`` ... before ``now``, or an ISO 8601 time (UTC when it names no zone)."""
    match = _DURATION.match(value)
    if match:
        return now - dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"--since {value!r}: expected a duration such as 90s, 30m, 1h, 7d or an ISO 8601 time"
        ) from None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def auto_resolution(since: dt.datetime, until: dt.datetime) -> str:
    """Minute up to 3 hours, hour up to 14 days, day beyond: a chart of at most a few hundred points."""
    span = until - since
    if span <= dt.timedelta(hours=3):
        return "minute"
    return "hour" if span <= dt.timedelta(days=14) else "day"


def sparkline(values: list[float]) -> str:
    """One character per value, scaled to the largest (all blank when there is nothing)."""
    top = max(values, default=0)
    if top <= 0:
        return " " * len(values)
    return "".join(
        " " if v <= 0 else SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1) + 0.5))] for v in values
    )


def fetch_service_health(
    client: ShipmateClient,
    deployment: str,
    *,
    since: str = "1h",
    resolution: str | None = None,
    slow_threshold_ms: float | None = None,
    model_id: str | None = None,
) -> ServiceHealth:
    """The health of a deployment named by id or by its (unique) name."""
    from shipmate.client import NotFound

    now = dt.datetime.now(dt.UTC)
    start = parse_since(since, now)
    chosen = resolution or auto_resolution(start, now)
    try:
        return client.service_health(
            deployment, since=start, until=now, resolution=chosen,
            slow_threshold_ms=slow_threshold_ms, model_id=model_id,
        )  # fmt: skip
    except NotFound:
        page = client.list_deployments(name=deployment, limit=2)
        if len(page.items) != 1:
            raise
        return client.service_health(
            page.items[0].id, since=start, until=now, resolution=chosen,
            slow_threshold_ms=slow_threshold_ms, model_id=model_id,
        )  # fmt: skip


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f} %"


def _number(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.1f}{unit}"


def render_service_health(result: ServiceHealth, console: Console | None = None) -> None:
    """A Rich table of the summary and a sparkline of requests per period."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    s = result.summary
    title = (
        f"service health of {result.deployment_id}"
        + (f" (model {result.model_id})" if result.model_id else "")
        + f", {result.since:%Y-%m-%d %H:%M} to {result.until:%H:%M} UTC"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    quantiles = ("p50", "p95", "p99")
    response = " / ".join(_ms(s.response_time_ms.get(q)) for q in quantiles)
    execution = " / ".join(_ms(s.execution_time_ms.get(q)) for q in quantiles)
    lag = f"{_number(s.monitoring_lag_mean_s, ' s')} / {_number(s.monitoring_lag_max_s, ' s')}"
    last = result.last_received_at
    rows = [
        ("total predictions (rows)", f"{s.total_predictions:,}"),
        ("total requests", f"{s.total_requests:,}"),
        (f"requests over {result.slow_threshold_ms:g} ms", f"{s.slow_requests:,}"),
        ("response time p50 / p95 / p99", response),
        ("execution time p50 / p95 / p99", execution),
        ("user error rate", _rate(s.user_error_rate)),
        ("server error rate", _rate(s.server_error_rate)),
        ("median / peak load", f"{_number(s.median_load)} / {_number(s.peak_load)} req/min"),
        ("distinct consumers", f"{s.distinct_consumers}{'+' if s.consumers_capped else ''}"),
        ("monitoring lag mean / max", lag),
        ("dropped records", f"{s.dropped_records:,}"),
        ("last record received", f"{last:%Y-%m-%d %H:%M:%S} UTC" if last else "never"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    counts = [float(p.total_requests) for p in result.periods]
    if counts:
        peak = max(counts)
        console.print(
            f"requests per {result.resolution}: [cyan]{sparkline(counts)}[/cyan] (peak {peak:,.0f})",
            highlight=False,
        )
    if s.coarsened:
        console.print("[dim]part of the range is rolled up to hours: load there is the hour's average[/dim]")


def print_service_health(
    client: ShipmateClient, deployment: str, *, since: str = "1h", console: Console | None = None
) -> ServiceHealth:
    """Fetch and print a deployment's service health (for the demo and other commands)."""
    result = fetch_service_health(client, deployment, since=since)
    render_service_health(result, console)
    return result


def health(
    deployment: Annotated[str, typer.Argument(help="deployment id or name")],
    since: Annotated[
        str, typer.Option(help="start: a duration back from now (30m, 1h, 7d) or ISO 8601")
    ] = "1h",
    resolution: Annotated[
        str | None, typer.Option(help="minute, hour or day (default: chosen from the range)")
    ] = None,
    slow_ms: Annotated[
        float | None, typer.Option("--slow-ms", help="threshold of 'requests over', in ms (default 1000)")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="only this model id")] = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """A deployment's service health: requests, latency, errors, load, consumers, monitoring lag."""
    if resolution is not None and resolution not in ("minute", "hour", "day"):
        fail(f"--resolution {resolution!r}: expected minute, hour or day")
    try:
        parse_since(since, dt.datetime.now(dt.UTC))
    except ValueError as exc:
        fail(str(exc))
    with client(url, token) as service:
        result = fetch_service_health(
            service, deployment, since=since, resolution=resolution, slow_threshold_ms=slow_ms, model_id=model
        )
    if as_json:
        typer.echo(json.dumps(result.model_dump(mode="json", by_alias=True), indent=2))
    else:
        render_service_health(result)


def monitor(
    config: Annotated[
        Path | None,
        typer.Option("--config", envvar="MLOPS_AGENT_CONFIG_YAML", help="the agent's YAML configuration"),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error")] = "info",
) -> None:
    """Run the monitoring agent: forward spooled aggregates to the service.

    Without a file, DataRobot's agent-image variables configure it (MLOPS_SERVICE_URL,
    MLOPS_API_TOKEN, MLOPS_SPOOLER_TYPE, MLOPS_FILESYSTEM_DIRECTORY or MLOPS_RABBITMQ_QUEUE_URL
    and MLOPS_RABBITMQ_QUEUE_NAME, MLOPS_AGENT_SERVER_PORT)."""
    import os

    from shipmate.monitoring.agent.config import SERVICE_URL_VARIABLE
    from shipmate.monitoring.agent.main import run

    if config is None and not os.environ.get(SERVICE_URL_VARIABLE, "").strip():
        fail(
            "no configuration: pass --config agent.yaml, set MLOPS_AGENT_CONFIG_YAML, "
            f"or configure it by variables ({SERVICE_URL_VARIABLE}, MLOPS_SPOOLER_TYPE ...)"
        )
        return
    raise typer.Exit(run(config, log_level=log_level))
