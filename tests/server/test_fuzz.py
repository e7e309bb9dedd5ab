"""Property-based fuzz of every route in the OpenAPI document: whatever comes in, no 5xx comes out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from pydantic import SecretStr

from shipmate.server.settings import ServerSettings
from shipmate.server.testing import TEST_ADMIN_TOKEN, LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> ServerSettings:
    """Long polls capped at 0.1 s, so generated ``wait`` values do not stall the fuzz."""
    return ServerSettings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        admin_token=SecretStr(TEST_ADMIN_TOKEN),
        max_upload_bytes=256 * 1024,
        max_wait=0.1,
    )


@pytest.fixture
def fuzzed_api(server: LiveServer, world: dict[str, Any]) -> Any:
    """The live service's own OpenAPI document, with some real resources in the store."""
    spec = httpx.get(f"{server.base_url}/api/v1/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    schema.config.update(base_url=server.base_url)
    return schema


schema = schemathesis.pytest.from_fixture("fuzzed_api")


@schema.parametrize()
@hypothesis_settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_route_answers_5xx(case: Any, server: LiveServer, world: dict[str, Any]) -> None:
    if case.operation.path.endswith("/events/stream"):
        return  # never ends by itself; test_events.py covers it, the long-poll route shares its parameters
    for token in (TEST_ADMIN_TOKEN, world["agent_token"]):
        # the event stream never ends by itself: look at its status line only
        streaming = case.formatted_path.endswith("/stream")
        response = case.call(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            stream=streaming,
        )
        if streaming:
            response.close()
            assert response.status_code < 500
            continue
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
        )
        if response.status_code in (400, 422):
            body = response.json()
            assert body.get("detail"), body  # every refusal says why
