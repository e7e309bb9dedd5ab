"""Shared fixtures for the plugin SDK tests: small factories for config files and plugin files."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def action_config(
    *,
    deployment_id: str = "dep-1",
    model_id: str = "model-A",
    artifact: str | None = None,
    pe_deployments: list[Any] | None = None,
    plugin_config: dict[str, Any] | None = None,
    with_deployment: bool = True,
    **deployment_overrides: Any,
) -> dict[str, Any]:
    """An action config in the package's shape (what Shipmate's agent writes)."""
    config: dict[str, Any] = {
        "pluginConfig": plugin_config
        if plugin_config is not None
        else {
            "MLOPS_BOSUN_PRED_ENV_TYPE": "ExternalCommand",
            "MLOPS_BOSUN_PRED_ENV_PLATFORM": "os",
            "MLOPS_BOSUN_PRED_ENV_ID": "pe-1",
            "MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING": False,
            "MLOPS_BOSUN_MONITORING_URL": "http://127.0.0.1:9",
        },
        "peInfo": {
            "id": "pe-1",
            "name": "test-pe",
            "deployments": pe_deployments or [],
            "keyValueConfig": {},
        },
    }
    if with_deployment:
        deployment: dict[str, Any] = {
            "id": deployment_id,
            "name": deployment_id,
            "modelId": model_id,
            "modelExecutionType": "dedicated",
            "keyValueConfig": {"key1": "value1"},
        }
        if artifact is not None:
            deployment["modelArtifact"] = artifact
        deployment.update(deployment_overrides)
        config["deploymentInfo"] = deployment
    return config


@pytest.fixture
def make_action_config() -> Callable[..., dict[str, Any]]:
    return action_config


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[[str, Any], Path]:
    def write(name: str, content: Any) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content), encoding="utf-8")
        return path

    return write


@pytest.fixture
def write_plugin(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """Write a plugin module under tmp_path; its module name is removed from sys.modules afterwards."""
    names: list[str] = []

    def write(relative: str, source: str) -> Path:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        names.append(os.path.splitext(path.name)[0])
        return path

    saved_path = list(sys.path)
    yield write
    for name in names:
        sys.modules.pop(name, None)
    sys.path[:] = saved_path


@pytest.fixture
def filesystem_config(tmp_path: Path) -> Path:
    base = tmp_path / "deployments"
    base.mkdir()
    path = tmp_path / "plugin.filesystem.conf.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "baseDir": str(base),
                "deploymentDirPrefix": "deployment_",
                "deploymentInfoFile": "config.yml",
                "deploymentPredictionBaseUrl": "http://127.0.0.1:8080",
            }
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def run_in_process() -> Iterator[Callable[[list[str]], int]]:
    """Call the runner's ``main`` in this process, restoring logging and signal handlers afterwards."""
    import logging
    import signal

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    sigterm = signal.getsignal(signal.SIGTERM)

    def run(argv: list[str]) -> int:
        from shipmate.plugin.runner import main

        return main(argv)

    yield run
    import shipmate.plugin.runner as runner_module

    runner_module._logging_configured = False
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    signal.signal(signal.SIGTERM, sigterm)


def runner_command() -> list[str]:
    """The installed ``bosun-plugin-runner`` script of this interpreter, else the module."""
    script = Path(sys.executable).parent / "bosun-plugin-runner"
    return [str(script)] if script.exists() else [sys.executable, "-m", "shipmate.plugin.runner"]


@pytest.fixture
def runner() -> list[str]:
    return runner_command()
