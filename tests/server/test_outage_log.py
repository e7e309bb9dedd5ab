"""A database outage is one "database unavailable" line in the service's log (and one line when it
answers again), not one per refused request; on PostgreSQL, whose database is closed to
connections and its sessions ended for the outage (the service's side of a restart)."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from tests.conftest import pg_connect

from shipmate.server.settings import ServerSettings
from shipmate.server.testing import TEST_ADMIN_TOKEN, live_server

pytestmark = pytest.mark.postgres


def set_open(database: str, is_open: bool) -> None:
    with pg_connect() as admin:
        admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {str(is_open).lower()}')
        if not is_open:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
            )


def lines(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(start)]


def test_one_line_per_outage_not_one_per_refused_request(
    pg_url: str, tmp_path: Any, caplog: pytest.LogCaptureFixture
):
    database = pg_url.rsplit("/", 1)[1]
    settings = ServerSettings(
        data_dir=tmp_path / "data", database_url=pg_url, admin_token=SecretStr(TEST_ADMIN_TOKEN),
        alert_interval_seconds=0,
    )  # fmt: skip
    caplog.set_level(logging.WARNING, logger="shipmate.server.app")
    try:
        with (
            live_server(settings) as server,
            httpx.Client(
                base_url=server.base_url, headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}, timeout=30
            ) as api,
        ):
            assert api.get("/api/v1/deployments").status_code == 200
            for outage in (1, 2):
                set_open(database, False)
                statuses = [api.get("/api/v1/deployments").status_code for _ in range(12)]
                assert statuses == [503] * 12
                set_open(database, True)
                assert api.get("/api/v1/deployments").status_code == 200
                assert len(lines(caplog, "database unavailable")) == outage, caplog.text
                assert lines(caplog, "database available again")[-1:] == [
                    "database available again; 12 requests were refused meanwhile"
                ]
            assert len(lines(caplog, "database available again")) == 2
    finally:
        set_open(database, True)
