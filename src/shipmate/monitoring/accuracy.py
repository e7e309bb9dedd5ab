"""Accuracy from predictions joined with actuals, as mergeable sufficient statistics (pure).

The service joins each stored prediction with the actual reported later for its association
id and counts the pairs of a time period into `ClassificationStats` or `RegressionStats`.
Two periods' statistics add up to the statistics of both (``merge``), so the whole range is
the sum of its periods and nothing is recomputed from rows. Every metric is exact except AUC,
which is computed from per-class histograms of the predicted probability in 1,000 bins
(pairs within one bin count as ties: off by less than 0.001 of the pairs). A metric that is
undefined for the data (AUC with one class, R² with constant actuals, MAPE with zero
actuals only, no rows) is ``None``, never NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

AUC_BINS = 1000
EPSILON = 1e-15
"""Probabilities are clipped to [EPSILON, 1 - EPSILON] for log loss (scikit-learn's convention)."""

CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "auc", "log_loss", "f1", "precision", "recall")
REGRESSION_METRICS = ("rmse", "mae", "mape", "r2")
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae", "mape"})

Metrics = dict[str, float | None]


def _ratio(top: float, bottom: float) -> float | None:
    return top / bottom if bottom > 0 else None


@dataclass
class ClassificationStats:
    """Confusion counts (actual x predicted), log-loss sums and per-class probability histograms."""

    labels: list[str]
    confusion: np.ndarray = field(init=False)
    log_loss_sum: float = 0.0
    log_loss_rows: int = 0
    histograms: np.ndarray = field(init=False)
    """``[class, is_positive, bin]``: rows whose probability of ``class`` falls in ``bin``,
    split by whether ``class`` is the actual one."""

    def __post_init__(self) -> None:
        k = len(self.labels)
        self.confusion = np.zeros((k, k), dtype=np.int64)
        self.histograms = np.zeros((k, 2, AUC_BINS), dtype=np.int64)

    @property
    def rows(self) -> int:
        return int(self.confusion.sum())

    def add(self, actual: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray | None) -> None:
        """Rows given as class indices; ``probabilities`` (rows x classes) where the model gave them."""
        k = len(self.labels)
        np.add.at(self.confusion, (actual, predicted), 1)
        if probabilities is None or len(actual) == 0:
            return
        p = np.clip(probabilities[np.arange(len(actual)), actual], EPSILON, 1 - EPSILON)
        self.log_loss_sum += float(-np.log(p).sum())
        self.log_loss_rows += len(actual)
        bins = np.minimum((np.clip(probabilities, 0.0, 1.0) * AUC_BINS).astype(np.int64), AUC_BINS - 1)
        positive = np.zeros_like(bins)
        positive[np.arange(len(actual)), actual] = 1
        for c in range(k):
            np.add.at(self.histograms[c], (positive[:, c], bins[:, c]), 1)

    def merge(self, other: ClassificationStats) -> None:
        self.confusion += other.confusion
        self.log_loss_sum += other.log_loss_sum
        self.log_loss_rows += other.log_loss_rows
        self.histograms += other.histograms

    def _auc(self, c: int) -> float | None:
        negatives, positives = self.histograms[c, 0], self.histograms[c, 1]
        n_neg, n_pos = int(negatives.sum()), int(positives.sum())
        if n_neg == 0 or n_pos == 0:
            return None
        below = np.concatenate(([0], np.cumsum(negatives)[:-1]))  # negatives in lower bins
        wins = float((positives * below).sum()) + 0.5 * float((positives * negatives).sum())
        return wins / (n_pos * n_neg)

    def metrics(self) -> Metrics:
        n = self.rows
        if n == 0:
            return dict.fromkeys(CLASSIFICATION_METRICS)
        cm = self.confusion.astype(np.float64)
        true = np.diag(cm)
        support, predicted = cm.sum(axis=1), cm.sum(axis=0)
        present = support > 0
        recalls = np.divide(true, support, out=np.zeros_like(true), where=present)
        precisions = np.divide(true, predicted, out=np.zeros_like(true), where=predicted > 0)
        f1s = np.divide(
            2 * true, support + predicted, out=np.zeros_like(true), where=(support + predicted) > 0
        )
        if len(self.labels) == 2:  # the positive class is the second label, as in the package
            precision = _ratio(true[1], predicted[1])
            recall = _ratio(true[1], support[1])
            f1 = _ratio(2 * true[1], support[1] + predicted[1])
            auc = self._auc(1)
        else:  # macro averages over the classes that occur
            precision = float(precisions[present].mean())
            recall = float(recalls[present].mean())
            f1 = float(f1s[present].mean())
            aucs = [a for a in (self._auc(c) for c in range(len(self.labels))) if a is not None]
            auc = float(np.mean(aucs)) if aucs else None
        return {
            "accuracy": float(true.sum()) / n,
            "balanced_accuracy": float(recalls[present].mean()),
            "auc": auc,
            "log_loss": _ratio(self.log_loss_sum, self.log_loss_rows),
            "f1": f1,
            "precision": precision,
            "recall": recall,
        }


@dataclass
class RegressionStats:
    """Sums of errors and of actuals: every regression metric of any window from addition."""

    rows: int = 0
    abs_error: float = 0.0
    sq_error: float = 0.0
    pct_error: float = 0.0
    pct_rows: int = 0
    actual_sum: float = 0.0
    actual_sq: float = 0.0

    def add(self, actual: np.ndarray, predicted: np.ndarray) -> None:
        error = predicted - actual
        self.rows += len(actual)
        self.abs_error += float(np.abs(error).sum())
        self.sq_error += float(np.dot(error, error))
        nonzero = actual != 0
        self.pct_error += float(np.abs(error[nonzero] / actual[nonzero]).sum())
        self.pct_rows += int(nonzero.sum())
        self.actual_sum += float(actual.sum())
        self.actual_sq += float(np.dot(actual, actual))

    def merge(self, other: RegressionStats) -> None:
        self.rows += other.rows
        self.abs_error += other.abs_error
        self.sq_error += other.sq_error
        self.pct_error += other.pct_error
        self.pct_rows += other.pct_rows
        self.actual_sum += other.actual_sum
        self.actual_sq += other.actual_sq

    def metrics(self) -> Metrics:
        n = self.rows
        if n == 0:
            return dict.fromkeys(REGRESSION_METRICS)
        total = self.actual_sq - self.actual_sum**2 / n
        r2 = 1.0 - self.sq_error / total if n > 1 and total > 1e-12 * max(1.0, self.actual_sq) else None
        mape = _ratio(100.0 * self.pct_error, self.pct_rows)
        return {
            "rmse": math.sqrt(self.sq_error / n),
            "mae": self.abs_error / n,
            "mape": mape,
            "r2": r2,
        }


Stats = ClassificationStats | RegressionStats


def finite(metrics: Metrics) -> Metrics:
    """Metrics with anything not finite (an overflowed sum) as ``None``: responses never hold NaN."""
    return {k: (v if v is not None and math.isfinite(v) else None) for k, v in metrics.items()}


def better(metric: str, value: float, than: float) -> bool:
    """Whether ``value`` is better than ``than`` for ``metric``."""
    return value < than if metric in LOWER_IS_BETTER else value > than
