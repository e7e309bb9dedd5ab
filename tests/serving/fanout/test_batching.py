"""Cutting bodies into chunks of whole rows: a cut never changes what the rows are.

The property that makes fan-out safe: if every chunk decodes, the chunks hold the
body's rows, in order. Hypothesis tries bodies built to mislead the cutter: strings
and nested arrays that contain the very bytes it looks for.
"""

from __future__ import annotations

import csv
import io
import itertools
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipmate.packages import Scores
from shipmate.serving.fanout.batching import (
    Cutter,
    balanced_share,
    cut,
    guess_rows,
    join_scores,
)

tricky_text = st.sampled_from(["}, {", "},{", '"}, {"', "plain", "]", "[{", "},\n {"]) | st.text(max_size=6)
values = st.recursive(
    st.none()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**63), 2**63 - 1)
    | tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=6,
)
records = st.lists(st.dictionaries(tricky_text, values, min_size=1, max_size=4), min_size=1, max_size=25)
shares = st.lists(st.floats(0.05, 1.0), min_size=2, max_size=4)


def decoded(chunk: bytes) -> list[Any] | None:
    try:
        value = orjson.loads(chunk)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


@settings(max_examples=400, deadline=None)
@given(rows=records, parts=shares, indent=st.booleans())
def test_json_chunks_that_all_decode_hold_the_records_in_order(
    rows: list[dict[str, Any]], parts: list[float], indent: bool
) -> None:
    body = orjson.dumps(rows, option=orjson.OPT_INDENT_2 if indent else 0)
    chunks = cut(body, "json", parts)
    if chunks is None:
        return
    assert len(chunks) == len(parts)
    lists = [decoded(c) for c in chunks]
    if all(lst is not None for lst in lists):
        assert [row for lst in lists for row in lst or []] == orjson.loads(body)
        assert all(lists), "no chunk is empty"


def test_json_flat_records_are_cut_by_share() -> None:
    rows = [{"a": i, "b": i / 3} for i in range(1000)]
    chunks = cut(orjson.dumps(rows), "json", [0.5, 0.25, 0.25])
    assert chunks is not None
    sizes = [len(orjson.loads(c)) for c in chunks]
    assert sum(sizes) == 1000
    assert abs(sizes[0] - 500) < 10 and abs(sizes[1] - 250) < 10


@pytest.mark.parametrize(
    "body",
    [b'{"a": [1, 2]}', b'[{"a": 1}]', b"[1, 2, 3]", b"", b'  [{"a": 1}, {"a": 2}'],
)
def test_json_bodies_without_a_place_to_cut_are_left_whole(body: bytes) -> None:
    assert cut(body, "json", [0.5, 0.5]) is None


def test_json_a_cut_inside_a_string_leaves_chunks_that_do_not_decode() -> None:
    chunks = cut(b'[{"a": "},{"}]', "json", [0.5, 0.5])
    assert chunks is not None and None in [decoded(c) for c in chunks]


def csv_body(rows: list[list[float]], header: list[str], newline: str = "\n") -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator=newline).writerows([header, *rows])
    return out.getvalue().encode()


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.floats(allow_nan=False, width=32), min_size=3, max_size=3), min_size=1, max_size=40
    ),
    parts=shares,
    newline=st.sampled_from(["\n", "\r\n"]),
)
def test_csv_chunks_each_have_the_header_and_together_the_rows(
    rows: list[list[float]], parts: list[float], newline: str
) -> None:
    header = ["x", "y z", "w"]
    body = csv_body(rows, header, newline)
    chunks = cut(body, "csv", parts)
    if chunks is None:  # no row boundary near a share's offset: scored whole
        return
    read = [list(csv.reader(io.StringIO(c.decode()))) for c in chunks]
    assert all(r[0] == header and len(r) > 1 for r in read)
    assert [row for r in read for row in r[1:]] == list(csv.reader(io.StringIO(body.decode())))[1:]


def test_csv_rows_are_cut_by_share() -> None:
    body = csv_body([[i, i / 3, 1.0] for i in range(1000)], ["x", "y", "z"])
    chunks = cut(body, "csv", [0.5, 0.5])
    assert chunks is not None
    sizes = [c.count(b"\n") - 1 for c in chunks]
    assert sum(sizes) == 1000 and abs(sizes[0] - 500) < 10


