"""Wire formats, one module per dialect: `json` (DataRobot's and MLflow's JSON), `csv`, `v2`.

Each converts bodies to `InferenceRequest` and `InferenceResponse` back to bodies;
this module picks the DataRobot-compatible dialect by name (``"json"`` or
``"csv"``), the format having been negotiated once at the edge. A large batch may
be encoded chunk by chunk (`encode_rows`, numbered from each chunk's first row)
and joined (`join_rows`), which fan-out relies on.
"""

from __future__ import annotations

from collections.abc import Sequence

from shipmate.serving.codecs import csv, json
from shipmate.serving.protocol import InferenceRequest, InferenceResponse

__all__ = ["csv", "decode", "encode", "encode_rows", "join_rows", "json"]


def decode(
    body: bytes, fmt: str, features: tuple[str, ...] | None = None, id_column: str | None = None
) -> InferenceRequest:
    """A ``"json"`` or ``"csv"`` body; ``features`` when the model takes a float matrix of them,
    which lets JSON records and numeric CSV take the fast paths; ``id_column``: the association
    id column that monitoring records, kept whichever path decodes the body."""
    if fmt == "csv":
        return csv.decode_csv_matrix(body, features, id_column) if features else csv.decode_csv(body)
    return json.decode_json_matrix(body, features, id_column) if features else json.decode_json(body)


def encode(response: InferenceResponse, out: str) -> bytes:
    """The response as DataRobot's JSON (``out="json"``) or CSV (``out="csv"``)."""
    return csv.encode_csv(response) if out == "csv" else json.encode_datarobot(response)


def encode_rows(response: InferenceResponse, out: str, first_row: int = 0) -> bytes:
    """The rows of an ``out`` (``"json"`` or ``"csv"``) response, for one chunk of a batch."""
    return csv.csv_rows(response) if out == "csv" else json.datarobot_rows(response, first_row)


def join_rows(response: InferenceResponse, fragments: Sequence[bytes], out: str) -> bytes:
    """The whole response from the `encode_rows` of consecutive chunks (``response``: any chunk's)."""
    if out == "csv":
        return b"".join([csv.csv_header(response), *fragments])
    return json.datarobot_body(fragments)
