"""Suite-wide fixtures and rules.

Fixtures shared by the tests of the plugin SDK (tests/plugin) and of the built-in plugins
(tests/plugins): a model artifact to deploy, and the test plugin's private config. Fixtures
shared by the client's and the CLI's tests (tests/client, tests/cli): a real service on
loopback (SQLite), an admin client, packages (tests/server has richer ones of its own).

Which tests must share one pytest-xdist worker when the suite runs in parallel
(``SHIPMATE_TEST_WORKERS=2 scripts/test.sh`` runs ``pytest -n 2 --dist loadgroup``): tests
that use one machine-wide thing that a test session builds or starts share a worker, so
they never race each other: the Docker engine and its image builds (``make -C images``),
and the virtualenv with DataRobot's published runner (built once into ``.cache/venv-bosun``).
Everything else picks free ports, temporary directories and fresh PostgreSQL databases of
its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipmate.client import ShipmateClient
from shipmate.server.settings import ServerSettings
from shipmate.server.testing import LiveServer, live_server, write_test_package


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


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(ServerSettings(data_dir=tmp_path / "data", max_upload_bytes=512 * 1024)) as running:
        yield running


@pytest.fixture
def admin(server: LiveServer) -> Iterator[ShipmateClient]:
    with ShipmateClient(server.base_url, server.admin_token, timeout=30) as client:
        yield client


@pytest.fixture
def make_package(tmp_path: Path) -> Any:
    counter = iter(range(1, 10_000))

    def make(**overrides: Any) -> Path:
        number = next(counter)
        overrides.setdefault("name", "model")
        overrides.setdefault("version", str(number))
        overrides.setdefault("payload", f"model bytes {number}".encode())
        return write_test_package(tmp_path / f"pkg-{number}.mlpkg", **overrides)

    return make


BOSUN_MODULES = ("test_datarobot_compat.py", "test_drivers.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.get_closest_marker("docker") is not None:
            item.add_marker(pytest.mark.xdist_group("docker-engine"))
        elif item.path.name in BOSUN_MODULES:
            item.add_marker(pytest.mark.xdist_group("bosun-venv"))
