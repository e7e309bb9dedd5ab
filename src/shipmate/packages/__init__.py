"""Model packages: the ``.mlpkg`` format, safe reading, builders and model loading.

Reading (`read_manifest`, `verify_package`, `extract_package`) is safe on untrusted
input and imports no data-science library. Loading a model (`load_model`) executes
code for pickled frameworks: see the trust model in ``docs/packages.md``. Builders
and the runtime (numpy, pandas, scikit-learn) are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from shipmate.packages.archive import (
    DEFAULT_LIMITS,
    ReadLimits,
    extract_package,
    file_sha256,
    read_manifest,
    verify_package,
)
from shipmate.packages.errors import InputRejected, ModelError, PackageError
from shipmate.packages.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    Feature,
    FeatureType,
    Framework,
    Manifest,
    TargetType,
)

if TYPE_CHECKING:
    from shipmate.packages.builders import (
        BuildOptions,
        build_custom_package,
        build_lightgbm_package,
        build_mlflow_package,
        build_onnx_package,
        build_sklearn_package,
        build_xgboost_package,
    )
    from shipmate.packages.runtime import Columns, InputKind, LoadedModel, Scores, load_model

_LAZY = {
    "BuildOptions": "shipmate.packages.builders",
    "build_custom_package": "shipmate.packages.builders",
    "build_lightgbm_package": "shipmate.packages.builders",
    "build_xgboost_package": "shipmate.packages.builders",
    "build_mlflow_package": "shipmate.packages.builders",
    "build_onnx_package": "shipmate.packages.builders",
    "build_sklearn_package": "shipmate.packages.builders",
    "Columns": "shipmate.packages.runtime",
    "InputKind": "shipmate.packages.runtime",
    "LoadedModel": "shipmate.packages.runtime",
    "Scores": "shipmate.packages.runtime",
    "load_model": "shipmate.packages.runtime",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shipmate.packages' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DEFAULT_LIMITS",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "BuildOptions",
    "Columns",
    "Feature",
    "FeatureType",
    "Framework",
    "InputKind",
    "InputRejected",
    "LoadedModel",
    "Manifest",
    "ModelError",
    "PackageError",
    "ReadLimits",
    "Scores",
    "TargetType",
    "build_custom_package",
    "build_lightgbm_package",
    "build_mlflow_package",
    "build_onnx_package",
    "build_sklearn_package",
    "build_xgboost_package",
    "extract_package",
    "file_sha256",
    "load_model",
    "read_manifest",
    "verify_package",
]
