"""Settings: one source of models, PPS environment variables honoured, keys checked at start."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from shipmate.serving.settings import ServeSettings


def test_pps_environment(monkeypatch: pytest.MonkeyPatch, packages: dict[str, Path], tmp_path: Path) -> None:
    repo = tmp_path / "opt-ml-model"
    repo.mkdir()
    shutil.copy(packages["iris"], repo / "iris.mlpkg")
    monkeypatch.setenv("PREDICTION_API_MODEL_REPOSITORY_PATH", str(repo))
    monkeypatch.setenv("MLOPS_DEPLOYMENT_ID", "dep-42")
    monkeypatch.setenv("MLOPS_MODEL_ID", "model-7")
    monkeypatch.setenv("PREDICTION_API_WORKERS", "3")
    settings = ServeSettings()
    assert settings.model == repo / "iris.mlpkg" and settings.deployments_dir is None
    assert (settings.deployment_id, settings.model_id, settings.workers) == ("dep-42", "model-7", 3)
    assert settings.port == 8080 and settings.max_body_bytes == 50 * 1024 * 1024


def test_repository_of_deployment_dirs_means_multi_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "deployment_a").mkdir()
    monkeypatch.setenv("PREDICTION_API_MODEL_REPOSITORY_PATH", str(tmp_path))
    settings = ServeSettings()
    assert settings.multi_model and settings.deployments_dir == tmp_path


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of --model"),
        ({"model": "a.mlpkg", "deployments_dir": "d"}, "exactly one of --model"),
        ({"model": "a.mlpkg", "api_key": "short"}, "at least 16 characters"),
        ({"model": "a.mlpkg", "require_key_for_predictions": True}, "needs an api_key"),
        ({"model": "a.mlpkg", "port": 70000}, "port"),
    ],
)
def test_invalid_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ServeSettings(**kwargs)  # type: ignore[arg-type]
