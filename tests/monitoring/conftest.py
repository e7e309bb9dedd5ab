"""Fixtures: a manifest with monitoring bins (no model needed) and a stand-in deployment."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shipmate.packages import Feature, FeatureType, Manifest
from shipmate.packages.baseline import feature_bins, output_bins


@dataclass(frozen=True)
class FakeDeployment:
    """The attributes of `shipmate.serving.deployments.Deployment` the recorder reads."""

    id: str
    manifest: Manifest
    model_id: str | None = "m-1"
    package_sha256: str = "0" * 64
    features: tuple[str, ...] = field(default=())


def make_manifest(
    target: str = "binary", features: int = 3, seed: int = 0, with_bins: bool = True, categorical: bool = True
) -> Manifest:
    rng = np.random.default_rng(seed)
    n = 500
    columns: dict[str, Any] = {f"x{i}": rng.normal(i, 1 + i, size=n) for i in range(features)}
    columns["colour"] = rng.choice(["red", "green", "blue", "grey"], size=n, p=[0.5, 0.3, 0.15, 0.05])
    frame = pd.DataFrame(columns)
    feats = [Feature(name=f"x{i}", type=FeatureType.NUMERIC) for i in range(features)]
    if categorical:
        feats.append(Feature(name="colour", type=FeatureType.CATEGORICAL))
    baseline: dict[str, dict[str, Any]] = {}
    for f in feats:
        values = frame[f.name]
        summary: dict[str, Any] = {"count": n, "missing": 0}
        if f.type is FeatureType.NUMERIC:
            qs = np.quantile(values, [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1])
            summary.update(
                min=float(qs[0]),
                max=float(qs[-1]),
                quantiles=dict(zip(("p5", "p25", "p50", "p75", "p95"), map(float, qs[1:-1]), strict=True)),
            )
        else:
            summary.update(top={k: int(v) for k, v in values.value_counts().items()}, other=0)
        if with_bins:
            summary["bins"] = feature_bins(values, f.type)
        baseline[f.name] = summary
    labels: list[Any] | None = ["no", "yes"] if target == "binary" else None
    manifest = Manifest(
        name="fake",
        framework="sklearn",
        target_type=target,
        class_labels=labels,
        features=feats,
        baseline=baseline,
        created_at=datetime.now(UTC),
        model_path="model.joblib",
        files={"model.joblib": "0" * 64},
    )
    if not with_bins:
        return manifest
    if target == "binary":
        p = rng.uniform(size=n)
        outputs = output_bins(manifest, np.column_stack([1 - p, p]), None)
    else:
        outputs = output_bins(manifest, None, rng.normal(size=n))
    return manifest.model_copy(update={"prediction_baseline": outputs})


@pytest.fixture
def manifest() -> Manifest:
    return make_manifest()


@pytest.fixture
def deployment(manifest: Manifest) -> FakeDeployment:
    return FakeDeployment(id="d-1", manifest=manifest, features=tuple(manifest.feature_names))


@pytest.fixture
def numeric() -> FakeDeployment:
    """A deployment of an all-numeric model (the server then hands rows over as a float matrix)."""
    manifest = make_manifest(categorical=False)
    return FakeDeployment(id="d-1", manifest=manifest, features=tuple(manifest.feature_names))
