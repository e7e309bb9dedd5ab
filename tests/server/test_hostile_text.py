"""Every text that enters the store is checked once, at the edge: what some supported store
cannot hold is refused with a 422 naming the field, and nothing already stored stops being
readable. Run on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

V1 = "/api/v1"

HOSTILE = {
    "nul": "a\x00b",
    "lone high surrogate": "a\ud800b",
    "lone low surrogate": "\udfff",
}
FINE = "naïve ☃ 𝄞 العربية \u200b end"


def _send(api: httpx.Client, method: str, url: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    """JSON as an attacker sends it: \\u escapes, so lone surrogates reach the server's parser."""
    return api.request(
        method,
        url,
        content=json.dumps(body).encode("ascii"),
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _routes(world: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], list[str], dict[str, str]]]:
    """(method, url, a valid body, the text fields to poison, extra headers)."""
    env, dep, pkg = world["env"]["id"], world["deployment"]["id"], world["package"]["id"]
    agent = {"Authorization": f"Bearer {world['agent_token']}"}
    report = {
        "deploymentId": dep,
        "generation": 1,
        "action": "deployment_status",
        "phase": "observed",
        "status": "passing",
        "state": "ready",
        "message": "ok",
        "data": {"k": "v"},
    }
    return [
        (
            "POST",
            f"{V1}/environments",
            {"name": "n", "platform": "filesystem", "description": "d", "config": {"k": "v"}},
            ["name", "description", "config.k", "config.<key>", "pluginConfig.k"],
            {},
        ),
        ("PATCH", f"{V1}/environments/{env}", {"description": "d"}, ["description", "config.k"], {}),
        (
            "POST",
            f"{V1}/deployments",
            {"environmentId": env, "modelPackageId": pkg, "name": "n", "description": "d"},
            ["name", "description", "keyValueConfig.k", "environmentId", "modelPackageId"],
            {},
        ),
        ("PATCH", f"{V1}/deployments/{dep}", {"name": "n"}, ["name", "description", "keyValueConfig.k"], {}),
        ("POST", f"{V1}/deployments/{dep}/replace-model", {"modelPackageId": pkg}, ["modelPackageId"], {}),
        (
            "POST",
            f"{V1}/environments/{env}/reports",
            {"reports": [report]},
            ["reports.0.message", "reports.0.action", "reports.0.data.k", "reports.0.deploymentId"],
            agent,
        ),
        (
            "POST",
            f"{V1}/environments/{env}/health",
            {"status": "passing", "message": "m", "data": {"k": "v"}, "agentVersion": "1"},
            ["message", "data.k", "data.<key>", "agentVersion"],
            agent,
        ),
        (
            "POST",
            f"{V1}/environments/{env}/events",
            {"type": "agent.connected", "message": "m", "data": {"k": "v"}},
            ["message", "data.k", "data.deep.<key>"],
            agent,
        ),
        ("POST", f"{V1}/tokens", {"name": "t", "kind": "admin"}, ["name"], {}),
        ("PUT", f"{V1}/deployments/{dep}/drift/settings", {"starred": ["x"]}, ["starred.0"], {}),
    ]


def _poison(body: dict[str, Any], path: str, value: str) -> tuple[dict[str, Any], str]:
    """A copy of the body with ``value`` at ``path``; the path the error should name."""
    doc = json.loads(json.dumps(body))
    parts = path.split(".")
    node: Any = doc
    for part in parts[:-1]:
        key: Any = int(part) if part.isdigit() else part
        if isinstance(node, dict) and key not in node:
            node[key] = {}
        node = node[key]
    last = parts[-1]
    if last == "<key>":
        node[value] = "v"
        return doc, ".".join(parts[:-1])
    node[int(last) if isinstance(node, list) else last] = value
    return doc, path


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_text_is_refused_at_every_write_route_and_reads_keep_working(
    api: httpx.Client, world: dict[str, Any], kind: str
) -> None:
    for method, url, body, fields, headers in _routes(world):
        for field in fields:
            poisoned, named = _poison(body, field, HOSTILE[kind])
            response = _send(api, method, url, poisoned, headers)
            assert response.status_code == 422, (method, url, field, response.status_code, response.text)
            top = named.split(".")[0]
            assert top in response.json()["detail"], (field, response.text)
    for url in (
        f"{V1}/environments",
        f"{V1}/deployments",
        f"{V1}/events",
        f"{V1}/model-packages",
        f"{V1}/tokens",
    ):
        assert api.get(url).status_code == 200, url
    agent = {"Authorization": f"Bearer {world['agent_token']}"}
    desired = api.get(f"{V1}/environments/{world['env']['id']}/desired-state", headers=agent)
    assert desired.status_code == 200


def test_deep_documents_and_oversized_text_are_refused(api: httpx.Client, world: dict[str, Any]) -> None:
    deep: Any = "bottom"
    for _ in range(100):
        deep = {"d": deep}
    response = _send(api, "PATCH", f"{V1}/environments/{world['env']['id']}", {"config": deep})
    assert response.status_code == 422 and "nested" in response.json()["detail"], response.text
    response = _send(api, "PATCH", f"{V1}/environments/{world['env']['id']}", {"description": "x" * 10_001})
    assert response.status_code == 422 and "description" in response.json()["detail"]


@pytest.mark.parametrize("number", ["1e20", "-1e300", "9223372036854775808"])
def test_numbers_no_store_gives_back_unchanged_are_refused(
    api: httpx.Client, world: dict[str, Any], number: str
) -> None:
    """PostgreSQL's jsonb keeps 1e20 as the integer 100000000000000000000, which no JSON
    encoder here can write back: such numbers are refused at the edge, on both stores."""
    body = b'{"config": {"big": ' + number.encode() + b"}}"
    url = f"{V1}/environments/{world['env']['id']}"
    response = api.patch(url, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and "config" in response.json()["detail"], response.text
    assert api.get(f"{V1}/events").status_code == 200


def test_any_valid_unicode_round_trips_exactly(api: httpx.Client, world: dict[str, Any]) -> None:
    env_id = world["env"]["id"]
    body = {"description": FINE, "config": {FINE: [FINE, {"nested": FINE}]}}
    assert _send(api, "PATCH", f"{V1}/environments/{env_id}", body).status_code == 200
    stored = api.get(f"{V1}/environments/{env_id}").json()
    assert stored["description"] == FINE and stored["config"] == body["config"]


def test_a_long_token_name_still_writes_events(api: httpx.Client, world: dict[str, Any]) -> None:
    """The event log's actor column holds 100 characters; a 200-character token name must not break writes."""
    created = api.post(f"{V1}/tokens", json={"name": "n" * 200, "kind": "admin"})
    assert created.status_code == 201, created.text
    long_named = {"Authorization": f"Bearer {created.json()['secret']}"}
    response = api.post(
        f"{V1}/environments", json={"name": "by-long", "platform": "filesystem"}, headers=long_named
    )
    assert response.status_code == 201, response.text
    assert response.json()["createdBy"].startswith("admin:nnn")


@pytest.mark.parametrize(("field", "value"), [("name", "a\ud800"), ("version", "a\x00"), ("name", "n" * 230)])
def test_a_package_whose_manifest_cannot_be_stored_is_refused(
    api: httpx.Client, make_package: Any, field: str, value: str
) -> None:
    path = make_package(**{field: value})
    response = api.post(
        f"{V1}/model-packages",
        params={"filename": path.name},
        content=path.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 422, response.text
    assert f"manifest.{field}" in response.json()["detail"] or "manifest" in response.json()["detail"]
    assert api.get(f"{V1}/model-packages").status_code == 200
