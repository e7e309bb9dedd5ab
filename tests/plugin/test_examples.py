"""The documentation's commands run verbatim against examples/sample_plugin."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
README = REPO / "examples" / "sample_plugin" / "README.md"
REFERENCE_DOCS = "SHIPMATE_REFERENCE_DOCS"
"""A directory holding DataRobot's published plugin page (``spec/environment-plugins.md``), when a
developer has it: not part of this repository, so the test comparing with it skips without it."""


def documented_commands(source: Path = README) -> list[str]:
    """The ``bosun-plugin-runner`` invocations printed in a page (by default the example's README)."""
    commands, current = [], []
    for line in source.read_text().splitlines():
        stripped = line.strip()
        if (stripped.startswith("bosun-plugin-runner") and stripped.endswith("\\")) or current:
            current.append(stripped.rstrip("\\").strip())
            if not stripped.endswith("\\"):
                commands.append(" ".join(current))
                current = []
    return commands


@pytest.fixture
def sample_dir(tmp_path: Path) -> Path:
    """A copy of the example whose config points at a model file of this test's own."""
    target = tmp_path / "sample_plugin"
    shutil.copytree(REPO / "examples" / "sample_plugin", target)
    model = tmp_path / "model-A.txt"
    model.write_text("model A")
    config = target / "sample_configs" / "action_config_deployment_1_model_A.yaml"
    config.write_text(config.read_text().replace("/tmp/model-A.txt", str(model)))
    return target


def run(command: str, cwd: Path, status: Path) -> subprocess.CompletedProcess[str]:
    argv = command.replace("/tmp/status.yaml", str(status)).split()
    script = Path(sys.executable).parent / argv[0]
    argv[0] = str(script) if script.exists() else argv[0]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, env=dict(os.environ))


def test_the_documented_commands_run_verbatim(sample_dir: Path, tmp_path: Path) -> None:
    commands = documented_commands()
    # DataRobot's page prints the first two; the README adds the plugin_start run
    assert len(commands) == 3 and all("sample_plugin/sample_plugin" in c for c in commands)
    first = run(commands[2], sample_dir, tmp_path / "first.yaml")
    assert first.returncode == 0, first.stderr
    assert yaml.safe_load((tmp_path / "first.yaml").read_text())["status"] == "passing"
    status = tmp_path / "status.yaml"
    start = next(c for c in commands if "deployment_start" in c)
    pe_status = next(c for c in commands if "pe_status" in c)
    started = run(start, sample_dir, status)
    assert started.returncode == 0, started.stderr
    assert "-- action status --" in started.stdout
    assert yaml.safe_load(status.read_text())["status"] == "passing"
    checked = run(pe_status, sample_dir, status)
    assert checked.returncode == 0, checked.stderr
    written = yaml.safe_load(status.read_text())
    assert written["status"] == "passing"
    assert written["data"]["deploymentsStatus"]["deployment-1"]["status"] == "passing"
    assert written["data"]["deploymentsStatus"]["deployment-2"]["status"] == "failing"


def test_the_installed_module_name_works(sample_dir: Path, tmp_path: Path) -> None:
    """``--plugin sample_plugin``, as the agent's command prefix writes it, once importable."""
    status = tmp_path / "status.yaml"
    command = (
        "bosun-plugin-runner --plugin sample_plugin --action plugin_start"
        " --config sample_configs/action_config_pe_status_only.yaml"
        " --private-config sample_configs/sample_plugin_config.yaml --status-file /tmp/status.yaml"
    )
    result = run(command, sample_dir, status)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(status.read_text())["status"] == "passing"


def test_the_example_readme_prints_the_published_pages_commands() -> None:
    """The example's README and DataRobot's page print the same runner commands (when the page is here)."""
    where = os.environ.get(REFERENCE_DOCS)
    page = Path(where) / "spec" / "environment-plugins.md" if where else None
    if page is None or not page.is_file():
        pytest.skip(
            f"DataRobot's plugin page is not here (set {REFERENCE_DOCS} to the directory that holds it)"
        )
    assert documented_commands(page) == documented_commands()[:2]
