"""The monitoring record: merging is addition, and the JSON form round-trips and is checked."""

from __future__ import annotations

import base64
import json
import math
import random
import struct

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipmate.monitoring.records import (
    BinCounts,
    LatencyHistogram,
    MinuteAggregate,
    RecordError,
    latency_bucket,
    merge_all,
)


def _record(seed: int, minute: int = 100) -> MinuteAggregate:
    rng = random.Random(seed)
    record = MinuteAggregate(deployment_id="d-1", model_id="m-1", minute=minute, flushed_at=seed)
    for _ in range(rng.randint(1, 30)):
        record.requests += 1
        record.rows += 3
        record.response_ms.observe(rng.uniform(0.1, 50))
        record.execution_ms.observe(rng.uniform(0.05, 20))
        record.add_consumer(f"c{rng.randint(0, 3)}")
    values = [rng.gauss(0, 1) for _ in range(20)]
    record.features["x"] = BinCounts(
        counts=[rng.randint(0, 5) for _ in range(13)],
        count=20,
        missing=rng.randint(0, 2),
        minimum=min(values),
        maximum=max(values),
        total=sum(values),
        total_sq=sum(v * v for v in values),
    )
    record.predictions["label"] = BinCounts(counts=[rng.randint(0, 9) for _ in range(4)], count=9)
    return record


def test_merge_adds_counts_and_keeps_extremes() -> None:
    a, b = _record(1), _record(2)
    merged = MinuteAggregate.from_json(a.to_json())
    merged.merge(MinuteAggregate.from_json(b.to_json()))
    assert merged.requests == a.requests + b.requests
    assert merged.rows == a.rows + b.rows
    pairs = zip(a.features["x"].counts, b.features["x"].counts, strict=True)
    assert merged.features["x"].counts == [p + q for p, q in pairs]
    assert merged.features["x"].minimum == min(a.features["x"].minimum or 0, b.features["x"].minimum or 0)
    assert merged.response_ms.count == a.response_ms.count + b.response_ms.count
    assert sum(merged.consumers.values()) == a.requests + b.requests
    assert sorted(merged.source_ids()) == sorted([a.record_id, b.record_id])


def test_merge_order_does_not_matter() -> None:
    records = [_record(seed) for seed in range(6)]
    forward = merge_all([MinuteAggregate.from_json(r.to_json()) for r in records])[0]
    backward = merge_all([MinuteAggregate.from_json(r.to_json()) for r in reversed(records)])[0]
    for doc in (forward, backward):
        doc.record_id = "x"
        doc.merged_ids = sorted(doc.merged_ids)
    left, right = forward.to_json(), backward.to_json()
    for side in (left, right):
        x = side["features"]["x"]
        x["sum"], x["sumSq"] = round(x["sum"], 9), round(x["sumSq"], 9)
        side["responseMs"]["sum"] = round(side["responseMs"]["sum"], 6)
        side["executionMs"]["sum"] = round(side["executionMs"]["sum"], 6)
    assert left == right


def test_merge_all_keeps_minutes_apart() -> None:
    merged = merge_all([_record(1, minute=5), _record(2, minute=6), _record(3, minute=5)])
    assert [r.minute for r in merged] == [5, 6]


def test_json_round_trip_through_text() -> None:
    record = _record(7)
    again = MinuteAggregate.from_json(json.loads(json.dumps(record.to_json())))
    assert again.to_json() == record.to_json()


