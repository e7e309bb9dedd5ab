"""``shipmate demo --once``: the README's first command, end to end, in a temporary data directory."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.slow

SHIPMATE = [sys.executable, "-c", "from shipmate.cli.main import main; main()"]


def test_demo_once_runs_the_whole_loop(tmp_path):
    data = tmp_path / "demo"
    done = subprocess.run(
        [
            *SHIPMATE,
            "demo",
            "--data-dir",
            str(data),
            "--port",
            "0",
            "--predict-port",
            "0",
            "--once",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=280,
        start_new_session=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert len(summary["predictions"]) == 3
    assert set(summary["predictions"]) <= {"setosa", "versicolor", "virginica"}
    deployment_id = summary["deploymentId"]
    assert summary["predictionUrl"].endswith(f"/{deployment_id}/predict")
    assert summary["serviceUrl"].startswith("http://127.0.0.1:")
    # the filesystem environment holds the deployment the prediction server answered from
    info = yaml.safe_load((data / "deployments" / f"deployment_{deployment_id}" / "config.yml").read_text())
    assert info["deployment_id"] == deployment_id and info["model_id"] == summary["modelPackageId"]
    assert "ready" in done.stderr
    # every part was stopped cleanly: the agent ran plugin_stop on SIGTERM
    assert "plugin_stop: passing" in (data / "logs" / "agent.log").read_text()
    assert oct((data / "admin-token").stat().st_mode & 0o777) == "0o600"
    # after the clean predictions, a batch with petal length moved up: the service saw the drift
    assert summary["drift"]["status"] == "red", summary["drift"]
    assert "petal length (cm)" in summary["drift"]["atRisk"], summary["drift"]
