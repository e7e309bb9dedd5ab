"""Compatibility with DataRobot's own ``datarobot-bosun`` package, run side by side.

The package is proprietary: it is installed only in a separate virtualenv under
``.cache/`` and only its runner is executed (its code is never read into Shipmate).
The same inputs go through both runners and the status files must agree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipmate.plugin.config import ActionConfig
from shipmate.plugin.info import DeploymentInfo
from shipmate.plugin.status import ActionStatusInfo

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".cache" / "venv-bosun"
PEER = VENV / "bin" / "bosun-plugin-runner"


@pytest.fixture(scope="module")
def peer_runner() -> Path:
    """DataRobot's runner, from a virtualenv built on first use (skipped when it cannot be built)."""
    if not PEER.exists():
        try:
            subprocess.run(
                [sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True, timeout=300
            )
            subprocess.run(
                [str(VENV / "bin" / "pip"), "install", "-q", "datarobot-bosun"],
                check=True,
                capture_output=True,
                timeout=900,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            shutil.rmtree(VENV, ignore_errors=True)
            pytest.skip(f"DataRobot's datarobot-bosun could not be installed in {VENV}: {exc}")
    return PEER


def ours() -> list[str]:
    script = Path(sys.executable).parent / "bosun-plugin-runner"
    return [str(script)] if script.exists() else [sys.executable, "-m", "shipmate.plugin.runner"]


def run(runner: list[str], *args: str, cwd: Path | None = None) -> dict[str, Any]:
    status = Path(args[args.index("--status-file") + 1])
    if status.exists():
        status.unlink()
    env = {k: v for k, v in os.environ.items() if k != "MLOPS_API_TOKEN"}
    result = subprocess.run([*runner, *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)
    assert status.exists(), f"{runner[0]} wrote no status file: {result.stdout}\n{result.stderr}"
    ActionStatusInfo.read(str(status))  # Shipmate reads the peer's status files
    return yaml.safe_load(status.read_text())


def action_config(deployment_id: str, model_id: str, artifact: Path, **extra: Any) -> dict[str, Any]:
    deployment = {
        "id": deployment_id,
        "name": deployment_id,
        "modelId": model_id,
        "modelExecutionType": "dedicated",
        "modelArtifact": str(artifact),
        "keyValueConfig": {"key1": "value1"},
        **extra,
    }
    return {
        "pluginConfig": {
            "MLOPS_BOSUN_PRED_ENV_TYPE": "ExternalCommand",
            "MLOPS_BOSUN_PRED_ENV_PLATFORM": "os",
            "MLOPS_BOSUN_PRED_ENV_ID": "pe-1",
            "MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING": False,
            "MLOPS_BOSUN_MONITORING_URL": "http://127.0.0.1:9",
        },
        "peInfo": {"id": "pe-1", "name": "pe", "deployments": [deployment], "keyValueConfig": {}},
        "deploymentInfo": deployment,
    }


def test_filesystem_lifecycle_gives_equivalent_status_files(peer_runner: Path, tmp_path: Path) -> None:
    model_a, model_b = tmp_path / "model_a.mlpkg", tmp_path / "model_b.mlpkg"
    model_a.write_bytes(b"A" * 1000)
    model_b.write_bytes(b"B" * 1000)
    configs = {
        "start": action_config("dep-1", "m-a", model_a),
        "replace": action_config("dep-1", "m-a", model_b, newModelId="m-b"),
    }
    for name, content in configs.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(content))
    steps = [
        ("plugin_start", "start"),
        ("deployment_start", "start"),
        ("deployment_status", "start"),
        ("deployment_list", "start"),
        ("pe_status", "start"),
        ("deployment_replace_model", "replace"),
        ("deployment_status", "replace"),
        ("deployment_stop", "start"),
        ("deployment_stop", "start"),
        ("deployment_list", "start"),
        ("plugin_stop", "start"),
    ]
    results: dict[str, list[dict[str, Any]]] = {}
    for side, runner in (("peer", [str(peer_runner)]), ("ours", ours())):
        base = tmp_path / side
        base.mkdir()
        private = tmp_path / f"{side}.fs.yaml"
        private.write_text(
            yaml.safe_dump(
                {
                    "baseDir": str(base),
                    "deploymentDirPrefix": "deployment_",
                    "deploymentInfoFile": "config.yml",
                    "deploymentPredictionBaseUrl": "http://127.0.0.1:8080",
                }
            )
        )
        results[side] = []
        for action, config in steps:
            status = run(
                runner,
                "--plugin",
                "filesystem",
                "--config",
                str(tmp_path / f"{config}.yaml"),
                "--private-config",
                str(private),
                "--action",
                action,
                "--status-file",
                str(tmp_path / f"{side}.status.yaml"),
            )
            results[side].append(status)
            if action == "deployment_start":
                info = yaml.safe_load((base / "deployment_dep-1" / "config.yml").read_text())
                assert {"deployment_id": "dep-1", "model_id": "m-a"}.items() <= info.items()
                assert (base / "deployment_dep-1" / "model_a.mlpkg").read_bytes() == model_a.read_bytes()
    for (action, _), peer, mine in zip(steps, results["peer"], results["ours"], strict=True):
        assert (mine["status"], mine["state"]) == (peer["status"], peer["state"]), action
        assert sorted(mine) == sorted(peer) == ["data", "duration", "msg", "state", "status", "timestamp"]
        if action == "deployment_start":
            assert "predictionUrl" in mine["data"] and "predictionUrl" in peer["data"]
        if action == "deployment_status":
            assert mine["data"]["currentModelId"] == peer["data"]["currentModelId"]
        if action == "pe_status":
            assert mine["data"]["deploymentsStatus"]["dep-1"]["status"] == "passing"
            assert peer["data"]["deploymentsStatus"]["dep-1"]["status"] == "passing"
    listed = [i for i, (action, _) in enumerate(steps) if action == "deployment_list"]
    assert list(results["ours"][listed[0]]["data"]) == list(results["peer"][listed[0]]["data"]) == ["dep-1"]
    assert not results["ours"][listed[1]]["data"] and not results["peer"][listed[1]]["data"]


def test_the_agents_action_config_is_accepted_by_datarobots_runner(peer_runner: Path, tmp_path: Path) -> None:
    """What Shipmate's agent writes with ActionConfig.write runs under DataRobot's runner too."""
    model = tmp_path / "model.mlpkg"
    model.write_bytes(b"model")
    config = ActionConfig(
        plugin_config={
            "MLOPS_BOSUN_PRED_ENV_TYPE": "ExternalCommand",
            "MLOPS_BOSUN_PRED_ENV_PLATFORM": "os",
            "MLOPS_BOSUN_PRED_ENV_ID": "pe-9",
            "MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING": False,
            "MLOPS_BOSUN_MONITORING_URL": "http://127.0.0.1:9",
        },
        deployment_info=DeploymentInfo(id="d-9", model_id="m-9", model_artifact=str(model)),
    )
    path = tmp_path / "action.yaml"
    config.write(str(path))
    (tmp_path / "base").mkdir()
    private = tmp_path / "fs.yaml"
    private.write_text(
        f"baseDir: {tmp_path / 'base'}\ndeploymentDirPrefix: d_\ndeploymentInfoFile: config.yml\n"
        "deploymentPredictionBaseUrl: http://127.0.0.1:8080\n"
    )
    for runner in ([str(peer_runner)], ours()):
        status = run(
            runner,
            *("--plugin", "filesystem", "--config", str(path), "--private-config", str(private)),
            *("--action", "deployment_start", "--status-file", str(tmp_path / "status.yaml")),
        )
        assert (status["status"], status["state"]) == ("passing", "ready"), status


def test_the_datarobot_style_example_runs_under_both_runners(peer_runner: Path, tmp_path: Path) -> None:
    """examples/custom_plugin imports bosun.plugin.*: real under the peer, aliased under Shipmate."""
    plugin = REPO / "examples" / "custom_plugin" / "catalogue_plugin.py"
    model = tmp_path / "model.mlpkg"
    model.write_bytes(b"model")
    config = tmp_path / "action.yaml"
    config.write_text(yaml.safe_dump(action_config("dep-1", "m-1", model)))
    outcomes = {}
    for side, runner in (("peer", [str(peer_runner)]), ("ours", ours())):
        private = tmp_path / f"{side}.yaml"
        private.write_text(f"catalogueFile: {tmp_path / side}.json\n")
        statuses = []
        for action in (
            "plugin_start",
            "deployment_start",
            "deployment_status",
            "deployment_stop",
            "deployment_list",
        ):
            statuses.append(
                run(
                    runner,
                    *("--plugin", str(plugin), "--config", str(config), "--private-config", str(private)),
                    *("--action", action, "--status-file", str(tmp_path / "status.yaml")),
                )
            )
        outcomes[side] = [(s["status"], s["state"]) for s in statuses]
    assert outcomes["ours"] == outcomes["peer"]
    assert outcomes["ours"][:3] == [("passing", None), ("passing", "ready"), ("passing", "ready")]
