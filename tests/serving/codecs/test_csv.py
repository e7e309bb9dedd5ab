"""The CSV codec's fast paths give exactly what the straightforward code gives.

The straightforward versions live here as oracles: Python's ``float`` per cell and
pandas for numeric CSV, a row at a time for the CSV response. Hypothesis drives both
with awkward numbers and labels.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipmate.packages import InputKind, Manifest, Scores, TargetType
from shipmate.serving.codecs import csv as csv_codec
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


floats = st.floats(allow_nan=True, allow_infinity=False, width=64)
label_sets = st.one_of(
    st.lists(st.text(max_size=8), min_size=2, max_size=5, unique=True),
    st.lists(st.integers(-(2**40), 2**40), min_size=2, max_size=5, unique=True),
)


FEATURES = ("age", "income band", "x")


# ------------------------------------------------------------------ numeric CSV to a matrix


def csv_general_path(body: bytes) -> np.ndarray:
    matrix = model_input(csv_codec.decode_csv(body), None, InputKind.MATRIX, FEATURES)  # type: ignore[arg-type]
    assert isinstance(matrix, np.ndarray)
    return matrix


def csv_oracle(body: bytes) -> np.ndarray:
    """Each cell through Python's own ``float``, columns picked by name."""
    import csv
    import io

    header, *lines = list(csv.reader(io.StringIO(body.decode()), skipinitialspace=True))
    return np.array([[float(line[header.index(f)]) for f in FEATURES] for line in lines])


finite = st.floats(allow_nan=False, allow_infinity=False)
rounded = st.floats(-1e300, 1e300).map(lambda v: f"{v:.3e}")  # rounding the largest up would overflow
cell = st.one_of(finite.map(repr), st.integers(-(2**53), 2**53).map(str), rounded)


@settings(max_examples=200, deadline=None)
@given(
    columns=st.permutations([*FEATURES, "extra"]).map(lambda c: c if "extra" in c[:3] else c[:3]),
    rows=st.integers(1, 25),
    data=st.data(),
)
def test_numeric_csv_fast_path_gives_the_general_paths_matrix(
    columns: list[str], rows: int, data: Any
) -> None:
    sep = data.draw(st.sampled_from([",", ", "]))
    newline = data.draw(st.sampled_from(["\n", "\r\n"]))
    lines = [sep.join(data.draw(cell) for _ in columns) for _ in range(rows)]
    body = (
        ",".join(columns) + newline + newline.join(lines) + data.draw(st.sampled_from(["", newline]))
    ).encode()
    fast = csv_codec.numeric_csv(body, FEATURES)
    assert fast is not None  # numbers only: the fast path took it
    np.testing.assert_array_equal(fast, csv_oracle(body))
    np.testing.assert_array_equal(fast, csv_general_path(body))


def test_numeric_csv_of_a_thousand_rows_matches_pandas() -> None:
    values = np.random.default_rng(3).normal(size=(1000, 3)) * 10.0 ** np.arange(-3, 6, 3)
    body = ("age,income band,x\n" + "\n".join(",".join(map(repr, row)) for row in values.tolist())).encode()
    fast = csv_codec.numeric_csv(body, FEATURES)
    assert fast is not None
    np.testing.assert_array_equal(fast, values)
    np.testing.assert_array_equal(fast, csv_general_path(body))


@pytest.mark.parametrize(
    "body",
    [
        b"age,income band,x\n1,,3\n",  # an empty cell: pandas makes it NaN
        b"age,income band,x\n1,NaN,3\n",
        b"age,income band,x\n1,null,3\n",
        b"age,income band,x\n1,true,3\n",  # pandas makes a column of booleans
        b"age,income band,x\n1,[2],3\n",
        b"age,income band,x\n1,2\n3,4,5\n",  # a short line
        b"age,income band,x\n1,+2,3\n",
        b"age,income band,x\n1,2,3\n\n4,5,6\n",  # a blank line: pandas skips it
        b"age,income band,x\n1,2,3],[4,5,6\n",  # brackets would make two rows of one line
        b"age,income band,x\n1,2,a\n",
        b'"age",income band,x\n1,2,3\n',
        b"age,age,x\n1,2,3\n",
        b"age ,income band,x\n1,2,3\n",
        b"age,income band\n1,2\n",  # a missing column
        b"age,income band,x\n",
    ],
)
def test_numeric_csv_leaves_anything_else_to_pandas(body: bytes) -> None:
    assert csv_codec.numeric_csv(body, FEATURES) is None
    try:
        expected: Any = csv_general_path(body)
    except InputError as exc:
        expected = exc
    try:
        got: Any = model_input(csv_codec.decode_csv_matrix(body, FEATURES), None, InputKind.MATRIX, FEATURES)  # type: ignore[arg-type]
    except InputError as exc:
        got = exc
    if isinstance(expected, InputError):
        assert isinstance(got, InputError) and str(got) == str(expected)
    else:
        np.testing.assert_array_equal(got, expected)


# ------------------------------------------------------------------ CSV out


def reference_csv(response: InferenceResponse) -> list[list[str]]:
    """DataRobot's CSV columns written the obvious way: ``repr`` per float, a row at a time."""
    m, scores = response.manifest, response.scores

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if np.isnan(v) else repr(v)
        return str(v)

    if scores.probabilities is None:
        assert scores.values is not None
        return [["PREDICTION"], *[[cell(v)] for v in scores.values.tolist()]]
    labels = list(m.class_labels or [])
    header = [f"{label}_PREDICTION" for label in labels] + ["PREDICTION"]
    predicted = predicted_labels(scores, m)
    rows = []
    for p, r in zip(predicted, scores.probabilities.tolist(), strict=True):
        row = [cell(v) for v in r] + [cell(p)]
        if m.target_type is TargetType.BINARY:
            row += [cell(m.threshold), cell(labels[1])]
        rows.append(row)
    if m.target_type is TargetType.BINARY:
        header += ["THRESHOLD", "POSITIVE_CLASS"]
    return [header, *rows]


def same_cells(got: bytes, expected: list[list[str]]) -> None:
    import csv
    import io

    rows = [row or [""] for row in csv.reader(io.StringIO(got.decode()))]  # a lone missing value
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected, strict=True):
        assert len(row) == len(want)
        for a, b in zip(row, want, strict=True):
            try:
                same = a == b or float(a) == float(b)  # "1e-05" and "1e-5" are one number
            except ValueError:
                same = False
            assert same, (a, b)


@settings(max_examples=150, deadline=None)
@given(labels=label_sets, rows=st.integers(0, 30), data=st.data())
def test_csv_response_matches_a_row_at_a_time(labels: list[Any], rows: int, data: Any) -> None:
    labels = [f'{label}, "quoted"' if i == 0 else label for i, label in enumerate(labels)]
    target = TargetType.BINARY if len(labels) == 2 else TargetType.MULTICLASS
    probs = np.array(
        data.draw(
            st.lists(
                st.lists(floats, min_size=len(labels), max_size=len(labels)), min_size=rows, max_size=rows
            )
        )
    ).reshape(rows, len(labels))
    response = respond("d", manifest(target, labels, 0.3), Scores(probabilities=probs))
    same_cells(csv_codec.encode_csv(response), reference_csv(response))


@settings(max_examples=60, deadline=None)
@given(values=st.lists(floats, max_size=40))
def test_csv_regression_response_matches_a_row_at_a_time(values: list[float]) -> None:
    response = respond("d", manifest(TargetType.REGRESSION, None), Scores(values=np.array(values)))
    same_cells(csv_codec.encode_csv(response), reference_csv(response))
