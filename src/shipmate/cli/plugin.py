"""``shipmate plugin run|check|list``: the plugin runner, the conformance kit, the plugin catalogue."""

from __future__ import annotations

from typing import Annotated, Any

import typer

plugin_app = typer.Typer(help="Run, check and list management-agent plugins.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(plugin_app, name="plugin")


@plugin_app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def run(ctx: typer.Context) -> None:
    """Run one plugin action: the same flags as bosun-plugin-runner (see --help)."""
    from shipmate.plugin.runner import main

    raise typer.Exit(main(list(ctx.args)))


@plugin_app.command("check")
def check(
    plugin: Annotated[str, typer.Option("--plugin", help="built-in name, module, module:Class or file path")],
    private_config: Annotated[
        str | None, typer.Option("--private-config", help="the plugin's private config file")
    ] = None,
    plugin_config: Annotated[
        str | None, typer.Option("--plugin-config", help="YAML file with the pluginConfig mapping to use")
    ] = None,
    work_dir: Annotated[
        str | None, typer.Option("--work-dir", help="where to put the stand-in model packages")
    ] = None,
    via_runner: Annotated[
        bool,
        typer.Option("--via-runner", help="run every action through bosun-plugin-runner, one process each"),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Drive a plugin through its whole lifecycle and report every contract violation."""
    import json
    import sys

    from shipmate.plugin.config import load_private_config
    from shipmate.plugin.errors import ConfigError
    from shipmate.plugin.testing import check_plugin

    config: dict[str, Any] = {}
    if plugin_config:
        try:
            config = load_private_config(plugin_config)
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    if work_dir:  # made like the kit's own when none is given, so a fresh path just works
        from pathlib import Path

        try:
            Path(work_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            typer.echo(
                f"error: --work-dir {work_dir}: cannot create it ({exc.strerror}); "
                "name a directory you can write to",
                err=True,
            )
            raise typer.Exit(1) from None
    runner = [sys.executable, "-m", "shipmate.plugin.runner"] if via_runner else None
    report = check_plugin(plugin, private_config, config, work_dir=work_dir, runner=runner)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report)
    raise typer.Exit(0 if report.passed else 1)


def _print_report(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"Conformance of plugin {report.plugin}")
    for column in ("", "step", "status", "ms", "violations"):
        table.add_column(column)
    for step in report.steps:
        status = step.result.status.value if step.result else "-"
        table.add_row(
            "[green]ok[/]" if step.ok else "[red]FAIL[/]",
            step.step,
            status,
            f"{step.duration * 1000:.1f}",
            "\n".join(v.problem for v in step.violations),
        )
    console.print(table)
    if report.passed:
        console.print("[green]PASSED[/]: the plugin follows the contract.")
    else:
        console.print(f"[red]FAILED[/]: {len(report.violations)} violation(s).")


@plugin_app.command("list")
def list_plugins(as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False) -> None:
    """The built-in plugins and those installed through the shipmate.plugins entry point group."""
    import json
    from importlib.metadata import entry_points

    from shipmate.plugin.loader import BUILTIN_PLUGINS, ENTRY_POINT_GROUP, builtin_aliases

    aliases = builtin_aliases()
    rows: list[dict[str, Any]] = [
        {"name": name, "target": target, "aliases": aliases[name][:-1], "source": "built-in"}
        for name, target in BUILTIN_PLUGINS.items()
    ]
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in BUILTIN_PLUGINS and BUILTIN_PLUGINS[entry.name] == entry.value:
            continue
        dist = entry.dist.name if entry.dist else "?"
        rows.append(
            {"name": entry.name, "target": entry.value, "aliases": [], "source": f"entry point ({dist})"}
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Plugins")
    for column in ("name", "class", "also answers to", "source"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["name"], row["target"], ", ".join(row["aliases"]), row["source"])
    Console().print(table)