def test_csv_with_quotes_is_left_whole() -> None:
    assert cut(b'a,b\n1,"x\ny"\n2,3\n3,4\n', "csv", [0.5, 0.5]) is None


@settings(max_examples=300, deadline=None)
@given(
    rows=records,
    parts=shares,
    fmt=st.sampled_from(["json", "csv"]),
    splits=st.lists(st.floats(0, 1), max_size=6),
)
def test_a_body_cut_as_it_arrives_gives_the_chunks_of_the_whole(
    rows: list[dict[str, Any]], parts: list[float], fmt: str, splits: list[float]
) -> None:
    """However the body arrives, chunks come out as soon as they are whole, and the same as at once."""
    if fmt == "json":
        body = orjson.dumps(rows)
    else:
        body = csv_body([[str(v) for v in r.values()] for r in rows], [f"c{i}" for i in range(len(rows[0]))])
    offsets = sorted({int(f * len(body)) for f in splits} | {0, len(body)})
    cutter, chunks = Cutter(fmt, len(body), parts), []
    for a, b in itertools.pairwise(offsets):
        chunks += cutter.feed(body[a:b])
    last = cutter.finish()
    whole = cut(body, fmt, parts)
    assert (None if last is None else [*chunks, last]) == whole
    assert bytes(cutter.body) == body


def test_a_chunk_goes_out_once_its_rows_are_in() -> None:
    body = orjson.dumps([{"a": i} for i in range(100)])
    cutter = Cutter("json", len(body), [0.3, 0.7])
    assert cutter.feed(body[: len(body) // 5]) == []  # not yet 30 %
    (first,) = cutter.feed(body[len(body) // 5 : len(body) // 2])
    assert orjson.loads(first) == [{"a": i} for i in range(len(orjson.loads(first)))]
    assert cutter.feed(body[len(body) // 2 :]) == []
    last = cutter.finish()
    assert last is not None and orjson.loads(first) + orjson.loads(last) == orjson.loads(body)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.lists(st.floats(allow_nan=False), min_size=2, max_size=2), min_size=2, max_size=60),
    parts=shares,
    newline=st.sampled_from(["\n", "\r\n"]),
)
def test_rows_are_counted_right_for_flat_records_and_csv_lines(
    rows: list[list[float]], parts: list[float], newline: str
) -> None:
    records = orjson.dumps([{"x": a, "y": b} for a, b in rows])
    for chunks, fmt in [
        (cut(records, "json", parts), "json"),
        (cut(csv_body(rows, ["x", "y"], newline), "csv", parts), "csv"),
    ]:
        if chunks is None:
            continue
        sizes = [len(orjson.loads(c)) if fmt == "json" else len(c.splitlines()) - 1 for c in chunks]
        assert [guess_rows(c, fmt) for c in chunks] == sizes


def test_rows_of_records_holding_objects_are_only_guessed() -> None:
    """A nested object counts as a row: the guess is too high, and fan-out corrects it."""
    chunks = cut(orjson.dumps([{"x": i, "meta": {"i": i}} for i in range(10)]), "json", [0.5, 0.5])
    assert chunks is not None
    assert guess_rows(chunks[0], "json") == 2 * len(orjson.loads(chunks[0]))


def test_scores_join_in_order() -> None:
    a, b = np.array([[0.1, 0.9]]), np.array([[0.7, 0.3], [0.5, 0.5]])
    joined = join_scores([Scores(probabilities=a), Scores(probabilities=b)])
    assert joined.probabilities is not None
    np.testing.assert_array_equal(joined.probabilities, np.vstack([a, b]))
    values = join_scores([Scores(values=np.array([1.0])), Scores(values=np.array([2.0, 3.0]))]).values
    assert values is not None and values.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="scored differently"):
        join_scores([Scores(probabilities=a), Scores(values=np.array([1.0]))])


def test_the_balanced_share_makes_everyone_finish_together() -> None:
    # own share 0.5 took 2 ms, the sibling's 0.5 took 3 ms: the sibling is slower per row
    share = balanced_share(0.5, 0.002, 0.003, siblings=1)
    assert share == pytest.approx(0.6)
    assert share * 0.002 / 0.5 == pytest.approx((1 - share) * 0.003 / 0.5)  # equal finishing times
    # two siblings, everyone equally fast: a third each
    assert balanced_share(0.2, 0.002, 0.004, siblings=2) == pytest.approx(1 / 3)
