"""Accuracy metrics from mergeable statistics agree with scikit-learn, and undefined ones are None."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from shipmate.monitoring.accuracy import ClassificationStats, RegressionStats


def _split_add(stats_a, stats_b, *columns):  # type: ignore[no-untyped-def]
    half = len(columns[0]) // 3
    stats_a.add(*(c[:half] if c is not None else None for c in columns))
    stats_b.add(*(c[half:] if c is not None else None for c in columns))
    stats_a.merge(stats_b)
    return stats_a


@pytest.mark.parametrize("k", [2, 3])
def test_classification_metrics_from_merged_periods_equal_scikit_learns(k: int) -> None:
    rng = np.random.default_rng(k)
    n = 2000
    actual = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[actual]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    predicted = probabilities.argmax(axis=1)
    labels = [str(i) for i in range(k)]
    stats = _split_add(
        ClassificationStats(labels), ClassificationStats(labels), actual, predicted, probabilities
    )
    got = stats.metrics()
    average = "binary" if k == 2 else "macro"
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(actual, predicted))
    assert got["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(actual, predicted))
    assert got["log_loss"] == pytest.approx(sk.log_loss(actual, probabilities))
    assert got["f1"] == pytest.approx(sk.f1_score(actual, predicted, average=average))
    assert got["precision"] == pytest.approx(sk.precision_score(actual, predicted, average=average))
    assert got["recall"] == pytest.approx(sk.recall_score(actual, predicted, average=average))
    expected_auc = (
        sk.roc_auc_score(actual, probabilities[:, 1])
        if k == 2
        else sk.roc_auc_score(actual, probabilities, multi_class="ovr", average="macro")
    )
    assert got["auc"] == pytest.approx(expected_auc, abs=2e-3)


def test_regression_metrics_from_merged_periods_equal_scikit_learns() -> None:
    rng = np.random.default_rng(1)
    actual = rng.normal(10, 3, 1000)
    predicted = actual + rng.normal(0, 1, 1000)
    got = _split_add(RegressionStats(), RegressionStats(), actual, predicted).metrics()
    assert got["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(actual, predicted)))
    assert got["mae"] == pytest.approx(sk.mean_absolute_error(actual, predicted))
    assert got["mape"] == pytest.approx(100 * sk.mean_absolute_percentage_error(actual, predicted))
    assert got["r2"] == pytest.approx(sk.r2_score(actual, predicted))


def test_undefined_metrics_are_none_never_nan() -> None:
    assert set(ClassificationStats(["a", "b"]).metrics().values()) == {None}
    assert set(RegressionStats().metrics().values()) == {None}
    one_class = ClassificationStats(["a", "b"])
    one_class.add(np.array([1, 1]), np.array([1, 0]), np.array([[0.2, 0.8], [0.6, 0.4]]))
    got = one_class.metrics()
    assert got["auc"] is None and got["accuracy"] == 0.5 and got["precision"] == 1.0
    constant = RegressionStats()
    constant.add(np.array([0.0, 0.0]), np.array([1.0, -1.0]))
    assert constant.metrics()["r2"] is None and constant.metrics()["mape"] is None
    assert constant.metrics()["rmse"] == 1.0
