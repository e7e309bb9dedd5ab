"""The ``shipmate`` command: one Typer app; each area registers its own commands.

Every area module exposes ``register(app)`` and imports its heavy dependencies
inside the commands, so ``shipmate --help`` stays quick.
"""

from __future__ import annotations

import importlib
import importlib.util

import typer

AREAS = (
    "shipmate.cli.plugin",  # shipmate plugin run|check|list
    "shipmate.cli.server",  # shipmate server
    "shipmate.cli.resources",  # shipmate model|env|deploy|deployments|events|token
    "shipmate.cli.agent",  # shipmate agent
    "shipmate.cli.serving",  # shipmate serve
    "shipmate.cli.package",  # shipmate package build|inspect|verify
    "shipmate.cli.demo",  # shipmate demo
    "shipmate.cli.monitoring",  # shipmate health|monitor
)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="shipmate",
        help="Shipmate: deploy models to your own infrastructure and keep them running.",
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
