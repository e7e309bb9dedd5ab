"""Property-based fuzz of every route in the prediction server's OpenAPI document, stateless and
stateful, against a real `shipmate serve` process with a model: whatever comes in, no 5xx comes
out, and every answer conforms to the document (status code, content type, headers and body)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow

CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
API_KEY = "fuzz-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def server(
    serve_process: Callable[..., str], deploy: Callable[..., Path], packages: dict[str, Path], tmp_path: Path
) -> str:
    """Multi-model mode with one iris deployment, the key required for predictions too (so every
    route, management included, is reachable), pickled uploads refused."""
    root = tmp_path / "deployments"
    root.mkdir()
    deploy(root, "iris", packages["iris"])
    return serve_process(
        "--deployments-dir",
        str(root),
        "--poll-interval",
        "0.2",
        "--require-key-for-predictions",
        env={"SHIPMATE_SERVE_API_KEY": API_KEY},
    )


@pytest.fixture
def fuzzed_api(server: str) -> Any:
    spec = httpx.get(f"{server}/openapi.json", headers=AUTH).json()
    schema = schemathesis.openapi.from_dict(spec)
    schema.config.update(base_url=server)
    return schema


schema = schemathesis.pytest.from_fixture("fuzzed_api")


@schema.parametrize()
@hypothesis_settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_route_answers_5xx(case: Any, server: str) -> None:
    for headers in (AUTH, {}):
        response = case.call(base_url=server, headers=headers, timeout=30)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
        )
        case.validate_response(response, checks=CONFORMANCE)
        if response.status_code >= 400:
            assert response.json()["message"]  # every refusal says why


def st_run(url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """schemathesis' own command line against ``url``'s document, with the conformance checks."""
    st = Path(sys.executable).parent / "st"
    command = [
        str(st) if st.exists() else (shutil.which("st") or "st"),
        "run",
        f"{url}/openapi.json",
        "--checks",
        ",".join(check.__name__ for check in CONFORMANCE),
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--no-color",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd)


def test_stateful_sequences_conform(server: str, tmp_path: Path) -> None:
    """Chains of calls that feed each response's values into the next request (links inferred
    from the document), run by schemathesis' own engine; before them, its coverage phase (each
    parameter's boundary and invalid values, about a thousand requests in seconds) and the
    document's examples."""
    result = st_run(
        server,
        tmp_path,
        "--phases",
        "examples,coverage,stateful",
        "--max-time",
        "40",
        "-H",
        f"Authorization: Bearer {API_KEY}",
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Stateful" in result.stdout and "Coverage" in result.stdout


def test_an_open_single_model_server_conforms(
    serve_process: Callable[..., str], packages: dict[str, Path], tmp_path: Path
) -> None:
    """The other document: single-model mode, predictions open, no key at all (management 403)."""
    url = serve_process("--model", str(packages["churn"]))
    doc = httpx.get(f"{url}/openapi.json").json()
    assert doc["paths"]["/predictions"]["post"]["security"] == []
    result = st_run(url, tmp_path, "--phases", "examples,coverage,fuzzing", "--max-time", "20")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Coverage" in result.stdout and "Fuzzing" in result.stdout
