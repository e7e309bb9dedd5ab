"""The manifest of a ``.mlpkg`` model package (``manifest.json`` at the zip's root).

On disk the keys are camelCase (``formatVersion``, ``targetType``…); in Python the
attributes are snake_case. The manifest is validated strictly because it arrives
from outside: unknown frameworks, target types or feature types are refused.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Framework(StrEnum):
    """How the model inside the package is stored and loaded."""

    SKLEARN = "sklearn"  # joblib pickle: executes code when loaded
    ONNX = "onnx"  # a graph, no code: safe for untrusted sources
    MLFLOW = "mlflow"  # an MLflow model directory, pyfunc flavour (usually pickles)
    CUSTOM = "custom"  # custom.py with load_model/score hooks: arbitrary code
    XGBOOST = "xgboost"  # XGBoost's JSON or UBJSON model: data, no code
    LIGHTGBM = "lightgbm"  # LightGBM's text model: data, no code

    @property
    def executes_code_on_load(self) -> bool:
        """True when loading the model can run arbitrary code (see docs/packages.md)."""
        return self not in (Framework.ONNX, Framework.XGBOOST, Framework.LIGHTGBM)


class TargetType(StrEnum):
    REGRESSION = "regression"
    BINARY = "binary"
    MULTICLASS = "multiclass"

    @property
    def is_classification(self) -> bool:
        return self is not TargetType.REGRESSION


class FeatureType(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    TEXT = "text"
    BOOLEAN = "boolean"


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Feature(_Camel):
    """One input column the model expects."""

    name: str = Field(min_length=1, max_length=1024)
    type: FeatureType


class Manifest(_Camel):
    """Everything a server or the control plane needs to know without loading the model."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True)

    format_version: int = FORMAT_VERSION
    name: str = Field(min_length=1, max_length=256)
    version: str = Field(default="1", min_length=1, max_length=128)
    description: str = ""
    framework: Framework
    target_type: TargetType
    target_name: str | None = None
    class_labels: list[str | int | float | bool] | None = None
    prediction_threshold: float | None = None
    features: list[Feature]
    baseline: dict[str, dict[str, Any]] = Field(default_factory=dict)
    prediction_baseline: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Bin specs of the model's output on the sample (packages/baseline.py)",
    )
    feature_importance: dict[str, float] | None = Field(
        default=None, description="Permutation importance per feature on the sample, largest 1.0"
    )
    created_at: datetime
    model_path: str = Field(min_length=1, description="The model's file or directory inside the zip")
    runtime: dict[str, str] = Field(default_factory=dict, description="Library versions it was built with")
    files: dict[str, str]
    compiled_scoring: bool = Field(
        default=True,
        description="False: never serve through a compiled scorer (shipmate package build --no-compile)",
    )
    scoring: dict[str, Any] | None = Field(
        default=None,
        description="The scorer chosen when the package was built, and the largest difference "
        "measured against the model's public method (packages/proof.py)",
    )

    @field_validator("format_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != FORMAT_VERSION:
            raise ValueError(f"unsupported formatVersion {v}; this Shipmate reads version {FORMAT_VERSION}")
        return v

    @field_validator("files")
    @classmethod
    def _hex_digests(cls, v: dict[str, str]) -> dict[str, str]:
        for path, digest in v.items():
            if not _SHA256.match(digest):
                raise ValueError(f"files[{path!r}] is not a lowercase SHA-256 hex digest")
        if MANIFEST_NAME in v:
            raise ValueError(f"files must not list {MANIFEST_NAME} itself")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"duplicate feature names: {dupes}")
        labels = self.class_labels
        if self.target_type is TargetType.REGRESSION:
            if labels:
                raise ValueError("classLabels must be empty for a regression model")
        else:
            if not labels:
                raise ValueError(f"classLabels are required for a {self.target_type} model")
            if len({str(x) for x in labels}) != len(labels):
                raise ValueError("classLabels must be distinct")
            if self.target_type is TargetType.BINARY and len(labels) != 2:
                raise ValueError(f"a binary model needs exactly 2 classLabels, got {len(labels)}")
            if self.target_type is TargetType.MULTICLASS and len(labels) < 2:
                raise ValueError("a multiclass model needs at least 2 classLabels")
        if not any(
            p == self.model_path or p.startswith(self.model_path.rstrip("/") + "/") for p in self.files
        ):
            raise ValueError(f"modelPath {self.model_path!r} names no file listed in files")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def threshold(self) -> float | None:
        """The positive-class probability cut-off of a binary model (default 0.5)."""
        if self.target_type is not TargetType.BINARY:
            return None
        return 0.5 if self.prediction_threshold is None else self.prediction_threshold

    def to_json_dict(self) -> dict[str, Any]:
        """The on-disk (camelCase) form."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=False)
