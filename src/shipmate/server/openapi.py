"""The OpenAPI document tells the truth about errors: every status code a route can answer
besides its success, each with the one error body (`schemas.ErrorBody`) that
``app.py``'s handlers return, so generated clients parse refusals correctly."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from shipmate.server.schemas import ErrorBody

_WHY = {
    400: "The request body is not valid JSON",
    401: "No token, or an unknown or revoked one",
    403: "The token may not do this (an agent token outside its environment, or an admin-only route)",
    404: "An id in the request names nothing the caller may see",
    409: "The change conflicts with the current state or with a concurrent change",
    413: "The upload is larger than the configured limit",
    422: "Well-formed input that is wrong; `detail` names the first field at fault",
    503: "The database is unavailable; retry after the `Retry-After` seconds",
}
_PUBLIC = {"/api/v1/health"}


def _error_codes(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    if path in _PUBLIC:
        return [503]
    codes = [401, 403, 404, 422, 503]
    if method in ("post", "put", "patch", "delete"):
        codes += [409]
        if "requestBody" in operation:
            codes += [400]
    if "application/octet-stream" in operation.get("requestBody", {}).get("content", {}):
        codes += [413]
    return sorted(set(codes))


def document_errors(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with every error response declared (built once, cached)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
    components.update(error_schema.pop("$defs", {}))
    components["ErrorBody"] = error_schema
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for code in _error_codes(path, method, operation):
                responses[str(code)] = {"description": _WHY[code], "content": body}
    app.openapi_schema = schema
    return schema
