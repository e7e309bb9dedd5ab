"""Suite-wide: which tests must share one pytest-xdist worker when the suite runs in parallel.

``scripts/test.sh`` runs ``pytest -n 2 --dist loadgroup``. Tests that use one machine-wide
thing that a test session builds or starts share a worker, so they never race each
other: the Docker engine and its image builds (``make -C images``), and the virtualenv
with DataRobot's published runner (built once into ``.cache/venv-bosun``). Everything
else picks free ports, temporary directories and fresh PostgreSQL databases of its own.
"""

from __future__ import annotations

import pytest

BOSUN_MODULES = ("test_datarobot_compat.py", "test_command_driver.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.get_closest_marker("docker") is not None:
            item.add_marker(pytest.mark.xdist_group("docker-engine"))
        elif item.path.name in BOSUN_MODULES:
            item.add_marker(pytest.mark.xdist_group("bosun-venv"))
