"""The monitoring record: merging is addition, and the JSON form round-trips and is checked."""

from __future__ import annotations

import json
import random

import pytest

from shipmate.monitoring.records import (
    BinCounts,
    LatencyHistogram,
    MinuteAggregate,
    RecordError,
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
        side["responseMs"]["totalMs"] = round(side["responseMs"]["totalMs"], 6)
        side["executionMs"]["totalMs"] = round(side["executionMs"]["totalMs"], 6)
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


def test_version_2_writes_compact_columns_and_histograms() -> None:
    record = _consistent(4)
    record.response_ms.observe(0.0)  # the zero bucket travels beside the dense ones
    doc = json.loads(json.dumps(record.to_json()))
    assert doc["v"] == 2
    x = record.features["x"]
    assert doc["features"]["x"] == [x.counts, x.minimum, x.maximum, x.total, x.total_sq]
    assert doc["predictions"]["label"] == [record.predictions["label"].counts]
    assert doc["responseMs"]["zero"] == 1 and "buckets" not in doc["responseMs"]
    assert "userErrors" not in doc and "dropped" not in doc  # zeros are left out
    again = MinuteAggregate.from_json(doc)
    assert again == record


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
        MinuteAggregate.from_json({**old, "features": {"x": [[1, 2]]}})  # compact columns are version 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"features": {"x": [[1, 2], 1.0]}}, r"features\[x\]: expected \[counts\]"),
        ({"features": {"x": [[1, -2]]}}, r"features\[x\]\[0\]\[1\]"),
        ({"features": {"x": [[1], 0.0, 1.0, float("inf"), 1.0]}}, r"features\[x\].sum"),
        ({"responseMs": {"scale": 3, "counts": [1]}}, "responseMs.first"),
        ({"responseMs": {"scale": 3, "first": 0, "counts": [1, "2"]}}, r"responseMs.counts\[1\]"),
    ],
)
def test_bad_compact_fields_are_named(change: dict, field: str) -> None:
    doc = {**_consistent(3).to_json(), **change}
    with pytest.raises(RecordError, match=field):
        MinuteAggregate.from_json(doc)
