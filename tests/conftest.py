"""Suite-wide fixtures and rules.

Fixtures shared by the tests of the plugin SDK (tests/plugin) and of the built-in plugins
(tests/plugins): a model artifact to deploy, and the test plugin's private config. Fixtures
shared by the client's and the CLI's tests (tests/client, tests/cli): a real service on
loopback (SQLite), an admin client, packages (tests/server uses them too).
Fixtures shared by the service's tests and the fault suite (tests/server, tests/faults): a
fresh PostgreSQL database per test, copied from one migrated template; and by the agent's
tests and the fault suite (tests/agent, tests/faults): two small real model packages.

Which tests must share one pytest-xdist worker when the suite runs in parallel
(``SHIPMATE_TEST_WORKERS=2 scripts/test.sh`` runs ``pytest -n 2 --dist loadgroup``): tests
that use one machine-wide thing that a test session builds or starts share a worker, so
they never race each other: the Docker engine and its image builds (``make -C images``),
and the virtualenv with DataRobot's published runner (built once into ``.cache/venv-bosun``).
Everything else picks free ports, temporary directories and fresh PostgreSQL databases of
its own.
"""

from __future__ import annotations

import secrets
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


PG_HOST, PG_PORT = "127.0.0.1", 5432


def pg_connect(dbname: str = "test") -> Any:
    import psycopg

    return psycopg.connect(
        f"postgresql://root@{PG_HOST}:{PG_PORT}/{dbname}", autocommit=True, connect_timeout=3
    )


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated template database; each test gets a fresh copy of it."""
    try:
        admin = pg_connect()
    except Exception as exc:  # the server is not running here
        pytest.skip(f"PostgreSQL at {PG_HOST}:{PG_PORT} is unreachable: {exc}")
    name = f"shipmate_test_tpl_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    from shipmate.server.db import Database

    db = Database(f"postgresql+psycopg://root@{PG_HOST}:{PG_PORT}/{name}")
    db.migrate()
    db.dispose()
    try:
        yield name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def pg_database(pg_template: str) -> Iterator[str]:
    """The name of a fresh PostgreSQL database for one test, dropped afterwards."""
    name = f"shipmate_test_{secrets.token_hex(6)}"
    with pg_connect() as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    try:
        yield name
    finally:
        with pg_connect() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The SQLAlchemy URL of a fresh PostgreSQL database for one test (`pg_database`)."""
    return f"postgresql+psycopg://root@{PG_HOST}:{PG_PORT}/{pg_database}"


@pytest.fixture(scope="session")
def iris_packages(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two small real model packages (scikit-learn on the iris data shipped with it)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from shipmate.packages import BuildOptions, build_sklearn_package

    folder = tmp_path_factory.mktemp("packages")
    X, y = load_iris(return_X_y=True, as_frame=True)
    paths = []
    for version, c in (("1", 1.0), ("2", 0.5)):
        model = LogisticRegression(max_iter=300, C=c).fit(X, y)
        path = folder / f"iris-{version}.mlpkg"
        build_sklearn_package(model, X.head(20), path, name="iris", options=BuildOptions(version=version))
        paths.append(path)
    return paths[0], paths[1]


BOSUN_MODULES = ("test_datarobot_compat.py", "test_drivers.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.get_closest_marker("docker") is not None:
            item.add_marker(pytest.mark.xdist_group("docker-engine"))
        elif item.path.name in BOSUN_MODULES:
            item.add_marker(pytest.mark.xdist_group("bosun-venv"))
