"""The ``shipmate`` command: one Typer app; each area registers its own commands.

Every area module exposes ``register(app)`` and imports its heavy dependencies
inside the commands, so ``shipmate --help`` stays quick.

A mistake never ends in a traceback: commands turn the errors they expect into
one ``error:`` line, and ``_Group`` turns any other exception into one line too
(naming its type and message); ``shipmate --debug COMMAND`` shows the traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

AREAS = (
    "shipmate.cli.plugin",  # shipmate plugin run|check|list
    "shipmate.cli.server",  # shipmate server, shipmate wait
    "shipmate.cli.models",  # shipmate model push|list|show|pull
    "shipmate.cli.environments",  # shipmate env create|list|show|update|delete
    "shipmate.cli.deployments",  # shipmate deploy, shipmate deployments ...
    "shipmate.cli.events",  # shipmate events
    "shipmate.cli.tokens",  # shipmate token create|list|revoke
    "shipmate.cli.init",  # shipmate init
    "shipmate.cli.agent",  # shipmate agent
    "shipmate.cli.serving",  # shipmate serve
    "shipmate.cli.package",  # shipmate package build|inspect|verify
    "shipmate.cli.demo",  # shipmate demo
    "shipmate.cli.monitoring",  # shipmate health|monitor
    "shipmate.cli.accuracy",  # shipmate actuals upload, accuracy, alerts [rules]
    "shipmate.cli.drift",  # shipmate drift
)
DEBUG_ENV = "SHIPMATE_DEBUG"


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0", "false")


class _Group(TyperGroup):
    """Runs a command; an exception it did not expect becomes one line and exit code 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (TyperException, typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # the safety net: commands name the errors they expect themselves
            if debugging():
                raise
            text = str(exc).strip().splitlines()
            reason = text[0] if text else type(exc).__name__
            typer.echo(f"error: {reason} ({type(exc).__name__}; run with --debug for details)", err=True)
            raise typer.Exit(1) from None


def _root(
    debug: Annotated[
        bool, typer.Option("--debug", envvar=DEBUG_ENV, help="show tracebacks (for bug reports)")
    ] = False,
) -> None:
    """Shipmate: deploy models to your own infrastructure and keep them running."""
    if debug:
        os.environ[DEBUG_ENV] = "1"


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="shipmate",
        cls=_Group,
        callback=_root,
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,
    )
    for name in AREAS:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(app)
    return app


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()
