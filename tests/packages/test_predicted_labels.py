"""A binary model's predicted class at the threshold itself: the negative class, as scikit-learn's
``predict`` decides a 0.5 tie and as DataRobot documents its prediction threshold (the positive
label goes to a probability *exceeding* it); the same in the baseline, monitoring and serving."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from shipmate.packages.baseline import predicted_labels
from shipmate.packages.manifest import Manifest
from shipmate.packages.runtime import Scores
from shipmate.serving.dataplane import predicted_indices


def manifest(threshold: float | None) -> Manifest:
    return Manifest(
        name="m", framework="sklearn", target_type="binary", class_labels=["no", "yes"],
        prediction_threshold=threshold, features=[{"name": "x", "type": "numeric"}],
        created_at=dt.datetime(2026, 12, 7, tzinfo=dt.UTC), model_path="model.pkl",
        files={"model.pkl": "0" * 64},
    )  # fmt: skip


def both(probabilities: np.ndarray, m: Manifest) -> tuple[list[int], list[int]]:
    return predicted_labels(probabilities, m).tolist(), predicted_indices(Scores(probabilities), m).tolist()


def test_a_tie_at_the_default_threshold_is_the_negative_class_as_scikit_learn_predicts():
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    model.coef_[:] = 0.0
    model.intercept_[:] = 0.0  # every row exactly 0.5
    rows = np.array([[3.0], [-2.0]])
    probabilities = model.predict_proba(rows)
    assert probabilities[:, 1].tolist() == [0.5, 0.5]
    assert model.predict(rows).tolist() == [0, 0]
    assert both(probabilities, manifest(None)) == ([0, 0], [0, 0])


@pytest.mark.parametrize(
    ("threshold", "positive", "expected"),
    [(0.7, [0.69, 0.7, 0.71], [0, 0, 1]), (0.0, [0.0, 0.01, 1.0], [0, 1, 1]), (1.0, [0.99, 1.0], [0, 0])],
)
def test_the_threshold_itself_is_negative_everywhere(
    threshold: float, positive: list[float], expected: list[int]
):
    p = np.array(positive)
    probabilities = np.column_stack([1.0 - p, p])
    assert both(probabilities, manifest(threshold)) == (expected, expected)
