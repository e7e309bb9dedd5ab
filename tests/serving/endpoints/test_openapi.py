"""The prediction server's OpenAPI document: every route in it, built from the served manifest."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.routing import Route

if TYPE_CHECKING:
    from starlette.testclient import TestClient

KEY = "test-key-0123456789abcdef"


def test_every_route_is_documented(make_client: Callable[..., TestClient], packages: dict[str, Path]) -> None:
    client = make_client(model=packages["iris"])
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    routes = [r for r in client.app.routes if isinstance(r, Route)]  # type: ignore[attr-defined]
    for route in routes:
        path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", route.path)
        assert path in doc["paths"], path
        for method in route.methods or ():
            if method != "HEAD":
                assert method.lower() in doc["paths"][path], (method, path)
    record = doc["paths"]["/predictions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    rows = record["anyOf"][0]["items"]
    assert rows["required"] == [
        "sepal length (cm)",
        "sepal width (cm)",
        "petal length (cm)",
        "petal width (cm)",
    ]
    assert doc["paths"]["/ping"]["get"]["security"] == []
    assert all(feature["type"] == ["number"] for feature in rows["properties"].values())  # takes no nulls
    assert (
        doc["paths"]["/deployments/{id}"]["parameters"][0]["example"]
        == client.get("/info").json()["deploymentId"]
    )


def test_the_document_is_keyed_like_predictions(
    make_client: Callable[..., TestClient], packages: dict[str, Path]
) -> None:
    client = make_client(model=packages["iris"], api_key=KEY, require_key_for_predictions=True)
    assert client.get("/openapi.json").status_code == 401
    doc = client.get("/openapi.json", headers={"x-api-key": KEY}).json()
    assert "security" not in doc["paths"]["/predictions"]["post"]  # the document's key applies
    assert "401" in doc["paths"]["/predictions"]["post"]["responses"]


def test_unknown_routes_and_methods_answer_the_error_body(
    make_client: Callable[..., TestClient], packages: dict[str, Path]
) -> None:
    """Starlette's own 404 and 405 were text/plain, unlike every refusal the document describes."""
    client = make_client(model=packages["iris"])
    missing = client.get("/no/such/route")
    assert missing.status_code == 404 and missing.json() == {"message": "Not Found"}
    wrong = client.delete("/ping")
    assert wrong.status_code == 405 and wrong.json()["message"] and "GET" in wrong.headers["allow"]
