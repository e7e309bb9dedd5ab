"""``shipmate serve``: run the portable prediction server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shipmate.cli._ports import port_problem


def serve(
    model: Annotated[
        Path | None, typer.Option("--model", help="A .mlpkg to serve (single-model mode).")
    ] = None,
    deployments_dir: Annotated[
        Path | None, typer.Option("--deployments-dir", help="Deployments directory (multi-model mode).")
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(help="Address to listen on (env SHIPMATE_SERVE_HOST).", show_default="127.0.0.1"),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (env SHIPMATE_SERVE_PORT).", show_default="8080")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes (env PREDICTION_API_WORKERS).", show_default="one per CPU"),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="SHIPMATE_SERVE_API_KEY",
            show_envvar=True,
            help="Enables upload/delete and requires this key for them.",
        ),
    ] = None,
    require_key_for_predictions: Annotated[
        bool | None,
        typer.Option("--require-key-for-predictions", help="Require the key for predictions too."),
    ] = None,
    allow_pickled_uploads: Annotated[
        bool | None,
        typer.Option(
            "--allow-pickled-uploads",
            help="Accept uploads of packages that run code when loaded (all but ONNX, XGBoost, LightGBM).",
        ),
    ] = None,
    max_body_mb: Annotated[
        float | None, typer.Option(help="Largest request body, MB.", show_default="50")
    ] = None,
    fanout: Annotated[
        bool | None,
        typer.Option(
            "--fanout/--no-fanout",
            help="Score large batches on idle sibling workers too (needs --workers > 1).",
            show_default="on",
        ),
    ] = None,
    compile_models: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile",
            help="Serve scikit-learn models through compiled scorers once proven equal (docs/serving.md).",
            show_default="on",
        ),
    ] = None,
    poll_interval: Annotated[
        float | None, typer.Option(help="Deployments-dir scan interval, s.", show_default="1")
    ] = None,
    work_dir: Annotated[
        Path | None, typer.Option(help="Where packages are unpacked.", show_default="a temporary directory")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="Log level.", show_default="info")] = None,
    monitor_settings: Annotated[
        str | None,
        typer.Option(
            "--monitor-settings",
            help="Record predictions for monitoring, e.g. 'spooler_type=FILESYSTEM;directory=/tmp/ta' (also "
            "PREDICTION_API_MONITORING_SETTINGS, MONITOR_SETTINGS, MLOPS_* variables; docs/monitoring.md).",
        ),
    ] = None,
) -> None:
    """Serve model packages over HTTP (DataRobot PPS-compatible, plus Open Inference Protocol v2)."""
    from pydantic import ValidationError

    from shipmate.serving.server import run
    from shipmate.serving.settings import MIB, ServeSettings

    given: dict[str, Any] = {
        "model": model,
        "deployments_dir": deployments_dir,
        "host": host,
        "port": port,
        "workers": workers,
        "api_key": api_key,
        "require_key_for_predictions": require_key_for_predictions,
        "allow_pickled_uploads": allow_pickled_uploads,
        "max_body_bytes": int(max_body_mb * MIB) if max_body_mb is not None else None,
        "fanout": fanout,
        "compile": compile_models,
        "poll_interval_s": poll_interval,
        "work_dir": work_dir,
        "log_level": log_level,
        "monitor_settings": monitor_settings,
    }
    try:
        settings = ServeSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            typer.echo(f"error: {field}: {err['msg']}", err=True)
        raise typer.Exit(2) from None
    if settings.model is not None and not settings.model.is_file():
        typer.echo(f"error: --model {settings.model}: no such file", err=True)
        raise typer.Exit(2)
    import os

    from shipmate.monitoring.settings import SettingsError
    from shipmate.monitoring.settings import monitor_settings as check_monitoring

    try:
        check_monitoring(os.environ, settings.monitor_settings, multi_model=settings.multi_model)
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    problem = port_problem(settings.host, settings.port)
    if problem:
        typer.echo(
            f"error: --port {settings.port}: {problem}; choose another with --port or SHIPMATE_SERVE_PORT",
            err=True,
        )
        raise typer.Exit(2)
    run(settings)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
