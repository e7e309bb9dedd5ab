"""Drift from bin counts (shipmate.monitoring.drift): false alarms on data drawn from the baseline
stay under 1 % per feature-window at every window size, a PSI >= 0.25 shift is flagged within two
windows, and bad input gives a neutral answer, never NaN."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipmate.monitoring.drift import (
    DeploymentStatus,
    Layout,
    Metric,
    Status,
    deployment_status,
    distance,
    group_windows,
    rate_status,
    score_column,
    thresholds,
)

NUMERIC = Layout("numeric", 13, (0, *[1000] * 10, 0, 0))
WITH_MISSING = Layout("numeric", 13, (0, *[900] * 10, 0, 1000))
BOOLEAN = Layout("boolean", 4, (9000, 1000, 0, 0))
CATEGORIES = [3000, 2000, 1500, 1000, 800, 500, 300, 200, 150, 100, 80, 50, 40, 30, 20, 10, 5]
CATEGORICAL = Layout("categorical", len(CATEGORIES) + 2, (*CATEGORIES, 215, 0))
LAYOUTS = {
    "numeric": NUMERIC,
    "numeric+missing": WITH_MISSING,
    "boolean": BOOLEAN,
    "categorical": CATEGORICAL,
}
WINDOW_SIZES = (1, 100, 200, 1000, 100_000)


def windows_of(n: int, min_rows: int = 200) -> int:
    """How many windows of n rows `group_windows` merges into one scored window."""
    return len(range(0, min_rows, n)) if n < min_rows else 1


def test_group_windows_merges_from_the_newest_backwards():
    assert group_windows([50, 50, 50, 50, 50], 100) == [(0, 1), (1, 3), (3, 5)]
    assert group_windows([300, 10, 250], 200) == [(0, 2), (2, 3)]
    assert group_windows([], 200) == []
    assert group_windows([0, 0], 200) == [(0, 2)]


@given(st.lists(st.integers(0, 500), max_size=40), st.integers(1, 400))
def test_groups_cover_every_window_once_and_all_but_the_first_are_big_enough(rows, min_rows):
    groups = group_windows(rows, min_rows)
    covered = [i for start, end in groups for i in range(start, end)]
    assert covered == list(range(len(rows)))
    assert all(sum(rows[s:e]) >= min_rows for s, e in groups[1:])


@pytest.mark.parametrize("metric", list(Metric))
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_false_alarms_on_data_drawn_from_the_baseline_stay_under_one_percent(metric, name):
    layout = LAYOUTS[name]
    assert layout.baseline is not None
    p = np.array(layout.baseline, dtype=float) / sum(layout.baseline)
    rng = np.random.default_rng(zlib.crc32(f"{metric}/{name}".encode()))
    trials = 1000
    for n in WINDOW_SIZES:
        rows = n * windows_of(n)
        alarms = sum(
            score_column(name, layout, rng.multinomial(rows, p), metric=metric).status is not Status.OK
            for _ in range(trials)
        )
        assert alarms / trials <= 0.01, (n, alarms)


def _shifted_by_psi(target: float) -> np.ndarray:
    """Ten equal-mass bins tilted towards the top until PSI against the baseline is ``target``."""
    q = np.full(10, 0.1)
    tilt = np.linspace(-1, 1, 10)
    low, high = 0.0, 5.0
    for _ in range(60):
        mid = (low + high) / 2
        w = np.exp(mid * tilt)
        p = w / w.sum()
        low, high = (mid, high) if np.sum((p - q) * np.log(p / q)) < target else (low, mid)
    w = np.exp(high * tilt)
    return np.concatenate([[0.0], w / w.sum(), [0.0, 0.0]])


@pytest.mark.parametrize("metric", list(Metric))
def test_a_shift_of_psi_025_is_flagged_within_two_windows(metric):
    shifted = _shifted_by_psi(0.25)
    rng = np.random.default_rng(7)
    for n in WINDOW_SIZES:
        rows = n * windows_of(n)
        for _ in range(200):
            first, second = (
                score_column("x", NUMERIC, rng.multinomial(rows, shifted), metric=metric) for _ in range(2)
            )
            assert first.status is not Status.OK or second.status is not Status.OK, (n, first, second)


def test_large_shift_is_at_risk_and_reported_with_its_threshold():
    current = [0, 0, 0, 0, 0, 0, 0, 0, 0, 500, 500, 0, 0]
    result = score_column("x", NUMERIC, current)
    assert result.status is Status.AT_RISK and result.drift_status is Status.AT_RISK
    assert result.value is not None and result.value > result.threshold_at_risk >= 0.25  # type: ignore[operator]
    assert result.rows == 1000 and result.missing_rate == 0.0 and result.out_of_range_rate == 0.0


def test_thresholds_scale_with_the_window_and_the_metrics_agree():
    assert thresholds(Metric.PSI, 11, 200) == (pytest.approx(0.15), pytest.approx(0.25))
    assert thresholds(Metric.PSI, 11, 100_000) == (0.1, 0.25)
    assert thresholds(Metric.PSI, 51, 200) == (pytest.approx(0.75), pytest.approx(1.25))
    js, hellinger = thresholds(Metric.JS, 11, 10_000), thresholds(Metric.HELLINGER, 11, 10_000)
    assert js[0] == pytest.approx(math.sqrt(0.1 / (8 * math.log(2))))
    assert hellinger[1] == pytest.approx(math.sqrt(0.25 / 8))


@given(
    st.lists(st.integers(0, 1000), min_size=2, max_size=25).flatmap(
        lambda a: st.tuples(st.just(a), st.lists(st.integers(0, 1000), min_size=len(a), max_size=len(a)))
    ),
    st.sampled_from(list(Metric)),
)
@settings(max_examples=100)
def test_distances_are_finite_non_negative_and_zero_for_equal_shapes(pair, metric):
    reference, current = (np.array(v) for v in pair)
    if reference.sum() == 0 or current.sum() == 0:
        return
    value, _bins = distance(metric, reference, current)
    assert math.isfinite(value) and value >= -1e-12
    if metric is not Metric.PSI:
        assert value <= 1.0 + 1e-9
    same, _ = distance(metric, reference, reference * 3)
    assert same == pytest.approx(0.0, abs=1e-6)


@given(
    st.sampled_from(list(LAYOUTS.values())).flatmap(
        lambda layout: st.tuples(
            st.just(layout), st.lists(st.integers(0, 10**6), min_size=layout.size, max_size=layout.size)
        )
    ),
    st.sampled_from(list(Metric)),
    st.integers(1, 1000),
)
def test_every_answer_is_json_without_nan(case, metric, min_rows):
    layout, counts = case
    doc = score_column("f", layout, counts, metric=metric, min_rows=min_rows).to_json()
    for value in doc.values():
        assert not (isinstance(value, float) and not math.isfinite(value)), doc
    assert doc["status"] in ("ok", "warning", "at_risk")


def test_neutral_results_say_why():
    all_missing = score_column("x", WITH_MISSING, [0] * 12 + [500])
    assert all_missing.value is None and all_missing.missing_rate == 1.0
    assert all_missing.status is Status.AT_RISK and "no present values" in (all_missing.reason or "")
    assert score_column("x", NUMERIC, [0] * 13).reason == "no rows in this range"
    assert score_column("x", NUMERIC, None).status is Status.OK
    no_baseline = score_column("x", Layout("numeric", 13, None), [1] * 13)
    assert no_baseline.value is None and "no baseline counts" in (no_baseline.reason or "")
    other_package = score_column("x", NUMERIC, [1] * 8)
    assert other_package.status is Status.OK and "another package" in (other_package.reason or "")
    small = score_column("x", NUMERIC, [0, *[5] * 10, 0, 0])
    assert (
        small.status is Status.OK
        and small.value is not None
        and "fewer than min_rows" in (small.reason or "")
    )


def test_missing_out_of_range_and_new_category_are_signals_of_their_own():
    more_missing = score_column("x", WITH_MISSING, [0, *[80] * 10, 0, 200])  # 20 % missing, baseline 10 %
    assert more_missing.signal_status["missing"] is Status.AT_RISK and more_missing.drift_status is Status.OK
    outside = score_column("x", NUMERIC, [30, *[97] * 10, 0, 0])
    assert (
        outside.out_of_range_rate == pytest.approx(0.03)
        and outside.signal_status["outOfRange"] is not Status.OK
    )
    new = score_column("c", CATEGORICAL, [*[c // 10 for c in CATEGORIES], 300, 0])
    assert new.signal_status["newCategory"] is Status.AT_RISK


def test_rate_rule_needs_both_the_rule_and_more_than_noise():
    assert rate_status(0.30, 0.30, 200) is Status.OK
    assert rate_status(0.36, 0.30, 200) is Status.OK  # 6 points, but within 3 standard errors
    assert rate_status(0.36, 0.30, 100_000) is Status.WARNING
    assert rate_status(0.45, 0.30, 100_000) is Status.AT_RISK
    assert rate_status(0.004, 0.0, 1000) is Status.OK  # below the least rise of 1 point
    assert rate_status(0.0, 0.0, 0) is Status.OK


def test_deployment_status_weighs_drift_by_importance():
    def col(status: Status, important: bool):
        result = score_column("x", NUMERIC, None)
        result.status, result.important = status, important
        return result

    assert deployment_status([col(Status.WARNING, False)]) is DeploymentStatus.GREEN
    assert deployment_status([col(Status.WARNING, True)]) is DeploymentStatus.YELLOW
    assert deployment_status([col(Status.AT_RISK, False)]) is DeploymentStatus.YELLOW
    assert deployment_status([col(Status.AT_RISK, False), col(Status.AT_RISK, True)]) is DeploymentStatus.RED
    assert deployment_status([]) is DeploymentStatus.GREEN
