"""The plugin through the SDK's conformance kit and the real ``bosun-plugin-runner``, against the fake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from shipmate.plugin.testing import check_plugin


def _write_private_config(tmp_path: Path, private_config: dict[str, Any]) -> Path:
    path = tmp_path / "plugin.k8s.conf.yaml"
    path.write_text(yaml.safe_dump(private_config))
    return path


def test_the_plugin_passes_the_conformance_kit(
    tmp_path: Path, private_config: dict[str, Any], fake_api: Any
) -> None:
    path = _write_private_config(tmp_path, private_config)
    report = check_plugin("kubernetes", private_config_file=str(path), work_dir=tmp_path)
    assert report.passed, report.format()
    assert fake_api.state.names("deployments") == [], "the kit stops what it started"


def test_the_documented_runner_command_drives_the_plugin(
    tmp_path: Path, private_config: dict[str, Any], make_info: Any, fake_api: Any
) -> None:
    private = _write_private_config(tmp_path, private_config)
    info = make_info("dep-7", "model-x", size=1000)
    config = tmp_path / "action.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "pluginConfig": {
                    "MLOPS_BOSUN_PRED_ENV_ID": "env-1",
                    "MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING": False,
                },
                "peInfo": {"id": "env-1", "name": "k8s"},
                "deploymentInfo": info.to_dict(),
            }
        )
    )
    status_file = tmp_path / "status.yaml"
    for action, expected_state in (("deployment_start", "ready"), ("deployment_stop", "stopped")):
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "shipmate.plugin.runner",
                "--plugin",
                "k8s",
                "--config",
                str(config),
                "--private-config",
                str(private),
                "--action",
                action,
                "--status-file",
                str(status_file),
                "--exit-codes",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        status = yaml.safe_load(status_file.read_text())
        assert completed.returncode == 0, (completed.stdout, completed.stderr, status)
        assert status["status"] == "passing" and status["state"] == expected_state, status
    assert fake_api.state.names("deployments") == []


EXAMPLES = Path(__file__).parents[3] / "examples" / "kubernetes"


def test_the_example_configs_run_against_the_fake(
    tmp_path: Path, private_config: dict[str, Any], fake_api: Any
) -> None:
    """examples/kubernetes as a user would run them; only the cluster address and artifact path differ."""
    example = yaml.safe_load((EXAMPLES / "plugin.k8s.conf.yaml").read_text())
    connection = {
        k: private_config[k] for k in ("kubeConfigFile", "kubeConfigContext", "pollIntervalSeconds")
    }
    fake_api.state.namespaces.add(example["kubeNamespace"])
    private = tmp_path / "plugin.k8s.conf.yaml"
    private.write_text(yaml.safe_dump({**example, **connection}))
    action = yaml.safe_load((EXAMPLES / "action_config_deployment_start.yaml").read_text())
    artifact = tmp_path / "model.mlpkg"
    artifact.write_bytes(b"model package")
    action["deploymentInfo"]["modelArtifact"] = str(artifact)
    config = tmp_path / "action.yaml"
    config.write_text(yaml.safe_dump(action))
    status_file = tmp_path / "status.yaml"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "shipmate.plugin.runner",
            "--plugin",
            "kubernetes",
            "--config",
            str(config),
            "--private-config",
            str(private),
            "--action",
            "deployment_start",
            "--status-file",
            str(status_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    status = yaml.safe_load(status_file.read_text())
    assert completed.returncode == 0 and status["status"] == "passing", (completed.stderr, status)
    assert status["data"]["predictionUrl"] == "http://models.example.com/deployments/churn-prod/predictions"
    assert fake_api.state.names("horizontalpodautoscalers", "shipmate") == ["mlops-churn-prod"]
