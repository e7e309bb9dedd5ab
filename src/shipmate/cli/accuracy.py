"""``shipmate actuals upload``, ``shipmate accuracy`` and ``shipmate alerts``.

Actuals are read from a CSV file with DataRobot's column names by default
(``associationId``, ``actualValue``, optional ``timestamp`` and ``wasActedOn``) and sent in
batches of 10,000; the service says, row by row, what it refused and why.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shipmate.cli._common import DEFAULT_URL, Json, Token, Url, client, emit_json, fail, table
from shipmate.cli.monitoring import parse_since, sparkline

if TYPE_CHECKING:
    from shipmate.client import ShipmateClient

BATCH = 10_000
SHOWN_PROBLEMS = 20
HEADLINE = {"binary": "auc", "multiclass": "accuracy", "regression": "rmse"}
"""The metric whose timeline is drawn as a sparkline."""

actuals_app = typer.Typer(help="Report actual outcomes for predictions (matched by association id).")
alerts_app = typer.Typer(help="Alerts and their rules.", invoke_without_command=True)


def register(app: typer.Typer) -> None:
    app.add_typer(actuals_app, name="actuals")
    app.command("accuracy")(accuracy)
    app.add_typer(alerts_app, name="alerts")


def deployment_id(service: ShipmateClient, ref: str) -> str:
    """A deployment named by id or by its (unique) name."""
    from shipmate.client import NotFound

    try:
        return service.get_deployment(ref).id
    except NotFound:
        page = service.list_deployments(name=ref, limit=2)
        if len(page.items) != 1:
            raise
        return page.items[0].id


def _flag(value: str, row: int) -> bool | None:
    text = value.strip().lower()
    if text == "":
        return None
    if text in ("true", "1", "yes", "t", "y"):
        return True
    if text in ("false", "0", "no", "f", "n"):
        return False
    fail(f"row {row}: wasActedOn {value!r} is not true or false")


def read_actuals(path: Path, id_column: str, value_column: str) -> list[dict[str, Any]]:
    """The CSV's rows in the API's shape (values as text: the service checks them against the model)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            for needed in (id_column, value_column):
                if needed not in header:
                    fail(f"{path}: no column {needed!r} (columns: {', '.join(header) or 'none'})")
            rows = []
            for number, record in enumerate(reader, start=2):
                row: dict[str, Any] = {
                    "associationId": record[id_column],
                    "actualValue": record[value_column],
                }
                if record.get("timestamp"):
                    row["timestamp"] = record["timestamp"]
                if "wasActedOn" in record and record["wasActedOn"] is not None:
                    acted = _flag(record["wasActedOn"], number)
                    if acted is not None:
                        row["wasActedOn"] = acted
                rows.append(row)
    except OSError as exc:
        fail(f"{path}: {exc.strerror or exc}")
    except (UnicodeDecodeError, csv.Error) as exc:
        fail(f"{path}: not a readable CSV file ({exc})")
    if not rows:
        fail(f"{path}: no rows")
    return rows


