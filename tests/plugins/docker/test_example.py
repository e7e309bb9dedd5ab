"""examples/docker/run.sh, end to end on the real engine, with this session's isolated names."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

# The first engine test builds the images: minutes on a cold cache (see docs/docker.md).
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "docker"


def test_the_docker_example_runs(
    tmp_path: Path, plugin_config: dict[str, Any], make_plugin: Any, built_images: dict[str, str]
) -> None:
    example_config = yaml.safe_load((EXAMPLE / "plugin.docker.conf.yaml").read_text())
    private = tmp_path / "plugin.docker.conf.yaml"
    # The example's own settings, with this session's names and a free proxy port.
    overrides = {
        k: plugin_config[k] for k in ("dockerNetwork", "containerNamePrefix", "generatedImagePrefix")
    }
    config = {**example_config, **overrides, "traefikPortMapping": {80: 0}}
    config.pop("outfacingPredictionURLPrefix")
    private.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        ["bash", str(EXAMPLE / "run.sh")],
        env={**os.environ, "PLUGIN_CONFIG": str(private), "SKIP_IMAGES": "1"},  # built by the fixture
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("plugin_start: passing")
    assert lines[1].startswith("deployment_start: passing Deployment house-prices is ready")
    assert lines[2].startswith("prediction URL: http://127.0.0.1:") and lines[2].endswith(
        "/house-prices/predict"
    )
    assert '"prediction":' in lines[3]
    assert lines[4].startswith("deployment_status: passing")
    assert lines[5].startswith("deployment_stop: passing")
