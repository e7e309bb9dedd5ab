"""The DataRobot JSON codec's fast paths give exactly what the straightforward code gives.

The straightforward versions live here as oracles: a dict per row for the
DataRobot response, ``orjson.loads`` plus the general matrix conversion for JSON
records. Hypothesis drives both with awkward numbers, labels and records.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipmate.packages import InputKind, Manifest, Scores, TargetType
from shipmate.serving.codecs import csv as csv_codec
from shipmate.serving.codecs import json as json_codec
from shipmate.serving.dataplane import predicted_indices, respond
from shipmate.serving.inputs import model_input
from shipmate.serving.protocol import InferenceResponse, InputError


def manifest(target: TargetType, labels: list[Any] | None, threshold: float | None = None) -> Manifest:
    return Manifest(
        name="m",
        framework="sklearn",
        target_type=target,
        target_name="price" if target is TargetType.REGRESSION else "label",
        class_labels=labels,
        prediction_threshold=threshold,
        features=[{"name": "x", "type": "numeric"}],
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        model_path="model.joblib",
        files={"model.joblib": "0" * 64},
    )


def predicted_labels(scores: Scores, m: Manifest) -> list[Any]:
    return list(np.array(m.class_labels, dtype=object)[predicted_indices(scores, m)].tolist())


def reference_datarobot(response: InferenceResponse) -> Any:
    """The DataRobot shape built the obvious way: one dict per row."""
    m, scores = response.manifest, response.scores
    if scores.probabilities is None:
        assert scores.values is not None
        target = m.target_name or "Prediction"
        return {
            "data": [
                {"rowId": i, "prediction": v, "predictionValues": [{"label": target, "value": v}]}
                for i, v in enumerate(scores.values.tolist())
            ]
        }
    labels = list(m.class_labels or [])
    predicted = predicted_labels(scores, m)
    rows = []
    for i, (p, r) in enumerate(zip(predicted, scores.probabilities.tolist(), strict=True)):
        row: dict[str, Any] = {"rowId": i, "prediction": p}
        if m.target_type is TargetType.BINARY:
            row["predictionThreshold"] = m.threshold
        row["predictionValues"] = [{"label": label, "value": v} for label, v in zip(labels, r, strict=True)]
        rows.append(row)
    return {"data": rows}


floats = st.floats(allow_nan=True, allow_infinity=False, width=64)
label_sets = st.one_of(
    st.lists(st.text(max_size=8), min_size=2, max_size=5, unique=True),
    st.lists(st.integers(-(2**40), 2**40), min_size=2, max_size=5, unique=True),
)


def same_json(a: bytes, expected: Any) -> None:
    assert a == orjson.dumps(expected)  # byte for byte: same numbers, same key order


@settings(max_examples=200, deadline=None)
@given(labels=label_sets, rows=st.integers(1, 40), data=st.data())
def test_classification_response_matches_one_dict_per_row(labels: list[Any], rows: int, data: Any) -> None:
    target = TargetType.BINARY if len(labels) == 2 else TargetType.MULTICLASS
    threshold = data.draw(st.none() | st.floats(0.01, 0.99)) if target is TargetType.BINARY else None
    probs = np.array(
        data.draw(
            st.lists(
                st.lists(floats, min_size=len(labels), max_size=len(labels)), min_size=rows, max_size=rows
            )
        )
    )
    response = respond("d", manifest(target, labels, threshold), Scores(probabilities=probs))
    same_json(json_codec.encode_datarobot(response), reference_datarobot(response))


@settings(max_examples=100, deadline=None)
@given(values=st.lists(floats, min_size=1, max_size=60))
def test_regression_response_matches_one_dict_per_row(values: list[float]) -> None:
    response = respond("d", manifest(TargetType.REGRESSION, None), Scores(values=np.array(values)))
    same_json(json_codec.encode_datarobot(response), reference_datarobot(response))


@settings(max_examples=100, deadline=None)
@given(labels=label_sets, rows=st.integers(1, 30), data=st.data())
def test_chunks_encoded_apart_join_into_the_whole_response(labels: list[Any], rows: int, data: Any) -> None:
    """What fan-out relies on: each chunk's rows, numbered from its first row, joined in order."""
    target = TargetType.BINARY if len(labels) == 2 else TargetType.MULTICLASS
    m = manifest(target, labels, 0.4)
    probs = np.array(data.draw(st.lists(st.lists(floats, min_size=len(labels), max_size=len(labels)),
                                        min_size=rows, max_size=rows)))  # fmt: skip
    cuts = sorted(data.draw(st.lists(st.integers(0, rows), max_size=3)))
    bounds = [0, *cuts, rows]
    parts = [Scores(probabilities=probs[a:b]) for a, b in itertools.pairwise(bounds)]
    whole = respond("d", m, Scores(probabilities=probs))
    json_parts = [
        json_codec.datarobot_rows(respond("d", m, part), first)
        for part, first in zip(parts, bounds, strict=False)
    ]
    assert json_codec.datarobot_body(json_parts) == json_codec.encode_datarobot(whole)
    csv_parts = b"".join(csv_codec.csv_rows(respond("d", m, part)) for part in parts)
    assert csv_codec.csv_header(whole) + csv_parts == csv_codec.encode_csv(whole)


