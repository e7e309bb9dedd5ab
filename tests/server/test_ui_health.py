"""The web UI's deployment page shows the deployment's service health (plain HTTP: no browser needed)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shipmate.monitoring.records import MinuteAggregate
from shipmate.server.testing import TEST_ADMIN_TOKEN, LiveServer


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    return None  # the page reads through the same services as the API; one store is enough here


@contextlib.contextmanager
def signed_in(server: LiveServer, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        assert client.post("/ui/login", data={"token": token}).status_code == 303
        yield client


def test_the_deployment_page_shows_service_health(
    server: LiveServer, api: httpx.Client, world: dict[str, Any]
):
    dep = world["deployment"]["id"]
    record = MinuteAggregate(deployment_id=dep, minute=int(time.time() // 60), model_id="m-1")
    for ms in (12.0, 30.0, 1500.0):
        record.response_ms.observe(ms)
    record.requests, record.rows, record.user_errors = 3, 120, 1
    assert (
        api.post("/api/v1/monitoring/aggregates", json={"records": [record.to_json()]}).json()["stored"] == 1
    )
    with signed_in(server, TEST_ADMIN_TOKEN) as ui:
        assert f'href="/ui/deployments/{dep}"' in ui.get("/ui").text
        page = ui.get(f"/ui/deployments/{dep}?tab=health")
        assert page.status_code == 200
        row = page.text.split('id="service-health"')[1]
        assert "last hour" in row and ">120<" in row and ">3<" in row and "33.33 %" in row
        assert "█" in row
        assert ui.get("/ui/deployments/d-none").status_code == 404
    other = api.post("/api/v1/environments", json={"name": "other", "platform": "filesystem"}).json()
    outsider = api.post(
        "/api/v1/tokens", json={"name": "a2", "kind": "agent", "environmentId": other["id"]}
    ).json()["secret"]
    with signed_in(server, outsider) as ui:
        assert ui.get(f"/ui/deployments/{dep}").status_code == 404  # not its environment
    with httpx.Client(base_url=server.base_url) as anonymous:
        assert 'name="token"' in anonymous.get(f"/ui/deployments/{dep}").text  # the sign-in form
