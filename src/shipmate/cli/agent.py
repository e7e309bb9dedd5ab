"""``shipmate agent``: run the management agent for one prediction environment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("agent")(agent)


def agent(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", envvar="SHIPMATE_AGENT_CONFIG", help="agent.yaml (camelCase keys)"),
    ] = None,
    service_url: Annotated[str | None, typer.Option("--service-url", help="overrides serviceUrl")] = None,
    environment_id: Annotated[
        str | None, typer.Option("--environment-id", help="overrides environmentId")
    ] = None,
    work_dir: Annotated[Path | None, typer.Option("--work-dir", help="overrides workDir")] = None,
    check: Annotated[
        bool, typer.Option("--check", help="validate the configuration and the plugin, then exit")
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning, error")] = "info",
    log_format: Annotated[str, typer.Option("--log-format", help="text or json")] = "text",
) -> None:
    """Watch the service for one prediction environment and carry every change out through a plugin.

    Every setting can come from the YAML file or from SHIPMATE_AGENT_* variables (nested keys with
    "__", e.g. SHIPMATE_AGENT_PLUGIN__NAME); the token from MLOPS_API_TOKEN or SHIPMATE_TOKEN.
    SIGTERM stops it cleanly: no new actions, in-flight ones finish, plugin_stop, exit 0.
    """
    import logging

    from shipmate.agent.app import check_plugin, run_agent
    from shipmate.agent.config import AgentConfigError, load_settings
    from shipmate.plugin.errors import PluginError

    _configure_logging(log_level, log_format)
    try:
        settings = load_settings(
            config,
            service_url=service_url,
            environment_id=environment_id,
            work_dir=work_dir,
            token=_file_token_over_shell_token(config),
        )
        check_plugin(settings)
    except AgentConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except (PluginError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if settings.token is None:
        typer.echo(
            "error: agent config: key 'token': missing (set MLOPS_API_TOKEN, SHIPMATE_TOKEN or "
            "SHIPMATE_AGENT_TOKEN to the agent's token)",
            err=True,
        )
        raise typer.Exit(2)
    if check:
        problem = contact_problem(settings.service_url, settings.token_text(), settings.environment_id)
        if problem:
            typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(1)
        plugin = settings.plugin.command or settings.plugin.name
        typer.echo(
            f"ok: environment {settings.environment_id} at {settings.service_url} accepts the token; "
            f"plugin {plugin}"
        )
        return
    if settings.metrics.enabled:
        from shipmate.cli._ports import port_problem

        busy = port_problem(settings.metrics.host, settings.metrics.port)
        if busy:
            typer.echo(
                f"error: metrics.port {settings.metrics.port}: {busy} (another agent on this host? "
                "set metrics.port in the agent config, or SHIPMATE_AGENT_METRICS__PORT; 0 picks a free port)",
                err=True,
            )
            raise typer.Exit(2)
    logging.getLogger(__name__).info(
        "starting agent for environment %s at %s", settings.environment_id, settings.service_url
    )
    raise typer.Exit(run_agent(settings))


def _file_token_over_shell_token(config: Path | None) -> str | None:
    """The config file's own token when the only other one is the shell's SHIPMATE_TOKEN.

    SHIPMATE_TOKEN is also what the resource commands use, usually an admin token; a
    file written for this agent (``shipmate init``) names its own, narrower token.
    """
    import os

    import yaml

    if config is None or not config.is_file():
        return None
    if any(os.environ.get(name) for name in ("SHIPMATE_AGENT_TOKEN", "MLOPS_API_TOKEN")):
        return None
    try:
        raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return None  # load_settings reports it with the line and column
    token = raw.get("token") if isinstance(raw, dict) else None
    return token if isinstance(token, str) and token.strip() else None


def contact_problem(service_url: str, token: str, environment_id: str) -> str | None:
    """Ask the service what an agent with this token will meet; None when all is well."""
    from shipmate.cli._common import service_problem
    from shipmate.client import Forbidden, NotFound, ServiceUnavailable, ShipmateClient, Unauthorized

    try:
        with ShipmateClient(service_url, token, timeout=10) as client:
            client.get_environment(environment_id)
    except ServiceUnavailable as exc:
        return f"serviceUrl {service_url}: cannot reach the service ({exc.message})"
    except Unauthorized:
        return (
            f"the service at {service_url} refused the token (unknown or revoked): set MLOPS_API_TOKEN to an "
            f"agent token for {environment_id} (shipmate token create --env {environment_id})"
        )
    except Forbidden:
        return (
            f"the token is not allowed to read environment {environment_id}: it belongs to another "
            "environment; create one with shipmate token create --env " + environment_id
        )
    except NotFound:
        return service_problem(service_url) or (
            f"environmentId {environment_id}: no such environment at {service_url} (shipmate env list)"
        )
    return None


def _configure_logging(level: str, fmt: str) -> None:
    import json
    import logging

    class _Json(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return json.dumps(
                {
                    "time": self.formatTime(record),
                    "level": record.levelname,
                    "logger": record.name,
                    "message": record.getMessage(),
                    **({"error": self.formatException(record.exc_info)} if record.exc_info else {}),
                }
            )

    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(_Json())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)
