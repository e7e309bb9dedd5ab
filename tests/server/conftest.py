"""Fixtures for the service's tests: an app on SQLite or on a fresh PostgreSQL database, and a
deployment to work on (the PostgreSQL database and `make_package` are tests/conftest.py's)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from shipmate.server.settings import ServerSettings
from shipmate.server.testing import TEST_ADMIN_TOKEN, LiveServer, live_server


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """Run a test on both stores: SQLite (None = the default file) and PostgreSQL."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> ServerSettings:
    return ServerSettings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        admin_token=SecretStr(TEST_ADMIN_TOKEN),
        max_upload_bytes=1024 * 1024,
    )


@pytest.fixture
def server(settings: ServerSettings) -> Iterator[LiveServer]:
    """The real service on a loopback port, in a thread of this process."""
    with live_server(settings) as running:
        yield running


@pytest.fixture
def api(server: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client on the service, with the admin token set."""
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}, timeout=60
    ) as client:
        yield client


@pytest.fixture
def world(api: httpx.Client, make_package: Any) -> dict[str, Any]:
    """An environment, a package, a deployment of it and an agent token for the environment."""
    env = api.post("/api/v1/environments", json={"name": "dev", "platform": "filesystem"}).json()
    package = upload(api, make_package())
    dep = api.post(
        "/api/v1/deployments",
        json={"environmentId": env["id"], "modelPackageId": package["id"], "name": "churn"},
    ).json()
    token = api.post(
        "/api/v1/tokens", json={"name": "agent", "kind": "agent", "environmentId": env["id"]}
    ).json()
    return {"env": env, "package": package, "deployment": dep, "agent_token": token["secret"]}


def upload(api: httpx.Client, path: Path) -> dict[str, Any]:
    response = api.post(
        "/api/v1/model-packages",
        params={"filename": path.name},
        content=path.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.fixture
def upload_package() -> Any:
    return upload
