"""Every agent.yaml in examples/agent/ is valid, and the runnable ones pass ``shipmate agent --check``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shipmate.agent.config import AgentConfigError, load_settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "agent"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("agent.*.yaml")), ids=lambda p: p.name)
def test_example_parses(path, monkeypatch):
    monkeypatch.setenv("MLOPS_API_TOKEN", "example-token-0123456789")
    real_id = {}
    if "e-REPLACE-ME" in path.read_text():
        # the example's placeholder is refused, naming the key, until a real id is set
        with pytest.raises(AgentConfigError, match=r"environmentId.*placeholder"):
            load_settings(path)
        real_id = {"environment_id": "e-0123456789"}  # as --environment-id gives it
    settings = load_settings(path, **real_id)
    assert settings.environment_id and settings.plugin


@pytest.mark.parametrize("name", ["agent.filesystem.yaml", "agent.command.yaml"])
def test_example_checks(name, e2e, live_service):
    """``--check`` with the example and a real environment id asks the service, which accepts it."""
    with live_service.admin() as admin:
        environment_id = admin.create_environment("examples", "filesystem").id
    repo = EXAMPLES.parents[1]
    done = subprocess.run(
        [*e2e.shipmate, "agent", "--config", str(EXAMPLES / name), "--check",
         "--service-url", live_service.url, "--environment-id", environment_id],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        env={  # the example runs bosun-plugin-runner, installed beside this Python
            **os.environ,
            "MLOPS_API_TOKEN": e2e.admin_token,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        },
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ok: environment {environment_id} at {live_service.url}")


def test_variables_override_the_files_top_level_keys(monkeypatch):
    """SHIPMATE_AGENT_* beside the same key in the file: the variable wins (it used to be refused)."""
    monkeypatch.setenv("MLOPS_API_TOKEN", "example-token-0123456789")
    monkeypatch.setenv("SHIPMATE_AGENT_ENVIRONMENT_ID", "e-0123456789")
    monkeypatch.setenv("SHIPMATE_AGENT_SERVICE_URL", "http://127.0.0.1:8100")
    settings = load_settings(EXAMPLES / "agent.filesystem.yaml")
    assert settings.environment_id == "e-0123456789"
    assert settings.service_url == "http://127.0.0.1:8100"
