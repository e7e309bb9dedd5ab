"""Fixtures shared by the tests of the plugin SDK (tests/plugin) and of the built-in plugins
(tests/plugins): a model artifact to deploy, and the test plugin's private config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml


@pytest.fixture
def model_artifact(tmp_path: Path) -> Path:
    path = tmp_path / "models" / "model_A.mlpkg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK\x03\x04 not really a zip, but bytes to copy" * 10)
    return path


ZERO_DELAYS = {
    "launch_time_sec": 0,
    "stop_time_sec": 0,
    "replace_model_time_sec": 0,
    "pe_status_time_sec": 0,
    "deployment_status_time_sec": 0,
    "deployment_list_time_sec": 0,
    "plugin_start_time": 0,
    "plugin_stop_time": 0,
}


@pytest.fixture
def test_plugin_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a private config for the ``test`` plugin with no delays (plus any overrides)."""

    def write(**overrides: Any) -> Path:
        path = tmp_path / "plugin.test.conf.yaml"
        content = {"tmp_dir": str(tmp_path / "test-plugin"), **ZERO_DELAYS, **overrides}
        path.write_text(yaml.safe_dump(content), encoding="utf-8")
        return path

    return write
