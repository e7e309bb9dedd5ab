"""Monitoring bins fixed at package time: layouts, baseline counts, outputs, older packages."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from tests.packages.conftest import rewrite_zip

from shipmate.packages import BuildOptions, FeatureType, PackageError, build_sklearn_package, read_manifest
from shipmate.packages.baseline import (
    bins_for,
    categorical_bins,
    categorical_index,
    feature_bins,
    numeric_bins,
    numeric_index,
    top_values,
)


def test_numeric_bins_are_deciles_with_underflow_overflow_and_missing() -> None:
    values = np.concatenate([np.arange(1000, dtype="float64"), [np.nan] * 7])
    spec = numeric_bins(values, 10)
    assert len(spec["edges"]) == 11
    assert spec["edges"][0] == 0.0 and spec["edges"][-1] == 999.0
    assert spec["counts"][0] == 0 and spec["counts"][-2] == 0  # nothing under the min or over the max
    assert spec["counts"][-1] == 7
    assert all(99 <= c <= 101 for c in spec["counts"][1:-2])  # equal mass, edges at sample values
    assert sum(spec["counts"]) == len(values)


def test_numeric_index_puts_each_value_in_its_bin() -> None:
    edges = np.array([0.0, 1.0, 2.0])
    got = numeric_index(np.array([-5.0, 0.0, 0.5, 1.0, 2.0, 2.5, np.nan]), edges)
    assert got.tolist() == [0, 1, 1, 2, 2, 3, 4]  # the last inner bin is closed at the maximum


def test_a_constant_or_empty_numeric_feature_still_has_a_layout() -> None:
    constant = numeric_bins(np.full(20, 3.0))
    assert constant["edges"] == [3.0, 3.0] and constant["counts"] == [0, 20, 0, 0]
    empty = numeric_bins(np.full(4, np.nan))
    assert empty["edges"] == [] and empty["counts"] == [0, 0, 4]


def test_few_distinct_values_merge_repeated_edges() -> None:
    spec = numeric_bins(np.array([0.0] * 50 + [1.0] * 50), 10)
    assert spec["edges"] == [0.0, 1.0]
    assert spec["counts"] == [0, 100, 0, 0]


def test_categories_cover_95_percent_and_at_most_50() -> None:
    common = pd.Series(["a"] * 90 + ["b"] * 6 + ["c"] * 3 + ["d"])
    assert top_values(common) == ["a", "b"]
    many = pd.Series([f"v{i}" for i in range(200)])
    assert len(top_values(many)) == 50
    spec = categorical_bins(pd.Series(["a", "b", None, "zzz", "a"]))
    assert spec["values"][0] == "a"
    index = categorical_index(pd.Series(["a", "unseen", None]), pd.Index(spec["values"]))
    assert index.tolist() == [0, len(spec["values"]), len(spec["values"]) + 1]


def test_boolean_and_text_layouts() -> None:
    spec = feature_bins(pd.Series([True, False, True, None], dtype=object), FeatureType.BOOLEAN)
    assert spec["values"] == ["false", "true"] and spec["counts"] == [1, 2, 0, 1]
    text = feature_bins(pd.Series(["a b c", "hello world again", None]), FeatureType.TEXT)
    assert text["type"] == "text" and text["measure"] == "length"
    assert text["counts"][-1] == 1 and sum(text["counts"]) == 3


def test_packages_store_feature_and_output_bins(iris_package: Path) -> None:
    manifest = read_manifest(iris_package)
    spec = manifest.baseline["sepal length (cm)"]["bins"]
    assert spec["type"] == "numeric" and len(spec["counts"]) == len(spec["edges"]) + 2
    assert sum(spec["counts"]) == 150
    outputs = manifest.prediction_baseline
    assert set(outputs) == {"p:0", "p:1", "p:2", "label"}
    assert outputs["label"]["values"] == ["0", "1", "2"]
    assert sum(outputs["label"]["counts"]) == 150 and len(outputs["label"]["counts"]) == 5
    assert sum(outputs["p:1"]["counts"]) == 150
    assert manifest.feature_importance is not None
    assert max(manifest.feature_importance.values()) == 1.0
    assert bins_for(manifest).derived is False


def test_importance_can_be_turned_off_and_bins_configured(tmp_path: Path, iris: Any, iris_model: Any) -> None:
    manifest = build_sklearn_package(
        iris_model,
        iris[0],
        tmp_path / "p.mlpkg",
        name="iris",
        options=BuildOptions(importance=False, monitoring_bins=5),
    )
    assert manifest.feature_importance is None
    assert len(manifest.baseline["petal width (cm)"]["bins"]["edges"]) <= 6
    with pytest.raises(PackageError, match="between 5 and 20"):
        build_sklearn_package(
            iris_model, iris[0], tmp_path / "q.mlpkg", name="iris", options=BuildOptions(monitoring_bins=40)
        )


def test_regression_output_bins(tmp_path: Path, diabetes: Any, diabetes_model: Any) -> None:
    manifest = build_sklearn_package(diabetes_model, diabetes[0], tmp_path / "d.mlpkg", name="d")
    assert set(manifest.prediction_baseline) == {"value"}
    assert sum(manifest.prediction_baseline["value"]["counts"]) == len(diabetes[0])


def test_mixed_features_get_their_layouts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=200),
            "colour": rng.choice(["red", "green", "blue"], size=200),
            "flag": rng.choice([True, False], size=200),
        }
    )
    target = (frame["x"] > 0).astype(int)
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    model = make_pipeline(
        ColumnTransformer(
            [("c", OneHotEncoder(handle_unknown="ignore"), ["colour"])], remainder="passthrough"
        ),
        LogisticRegression(),
    ).fit(frame, target)
    manifest = build_sklearn_package(model, frame, tmp_path / "m.mlpkg", name="m")
    assert manifest.baseline["colour"]["bins"]["type"] == "categorical"
    assert sorted(manifest.baseline["colour"]["bins"]["values"]) == ["blue", "green", "red"]
    assert manifest.baseline["flag"]["bins"]["type"] == "boolean"
    assert sum(manifest.baseline["flag"]["bins"]["counts"]) == 200


def test_older_packages_get_bins_from_their_quantiles(tmp_path: Path, iris_package: Path) -> None:
    with zipfile.ZipFile(iris_package) as zf:
        doc = json.loads(zf.read("manifest.json"))
    for summary in doc["baseline"].values():
        summary.pop("bins")
    old = rewrite_zip(
        iris_package,
        tmp_path / "old.mlpkg",
        manifest_patch={"baseline": doc["baseline"], "predictionBaseline": {}, "featureImportance": None},
    )
    manifest = read_manifest(old)
    derived = bins_for(manifest)
    assert derived.derived is True
    spec = derived.features["sepal length (cm)"]
    summary = doc["baseline"]["sepal length (cm)"]
    assert spec["edges"][0] == summary["min"] and spec["edges"][-1] == summary["max"]
    assert summary["quantiles"]["p50"] in spec["edges"]
    assert abs(sum(spec["counts"]) - 150) <= len(spec["counts"])  # rounded quantile masses
    assert derived.outputs["p:0"]["edges"][:2] == [0.0, 0.1] and derived.outputs["p:0"]["counts"] is None
