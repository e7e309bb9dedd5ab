"""``shipmate model push|list|show|pull``: model packages on the service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shipmate.cli._common import (
    DEFAULT_URL,
    Json,
    Quiet,
    Token,
    Url,
    client,
    details,
    emit_json,
    fail,
    progress,
    table,
)

model_app = typer.Typer(help="Model packages: push, list, show, pull.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")


def _manifest_rows(manifest: dict[str, Any]) -> list[tuple[str, Any]]:
    """The manifest facts a person checks after a push (the rest is in ``model show --json``)."""
    features = manifest.get("features") or []
    return [
        ("target", f"{manifest.get('targetType')} {manifest.get('targetName') or ''}".strip()),
        ("class labels", manifest.get("classLabels")),
        (
            "features",
            ", ".join(str(f.get("name")) for f in features[:12]) + (" …" if len(features) > 12 else ""),
        ),
        ("created", manifest.get("createdAt")),
    ]


@model_app.command("push")
def model_push(
    file: Annotated[Path, typer.Argument(help=".mlpkg file")],
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Upload a model package (streamed, with a progress bar)."""
    if not file.is_file():
        fail(f"{file}: no such file (expected a .mlpkg made by shipmate package build)")
    with client(url, token) as made, progress(f"uploading {file.name}") as advance:
        package = made.upload_model_package(file, progress=advance)
    if quiet:
        typer.echo(package.id)
        return
    if as_json:
        emit_json(package)
        return
    summary = package.model_dump(mode="json", by_alias=True, exclude={"manifest"})
    table(
        f"model package {package.id}",
        ["field", "value"],
        [*summary.items(), *_manifest_rows(package.manifest)],
    )


@model_app.command("list")
def model_list(
    name: Annotated[str | None, typer.Option(help="only this package name")] = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """List model packages, newest first."""
    with client(url, token) as made:
        packages = made.list_model_packages(name=name, limit=1000)
    if as_json:
        emit_json(packages)
        return
    table(
        "model packages",
        ["id", "name", "version", "framework", "target", "size", "sha256", "created"],
        [
            (p.id, p.name, p.version, p.framework, p.target_type, p.size, p.sha256[:12], p.created_at)
            for p in packages
        ],
    )


@model_app.command("show")
def model_show(package_id: str, url: Url = DEFAULT_URL, token: Token = "", as_json: Json = False) -> None:
    """Show one model package with its manifest."""
    with client(url, token) as made:
        package = made.get_model_package(package_id)
    emit_json(package) if as_json else details(f"model package {package.id}", package)


@model_app.command("pull")
def model_pull(
    package_id: str,
    dest: Annotated[Path, typer.Argument(help="file to write")],
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Download a model package (verified against its SHA-256)."""
    if not dest.parent.is_dir():
        fail(f"{dest}: the directory {dest.parent} does not exist")
    with client(url, token) as made, progress(f"downloading {package_id}") as advance:
        sha = made.download_model_package(package_id, dest, progress=advance)
    if as_json:
        emit_json({"id": package_id, "path": str(dest), "sha256": sha})
    else:
        typer.echo(f"{dest} sha256={sha}")
