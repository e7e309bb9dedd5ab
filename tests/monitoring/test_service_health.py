"""Service health from buckets: a table of small cases, each figure checked by hand."""

from __future__ import annotations

import pytest

from shipmate.monitoring.records import LatencyHistogram
from shipmate.monitoring.service_health import Bucket, RangeError, Resolution, compute, periods_in


def histogram(*ms: float) -> LatencyHistogram:
    h = LatencyHistogram()
    for value in ms:
        h.observe(value)
    return h


def bucket(minute: int, requests: int = 0, **fields: object) -> Bucket:
    latencies = fields.pop("latencies", [10.0] * requests)
    assert isinstance(latencies, list)
    return Bucket(
        minute=minute,
        requests=requests,
        records=fields.pop("records", 1),  # type: ignore[arg-type]
        response_ms=histogram(*latencies),
        execution_ms=histogram(*[ms / 2 for ms in latencies]),
        **fields,  # type: ignore[arg-type]
    )


CASES = [
    # (name, buckets, resolution, expected summary fields)
    ("nothing stored", [], Resolution.HOUR, {
        "total_requests": 0, "median_load": None, "peak_load": None, "user_error_rate": None,
        "monitoring_lag_mean_s": None, "monitoring_lag_max_s": None, "distinct_consumers": 0,
    }),
    ("load over the minutes with traffic", [bucket(0, 2), bucket(1, 10), bucket(5, 4)], Resolution.HOUR, {
        "total_requests": 16, "median_load": 4.0, "peak_load": 10.0,
    }),
    ("errors as shares of requests", [bucket(0, 10, user_errors=2, server_errors=1)], Resolution.MINUTE, {
        "user_error_rate": 0.2, "server_error_rate": 0.1,
    }),
    ("rows are predictions", [bucket(0, 2, rows=200), bucket(3, 1, rows=5)], Resolution.DAY, {
        "total_predictions": 205, "total_requests": 3,
    }),
    ("consumers are a union", [bucket(0, 1, consumers=["a", "b"]), bucket(1, 1, consumers=["b", "c"])],
     Resolution.HOUR, {"distinct_consumers": 3, "consumers_capped": False}),
    ("an overflowing consumer set says so", [bucket(0, 1, consumers=["a"], consumers_overflow=7)],
     Resolution.HOUR, {"distinct_consumers": 1, "consumers_capped": True}),
    ("lag is per record", [bucket(0, 1, records=2, lag_total=6.0, lag_max=5.0), bucket(1, 1, lag_total=3.0,
     lag_max=3.0)], Resolution.HOUR, {"monitoring_lag_mean_s": 3.0, "monitoring_lag_max_s": 5.0}),
    ("dropped records add up", [bucket(0, 1, dropped=3), bucket(2, 0, dropped=4)], Resolution.HOUR, {
        "dropped_records": 7,
    }),
    ("an hour bucket spreads its load over 60 minutes", [bucket(0, 120, width=60)], Resolution.HOUR, {
        "median_load": 2.0, "peak_load": 2.0, "coarsened": True,
    }),
    ("slow requests above the threshold", [bucket(0, 4, latencies=[10.0, 999.0, 1100.0, 5000.0])],
     Resolution.HOUR, {"slow_requests": 2}),
    ("buckets outside the range are left out", [bucket(-1, 5), bucket(120, 5), bucket(7, 1)],
     Resolution.HOUR, {"total_requests": 1}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "buckets", "resolution", "expected"), CASES, ids=[c[0] for c in CASES])
def test_summary(name: str, buckets: list[Bucket], resolution: Resolution, expected: dict[str, object]):
    health = compute(buckets, since_minute=0, until_minute=120, resolution=resolution)
    for key, value in expected.items():
        assert getattr(health.summary, key) == pytest.approx(value), key


def test_quantiles_come_from_the_merged_histograms():
    buckets = [bucket(0, 98, latencies=[10.0] * 98), bucket(1, 2, latencies=[800.0, 900.0])]
    summary = compute(buckets, since_minute=0, until_minute=60).summary
    assert summary.response_time_ms["p50"] == pytest.approx(10.0, rel=0.1)
    assert summary.response_time_ms["p95"] == pytest.approx(10.0, rel=0.1)
    assert summary.response_time_ms["p99"] == pytest.approx(800.0, rel=0.1)
    assert summary.execution_time_ms["p99"] == pytest.approx(400.0, rel=0.1)


def test_periods_are_aligned_to_the_resolution():
    assert periods_in(61, 185, Resolution.HOUR) == [60, 120, 180]
    assert periods_in(0, 3, Resolution.MINUTE) == [0, 1, 2]
    assert periods_in(100, 101, Resolution.DAY) == [0]
    health = compute([bucket(61, 3), bucket(125, 4)], since_minute=61, until_minute=185)
    assert [p.total_requests for p in health.periods] == [3, 4, 0]
    assert [p.start_minute for p in health.periods] == [60, 120, 180]


@pytest.mark.parametrize(("since", "until", "resolution", "message"), [
    (10, 10, Resolution.MINUTE, "until must be later"),
    (0, 20_000, Resolution.MINUTE, "choose a coarser resolution"),
])  # fmt: skip
def test_ranges_it_cannot_answer(since: int, until: int, resolution: Resolution, message: str):
    with pytest.raises(RangeError, match=message):
        periods_in(since, until, resolution)
