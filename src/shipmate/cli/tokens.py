"""``shipmate token create|list|revoke``: API tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from shipmate.cli._common import DEFAULT_URL, Json, Token, Url, client, details, emit_json, environment, table

token_app = typer.Typer(help="API tokens: create, list, revoke.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    kind: Annotated[str, typer.Option(help="agent (bound to one environment) or admin")] = "agent",
    env: Annotated[str | None, typer.Option("--env", help="environment id or name (agent tokens)")] = None,
    name: Annotated[str | None, typer.Option(help="label to recognise it by")] = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Create a token. The secret is printed once and never again."""
    with client(url, token) as made:
        env_id = environment(made, env).id if env else None
        info, secret = made.create_token(kind, env_id, name=name)
    if as_json:
        emit_json({"token": info, "secret": secret})
        return
    details(f"token {info.id}", info)
    typer.echo(f"secret (shown once, store it now): {secret}")


@token_app.command("list")
def token_list(
    include_revoked: Annotated[bool, typer.Option("--all", help="include revoked tokens")] = False,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """List tokens (prefixes only; secrets are never stored)."""
    with client(url, token) as made:
        tokens = made.list_tokens(include_revoked=include_revoked)
    if as_json:
        emit_json(tokens)
        return
    table(
        "tokens",
        ["id", "name", "kind", "environment", "prefix", "created", "revoked"],
        [
            (t.id, t.name, t.kind, t.environment_id, t.prefix + "*******", t.created_at, t.revoked_at)
            for t in tokens
        ],
    )


@token_app.command("revoke")
def token_revoke(token_id: str, url: Url = DEFAULT_URL, token: Token = "", as_json: Json = False) -> None:
    """Revoke a token; it stops working at once."""
    with client(url, token) as made:
        info = made.revoke_token(token_id)
    emit_json(info) if as_json else typer.echo(f"revoked {info.id} ({info.prefix}*******)")
