"""Building ``.mlpkg`` packages from a model and a sample of its training data.

Every builder stages the model's files, computes the features and the baseline
from the sample, loads the staged model through the same code the server uses and
scores the sample with it; only a model that scores is written. The zip is written
to a temporary name beside ``path`` and renamed, so ``path`` is never half-written.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from shipmate.packages import baseline
from shipmate.packages.errors import ModelError, PackageError
from shipmate.packages.manifest import MANIFEST_NAME, Feature, Framework, Manifest, TargetType
from shipmate.packages.runtime import CUSTOM_HOOKS_FILE, InputKind, Scores, load_model
from shipmate.packages.schema import as_frame, compute_baseline, infer_features

_VALIDATION_ROWS = 100
Stager = Callable[[Path], None]


@dataclass(frozen=True)
class BuildOptions:
    """What every builder takes beside the model, its sample, the path, the name and the target
    type, in one value so that a caller (the CLI, a test, a bench) states it once for any framework.

    ``class_labels``: in the model's class order (read from the model when it can say).
    ``features``/``feature_names``: the features, or just the sample's column names when it is a
    matrix (otherwise inferred from the sample). ``monitoring_bins``: bins per numeric feature
    (5-20); ``importance``: True computes the permutation importance, False skips it, None computes
    it when it takes under 10 s (docs/monitoring.md).
    """

    version: str = "1"
    description: str = ""
    class_labels: Sequence[Any] | None = None
    prediction_threshold: float | None = None
    target_name: str | None = None
    features: Sequence[Feature] | None = None
    feature_names: Sequence[str] | None = None
    monitoring_bins: int = baseline.DEFAULT_NUMERIC_BINS
    importance: bool | None = None


def _versions(*modules: str) -> dict[str, str]:
    import importlib.metadata

    out = {"python": platform.python_version()}
    for name in modules:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _plain(values: Sequence[Any]) -> list[Any]:
    """Class labels as JSON-native values (numpy scalars become Python ones)."""
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def score_sample(model: Any, frame: pd.DataFrame) -> Scores:
    """Score rows given as a DataFrame in the layout the model takes (used by validation and tests)."""
    rows = frame[model.manifest.feature_names]
    if model.input_kind is InputKind.MATRIX:
        return model.predict(rows.to_numpy(dtype="float64"))  # type: ignore[no-any-return]
    return model.predict(rows)  # type: ignore[no-any-return]


def _validate(
    staging: Path, manifest: Manifest, frame: pd.DataFrame, bins: int, importance: bool | None
) -> Manifest:
    """Load the staged model and score the sample: a model that does not score is refused. The
    scores on the sample become the output baseline (and, when asked or cheap enough, the
    permutation importance); the manifest is returned with them."""
    sample = frame.head(_VALIDATION_ROWS)
    try:
        model = load_model(staging, manifest)
        scores = score_sample(model, sample)
    except (PackageError, ModelError) as exc:
        raise PackageError(f"validation failed: {exc}") from None
    except Exception as exc:
        raise PackageError(
            f"validation failed: scoring {len(sample)} sample rows raised {type(exc).__name__}: {exc}"
        ) from exc
    _check_scores(scores, len(sample))
    manifest = manifest.model_copy(update={"scoring": model.scoring.to_json()})
    try:
        return _with_output_baseline(model, manifest, frame, bins, importance)
    except PackageError:
        raise
    except Exception as exc:
        raise PackageError(
            f"validation failed: scoring the sample for the output baseline: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        model.close()


def _check_scores(scores: Scores, rows: int) -> None:
    arr = scores.probabilities if scores.probabilities is not None else scores.values
    if arr is None or len(scores) != rows:
        raise PackageError(f"validation failed: {len(scores)} predictions for {rows} sample rows")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise PackageError("validation failed: the model returned NaN or infinite predictions on the sample")


def _with_output_baseline(
    model: Any, manifest: Manifest, frame: pd.DataFrame, bins: int, importance: bool | None
) -> Manifest:
    """``importance``: True computes it, False skips it, None computes it when it fits its budget."""
    sample = frame.head(baseline.OUTPUT_SAMPLE_ROWS)
    scores, seconds = baseline.timed(lambda: score_sample(model, sample))
    _check_scores(scores, len(sample))
    update: dict[str, Any] = {
        "prediction_baseline": baseline.output_bins(manifest, scores.probabilities, scores.values, bins)
    }
    rows = frame.head(baseline.IMPORTANCE_ROWS)
    per_score = seconds * len(rows) / max(len(sample), 1)
    if importance or (
        importance is None and baseline.importance_affordable(per_score, len(manifest.features))
    ):

        def output(rows: pd.DataFrame) -> np.ndarray:
            got = score_sample(model, rows)
            arr = got.probabilities if got.probabilities is not None else got.values
            assert arr is not None
            return arr

        update["feature_importance"] = baseline.permutation_importance(output, rows)
    return manifest.model_copy(update=update)


def _build(
    path: str | os.PathLike[str],
    *,
    framework: Framework,
    stage: Stager,
    model_path: str,
    X_sample: Any,
    name: str,
    target_type: TargetType | str,
    options: BuildOptions,
    runtime: dict[str, str],
    compile: bool = True,
) -> Manifest:
    try:
        bins = baseline.check_bin_count(options.monitoring_bins)
    except ValueError as exc:
        raise PackageError(str(exc)) from None
    feature_names, features = options.feature_names, options.features
    frame = as_frame(X_sample, list(feature_names) if feature_names else None)
    feats = list(features) if features else infer_features(frame)
    missing = [f.name for f in feats if f.name not in frame.columns]
    if missing:
        raise PackageError(f"the sample has no column for features {missing}")
    summaries = compute_baseline(frame, feats)
    for f in feats:
        summaries[f.name]["bins"] = baseline.feature_bins(frame[f.name], f.type, bins)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".mlpkg-", dir=out.parent) as tmp:
        staging = Path(tmp) / "content"
        staging.mkdir()
        stage(staging)
        files = {
            p.relative_to(staging).as_posix(): _sha256(p)
            for p in sorted(staging.rglob("*"))
            if p.is_file() and not p.is_symlink()
        }
        try:
            manifest = Manifest(
                name=name,
                version=options.version,
                description=options.description,
                framework=framework,
                target_type=TargetType(target_type),
                target_name=options.target_name,
                class_labels=_plain(options.class_labels) if options.class_labels is not None else None,
                prediction_threshold=options.prediction_threshold,
                features=feats,
                baseline=summaries,
                created_at=datetime.now(UTC),
                model_path=model_path,
                runtime=runtime,
                files=files,
                compiled_scoring=compile,
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors()
            )
            raise PackageError(f"invalid package metadata: {problems}") from None
        except ValueError as exc:
            raise PackageError(f"invalid package metadata: {exc}") from None
        manifest = _validate(staging, manifest, frame, bins, options.importance)
        partial = Path(tmp) / "package.mlpkg"
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(MANIFEST_NAME, manifest.model_dump_json(by_alias=True, indent=2))
            for rel in files:
                zf.write(staging / rel, rel)
        os.replace(partial, out)
    return manifest


def _classifier_target(
    model: Any, target_type: TargetType | str | None, class_labels: Sequence[Any] | None
) -> tuple[TargetType, list[Any] | None]:
    classes = getattr(model, "classes_", None)
    if target_type is None:
        if classes is None:
            target_type = TargetType.REGRESSION
        else:
            target_type = TargetType.BINARY if len(classes) == 2 else TargetType.MULTICLASS
    target_type = TargetType(target_type)
    if classes is not None and not target_type.is_classification:
        raise PackageError(
            f"target type {target_type.value}: the model is a classifier "
            f"(classes {', '.join(str(c) for c in list(classes)[:5])}); "
            "give binary or multiclass, or leave the target type out to read it from the model"
        )
    if target_type.is_classification and class_labels is None and classes is not None:
        class_labels = list(classes)
    return target_type, list(class_labels) if class_labels is not None else None


def build_sklearn_package(
    model: Any,
    X_sample: Any,
    path: str | os.PathLike[str],
    *,
    name: str,
    target_type: TargetType | str | None = None,
    options: BuildOptions = BuildOptions(),
    compile: bool = True,
) -> Manifest:
    """Package a fitted scikit-learn estimator or pipeline (stored with joblib).

    The target type and class labels are read from the estimator (``classes_``)
    unless given; features and the baseline come from ``X_sample``. Every builder also
    fixes the monitoring bins (``options.monitoring_bins`` per numeric feature, 5-20) and the
    output baseline on the sample, and with ``options.importance`` (default: when it takes under
    10 s) the permutation importance of each feature (see docs/monitoring.md). ``compile=False``
    records that the package must be served by the model's own methods, never a compiled
    scorer (docs/serving.md).
    """
    import joblib

    target, labels = _classifier_target(model, target_type, options.class_labels)
    fitted_names = getattr(model, "feature_names_in_", None)
    if fitted_names is not None and options.features is None and isinstance(X_sample, pd.DataFrame):
        names = [str(n) for n in fitted_names]
        missing = [n for n in names if n not in X_sample.columns]
        if missing:
            raise PackageError(f"the sample lacks columns the model was fitted on: {missing}")
        X_sample = X_sample[names]  # the model's column order is the package's feature order

    def stage(d: Path) -> None:
        joblib.dump(model, d / "model.joblib")

    return _build(
        path,
        framework=Framework.SKLEARN,
        stage=stage,
        model_path="model.joblib",
        X_sample=X_sample,
        name=name,
        target_type=target,
        options=replace(options, class_labels=labels),
        compile=compile,
        runtime=_versions("scikit-learn", "numpy", "pandas", "joblib"),
    )


def build_onnx_package(
    model: Any,
    X_sample: Any,
    path: str | os.PathLike[str],
    *,
    name: str,
    target_type: TargetType | str,
    options: BuildOptions = BuildOptions(),
) -> Manifest:
    """Package an ONNX model (a ``ModelProto``, its bytes, or a ``.onnx`` file path).

    ONNX holds no code, so these packages are safe to accept from untrusted sources.
    """
    if hasattr(model, "SerializeToString"):
        data = model.SerializeToString()
    elif isinstance(model, bytes | bytearray):
        data = bytes(model)
    else:
        data = Path(model).read_bytes()

    def stage(d: Path) -> None:
        (d / "model.onnx").write_bytes(data)

    return _build(
        path,
        framework=Framework.ONNX,
        stage=stage,
        model_path="model.onnx",
        X_sample=X_sample,
        name=name,
        target_type=target_type,
        options=options,
        runtime=_versions("onnxruntime", "onnx"),
    )


def build_mlflow_package(
    model_dir: str | os.PathLike[str],
    X_sample: Any,
    path: str | os.PathLike[str],
    *,
    name: str,
    target_type: TargetType | str | None = None,
    options: BuildOptions = BuildOptions(),
    compile: bool = True,
) -> Manifest:
    """Package an MLflow model directory (pyfunc flavour) unchanged, under ``model/``.

    For an sklearn-flavour classifier the target type and labels are read from it.
    """
    src = Path(model_dir)
    if not (src / "MLmodel").is_file():
        raise PackageError(f"{src}: not an MLflow model directory (no MLmodel file)")
    class_labels = options.class_labels
    if target_type is None or (class_labels is None and TargetType(target_type).is_classification):
        try:
            with warnings.catch_warnings():  # mlflow warns about its own type hints on import
                warnings.simplefilter("ignore")
                import mlflow.pyfunc

            raw = mlflow.pyfunc.load_model(str(src)).get_raw_model()
        except Exception:
            raw = None
        if raw is None and target_type is None:
            raise PackageError("target_type is required: it cannot be read from this MLflow model")
        target_type, class_labels = _classifier_target(raw, target_type, class_labels)

    def stage(d: Path) -> None:
        shutil.copytree(src, d / "model", symlinks=False)

    return _build(
        path,
        framework=Framework.MLFLOW,
        stage=stage,
        model_path="model",
        X_sample=X_sample,
        name=name,
        target_type=target_type,
        options=replace(options, class_labels=class_labels),
        compile=compile,
        runtime=_versions("mlflow-skinny", "mlflow", "scikit-learn"),
    )


def build_custom_package(
    source_dir: str | os.PathLike[str],
    X_sample: Any,
    path: str | os.PathLike[str],
    *,
    name: str,
    target_type: TargetType | str,
    options: BuildOptions = BuildOptions(),
) -> Manifest:
    """Package a directory holding ``custom.py`` (hooks ``load_model(model_dir)`` and
    ``score(model, data) -> predictions``) and any files it needs, for any other framework.

    ``score`` returns one value per row (regression or labels), or for classification a
    DataFrame with one probability column per class label.
    """
    src = Path(source_dir)
    if not (src / CUSTOM_HOOKS_FILE).is_file():
        raise PackageError(f"{src}: no {CUSTOM_HOOKS_FILE} with load_model/score hooks")

    def stage(d: Path) -> None:
        shutil.copytree(
            src, d, dirs_exist_ok=True, symlinks=False, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )

    return _build(
        path,
        framework=Framework.CUSTOM,
        stage=stage,
        model_path=CUSTOM_HOOKS_FILE,
        X_sample=X_sample,
        name=name,
        target_type=target_type,
        options=options,
        runtime=_versions(),
    )


def _booster_labels(
    objective: Any, class_labels: Sequence[Any] | None, model: Any, target_values: Sequence[Any] | None
) -> list[Any] | None:
    """Class ``i`` of a booster is the i-th label: given ones, a scikit-learn wrapper's
    ``classes_``, the sorted distinct values of the sample's target (how the wrappers encode
    labels), or else 0, 1, …"""
    if not objective.target_type.is_classification:
        return None
    if class_labels is not None:
        return list(class_labels)
    classes = getattr(model, "classes_", None)
    if classes is not None:
        return list(classes)
    if target_values is not None:
        distinct = sorted(pd.Series(list(target_values)).dropna().unique().tolist())
        if len(distinct) == objective.classes:
            return distinct
        raise PackageError(
            f"the sample's target has {len(distinct)} distinct values, the model "
            f"{objective.classes} classes; give the class labels in the model's order"
        )
    return list(range(objective.classes))


def _build_booster(
    framework: Framework,
    data: bytes,
    filename: str,
    booster: Any,
    model: Any,
    X_sample: Any,
    path: str | os.PathLike[str],
    *,
    name: str,
    target_type: TargetType | str | None,
    target_values: Sequence[Any] | None,
    options: BuildOptions,
) -> Manifest:
    from shipmate.packages import boosters

    objective = (
        boosters.xgboost_objective(booster)
        if framework is Framework.XGBOOST
        else boosters.lightgbm_objective(booster)
    )
    if target_type is not None and TargetType(target_type) is not objective.target_type:
        raise PackageError(
            f"target type {TargetType(target_type).value}: the model's objective makes it "
            f"a {objective.target_type.value} model"
        )
    trained = boosters.booster_features(framework, booster)
    if trained and options.features is None and isinstance(X_sample, pd.DataFrame):
        names = boosters.package_names(trained, [str(c) for c in X_sample.columns])
        if names is None:
            missing = [n for n in trained if n not in X_sample.columns]
            raise PackageError(f"the sample lacks columns the model was trained on: {missing}")
        X_sample = X_sample[names]

    def stage(d: Path) -> None:
        (d / filename).write_bytes(data)

    return _build(
        path,
        framework=framework,
        stage=stage,
        model_path=filename,
        X_sample=X_sample,
        name=name,
        target_type=objective.target_type,
        options=replace(
            options, class_labels=_booster_labels(objective, options.class_labels, model, target_values)
        ),
        runtime=_versions(str(framework), f"{framework}-cpu", "numpy"),
    )


def build_xgboost_package(
    model: Any,
    X_sample: Any,
    path: str | os.PathLike[str],
    *,
    name: str,
    target_type: TargetType | str | None = None,
    target_values: Sequence[Any] | None = None,
    options: BuildOptions = BuildOptions(),
) -> Manifest:
    """Package an XGBoost model in its native format (no pickle: safe to accept from anyone).

    ``model``: a ``.json``/``.ubj`` file saved by ``save_model``, a ``Booster``, or a fitted
    ``XGBClassifier``/``XGBRegressor``. The target type is read from the objective
    (``binary:logistic``, ``multi:softprob``, or regression); class ``i`` is labelled by
    ``options.class_labels``, the wrapper's ``classes_``, or the sorted distinct ``target_values``.
    """
    try:
        import xgboost
    except ImportError:
        raise PackageError("install xgboost to package XGBoost models") from None
    if hasattr(model, "get_booster"):
        model_booster = model.get_booster()
    elif isinstance(model, xgboost.Booster):
        model_booster = model
    else:
        source = Path(model)
        suffix = source.suffix.lower()
        if suffix not in (".json", ".ubj"):
            raise PackageError(f"{source.name}: save XGBoost models as .json or .ubj (save_model)")
        data, filename = source.read_bytes(), f"model{suffix}"
        model_booster = None
    if model_booster is not None:
        data, filename = bytes(model_booster.save_raw("json")), "model.json"
    try:
        booster = xgboost.Booster()
        booster.load_model(bytearray(data))
    except Exception as exc:
        raise PackageError(f"not a readable XGBoost model: {exc}") from None
    return _build_booster(
        Framework.XGBOOST, data, filename, booster, model, X_sample, path,
        name=name, target_type=target_type, target_values=target_values, options=options,
    )  # fmt: skip


def build_lightgbm_package(
    model: Any,
    X_sample: Any,
    path: str | os.PathLike[str],
    *,
    name: str,
    target_type: TargetType | str | None = None,
    target_values: Sequence[Any] | None = None,
    options: BuildOptions = BuildOptions(),
) -> Manifest:
    """Package a LightGBM model in its text format (no pickle: safe to accept from anyone).

    ``model``: a text file saved by ``save_model``, a ``Booster``, or a fitted
    ``LGBMClassifier``/``LGBMRegressor``; labels as for `build_xgboost_package`.
    """
    try:
        import lightgbm
    except ImportError:
        raise PackageError("install lightgbm to package LightGBM models") from None
    if hasattr(model, "booster_"):
        text = model.booster_.model_to_string()
    elif isinstance(model, lightgbm.Booster):
        text = model.model_to_string()
    else:
        text = Path(model).read_text(encoding="utf-8", errors="replace")
    try:
        booster = lightgbm.Booster(model_str=text)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PackageError(f"not a readable LightGBM model: {first}") from None
    return _build_booster(
        Framework.LIGHTGBM, text.encode(), "model.txt", booster, model, X_sample, path,
        name=name, target_type=target_type, target_values=target_values, options=options,
    )  # fmt: skip
