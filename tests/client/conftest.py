"""Fixtures for the client's tests: a real service on loopback (SQLite), an admin client, packages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipmate.client import ShipmateClient
from shipmate.server.settings import ServerSettings
from shipmate.server.testing import LiveServer, live_server, write_test_package


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
