"""The prediction server's OpenAPI 3 document, served at ``GET /openapi.json``.

Written by hand beside the Starlette routes (which carry no schemas), and checked
against them twice: `test_openapi.py` requires a path for every route, and the fuzz
(tests/serving/test_fuzz.py) requires every answer to match the document. The
prediction bodies are built from the served deployment's manifest when exactly one
is served (records then name its features, typed as the manifest types them), and
are generic objects of columns otherwise. Every refusal answers `ERROR`, the body of
`shipmate.serving.edge.error_response`.

The document is behind the same key as predictions (``--require-key-for-predictions``):
it names the model's features, which an open answer would tell a stranger.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipmate.packages import Manifest
from shipmate.serving.codecs import v2
from shipmate.serving.deployments import Deployment
from shipmate.serving.edge import CSV, JSON, guard, json_response
from shipmate.serving.worker import Worker

Schema = dict[str, Any]

VERSION = "1"

SCALAR: Schema = {"type": ["number", "string", "boolean", "null"]}
ERROR: Schema = {
    "type": "object",
    "description": "Every refusal: what is wrong, and for a bad row the row and column it is in.",
    "required": ["message"],
    "properties": {
        "message": {"type": "string"},
        "row": {"type": "integer", "minimum": 0},
        "column": {"type": "string"},
    },
    "additionalProperties": False,
}
_ERRORS = {
    400: "The body is malformed (not JSON, not CSV, no rows, ragged columns ...).",
    401: "A valid API key is required (Authorization: Bearer <key> or X-API-Key).",
    403: "Management is disabled: no API key configured, or not in multi-model mode.",
    404: "No such deployment, or no such route.",
    405: "The route does not take this method.",
    413: "The body is over the server's limit.",
    415: "The Content-Type is neither JSON nor CSV.",
    422: "The rows do not fit the model (a column missing, a value of the wrong type ...), "
    "or an upload is not a package this server loads.",
    500: "The model itself raised while scoring (the message says how); the server keeps serving.",
    503: "The deployment is still loading, or failed to load.",
}
_FEATURE_TYPES = {"numeric": "number", "boolean": "boolean"}

INFO: Schema = {
    "type": "object",
    "required": ["deploymentId", "state", "name", "version", "framework", "targetType", "features"],
    "properties": {
        "deploymentId": {"type": "string"},
        "modelId": {"type": ["string", "null"]},
        "state": {"type": "string"},
        "name": {"type": "string"},
        "version": {"type": "string"},
        "framework": {"type": "string"},
        "targetType": {"type": "string", "enum": ["binary", "multiclass", "regression"]},
        "targetName": {"type": ["string", "null"]},
        "classLabels": {"type": ["array", "null"], "items": SCALAR},
        "predictionThreshold": {"type": ["number", "null"]},
        "features": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "type"],
                "properties": {"name": {"type": "string"}, "type": {"type": "string"}},
            },
        },
        "packageSha256": {"type": "string"},
        "packageFile": {"type": "string"},
        "createdAt": {"type": "string"},
        "loadedAt": {"type": "string"},
        "inputLayout": {"type": "string"},
        "scoring": {
            "type": "object",
            "description": "Which scorer serves the model and the largest difference measured against "
            "the model's own method (docs/serving.md, compiled scoring)",
            "properties": {
                "scorer": {"type": "string", "enum": ["original", "direct", "compiled", "native"]},
                "maxDifference": {"type": ["number", "null"]},
                "note": {"type": "string"},
            },
        },
        "replacementError": {"type": "string"},
    },
}
FAILED_DEPLOYMENT: Schema = {
    "type": "object",
    "required": ["deploymentId", "state", "error", "directory"],
    "properties": {
        "deploymentId": {"type": "string"},
        "state": {"type": "string", "enum": ["failed"]},
        "error": {"type": "string"},
        "directory": {"type": "string"},
    },
}
PREDICTIONS: Schema = {
    "type": "object",
    "description": "DataRobot's prediction response: one entry per row, in the order sent.",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["rowId", "prediction", "predictionValues"],
                "properties": {
                    "rowId": {"type": "integer", "minimum": 0},
                    "prediction": SCALAR,
                    "predictionThreshold": {"type": ["number", "null"]},
                    "predictionValues": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["label", "value"],
                            "properties": {"label": SCALAR, "value": {"type": ["number", "null"]}},
                        },
                    },
                },
            },
        }
    },
}
PING_READY: Schema = {
    "type": "object",
    "required": ["message", "ready"],
    "properties": {
        "message": {"type": "string"},
        "ready": {"type": "boolean"},
        "loading": {"type": "array", "items": {"type": "string"}},
        "failed": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
    },
}
V2_TENSOR: Schema = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string", "enum": list(v2.DATATYPES)},
        "data": {"type": "array"},
    },
}
V2_METADATA: Schema = {
    "type": "object",
    "required": ["name", "versions", "platform", "inputs", "outputs"],
    "properties": {
        "name": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": {"type": "object"}},
        "outputs": {"type": "array", "items": {"type": "object"}},
    },
}
V2_RESPONSE: Schema = {
    "type": "object",
    "required": ["model_name", "model_version", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {},
        "outputs": {"type": "array", "items": V2_TENSOR},
    },
}


def records_schema(manifest: Manifest | None, *, accepts_missing: bool = True) -> Schema:
    """One row as a JSON object: the manifest's features when known (other columns are ignored),
    null only where the model takes missing values."""
    if manifest is None:
        return {"type": "object", "minProperties": 1, "additionalProperties": SCALAR}
    return {
        "type": "object",
        "required": list(manifest.feature_names),
        "properties": {
            f.name: {
                "type": [_FEATURE_TYPES.get(str(f.type), "string"), *(["null"] if accepts_missing else [])]
            }
            for f in manifest.features
        },
    }


def prediction_body(manifest: Manifest | None, *, accepts_missing: bool = True) -> Schema:
    record = records_schema(manifest, accepts_missing=accepts_missing)
    records = {"type": "array", "minItems": 1, "items": record}
    json_body = {
        "anyOf": [
            {"description": "DataRobot's records", **records},
            {
                "description": "An object of columns, each a list of values",
                "type": "object",
                "minProperties": 1,
                "additionalProperties": {"type": "array", "items": SCALAR},
            },
            {
                "description": "MLflow's dataframe_split",
                "type": "object",
                "required": ["dataframe_split"],
                "properties": {
                    "dataframe_split": {
                        "type": "object",
                        "required": ["columns", "data"],
                        "properties": {
                            "columns": {"type": "array", "items": {"type": "string"}},
                            "data": {"type": "array", "items": {"type": "array", "items": SCALAR}},
                        },
                    }
                },
            },
            {
                "description": "MLflow's dataframe_records",
                "type": "object",
                "required": ["dataframe_records"],
                "properties": {"dataframe_records": records},
            },
        ]
    }
    return {
        "required": True,
        "content": {
            JSON: {"schema": json_body},
            CSV: {"schema": {"type": "string", "description": "A header line, then one line per row."}},
        },
    }


def _answers(ok: dict[int, tuple[str, Schema | None]], *errors: int, media: str = JSON) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, (what, schema) in ok.items():
        out[str(status)] = {"description": what}
        if schema is not None:
            out[str(status)]["content"] = {media: {"schema": schema}}
    for status in (*errors, 404, 405):
        out.setdefault(str(status), {"$ref": f"#/components/responses/E{status}"})
    return out


def _op(summary: str, responses: dict[str, Any], *, keyed: bool, body: Schema | None = None) -> Schema:
    op: Schema = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = body
    if not keyed:
        op["security"] = []
    return op


def document(served: Deployment | None, *, keyed_predictions: bool) -> Schema:
    """The document, with prediction bodies and example ids for ``served``, the only deployment
    (None: several or none)."""
    manifest = served.manifest if served is not None else None
    accepts_missing = served is None or served.model.accepts_missing
    example = served.id if served is not None else None
    key = (401,) if keyed_predictions else ()
    info_op = _op(
        "A deployment's model, target and features",
        _answers({200: ("The deployment", INFO)}, *key, 503),
        keyed=keyed_predictions,
    )
    predicted: dict[int, tuple[str, Schema | None]] = {
        200: (
            "One prediction per row: JSON (DataRobot's shape), or CSV when the request accepts text/csv",
            None,
        )
    }
    prediction_answers = _answers(predicted, *key, 400, 413, 415, 422, 500, 503)
    prediction_answers["200"]["content"] = {
        JSON: {"schema": PREDICTIONS},
        CSV: {"schema": {"type": "string"}},
    }
    predict = _op(
        "Score rows (JSON records, columns, dataframe_split / dataframe_records, or CSV)",
        prediction_answers,
        keyed=keyed_predictions,
        body=prediction_body(manifest, accepts_missing=accepts_missing),
    )
    ping = _op(
        "Whether every deployment is loaded",
        {
            "200": {"description": "Ready", "content": {JSON: {"schema": PING_READY}}},
            "503": {
                "description": "Still loading, or a deployment failed",
                "content": {JSON: {"schema": PING_READY}},
            },
        },
        keyed=False,
    )
    v2_ready = {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}}
    v2_model_ready = {
        "type": "object",
        "required": ["name", "ready"],
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
    }
    v2_infer = _op(
        "Open Inference Protocol v2 inference",
        _answers({200: ("The outputs", V2_RESPONSE)}, *key, 400, 413, 422, 500, 503),
        keyed=keyed_predictions,
        body={
            "required": True,
            "content": {
                JSON: {
                    "schema": {
                        "type": "object",
                        "required": ["inputs"],
                        "properties": {
                            "id": {"type": "string"},
                            "parameters": {"type": "object"},
                            "inputs": {"type": "array", "minItems": 1, "items": V2_TENSOR},
                        },
                    }
                }
            },
        },
    )
    deployment_id = [_path_param("id", "A deployment id or directory name", example)]
    name = [_path_param("name", "A deployment id, directory name, or (one served) the package name", example)]
    info = {"get": info_op}
    predict_path = {"post": predict}
    paths: dict[str, Any] = {
        "/": {"get": ping},
        "/ping": {"get": ping},
        "/info": info,
        "/predictions": predict_path,
        "/predict": predict_path,
        "/openapi.json": {
            "get": _op(
                "This document",
                _answers({200: ("OpenAPI 3.1", {"type": "object"})}, *key),
                keyed=keyed_predictions,
            )
        },
        "/deployments": {
            "get": _op(
                "Every deployment: served ones, and those that failed to load",
                _answers(
                    {
                        200: (
                            "The deployments",
                            {
                                "type": "object",
                                "required": ["data"],
                                "properties": {
                                    "data": {"type": "array", "items": {"anyOf": [INFO, FAILED_DEPLOYMENT]}}
                                },
                            },
                        )
                    },
                    *key,
                ),
                keyed=keyed_predictions,
            )
        },
        "/deployments/{id}": {
            "parameters": deployment_id,
            "get": info_op,
            "post": _upload(),
            "put": _upload(),
            "delete": _op(
                "Unload a deployment and remove its directory (multi-model mode)",
                _answers({204: ("Deleted", None)}, 401, 403),
                keyed=True,
            ),
        },
        "/deployments/{id}/info": {"parameters": deployment_id, **info},
        "/deployments/{id}/predictions": {"parameters": deployment_id, **predict_path},
        "/deployments/{id}/predict": {"parameters": deployment_id, **predict_path},
        "/{id}/predict": {"parameters": deployment_id, **predict_path},
        "/{id}/predictions": {"parameters": deployment_id, **predict_path},
        "/v2/health/live": {
            "get": _op(
                "The server is up",
                {
                    "200": {
                        "description": "Live",
                        "content": {
                            JSON: {
                                "schema": {
                                    "type": "object",
                                    "required": ["live"],
                                    "properties": {"live": {"const": True}},
                                }
                            }
                        },
                    }
                },
                keyed=False,
            )
        },
        "/v2/health/ready": {
            "get": _op(
                "Every deployment is loaded",
                {
                    "200": {"description": "Ready", "content": {JSON: {"schema": v2_ready}}},
                    "503": {"description": "Not ready", "content": {JSON: {"schema": v2_ready}}},
                },
                keyed=False,
            )
        },
        "/v2/models/{name}": {
            "parameters": name,
            "get": _op(
                "Model metadata",
                _answers({200: ("The metadata", V2_METADATA)}, *key, 503),
                keyed=keyed_predictions,
            ),
        },
        "/v2/models/{name}/ready": {
            "parameters": name,
            "get": _op(
                "Whether the model is loaded",
                {
                    **_answers({200: ("Ready", v2_model_ready)}, *key),
                    "503": {"description": "Not ready", "content": {JSON: {"schema": v2_model_ready}}},
                },
                keyed=keyed_predictions,
            ),
        },
        "/v2/models/{name}/infer": {"parameters": name, "post": v2_infer},
        "/v2/models/{name}/versions/{version}/infer": {
            "parameters": [*name, _path_param("version", "Ignored: the served version answers", None)],
            "post": v2_infer,
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Shipmate prediction server",
            "version": VERSION,
            "description": "DataRobot-compatible predictions, Open Inference Protocol v2, management.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "responses": {
                f"E{status}": {
                    "description": what,
                    "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
                for status, what in _ERRORS.items()
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }


def _path_param(name: str, what: str, example: str | None) -> Schema:
    param: Schema = {
        "name": name,
        "in": "path",
        "required": True,
        "description": what,
        "schema": {"type": "string", "minLength": 1},
    }
    if example is not None:
        param["example"] = example
    return param


def _upload() -> Schema:
    return _op(
        "Serve a model package under this id, replacing any (multi-model mode)",
        _answers({200: ("Replaced", INFO), 201: ("Created", INFO)}, 400, 401, 403, 413, 422),
        keyed=True,
        body={
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                },
            },
        },
    )


class OpenAPIEndpoints:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def openapi(self, request: Request) -> Response:
        self.worker.access.check(request, management=False)
        keyed = self.worker.settings.require_key_for_predictions
        return json_response(document(self.worker.registry.only(), keyed_predictions=keyed))

    def routes(self) -> list[Route]:
        return [Route("/openapi.json", guard(self.openapi), methods=["GET"])]
