"""DataRobot-compatible JSON: request bodies in, DataRobot's prediction response out.

Accepted in: a JSON array of records (DataRobot's PPS), a JSON object of columns,
and MLflow's ``dataframe_split`` / ``dataframe_records``. Out: DataRobot's response
shape (``data[]`` with ``prediction``, ``predictionValues`` and ``rowId``). Bad
bodies raise `InputError` naming the row and column.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from typing import Any

import msgspec
import numpy as np
import orjson

from shipmate.packages import TargetType
from shipmate.serving.codecs.rows import interleave, numbers, pick
from shipmate.serving.protocol import InferenceRequest, InferenceResponse, InputError

# ---------------------------------------------------------------- decoding


def parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"the body is not valid JSON: {exc}", status=400) from None


def _from_records(records: list[Any], features: tuple[str, ...] | None = None) -> InferenceRequest:
    """Rows of the columns of the first record, or only of ``features`` when it has them all
    (then columns the model does not use may differ from row to row)."""
    if not records:
        raise InputError("no rows to score", status=400)
    first = records[0]
    if not isinstance(first, dict) or not first:
        raise InputError("expected an object of column values", row=0, status=400)
    columns = features if features and all(f in first for f in features) else tuple(first)
    getter = itemgetter(*columns)
    try:
        rows = list(map(getter, records))
    except (KeyError, TypeError):
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                raise InputError("expected an object of column values", row=i, status=400) from None
            for c in columns:
                if c not in record:
                    raise InputError(
                        "missing (row 0 has it; every row needs the same columns)", row=i, column=c
                    ) from None
        raise
    if len(columns) == 1:
        rows = [(v,) for v in rows]
    return InferenceRequest(columns=columns, rows=rows)


def _from_columns(columns: dict[str, Any]) -> InferenceRequest:
    names = tuple(columns)
    values = list(columns.values())
    if not all(isinstance(v, list) for v in values):
        if any(isinstance(v, list | dict) for v in values):
            raise InputError(
                "a JSON object must map every column to a list of values (or be one record)", status=400
            )
        return InferenceRequest(columns=names, rows=[tuple(values)])
    n = len(values[0])
    for name, v in columns.items():
        if len(v) != n:
            raise InputError(f"has {len(v)} values, but column {names[0]!r} has {n}", column=name, status=400)
    if n == 0:
        raise InputError("no rows to score", status=400)
    return InferenceRequest(columns=names, rows=list(zip(*values, strict=True)))


def _from_split(split: Any) -> InferenceRequest:
    if (
        not isinstance(split, dict)
        or not isinstance(split.get("columns"), list)
        or not isinstance(split.get("data"), list)
    ):
        raise InputError("dataframe_split needs 'columns' (a list) and 'data' (a list of rows)", status=400)
    columns = tuple(str(c) for c in split["columns"])
    rows = split["data"]
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise InputError(f"expected a list of {len(columns)} values", row=i, status=400)
    if not rows:
        raise InputError("no rows to score", status=400)
    return InferenceRequest(columns=columns, rows=rows)


def decode_json(body: bytes, features: tuple[str, ...] | None = None) -> InferenceRequest:
    """JSON records, columns, or MLflow's dataframe_split / dataframe_records.

    ``features``: the model's, when known; records then need only those columns.
    """
    obj = parse(body)
    if isinstance(obj, list):
        return _from_records(obj, features)
    if not isinstance(obj, dict) or not obj:
        raise InputError("expected a JSON array of records or an object of columns", status=400)
    if "dataframe_split" in obj:
        return _from_split(obj["dataframe_split"])
    if "dataframe_records" in obj:
        records = obj["dataframe_records"]
        if not isinstance(records, list):
            raise InputError("dataframe_records must be a list of records", status=400)
        return _from_records(records, features)
    return _from_columns(obj)


class RecordsDecoder:
    """JSON records straight to a float matrix in the model's feature order.

    The fast path for all-numeric models: msgspec decodes each record into a
    fixed struct (no dict per row, unknown keys skipped), which costs less than
    ``orjson.loads`` plus the conversion (measured in docs/serving.md). It accepts only
    what the general path would turn into the very same matrix (numbers and
    nulls under every feature); for anything else ``decode`` returns ``None`` and
    the general path runs, which also names the bad row and column.
    """

    def __init__(self, features: Sequence[str]) -> None:
        self.features = tuple(features)
        fields = [(f"c{i}", float | None) for i in range(len(self.features))]
        row = msgspec.defstruct(
            "Row", fields, rename={f"c{i}": name for i, name in enumerate(self.features)}, gc=False
        )
        self._decoder = msgspec.json.Decoder(list[row])  # type: ignore[valid-type]

    def decode(self, body: bytes) -> np.ndarray | None:
        try:
            records = self._decoder.decode(body)
        except msgspec.DecodeError:
            return None
        if not records:
            return None
        width = len(self.features)
        rows = map(msgspec.structs.astuple, records)
        try:
            flat = np.fromiter(chain.from_iterable(rows), np.float64, count=len(records) * width)
        except TypeError:  # a null somewhere: numpy turns None into NaN only via np.array
            return np.array(list(map(msgspec.structs.astuple, records)), dtype=np.float64)
        return flat.reshape(len(records), width)


@lru_cache(maxsize=256)
def records_decoder(features: tuple[str, ...]) -> RecordsDecoder:
    """One decoder per feature list (building the struct type costs more than a batch)."""
    return RecordsDecoder(features)


def decode_json_matrix(
    body: bytes, features: tuple[str, ...], id_column: str | None = None
) -> InferenceRequest:
    """`decode_json` for a model that takes a float matrix: the fast path when the body allows it.

    ``id_column``: the association id column to keep; the fast path reads it in a second pass
    (`association_ids_decoder`), the general path keeps it among the columns."""
    if id_column in features:
        id_column = None
    if body[:1] == b"[" or body.lstrip()[:1] == b"[":
        matrix = records_decoder(features).decode(body)
        if matrix is not None:
            ids = association_ids_decoder(id_column).decode(body) if id_column else None
            return InferenceRequest(columns=features, rows=matrix, association_ids=ids)
    return decode_json(body, (*features, id_column) if id_column else features)


class IdsDecoder:
    """One column of JSON records as text (or ``None`` where a record lacks it), other keys skipped."""

    def __init__(self, column: str) -> None:
        row = msgspec.defstruct(
            "Ids", [("c0", str | int | float | None, None)], rename={"c0": column}, gc=False
        )
        self._decoder = msgspec.json.Decoder(list[row])  # type: ignore[valid-type]

    def decode(self, body: bytes) -> list[str | None] | None:
        try:
            records = self._decoder.decode(body)
        except msgspec.DecodeError:  # e.g. an id that is an object: recorded as having none
            return None
        return [None if r.c0 is None else str(r.c0) for r in records]  # type: ignore[attr-defined]


@lru_cache(maxsize=16)
def association_ids_decoder(column: str) -> IdsDecoder:
    return IdsDecoder(column)


# ---------------------------------------------------------------- encoding


_ROW_OPENINGS: list[bytes] = []
_ROW_OPENINGS_CACHED = 100_000


def _row_openings(first: int, n: int) -> list[bytes]:
    """``,{"rowId":<i>,"prediction":`` for rows ``first`` to ``first + n - 1``.

    The same texts open every response, so the first 100,000 are made once and
    reused (about 6 MB at most); row ids beyond that are formatted per call.
    """
    stop = first + n
    if stop > len(_ROW_OPENINGS) and stop <= _ROW_OPENINGS_CACHED:
        grown = max(stop, 2 * len(_ROW_OPENINGS), 1024)
        _ROW_OPENINGS.extend(_opening_texts(len(_ROW_OPENINGS), min(grown, _ROW_OPENINGS_CACHED)))
    if stop <= len(_ROW_OPENINGS):
        return _ROW_OPENINGS[first:stop]
    return _opening_texts(first, stop)


def _opening_texts(first: int, stop: int) -> list[bytes]:
    return [b',{"rowId":' + i + b',"prediction":' for i in numbers(np.arange(first, stop), np.int64)]


def datarobot_rows(response: InferenceResponse, first_row: int = 0) -> bytes:
    """The rows of DataRobot's prediction response, numbered from ``first_row``, each after a comma.

    Per row: ``rowId``, ``prediction`` (the label, or the value for regression),
    ``predictionThreshold`` for binary models, and ``predictionValues`` with one
    ``{"label", "value"}`` per class (regression: the target name and the value).
    A batch scored in chunks is encoded chunk by chunk and joined (`datarobot_body`).
    """
    manifest, scores = response.manifest, response.scores
    n = len(scores)
    if n == 0:
        return b""
    pieces: list[bytes | list[bytes]] = [_row_openings(first_row, n)]
    if scores.probabilities is None:
        assert scores.values is not None
        values = numbers(scores.values)
        target = orjson.dumps(manifest.target_name or "Prediction")
        pieces += [values, b',"predictionValues":[{"label":' + target + b',"value":', values, b"}]}"]
    else:
        labels = [orjson.dumps(label) for label in manifest.class_labels or []]
        threshold = b""
        if manifest.target_type is TargetType.BINARY:
            threshold = b',"predictionThreshold":' + orjson.dumps(manifest.threshold)
        # the predicted label and everything up to the first probability, per predicted class
        first_value = b',"predictionValues":[{"label":' + labels[0] + b',"value":'
        leads = [label + threshold + first_value for label in labels]
        pieces.append(pick(leads, response.predicted_classes()))
        for j, label in enumerate(labels):
            if j:
                pieces.append(b'},{"label":' + label + b',"value":')
            pieces.append(numbers(scores.probabilities[:, j]))
        pieces.append(b"}]}")
    return interleave(n, pieces)


def datarobot_body(fragments: Sequence[bytes]) -> bytes:
    """The whole response from the rows of consecutive chunks (`datarobot_rows`), in one copy."""
    texts: list[bytes | memoryview] = [f for f in fragments if f]
    if texts:
        texts[0] = memoryview(texts[0])[1:]  # the first row's comma
    return b"".join([b'{"data":[', *texts, b"]}"])


def encode_datarobot(response: InferenceResponse) -> bytes:
    """DataRobot's prediction response: ``{"data": [{"rowId", "prediction", "predictionValues", …}]}``."""
    return datarobot_body([datarobot_rows(response)])