def test_quantiles_within_a_bucket_of_the_truth() -> None:
    histogram = LatencyHistogram()
    values = [float(v) for v in range(1, 1001)]
    for v in values:
        histogram.observe(v)
    p95 = histogram.quantile(0.95)
    assert p95 is not None and 950 <= p95 <= 950 * 2 ** (1 / 8)
    assert 500 - 500 * (2 ** (1 / 8) - 1) <= histogram.count_above(500) <= 500
    assert LatencyHistogram().quantile(0.5) is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"v": 9}, "v:"),
        ({"deploymentId": ""}, "deploymentId"),
        ({"requests": -1}, "requests"),
        ({"minute": "soon"}, "minute"),
        ({"features": {"x": {"counts": "many"}}}, "features[x].counts"),
        ({"features": {"x": {"counts": [1], "min": float("nan"), "max": 1}}}, "features[x].min"),
        ({"responseMs": {"scale": 4, "buckets": {}}}, "responseMs.scale"),
    ],
)
def test_bad_records_name_the_field(change: dict, field: str) -> None:
    doc = {**_record(3).to_json(), **change}
    with pytest.raises(RecordError, match=field.replace("[", r"\[").replace("]", r"\]")):
        MinuteAggregate.from_json(doc)


def test_bins_from_different_baselines_do_not_merge() -> None:
    a, b = _record(1), _record(2)
    b.features["x"].counts = [1, 2]
    with pytest.raises(RecordError, match="different baselines"):
        a.merge(b)


def _consistent(seed: int) -> MinuteAggregate:
    """A record whose columns are as the recorder makes them (count = sum of counts, missing = last)."""
    record = _record(seed)
    x = record.features["x"]
    x.count, x.missing = sum(x.counts), x.counts[-1]
    label = record.predictions["label"]
    label.counts[-1] = 0
    label.count = sum(label.counts)
    return record


def test_version_3_packs_zero_runs_and_long_moments_exactly() -> None:
    record = _consistent(4)
    x = record.features["x"]
    x.counts = [0, 0, 3, 0, 5, 0, 0, 0, 2]
    x.count, x.missing = 10, 2
    x.minimum, x.maximum, x.total, x.total_sq = -0.1234567890123456, 7.0000000000000009, 1e-310, 2.5e300
    record.predictions["p"] = BinCounts(
        counts=[0, 0, 4, 0], count=4, minimum=0.5, maximum=0.5, total=2.0, total_sq=1.0
    )
    record.response_ms = LatencyHistogram()
    for ms in (0.0, 0.001, 1.0, 1.0, 900.0):  # the zero bucket, then buckets far apart
        record.response_ms.observe(ms)
    doc = json.loads(json.dumps(record.to_json()))
    assert doc["v"] == 3 and "kind" not in doc
    counts, moments = doc["features"]["x"]
    assert counts == [-2, 3, 0, 5, -3, 2]  # two or more zeros: one negative entry; a lone zero stays
    assert isinstance(moments, str) and len(moments) == 44  # four doubles, bit for bit
    assert doc["predictions"]["p"] == [[-2, 4, 0], 0.5, 0.5, 2.0, 1.0]  # short decimals stay decimals
    assert doc["predictions"]["label"] == [record.predictions["label"].counts]
    histogram = doc["responseMs"]
    a, b, c = latency_bucket(0.001), latency_bucket(1.0), latency_bucket(900.0)
    assert histogram["zero"] == 1 and histogram["first"] == a
    assert histogram["counts"] == [1, -(b - a - 1), 2, -(c - b - 1), 1]
    again = MinuteAggregate.from_json(doc)
    assert again == record
    assert math.copysign(1, again.features["x"].total) == 1 and again.features["x"].total == 1e-310


finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(
    counts=st.lists(
        st.integers(min_value=0, max_value=3).map(lambda c: c * c * 1000 // 9), min_size=1, max_size=60
    ),
    moments=st.tuples(finite, finite, finite, finite) | st.none(),
    latencies=st.lists(st.floats(min_value=0.0, max_value=1e7), max_size=40),
)
def test_version_3_round_trips_every_record_exactly(
    counts: list[int], moments: tuple[float, float, float, float] | None, latencies: list[float]
) -> None:
    record = MinuteAggregate(deployment_id="d", minute=1, model_id="m")
    bins = BinCounts(counts=counts, count=sum(counts), missing=counts[-1])
    if moments is not None:
        bins.minimum, bins.maximum, bins.total, bins.total_sq = moments
    record.features["f"] = bins
    for ms in latencies:
        record.response_ms.observe(ms)
    again = MinuteAggregate.from_json(orjson.loads(orjson.dumps(record.to_json())))
    assert again == record
    if moments is not None:  # bit for bit, -0.0 too
        got = again.features["f"]
        assert [struct.pack("<d", v) for v in (got.minimum, got.maximum, got.total, got.total_sq)] == [
            struct.pack("<d", v) for v in moments
        ]


def test_merging_records_read_back_from_version_3_is_merging_the_records() -> None:
    records = [_consistent(seed) for seed in range(5)]
    direct = MinuteAggregate.from_json(records[0].to_json())
    for record in records[1:]:
        direct.merge(MinuteAggregate.from_json(record.to_json()))
    through_the_wire = merge_all(
        [MinuteAggregate.from_json(orjson.loads(orjson.dumps(r.to_json()))) for r in records]
    )
    (wired,) = through_the_wire
    wired.record_id = direct.record_id
    assert wired == direct  # the same additions in the same order: equal to the last bit


def test_the_documented_version_3_example_reads() -> None:
    documented = {  # docs/monitoring.md, The aggregate record
        "v": 3, "id": "a" * 32, "deploymentId": "d-1", "modelId": "m-1",
        "minute": 29500000, "requests": 3, "rows": 1002, "serverErrors": 1,
        "responseMs": {"first": 20, "counts": [1, 0, 1, -2, 1], "sum": 41.2, "max": 30.1},
        "executionMs": {"first": 17, "counts": [1, 0, 1], "zero": 1, "sum": 30.5, "max": 22.0},
        "consumers": {"key:1f2e3d4c5b6a": 3},
        "features": {
            "tenure": [[0, 98, 101, 97, 103, 99, 100, 102, 96, 104, 100, 0, 2], 0.0, 71.0, 24480.0, 936620.0],
            "income": [
                [-2, 1, 28, 151, 276, 328, 186, 31, 1, -3], "JD0sEfGzDsAng5cxWQMOQLLyTWO2XETA6OiNinOEjEA="
            ],
            "plan": [[700, 290, 10, 2]],
        },
        "predictions": {
            "p:yes": [[0, 400, 602, -2], "exSuR+F6lD8K16NwPQrvP2ZmZmZmAoBAmpmZmZnhdUA="],
            "label": [[500, 502, -2]],
        },
        "flushedAt": 1770000000.5, "mergedIds": ["b" * 32, "c" * 32],
    }  # fmt: skip
    record = MinuteAggregate.from_json(documented)
    assert record.response_ms.buckets == {20: 1, 22: 1, 25: 1} and record.response_ms.count == 3
    assert record.execution_ms.count == 3 and record.execution_ms.total_ms == 30.5
    income = record.features["income"]
    assert len(income.counts) == 13 and income.count == 1002 and income.missing == 0
    assert income.minimum == -3.8378621427178974 and income.total_sq == 912.5564166151717
    yes = record.predictions["p:yes"]
    assert (yes.counts, yes.minimum, yes.maximum, yes.total, yes.total_sq) == (
        [0, 400, 602, 0, 0],
        0.02,
        0.97,
        512.3,
        350.1,
    )
    assert MinuteAggregate.from_json(record.to_json()) == record


def _as_version_2(record: MinuteAggregate) -> dict:
    """The version 2 form, as the previous release spooled it: dense histograms with their scale,
    columns as ``[counts]`` or ``[counts, min, max, sum, sumSq]`` with every zero written out."""

    def histogram(h: LatencyHistogram) -> dict:
        doc: dict = {"scale": 3, "totalMs": h.total_ms, "maxMs": h.max_ms}
        indices = [i for i in h.buckets if i > -(2**15)]
        if indices:
            doc["first"] = min(indices)
            doc["counts"] = [h.buckets.get(i, 0) for i in range(min(indices), max(indices) + 1)]
        if -(2**15) in h.buckets:
            doc["zero"] = h.buckets[-(2**15)]
        return doc

    def column(b: BinCounts) -> list:
        return [b.counts] if b.minimum is None else [b.counts, b.minimum, b.maximum, b.total, b.total_sq]

    return {
        "v": 2, "kind": "aggregate", "id": record.record_id, "deploymentId": record.deployment_id,
        "modelId": record.model_id, "minute": record.minute, "requests": record.requests, "rows": record.rows,
        "responseMs": histogram(record.response_ms), "executionMs": histogram(record.execution_ms),
        "consumers": record.consumers,
        "features": {name: column(b) for name, b in record.features.items()},
        "predictions": {name: column(b) for name, b in record.predictions.items()},
        "flushedAt": record.flushed_at,
    }  # fmt: skip


def test_version_2_records_spooled_before_still_read() -> None:
    record = _consistent(6)
    record.response_ms.observe(0.0)
    assert MinuteAggregate.from_json(json.loads(json.dumps(_as_version_2(record)))) == record
    documented = {  # the example of the version 2 format's documentation, literally
        "v": 2, "kind": "aggregate", "id": "a" * 32, "deploymentId": "d-1", "modelId": "m-1",
        "minute": 29500000, "requests": 3, "rows": 1002, "serverErrors": 1,
        "responseMs": {"scale": 3, "totalMs": 41.2, "maxMs": 30.1, "first": 20, "counts": [1, 0, 1, 0, 0, 1]},
        "executionMs": {"scale": 3, "totalMs": 30.5, "maxMs": 22.0, "first": 17, "counts": [2, 0, 1]},
        "consumers": {"key:1f2e3d4c5b6a": 3},
        "features": {
            "tenure": [[0, 98, 101, 97, 103, 99, 100, 102, 96, 104, 100, 0, 2], 0.0, 71.0, 24480.0, 936620.0],
            "plan": [[700, 290, 10, 2]],
        },
        "predictions": {
            "p:yes": [[0, 400, 602, 0, 0], 0.02, 0.97, 512.3, 350.1], "label": [[500, 502, 0, 0]],
        },
        "flushedAt": 1770000000.5,
    }  # fmt: skip
    old = MinuteAggregate.from_json(documented)
    assert old.response_ms.buckets == {20: 1, 22: 1, 25: 1} and old.execution_ms.buckets == {17: 2, 19: 1}
    assert (old.features["tenure"].count, old.features["tenure"].missing, old.features["tenure"].maximum) == (
        1002, 2, 71.0,
    )  # fmt: skip
    assert MinuteAggregate.from_json(old.to_json()) == old  # and it is forwarded as version 3


def test_version_1_records_spooled_before_still_read() -> None:
    record = _consistent(5)
    old = {  # the version 1 form, as the previous release spooled it
        "v": 1,
        "kind": "aggregate",
        "id": record.record_id,
        "deploymentId": "d-1",
        "modelId": "m-1",
        "minute": 100,
        "requests": record.requests,
        "rows": record.rows,
        "userErrors": 0,
        "serverErrors": 0,
        "responseMs": record.response_ms.to_json(),
        "executionMs": record.execution_ms.to_json(),
        "consumers": record.consumers,
        "consumersOverflow": 0,
        "features": {"x": record.features["x"].to_json()},
        "predictions": {"label": record.predictions["label"].to_json()},
        "dropped": 0,
        "flushedAt": record.flushed_at,
    }
    assert MinuteAggregate.from_json(json.loads(json.dumps(old))) == record
    with pytest.raises(RecordError, match=r"features\[x\]: expected an object"):
        MinuteAggregate.from_json({**old, "features": {"x": [[1, 2]]}})  # compact columns came with version 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"features": {"x": [[1, 2], 1.0]}}, r"features\[x\]: expected \[counts\]"),
        ({"features": {"x": [[1, 2.5]]}}, r"features\[x\]\[0\]\[1\]: expected a whole number"),
        ({"features": {"x": [[1, -70000]]}}, r"features\[x\]\[0\]\[1\]: 70000 zeros"),
        ({"features": {"x": [[1], 0.0, 1.0, float("inf"), 1.0]}}, r"features\[x\].sum"),
        ({"features": {"x": [[1], "not base64!"]}}, r"features\[x\]\[1\]: not base64"),
        ({"features": {"x": [[1], "AAAA"]}}, r"features\[x\]\[1\]: expected 32 bytes"),
        ({"features": {"x": [[1], base64.b64encode(struct.pack("<4d", 0, math.nan, 0, 0)).decode()]}},
         r"features\[x\]\[1\].max"),
        ({"responseMs": {"counts": [1]}}, "responseMs.first"),
        ({"responseMs": {"first": 0, "counts": [1, "2"]}}, r"responseMs.counts\[1\]"),
        ({"responseMs": {"first": 16000, "counts": [1, -1000]}}, r"responseMs.counts\[1\]"),
        ({"responseMs": {"first": 0, "counts": [1], "sum": "x"}}, "responseMs.sum"),
        ({"responseMs": {"scale": 4, "first": 0, "counts": [1]}}, "responseMs.scale"),
        ({"responseMs": {"first": 0, "buckets": {"1": 2}}}, "responseMs: unknown key 'buckets'"),
    ],
)  # fmt: skip
def test_bad_version_3_fields_are_named(change: dict, field: str) -> None:
    doc = {**_consistent(3).to_json(), **change}
    with pytest.raises(RecordError, match=field):
        MinuteAggregate.from_json(doc)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"features": {"x": [[1, -2]]}}, r"features\[x\]\[0\]\[1\]"),  # no zero runs in version 2
        ({"responseMs": {"scale": 3, "counts": [1]}}, "responseMs.first"),
        ({"responseMs": {"scale": 3, "first": 0, "counts": [1, "2"]}}, r"responseMs.counts\[1\]"),
    ],
)
def test_bad_version_2_fields_are_named(change: dict, field: str) -> None:
    doc = {**_as_version_2(_consistent(3)), **change}
    with pytest.raises(RecordError, match=field):
        MinuteAggregate.from_json(doc)


