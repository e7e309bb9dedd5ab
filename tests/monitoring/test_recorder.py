"""The recorder: bins every feature and output, adds up exactly across flushes, never raises."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.monitoring.conftest import FakeDeployment, make_manifest, wait_until

from shipmate.monitoring.binning import ModelBins
from shipmate.monitoring.recorder import Recorder
from shipmate.monitoring.records import MinuteAggregate
from shipmate.monitoring.settings import MonitorSettings, SpoolerType
from shipmate.monitoring.spool import AGGREGATE, Spool
from shipmate.packages import Scores


@dataclass
class Request:
    columns: tuple[str, ...]
    rows: Any = None
    frame: pd.DataFrame | None = None


class ListSpool(Spool):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.records: list[dict[str, Any]] = []
        self.fail = fail

    def write(self, payload: bytes, kind: str = AGGREGATE) -> bool:
        if self.fail:
            return self.drop(kind, "full")
        self.records.append(orjson.loads(payload))
        return True


SETTINGS = MonitorSettings(enabled=True, spooler_type=SpoolerType.NONE)


def _recorder(spool: Spool | None = None, now: float = 6000.0, **changes: Any) -> Recorder:
    from dataclasses import replace

    return Recorder(replace(SETTINGS, **changes), spool or ListSpool(), clock=lambda: now)


def _scores(n: int, seed: int = 0) -> Scores:
    p = np.random.default_rng(seed).uniform(size=n)
    return Scores(probabilities=np.column_stack([1 - p, p]))


def _matrix_request(dep: FakeDeployment, values: np.ndarray) -> Request:
    return Request(columns=dep.features, rows=values)


def test_a_flush_bins_features_and_outputs(deployment: FakeDeployment) -> None:
    spool = ListSpool()
    recorder = _recorder(spool)
    frame = pd.DataFrame(
        {
            "x0": [0.0, 1.0, None],
            "x1": [1.0, 2.0, 3.0],
            "x2": [5.0, 5.0, 5.0],
            "colour": ["red", "pink", None],
        }
    )
    recorder.on_scored(deployment, Request(columns=tuple(frame.columns), frame=frame), _scores(3))
    recorder.on_request(deployment, rows=3, response_ms=4.0, execution_ms=1.0, status=200, consumer="c1")
    recorder.on_request(deployment, rows=0, response_ms=1.0, execution_ms=None, status=422, consumer="c1")
    recorder.on_request(deployment, rows=0, response_ms=1.0, execution_ms=None, status=500, consumer="c2")
    (record,) = recorder.flush()
    assert record.key == ("d-1", "m-1", 100)
    assert (record.requests, record.rows, record.user_errors, record.server_errors) == (3, 3, 1, 1)
    assert record.consumers == {"c1": 2, "c2": 1}
    x0 = record.features["x0"]
    assert x0.count == 3 and x0.missing == 1 and x0.counts[-1] == 1 and sum(x0.counts) == 3
    assert (x0.minimum, x0.maximum, x0.total, x0.total_sq) == (0.0, 1.0, 1.0, 1.0)
    colour = record.features["colour"]
    values = deployment.manifest.baseline["colour"]["bins"]["values"]
    assert colour.counts[values.index("red")] == 1
    assert colour.counts[-2] == 1 and colour.counts[-1] == 1  # other ("pink") and missing
    assert set(record.predictions) == {"p:no", "p:yes", "label"}
    assert sum(record.predictions["label"].counts) == 3
    assert spool.records == [record.to_json()]
    assert MinuteAggregate.from_json(spool.records[0]).features["x0"].counts == x0.counts


def test_rows_in_every_layout_count_the_same(deployment: FakeDeployment) -> None:
    rng = np.random.default_rng(3)
    numbers = rng.normal(size=(6, 3))
    colours = ["red", "blue", "grey", "red", None, "green"]
    frame = pd.DataFrame({"x0": numbers[:, 0], "x1": numbers[:, 1], "x2": numbers[:, 2], "colour": colours})
    as_rows = Request(columns=tuple(frame.columns), rows=[tuple(r) for r in frame.itertuples(index=False)])
    bins = ModelBins(deployment.manifest)
    by_frame, _ = bins.count([(Request(columns=tuple(frame.columns), frame=frame), _scores(6))])
    by_rows, _ = bins.count([(as_rows, _scores(6))])
    assert {k: v.counts for k, v in by_frame.items()} == {k: v.counts for k, v in by_rows.items()}


def _numeric_requests(dep: FakeDeployment, sizes: list[int], seed: int) -> list[tuple[Request, Scores]]:
    rng = np.random.default_rng(seed)
    out = []
    for i, n in enumerate(sizes):
        matrix = rng.normal(1, 3, size=(n, len(dep.features)))
        matrix[rng.uniform(size=matrix.shape) < 0.1] = np.nan
        out.append((Request(columns=dep.features, rows=matrix), _scores(n, seed + i)))
    return out


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=40), min_size=2, max_size=12),
    cut=st.integers(min_value=1, max_value=11),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_merging_two_flushes_equals_one_flush_of_both(sizes: list[int], cut: int, seed: int) -> None:
    manifest = make_manifest(features=2)
    dep = FakeDeployment(id="d", manifest=manifest, features=("x0", "x1"))
    numeric_only = manifest.model_copy(
        update={
            "features": manifest.features[:2],
            "baseline": {k: manifest.baseline[k] for k in ("x0", "x1")},
        }
    )
    dep = FakeDeployment(id="d", manifest=numeric_only, features=("x0", "x1"))
    requests = _numeric_requests(dep, sizes, seed)
    cut = min(cut, len(requests) - 1)

    def flush(part: list[tuple[Request, Scores]]) -> MinuteAggregate:
        recorder = _recorder()
        for request, scores in part:
            recorder.on_scored(dep, request, scores)
            recorder.on_request(
                dep, rows=len(scores), response_ms=2.5, execution_ms=1.0, status=200, consumer="c"
            )
        (record,) = recorder.flush()
        return record

    merged = flush(requests[:cut])
    merged.merge(flush(requests[cut:]))
    whole = flush(requests)
    assert merged.requests == whole.requests and merged.rows == whole.rows
    assert merged.response_ms.buckets == whole.response_ms.buckets
    assert merged.consumers == whole.consumers
    for column in ("features", "predictions"):
        left, right = getattr(merged, column), getattr(whole, column)
        assert set(left) == set(right)
        for name in left:
            a, b = left[name], right[name]
            assert (a.counts, a.count, a.missing, a.minimum, a.maximum) == (
                b.counts,
                b.count,
                b.missing,
                b.minimum,
                b.maximum,
            ), name
            assert math.isclose(a.total, b.total, rel_tol=1e-9, abs_tol=1e-9)
            assert math.isclose(a.total_sq, b.total_sq, rel_tol=1e-9, abs_tol=1e-9)


def test_records_are_split_by_minute_and_numeric(numeric: FakeDeployment) -> None:
    now = [6000.0]
    recorder = Recorder(SETTINGS, ListSpool(), clock=lambda: now[0])
    other = FakeDeployment(id="d-2", manifest=numeric.manifest, features=numeric.features)
    for dep in (numeric, other):
        recorder.on_scored(dep, _matrix_request(dep, np.zeros((2, 3))), _scores(2))
    now[0] = 6061.0
    recorder.on_scored(numeric, _matrix_request(numeric, np.zeros((1, 3))), _scores(1))
    keys = [record.key for record in recorder.flush()]
    assert keys == [("d-1", "m-1", 100), ("d-1", "m-1", 101), ("d-2", "m-1", 100)]


def test_single_mode_ids_come_from_the_settings(numeric: FakeDeployment) -> None:
    recorder = _recorder(deployment_id="dep-from-env", model_id="model-from-env")
    recorder.on_request(numeric, rows=1, response_ms=1, execution_ms=1, status=200, consumer=None)
    (record,) = recorder.flush()
    assert record.key[:2] == ("dep-from-env", "model-from-env")


def test_a_full_spool_is_counted_never_raised(numeric: FakeDeployment) -> None:
    spool = ListSpool(fail=True)
    recorder = _recorder(spool)
    recorder.on_scored(numeric, _matrix_request(numeric, np.ones((2, 3))), _scores(2))
    assert len(recorder.flush()) == 1
    assert spool.dropped_total() == 1 and recorder.records_written == 0
    spool.fail = False
    recorder.on_request(numeric, rows=1, response_ms=1, execution_ms=1, status=200, consumer=None)
    recorder.flush()
    assert spool.records[0]["dropped"] == 1  # the drop is reported in the next record that gets through


def test_rows_beyond_the_pending_limit_are_counted_not_binned(numeric: FakeDeployment) -> None:
    recorder = _recorder(max_pending_rows=3)
    for _ in range(3):
        recorder.on_scored(numeric, _matrix_request(numeric, np.ones((2, 3))), _scores(2))
    assert recorder.unbinned_rows == 2
    (record,) = recorder.flush()
    assert record.features["x0"].count == 4


def test_the_flusher_thread_flushes_on_rows_and_at_stop(numeric: FakeDeployment) -> None:
    spool = ListSpool()
    recorder = _recorder(spool, flush_rows=5, flush_seconds=60.0)
    recorder.start()
    try:
        recorder.on_scored(numeric, _matrix_request(numeric, np.ones((6, 3))), _scores(6))
        assert wait_until(lambda: spool.records, timeout=60, interval=0.01)  # the thread may start late
        assert spool.records and MinuteAggregate.from_json(spool.records[0]).features["x0"].count == 6
        recorder.on_scored(numeric, _matrix_request(numeric, np.ones((1, 3))), _scores(1))
    finally:
        recorder.stop()
    assert len(spool.records) == 2


def test_a_package_without_bins_is_monitored_from_its_quantiles(caplog: pytest.LogCaptureFixture) -> None:
    manifest = make_manifest(with_bins=False, categorical=False)
    dep = FakeDeployment(id="old", manifest=manifest, features=tuple(manifest.feature_names))
    recorder = _recorder()
    recorder.on_scored(dep, _matrix_request(dep, np.ones((2, 3))), _scores(2))
    with caplog.at_level("WARNING"):
        (record,) = recorder.flush()
    assert "predates monitoring bins" in caplog.text
    assert record.features["x0"].count == 2
    assert len(record.predictions["p:yes"].counts) == 13  # fixed tenths: 10 bins + 3


def test_regression_outputs() -> None:
    manifest = make_manifest(target="regression", categorical=False)
    dep = FakeDeployment(id="r", manifest=manifest, features=tuple(manifest.feature_names))
    recorder = _recorder()
    recorder.on_scored(dep, _matrix_request(dep, np.ones((3, 3))), Scores(values=np.array([1.0, 2.0, 3.0])))
    (record,) = recorder.flush()
    assert set(record.predictions) == {"value"}
    assert record.predictions["value"].total == 6.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=50))
def test_latencies_bucketed_at_once_equal_one_by_one(values: list[float]) -> None:
    from shipmate.monitoring.recorder import latency_histogram
    from shipmate.monitoring.records import LatencyHistogram

    one_by_one = LatencyHistogram()
    for v in values:
        one_by_one.observe(v)
    at_once = latency_histogram(np.array(values, dtype=np.float64))
    assert at_once.buckets == one_by_one.buckets
    assert at_once.max_ms == one_by_one.max_ms
    assert math.isclose(at_once.total_ms, one_by_one.total_ms, rel_tol=1e-9, abs_tol=1e-9)


def test_prometheus_histograms_observed_in_bulk_equal_one_by_one() -> None:
    from prometheus_client import CollectorRegistry, Histogram
    from prometheus_client.exposition import generate_latest

    from shipmate.monitoring.asgi import LATENCY_BUCKETS, observe_all

    values = np.array([0.0, 0.001, 0.0011, 0.3, 0.25, 7.0, 100.0])
    text = []
    for bulk in (True, False):
        registry = CollectorRegistry()
        histogram = Histogram("h", "h", buckets=LATENCY_BUCKETS, registry=registry)
        if bulk:
            observe_all(histogram, values)
        else:
            for v in values:
                histogram.observe(v)
        text.append(
            b"\n".join(line for line in generate_latest(registry).splitlines() if b"created" not in line)
        )
    assert text[0] == text[1]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(
            st.one_of(
                st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-3, 3).map(float)
            ),
            min_size=4,
            max_size=4,
        ),
        min_size=1,
        max_size=30,
    )
)
def test_numeric_columns_binned_together_equal_one_by_one(rows: list[list[float]]) -> None:
    from shipmate.monitoring.binning import ColumnBins, NumericBlock

    specs = [
        {"type": "numeric", "edges": [-1.0, 0.0, 1.0, 2.0]},
        {"type": "numeric", "edges": [0.5, 0.5]},
        {"type": "numeric", "edges": []},
        {"type": "numeric", "edges": [-1e30, 1e30]},
    ]
    columns = [ColumnBins.compile(spec) for spec in specs]
    matrix = np.array(rows, dtype=np.float64)
    together = NumericBlock.of(columns).count(matrix)
    for j, column in enumerate(columns):
        alone = column.count(matrix[:, j].copy())
        got = together[j]
        assert (got.counts, got.count, got.missing, got.minimum, got.maximum) == (
            alone.counts,
            alone.count,
            alone.missing,
            alone.minimum,
            alone.maximum,
        )
        assert math.isclose(got.total, alone.total, rel_tol=1e-9, abs_tol=1e-6)


def test_batches_binned_at_once_count_the_same_as_at_the_flush(numeric: FakeDeployment) -> None:
    requests = _numeric_requests(numeric, [150, 3, 200, 1, 120], seed=5)
    by_flush, mixed = _recorder(), _recorder()
    for request, scores in requests:
        by_flush.on_scored(numeric, request, scores)
        if len(scores) >= 100:
            mixed.bin_now(numeric, request, scores)
        else:
            mixed.on_scored(numeric, request, scores)
    (a,), (b,) = by_flush.flush(), mixed.flush()
    for column in ("features", "predictions"):
        left, right = getattr(a, column), getattr(b, column)
        assert {k: (v.counts, v.count, v.missing, v.minimum, v.maximum) for k, v in left.items()} == {
            k: (v.counts, v.count, v.missing, v.minimum, v.maximum) for k, v in right.items()
        }
    assert a.features["x0"].count == 474


def test_a_record_of_1000_rows_by_20_features_takes_at_most_3_kb() -> None:
    manifest = make_manifest(features=20, categorical=False)
    wide = FakeDeployment(id="d-1", manifest=manifest, features=tuple(manifest.feature_names))
    spool = ListSpool()
    recorder = _recorder(spool)
    values = np.random.default_rng(1).normal(3, 2, size=(1000, 20))
    recorder.on_scored(wide, _matrix_request(wide, values), _scores(1000))
    recorder.on_request(wide, rows=1000, response_ms=12.5, execution_ms=9.0, status=200, consumer="c")
    (record,) = recorder.flush()
    size = len(orjson.dumps(record.to_json()))
    assert size <= 3 * 1024, size
    assert MinuteAggregate.from_json(orjson.loads(orjson.dumps(record.to_json()))) == record


def test_tallies_merged_equal_one_tally_of_both(numeric: FakeDeployment) -> None:
    """Large requests are counted one by one into arrays and merged: exactly the counts of one pass."""
    from shipmate.monitoring.binning import ModelBins

    bins = ModelBins(numeric.manifest)
    requests = _numeric_requests(numeric, [150, 3, 200, 1, 120], seed=7)
    merged = bins.tally(requests[:1])
    for request in requests[1:]:
        merged.merge(bins.tally([request]))
    together = bins.count(requests)
    for got, want in zip(merged.finish(), together, strict=True):
        assert list(got) == list(want)
        for name, counts in want.items():
            mine = got[name]
            assert (mine.counts, mine.count, mine.missing, mine.minimum, mine.maximum) == (
                counts.counts,
                counts.count,
                counts.missing,
                counts.minimum,
                counts.maximum,
            )
            assert math.isclose(mine.total, counts.total, rel_tol=1e-12, abs_tol=1e-9)


def test_counted_rows_do_not_make_a_flush_come_sooner(numeric: FakeDeployment) -> None:
    """Rows counted at once are counts, not held rows: they wait for flush_seconds, however many."""
    import time

    spool = ListSpool()
    recorder = _recorder(spool, flush_rows=5, flush_seconds=60.0)
    recorder.start()
    try:
        for request, scores in _numeric_requests(numeric, [150, 200], seed=3):
            recorder.bin_now(numeric, request, scores)
        time.sleep(0.3)
        assert spool.records == []
    finally:
        recorder.stop()
    (record,) = [MinuteAggregate.from_json(r) for r in spool.records]
    assert record.features["x0"].count == 350