@pytest.mark.parametrize("first_row", [0, 99_990, 250_000])
def test_row_ids_past_the_cached_ones(first_row: int) -> None:
    values = np.arange(20, dtype=np.float64)
    text = json_codec.datarobot_rows(
        respond("d", manifest(TargetType.REGRESSION, None), Scores(values=values)), first_row
    )
    assert text.startswith(b",")
    ids = [row["rowId"] for row in orjson.loads(b"[" + text[1:] + b"]")]
    assert ids == list(range(first_row, first_row + 20))


def test_empty_response_is_an_empty_list() -> None:
    response = respond("d", manifest(TargetType.REGRESSION, None), Scores(values=np.array([])))
    assert orjson.loads(json_codec.encode_datarobot(response)) == {"data": []}


# ------------------------------------------------------------------ JSON records to a matrix

FEATURES = ("age", "income band", "x")
numbers = st.one_of(st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False), st.none())
record = st.fixed_dictionaries(
    {f: numbers for f in FEATURES}, optional={"extra": st.text(max_size=3) | numbers}
).map(lambda d: dict(sorted(d.items(), key=lambda kv: hash(kv[0]))))  # any key order


def general_path(body: bytes) -> np.ndarray:
    matrix = model_input(json_codec.decode_json(body, FEATURES), None, InputKind.MATRIX, FEATURES)  # type: ignore[arg-type]
    assert isinstance(matrix, np.ndarray)
    return matrix


@settings(max_examples=200, deadline=None)
@given(records=st.lists(record, min_size=1, max_size=30))
def test_records_fast_path_gives_the_general_paths_matrix(records: list[dict[str, Any]]) -> None:
    body = orjson.dumps(records)
    fast = json_codec.decode_json_matrix(body, FEATURES)
    assert isinstance(fast.rows, np.ndarray)  # numbers and nulls only: the fast path took it
    np.testing.assert_array_equal(fast.rows, general_path(body))
    assert fast.columns == FEATURES


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'[{"age": 1, "income band": "abc", "x": 2}]', "row 0, column 'income band': expected a number"),
        (
            b'[{"age": 1, "income band": 2, "x": 3}, {"age": 1, "x": 2}]',
            "row 1, column 'income band': missing",
        ),
        (b'[{"age": 1, "income band": 2, "x": [3]}]', "row 0, column 'x': expected a number"),
        (b'[{"age": 1, "income band": 2, "x": 3},]', "not valid JSON"),
    ],
)
def test_records_the_fast_path_refuses_get_the_general_paths_error(body: bytes, message: str) -> None:
    def fast_path() -> Any:
        return model_input(json_codec.decode_json_matrix(body, FEATURES), None, InputKind.MATRIX, FEATURES)  # type: ignore[arg-type]

    for path in (lambda: general_path(body), fast_path):
        with pytest.raises(InputError, match=message.replace("[", r"\[")):
            path()


def test_records_columns_the_model_does_not_use_may_vary_by_row() -> None:
    body = b'[{"age": "1", "income band": 2, "x": 3, "note": "a"}, {"x": 1, "age": 2, "income band": 3}]'
    np.testing.assert_array_equal(general_path(body), [[1.0, 2.0, 3.0], [2.0, 3.0, 1.0]])
    with pytest.raises(InputError, match="row 1, column 'note': missing"):
        json_codec.decode_json(body)  # a model that takes a frame gets every column: each row needs them all


def test_records_numeric_strings_and_booleans_still_convert() -> None:
    body = b'[{"age": "41", "income band": true, "x": 2.5}]'
    request = json_codec.decode_json_matrix(body, FEATURES)
    matrix = model_input(request, None, InputKind.MATRIX, FEATURES)  # type: ignore[arg-type]
    np.testing.assert_array_equal(matrix, [[41.0, 1.0, 2.5]])
