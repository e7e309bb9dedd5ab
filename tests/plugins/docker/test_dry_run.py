"""Dry run: every action reports what it would do and never contacts the engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipmate.plugin.actions import Action, invoke
from shipmate.plugin.status import ActionStatus, DeploymentState
from shipmate.plugins.docker.plugin import DockerPlugin


@pytest.fixture
def unreachable_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Any engine call would fail: DOCKER_HOST points at a socket that does not exist."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")


@pytest.mark.parametrize("action", list(Action)[:9])
def test_every_action_reports_its_plan_without_touching_the_engine(
    unreachable_engine: None, tmp_path: Path, action: Action
) -> None:
    package = tmp_path / "model.mlpkg"
    package.write_bytes(b"package")
    plugin = DockerPlugin(
        {
            "outfacingPredictionURLPrefix": "http://10.0.0.5:81",
            "MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING": False,
        },
        pe_info={"id": "pe-1", "deployments": ["d1"]},
        dry_run=True,
    )
    info = {"id": "d1", "modelId": "m1", "newModelId": "m2", "modelArtifact": str(package)}
    result = invoke(plugin, action, deployment_info=info if action.needs_deployment_info else None)
    assert result.status is ActionStatus.OK, result.msg
    assert str(result.msg).startswith("Dry run, nothing was changed. Would: ")
    assert result.data and result.data["dryRun"] is True and result.data["plan"]
    assert plugin._engine is None  # never connected
    if action in (Action.DEPLOYMENT_START, Action.DEPLOYMENT_REPLACE_MODEL, Action.DEPLOYMENT_RELAUNCH):
        assert result.data["predictionUrl"] == "http://10.0.0.5:81/d1/predict"
        assert "mlops_d1_m2" in str(result.msg)
    if action is Action.DEPLOYMENT_STOP:
        assert result.state is DeploymentState.STOPPED


def test_without_dry_run_an_unreachable_engine_is_a_clear_failure(unreachable_engine: None) -> None:
    result = invoke(DockerPlugin({}, pe_info={"id": "pe-1"}), Action.PLUGIN_START)
    assert result.status is ActionStatus.ERROR
    assert "Docker engine cannot be reached" in str(result.msg) or "connecting to the Docker engine" in str(
        result.msg
    )
