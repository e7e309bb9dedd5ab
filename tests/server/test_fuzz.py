"""Property-based fuzz of every route in the OpenAPI document, stateless and stateful, on both
stores: whatever comes in, no 5xx comes out, and every answer conforms to the document (status
code, content type, headers and body), so generated clients can trust it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shipmate.server.settings import ServerSettings
from shipmate.server.testing import TEST_ADMIN_TOKEN, LiveServer

pytestmark = pytest.mark.slow

CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


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

H11_MAX_HEAD_BYTES = 16 * 1024
"""uvicorn's HTTP parser (h11) refuses a request head larger than this with a bare 400."""


def refused_by_http_layer(response: Any) -> bool:
    """A request head over the HTTP server's limit (hypothesis builds URLs of tens of KB from
    repeated query parameters) gets uvicorn's plain-text 400 before any route sees it."""
    request = response.request
    head = len(request.url) + sum(len(k) + len(v) + 4 for k, v in request.headers.items())
    return (
        response.status_code == 400
        and head > H11_MAX_HEAD_BYTES
        and response.text.startswith("Invalid HTTP request")
    )


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
        if refused_by_http_layer(response):
            continue  # never reached the app: nothing of ours to hold to the document
        case.validate_response(response, checks=CONFORMANCE)
        if response.status_code in (400, 422):
            body = response.json()
            assert body.get("detail"), body  # every refusal says why


def test_stateful_sequences_conform(server: LiveServer, world: dict[str, Any], tmp_path: Path) -> None:
    """Chains of calls that feed each response's ids into the next request (links inferred from
    the document): create an environment, deploy into it, replace, relaunch, delete, ... Run by
    schemathesis' own engine, which copes with a server whose state moves between examples."""
    st = Path(sys.executable).parent / "st"
    command = [
        str(st) if st.exists() else "st",
        "run",
        f"{server.base_url}/api/v1/openapi.json",
        "--phases",
        "stateful",
        "--checks",
        ",".join(check.__name__ for check in CONFORMANCE),
        "--exclude-path-regex",
        "/stream$",
        "--max-time",
        "20",  # per store: the chains reach deploy, replace and delete well within it
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "-H",
        f"Authorization: Bearer {TEST_ADMIN_TOKEN}",
        "--no-color",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Stateful" in result.stdout