@actuals_app.command("upload")
def upload(
    file: Annotated[Path, typer.Argument(help="CSV with associationId and actualValue columns")],
    deployment: Annotated[str, typer.Option("--deployment", "-d", help="deployment id or name")],
    id_column: Annotated[str, typer.Option(help="the association id column")] = "associationId",
    value_column: Annotated[str, typer.Option(help="the actual value column")] = "actualValue",
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Upload actuals; exits 1 when the service refused any row (each refusal is printed with its reason)."""
    rows = read_actuals(file, id_column, value_column)
    totals = {"received": 0, "stored": 0, "duplicate": 0, "rejected": 0}
    problems: list[dict[str, Any]] = []
    with client(url, token) as service:
        dep = deployment_id(service, deployment)
        for start in range(0, len(rows), BATCH):
            result = service.post_actuals(dep, rows[start : start + BATCH])
            for key in totals:
                totals[key] += getattr(result, key)
            problems += [
                {**p.model_dump(mode="json", by_alias=True), "index": p.index + start}
                for p in result.problems
            ]
    if as_json:
        emit_json({**totals, "problems": problems})
    else:
        typer.echo(
            f"{totals['stored']} of {totals['received']} actuals stored, {totals['duplicate']} duplicates, "
            f"{totals['rejected']} refused"
        )
        for p in problems[:SHOWN_PROBLEMS]:
            typer.echo(f"  row {p['index'] + 2}: {p['outcome']}: {p['reason']}")  # +2: header, 1-based
        if len(problems) > SHOWN_PROBLEMS:
            typer.echo(f"  ... and {len(problems) - SHOWN_PROBLEMS} more (--json lists them all)")
    if totals["rejected"]:
        raise typer.Exit(1)


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def accuracy(
    deployment: Annotated[str, typer.Argument(help="deployment id or name")],
    since: Annotated[str, typer.Option(help="start: a duration back from now (7d, 24h) or ISO 8601")] = "7d",
    resolution: Annotated[str, typer.Option(help="minute, hour or day")] = "day",
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """A deployment's accuracy from the actuals reported, by prediction time."""
    if resolution not in ("minute", "hour", "day"):
        fail(f"--resolution {resolution!r}: expected minute, hour or day")
    now = dt.datetime.now(dt.UTC)
    try:
        start = parse_since(since, now)
    except ValueError as exc:
        fail(str(exc))
    with client(url, token) as service:
        result = service.accuracy(
            deployment_id(service, deployment), since=start, until=now, resolution=resolution
        )
    if as_json:
        emit_json(result)
        return
    typer.echo(
        f"Accuracy of {result.deployment_id} ({result.target_type}): {result.rows} predictions with actuals"
    )
    table(
        "",
        ["metric", "value"],
        [(name, _metric(value)) for name, value in result.metrics.items()],
    )
    headline = HEADLINE.get(result.target_type, "accuracy")
    points = [p.metrics.get(headline) for p in result.timeline]
    if any(v is not None for v in points):
        typer.echo(f"{headline} per {resolution}: {sparkline([v or 0.0 for v in points])}")


@alerts_app.callback()
def alerts(
    ctx: typer.Context,
    deployment: Annotated[str | None, typer.Option("--deployment", "-d", help="only this deployment")] = None,
    state: Annotated[str | None, typer.Option(help="open or cleared")] = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Alerts, newest first (``shipmate alerts rules DEPLOYMENT`` shows and edits the rules)."""
    if ctx.invoked_subcommand is not None:
        return
    if state is not None and state not in ("open", "cleared"):
        fail(f"--state {state!r}: expected open or cleared")
    with client(url, token) as service:
        dep = deployment_id(service, deployment) if deployment else None
        found = service.alerts(deployment_id=dep, state=state)
    if as_json:
        emit_json(found)
        return
    table(
        "Alerts",
        ["id", "deployment", "rule", "state", "opened", "cleared", "message"],
        [
            (
                a.id,
                a.deployment_id,
                a.rule,
                a.state,
                f"{a.opened_at:%Y-%m-%d %H:%M}",
                f"{a.cleared_at:%Y-%m-%d %H:%M}" if a.cleared_at else "",
                a.message,
            )
            for a in found
        ],
    )


@alerts_app.command("rules")
def rules(
    deployment: Annotated[str, typer.Argument(help="deployment id or name")],
    rule: Annotated[str | None, typer.Option("--set", help="the rule to change")] = None,
    threshold: Annotated[float | None, typer.Option(help="bad beyond this")] = None,
    clear_threshold: Annotated[float | None, typer.Option(help="good beyond this (hysteresis)")] = None,
    window_minutes: Annotated[int | None, typer.Option(help="window length")] = None,
    metric: Annotated[str | None, typer.Option(help="accuracy rules: the metric")] = None,
    enabled: Annotated[bool | None, typer.Option("--enable/--disable", help="switch the rule")] = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """A deployment's alert rules; with ``--set RULE`` and new values, change that rule first."""
    changes = {
        "threshold": threshold, "clearThreshold": clear_threshold, "windowMinutes": window_minutes,
        "metric": metric, "enabled": enabled,
    }  # fmt: skip
    if rule is None and any(v is not None for v in changes.values()):
        fail("name the rule to change with --set RULE")
    with client(url, token) as service:
        dep = deployment_id(service, deployment)
        if rule is not None:
            service.update_alert_rule(dep, rule, **changes)
        found = service.alert_rules(dep)
    if as_json:
        emit_json(found)
        return
    table(
        f"Alert rules of {dep}",
        ["rule", "kind", "metric", "threshold", "clears at", "window", "enabled", "last value"],
        [
            (
                r.name,
                r.kind,
                r.metric or "",
                f"{r.threshold:g}",
                f"{r.clear_threshold:g}",
                f"{r.window_minutes} min",
                "yes" if r.enabled else "no",
                _metric(r.last_value),
            )
            for r in found
        ],
    )
