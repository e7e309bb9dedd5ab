"""``shipmate init``: a prediction environment, its agent token and a working agent config, in one step.

The config names the environment by its id and carries the token (the file is
made readable by its owner only), and every path in it is absolute, so the
agent runs from any directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from shipmate.cli._common import DEFAULT_URL, Json, Token, Url, client, emit_json, fail


def register(app: typer.Typer) -> None:
    app.command("init")(init)


def agent_config(
    service_url: str,
    environment_id: str,
    token: str,
    plugin: dict[str, Any],
    work_dir: Path,
    metrics_port: int,
) -> dict[str, Any]:
    """Pure: the agent.yaml content (camelCase keys, as docs/agent.md documents them)."""
    return {
        "serviceUrl": service_url,
        "environmentId": environment_id,
        "token": token,
        "plugin": plugin,
        "workDir": str(work_dir),
        "metrics": {"port": metrics_port},
    }


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def init(
    name: Annotated[
        str, typer.Argument(help="the prediction environment's name (created, or reused if it exists)")
    ],
    platform: Annotated[str, typer.Option(help="filesystem, docker or kubernetes")] = "filesystem",
    config: Annotated[Path, typer.Option("--config", "-c", help="the agent config to write")] = Path(
        "agent.yaml"
    ),
    deployments_dir: Annotated[
        Path, typer.Option("--deployments-dir", help="filesystem: where deployments are written (created)")
    ] = Path("./shipmate-deployments"),
    prediction_url: Annotated[
        str, typer.Option("--prediction-url", help="filesystem: the prediction server over that directory")
    ] = "http://127.0.0.1:8080",
    metrics_port: Annotated[
        int, typer.Option("--metrics-port", help="the agent's /metrics and /healthz port (0 = any free one)")
    ] = 9464,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing config file")] = False,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Create (or reuse) an environment, create an agent token for it, write the agent config."""
    import yaml

    config = config.resolve()
    if config.exists() and not force:
        fail(f"--config {config}: already exists (pass --force to overwrite it)")
    if not config.parent.is_dir():
        fail(f"--config {config}: the directory {config.parent} does not exist")
    if platform not in ("filesystem", "docker", "kubernetes"):
        fail(f"--platform {platform!r}: expected filesystem, docker or kubernetes")
    with client(url, token) as made:
        environment = next((e for e in made.list_environments() if e.name == name), None)
        reused = environment is not None
        if environment is None:
            environment = made.create_environment(name, platform, description=f"made by shipmate init {name}")
        elif environment.platform != platform:
            fail(f"environment {name} exists with platform {environment.platform}, not {platform}")
        info, secret = made.create_token("agent", environment.id, name=f"agent for {name}")
    plugin: dict[str, Any] = {"name": platform}
    if platform == "filesystem":
        base = deployments_dir.resolve()
        base.mkdir(parents=True, exist_ok=True)
        private = config.with_name(f"{config.stem}.filesystem.yaml")
        private.write_text(
            yaml.safe_dump(
                {
                    "baseDir": str(base),
                    "deploymentDirPrefix": "deployment_",
                    "deploymentInfoFile": "config.yml",
                    "deploymentPredictionBaseUrl": prediction_url.rstrip("/"),
                    # ready only once the prediction server there serves the model
                    "waitForPredictionServer": 30,
                },
                sort_keys=False,
            ),
            encoding="utf-8",
        )
        plugin["privateConfig"] = str(private)
    content = agent_config(
        url.rstrip("/"), environment.id, secret, plugin, config.parent / "shipmate-agent", metrics_port
    )
    _write_private(
        config,
        "# written by shipmate init; holds the agent's token\n" + yaml.safe_dump(content, sort_keys=False),
    )
    if as_json:
        emit_json(
            {"environmentId": environment.id, "reused": reused, "tokenId": info.id, "config": str(config)}
        )
        return
    verb = "reused" if reused else "created"
    typer.echo(f"{verb} environment {environment.id} ({name}, {platform})")
    typer.echo(f"wrote {config} (agent token {info.prefix}*******, readable only by you)")
    typer.echo(f"next: shipmate agent --config {config.name}")
