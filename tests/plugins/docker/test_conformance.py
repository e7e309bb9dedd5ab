"""Shipmate's plugin conformance kit, run against the Docker plugin on the real engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shipmate.plugin.testing import check_plugin
from shipmate.plugins.docker.plugin import DockerPlugin

# The first engine test builds the images: minutes on a cold cache (see docs/docker.md).
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]


def test_the_docker_plugin_passes_the_conformance_kit(
    tmp_path: Path, make_plugin: Any, plugin_config: dict[str, Any], packages: Any
) -> None:
    report = check_plugin(
        lambda pe_info: DockerPlugin(plugin_config, pe_info=pe_info),
        work_dir=tmp_path,
        model_artifacts=(str(packages.model_a), str(packages.model_b), str(packages.model_b)),
    )
    assert report.passed, report.format()
