"""Every agent.yaml in examples/agent/ is valid, and the runnable ones pass ``shipmate agent --check``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from shipmate.agent.config import load_settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "agent"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("agent.*.yaml")), ids=lambda p: p.name)
def test_example_parses(path, monkeypatch):
    monkeypatch.setenv("MLOPS_API_TOKEN", "example-token-0123456789")
    settings = load_settings(path)
    assert settings.environment_id and settings.plugin


@pytest.mark.parametrize("name", ["agent.filesystem.yaml", "agent.command.yaml"])
def test_example_checks(name, e2e):
    repo = EXAMPLES.parents[1]
    done = subprocess.run(
        [*e2e.shipmate, "agent", "--config", str(EXAMPLES / name), "--check"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MLOPS_API_TOKEN": "example-token-0123456789"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: environment e-REPLACE-ME")