def test_a_realistic_single_row_minute_of_20_features_is_under_3000_bytes() -> None:
    """The size goal (3 KB per 1,000 rows x 20 features), for its hardest common case: 1,000
    single-row requests, so the record carries latencies spread over dozens of buckets and a few
    consumers beside the bins, made by the prediction server's recorder."""
    from dataclasses import dataclass as _dataclass

    import numpy as np
    from tests.monitoring.conftest import FakeDeployment, make_manifest

    from shipmate.monitoring.recorder import Recorder
    from shipmate.monitoring.settings import MonitorSettings, SpoolerType
    from shipmate.monitoring.spool import NoSpool
    from shipmate.packages import Scores

    @_dataclass
    class Request:
        columns: tuple[str, ...]
        rows: object
        frame: None = None

    manifest = make_manifest(features=20, categorical=False)
    deployment = FakeDeployment(id="d-1", manifest=manifest, features=tuple(manifest.feature_names))
    recorder = Recorder(
        MonitorSettings(enabled=True, spooler_type=SpoolerType.NONE), NoSpool(), clock=lambda: 6000.0
    )
    rng = np.random.default_rng(3)
    latencies = rng.lognormal(0.5, 0.6, size=1000)  # about 1.6 ms, spread over some 45 buckets
    for i, ms in enumerate(latencies.tolist()):
        row = rng.normal(np.arange(20), 1 + np.arange(20), size=(1, 20))  # the baseline's spread
        p = rng.uniform()
        recorder.on_scored(
            deployment, Request(deployment.features, row), Scores(probabilities=np.array([[1 - p, p]]))
        )
        recorder.on_request(
            deployment, rows=1, response_ms=ms, execution_ms=ms / 2, status=200, consumer=f"c{i % 3}"
        )
    (record,) = recorder.flush()
    assert record.rows == 1000 and len(record.features) == 20 and len(record.response_ms.buckets) > 30
    size = len(orjson.dumps(record.to_json()))
    assert size < 3000, size
    assert MinuteAggregate.from_json(orjson.loads(orjson.dumps(record.to_json()))) == record
