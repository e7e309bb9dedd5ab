"""Loading a verified, unpacked package and scoring rows with it, for every framework.

Every framework is wrapped in a `LoadedModel` whose ``predict`` takes the rows in
the layout the model scores fastest (``input_kind``) and returns `Scores`:
class probabilities in the manifest's label order, or regression values. The
prediction server and the package builders (which validate a model by scoring a
sample) share this code, so a package that builds is a package that serves.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import logging
import sys
import uuid
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from shipmate.packages.errors import InputRejected, ModelError, PackageError
from shipmate.packages.manifest import FeatureType, Framework, Manifest, TargetType
from shipmate.packages.proof import Proof, ScorerKind, Scoring, edge_inputs, prove
from shipmate.packages.schema import probe_frame
from shipmate.packages.sklearn_direct import DirectScorer, direct_scorer
from shipmate.packages.trees import tree_scorer

log = logging.getLogger(__name__)

CUSTOM_HOOKS_FILE = "custom.py"


class InputKind(StrEnum):
    """The row layout a model takes: a float matrix (fast) or a DataFrame (general)."""

    MATRIX = "matrix"  # float64 ndarray, columns in manifest feature order
    FRAME = "frame"  # DataFrame with the manifest's feature columns


@dataclass(frozen=True, slots=True)
class Columns:
    """The rows of a frame-input model as one array per feature (float64 for numeric
    features, object otherwise), built once per request. A compiled scorer reads them
    as they are; the model's own methods get one DataFrame of them (`frame`)."""

    data: dict[str, np.ndarray]
    rows: int

    def __len__(self) -> int:
        return self.rows

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.data, index=range(self.rows))

    @classmethod
    def of(cls, frame: pd.DataFrame, names: Sequence[str]) -> Columns:
        return cls({n: frame[n].to_numpy() for n in names}, len(frame))


Rows: TypeAlias = np.ndarray | pd.DataFrame | Columns
"""What ``LoadedModel.predict`` takes: a float matrix, a DataFrame or `Columns`."""


def as_frame(rows: Rows, names: Sequence[str]) -> pd.DataFrame:
    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, Columns):
        return rows.frame()
    return pd.DataFrame(rows, columns=list(names))


@dataclass(frozen=True, slots=True)
class Scores:
    """One batch of model output, normalised across frameworks."""

    probabilities: np.ndarray | None = None  # (rows, classes), manifest.class_labels order
    values: np.ndarray | None = None  # (rows,), regression

    def __len__(self) -> int:
        arr = self.probabilities if self.probabilities is not None else self.values
        return 0 if arr is None else int(arr.shape[0])


def _label_index(labels: Sequence[Any]) -> dict[str, int]:
    return {str(label): i for i, label in enumerate(labels)}


def normalize_output(raw: Any, manifest: Manifest, rows: int) -> Scores:
    """Turn whatever a model returned into `Scores`, or raise `ModelError` saying what is wrong."""
    labels = manifest.class_labels or []
    classify = manifest.target_type.is_classification
    if isinstance(raw, pd.Series):
        raw = raw.to_numpy()
    if isinstance(raw, pd.DataFrame):
        if classify and len(raw.columns) > 1:
            by_name = {str(c): c for c in raw.columns}
            missing = [str(label) for label in labels if str(label) not in by_name]
            if missing:
                raise ModelError(f"model output has columns {list(by_name)}, missing class labels {missing}")
            raw = raw[[by_name[str(label)] for label in labels]].to_numpy(dtype="float64")
        else:
            raw = raw.to_numpy()
    if isinstance(raw, list) and raw and isinstance(raw[0], dict):  # e.g. ONNX ZipMap
        index = _label_index(labels)
        out = np.zeros((len(raw), len(labels)))
        for i, row in enumerate(raw):
            for key, value in row.items():
                if str(key) in index:
                    out[i, index[str(key)]] = value
        raw = out
    arr = np.asarray(raw)
    if arr.ndim == 0 or arr.shape[0] != rows:
        raise ModelError(f"model returned {0 if arr.ndim == 0 else arr.shape[0]} predictions for {rows} rows")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if not classify:
        if arr.ndim != 1:
            raise ModelError(f"regression model returned shape {arr.shape}, expected one value per row")
        try:
            return Scores(values=arr.astype("float64", copy=False))
        except (TypeError, ValueError):
            raise ModelError("regression model returned non-numeric predictions") from None
    if arr.ndim == 2:
        if arr.shape[1] != len(labels):
            raise ModelError(f"model returned {arr.shape[1]} class probabilities, expected {len(labels)}")
        return Scores(probabilities=arr.astype("float64", copy=False))
    if arr.ndim != 1:
        raise ModelError(f"model returned shape {arr.shape}, expected labels or probabilities")
    if (
        manifest.target_type is TargetType.BINARY
        and arr.dtype.kind == "f"
        and not set(_label_index(labels)) & {str(v) for v in arr[:5]}
    ):
        # one probability per row: the positive class's (the second label)
        probs = np.clip(arr.astype("float64"), 0.0, 1.0)
        return Scores(probabilities=np.column_stack([1.0 - probs, probs]))
    index = _label_index(labels)
    onehot = np.zeros((rows, len(labels)))
    for i, value in enumerate(arr.tolist()):
        j = index.get(str(value))
        if j is None:
            raise ModelError(f"model predicted {value!r}, which is not one of the class labels {labels}")
        onehot[i, j] = 1.0
    return Scores(probabilities=onehot)


class LoadedModel(ABC):
    """A model ready to score. ``predict`` may raise anything; callers translate it."""

    input_kind: InputKind = InputKind.FRAME
    accepts_missing: bool = True  # False: the server answers 422 for a missing value instead of a 500

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.scoring = Scoring(ScorerKind.ORIGINAL, note="the model's own methods")

    @abstractmethod
    def predict(self, rows: Rows) -> Scores: ...

    def predict_checked(self, rows: np.ndarray) -> Scores:
        """`predict` for a float matrix the caller has already checked: no infinite value,
        and no missing one unless ``accepts_missing``. Models may then skip checking again."""
        return self.predict(rows)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (sessions, files) when the model is unloaded."""


def _all_numeric(manifest: Manifest) -> bool:
    return all(f.type is FeatureType.NUMERIC for f in manifest.features)


def _scores_only_its_input(estimator: Any) -> bool:
    """A scikit-learn estimator with no transformer anywhere inside it (a pipeline's steps, a
    meta-estimator's members): every value it checks is one of the rows it was given."""
    if not type(estimator).__module__.startswith("sklearn."):
        return False
    try:
        parts = [estimator, *estimator.get_params(deep=True).values()]
    except Exception:  # not a well-formed estimator: keep its checks
        return False
    return not any(hasattr(part, "fit") and hasattr(part, "transform") for part in parts)


class SklearnModel(LoadedModel):
    """A scikit-learn estimator or pipeline (or anything with its predict/predict_proba API)."""

    def __init__(self, manifest: Manifest, estimator: Any) -> None:
        super().__init__(manifest)
        self.estimator = estimator
        self._compiled: Any = None  # compiled.Compiled, once proven against the public method
        self._proba = manifest.target_type.is_classification and hasattr(estimator, "predict_proba")
        self._order: np.ndarray | None = None
        self._unnamed: Any = None  # a copy that takes unnamed float matrices without warning
        self._trusts_checks: Any = None  # scikit-learn's config_context, when it may skip its checks
        self._direct: DirectScorer | None = None  # the public method minus its checks, once proven
        if _scores_only_its_input(estimator):
            from sklearn import config_context

            self._trusts_checks = config_context
        classes = getattr(estimator, "classes_", None)
        if self._proba and classes is not None:
            index = _label_index(list(classes))
            labels = [str(x) for x in manifest.class_labels or []]
            if sorted(index) != sorted(labels):
                raise ModelError(
                    f"the estimator's classes {list(index)} differ from the manifest's classLabels {labels}"
                )
            order = np.array([index[label] for label in labels])
            if not np.array_equal(order, np.arange(len(order))):
                self._order = order

    def _raw(self, rows: Any, estimator: Any) -> Any:
        if self._proba:
            return self._in_label_order(np.asarray(estimator.predict_proba(rows)))
        return estimator.predict(rows)

    def _in_label_order(self, proba: np.ndarray) -> np.ndarray:
        """Probability columns from the estimator's class order to the manifest's."""
        return proba if self._order is None else proba[:, self._order]

    def predict(self, rows: Rows) -> Scores:
        if isinstance(rows, Columns):
            if self._compiled is not None:
                try:
                    return self._normalize(self._compiled.from_columns(rows.data), len(rows))
                except Exception:  # the public method below gives its own error, or scores
                    pass
            rows = rows.frame()
        if isinstance(rows, np.ndarray) and self._unnamed is not None:
            raw = self._raw(rows, self._unnamed)
        elif isinstance(rows, np.ndarray):
            with warnings.catch_warnings():  # fitted on a DataFrame: sklearn warns about the missing names
                warnings.simplefilter("ignore", UserWarning)
                raw = self._raw(rows, self.estimator)
        else:
            raw = self._raw(rows, self.estimator)
        return normalize_output(raw, self.manifest, len(rows))

    def _normalize(self, raw: np.ndarray, rows: int) -> Scores:
        return normalize_output(self._in_label_order(raw) if self._proba else raw, self.manifest, rows)

    def predict_checked(self, rows: np.ndarray) -> Scores:
        if self._compiled is not None:
            try:
                return self._normalize(self._compiled.from_matrix(rows), len(rows))
            except Exception:  # the public method below gives its own error, or scores
                pass
        if self._direct is not None:
            return self._normalize(self._direct(rows), len(rows))
        if self._trusts_checks is None:
            return self.predict(rows)
        # scikit-learn would check that every value is finite at each validation (about 50 µs
        # a call for a gradient-boosting model); the caller has checked them already
        with self._trusts_checks(assume_finite=True):
            return self.predict(rows)

    def choose_input_kind(self) -> None:
        """Use the float-matrix fast path when it is proven to give the same scores as a DataFrame."""
        if not _all_numeric(self.manifest):
            return
        probe = probe_frame(self.manifest.features, self.manifest.baseline, rows=4)
        try:
            by_frame = self.predict(probe)
            by_matrix = self.predict(probe.to_numpy(dtype="float64"))
        except Exception as exc:  # the fast path is optional: any failure keeps DataFrames
            log.debug("float-matrix input refused by %s: %s", self.manifest.name, exc)
            return
        a = by_frame.probabilities if by_frame.probabilities is not None else by_frame.values
        b = by_matrix.probabilities if by_matrix.probabilities is not None else by_matrix.values
        if a is None or b is None or not np.allclose(a, b, equal_nan=True):
            return
        self.input_kind = InputKind.MATRIX
        with_gap = probe.to_numpy(dtype="float64", copy=True)
        with_gap[0, 0] = np.nan
        try:
            self.predict(with_gap)
        except Exception:
            self.accepts_missing = False
        matrices = [probe.to_numpy(dtype="float64")] + ([with_gap] if self.accepts_missing else [])
        self._unnamed = self._unnamed_copy(matrices[0], a)
        self._direct = self._proven_direct(matrices)
        if self._direct is not None:
            self.scoring = Scoring(ScorerKind.DIRECT, 0.0, "the public method minus its input checks")

    def compile(self) -> None:
        """Score with a compiled scorer (`compiled`) once it has given the same labels and
        scores within `proof.TOLERANCE` of the public method on probe and edge rows."""
        from shipmate.packages.compiled import Unsupported, compile_model

        bare_tree = direct_scorer(self.estimator, self._proba) is not None
        if bare_tree and tree_scorer(self.estimator, self._proba) is None:
            return  # bare gradient boosting: the direct scorer, held to exact equality, is that compiled form
        try:
            compiled = compile_model(self.estimator, self.manifest.feature_names, self._proba)
        except Unsupported as exc:
            self.scoring = self.scoring.with_note(f"not compiled: {exc}")
            return
        except Exception as exc:  # an estimator of a layout this release does not know
            self.scoring = self.scoring.with_note(f"not compiled: {type(exc).__name__}: {exc}")
            return
        inputs = edge_inputs(self.manifest, self.estimator, with_missing=self.accepts_missing)
        batches: list[Rows]
        if self.input_kind is InputKind.MATRIX:
            names = self.manifest.feature_names
            batches = [f[names].to_numpy(dtype="float64") for f in inputs]
        else:
            batches = [_columns_of(f, self.manifest) for f in inputs]

        def original(rows: Rows) -> np.ndarray:
            return _output(self.predict(rows))  # the public method (nothing compiled yet)

        def fast(rows: Rows) -> np.ndarray:
            if isinstance(rows, Columns):
                return _output(self._normalize(compiled.from_columns(rows.data), len(rows)))
            assert isinstance(rows, np.ndarray)
            return _output(self._normalize(compiled.from_matrix(rows), len(rows)))

        proof: Proof = prove(original, fast, batches, self.manifest)
        if proof.passed:
            self._compiled = compiled
            self.scoring = Scoring(ScorerKind.COMPILED, proof.max_difference, proof.summary)
        else:
            self.scoring = self.scoring.with_note(f"compiled scorer refused: {proof.summary}")

    def _unnamed_copy(self, matrix: np.ndarray, expected: np.ndarray) -> Any:
        """sklearn checks column names on every call and warns when a matrix has none; the
        server has already checked and ordered the columns, so score with a shallow copy that
        forgot the names (kept only if it gives the same scores)."""
        if "feature_names_in_" not in vars(self.estimator):  # (a pipeline's are its first step's)
            return None
        unnamed = copy.copy(self.estimator)
        del unnamed.feature_names_in_
        try:
            scores = normalize_output(self._raw(matrix, unnamed), self.manifest, len(matrix))
        except Exception:
            return None
        got = scores.probabilities if scores.probabilities is not None else scores.values
        return unnamed if got is not None and np.allclose(expected, got, equal_nan=True) else None

    def _proven_direct(self, matrices: list[np.ndarray]) -> DirectScorer | None:
        """The estimator's scorer without its input checks (`sklearn_direct`), once it has given
        exactly what the public method gives on every one of ``matrices``."""
        direct = direct_scorer(self.estimator, self._proba)
        if direct is None:
            return None
        public = self.estimator.predict_proba if self._proba else self.estimator.predict
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                proven = all(
                    np.array_equal(direct(m), np.asarray(public(m)), equal_nan=True) for m in matrices
                )
        except Exception as exc:  # a scikit-learn whose internals moved: keep the public method
            log.debug("direct scoring refused for %s: %s", self.manifest.name, exc)
            return None
        return direct if proven else None


def _output(scores: Scores) -> np.ndarray:
    out = scores.probabilities if scores.probabilities is not None else scores.values
    assert out is not None
    return out


def _columns_of(frame: pd.DataFrame, manifest: Manifest) -> Columns:
    """A DataFrame as the `Columns` the server builds: float64 numbers, other values as text."""
    data: dict[str, np.ndarray] = {}
    for f in manifest.features:
        col = frame[f.name]
        if f.type is FeatureType.NUMERIC:
            data[f.name] = col.to_numpy(dtype=np.float64)
        elif f.type is FeatureType.BOOLEAN:
            data[f.name] = np.asarray(col.tolist())
        else:
            text = col.astype(object).where(col.isna(), col.astype(str)).to_numpy(dtype=object, copy=True)
            text[col.isna().to_numpy()] = np.nan  # as the server gives a missing category
            data[f.name] = text
    return Columns(data, len(frame))


class OnnxModel(LoadedModel):
    """An ONNX graph run by onnxruntime: one 2-D float input, or one input per feature."""

    def __init__(self, manifest: Manifest, model_file: Path) -> None:
        super().__init__(manifest)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # the server scales with worker processes instead
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"onnxruntime cannot load {model_file.name}: {exc}") from None
        self.inputs = self.session.get_inputs()
        names = manifest.feature_names
        self._single = len(self.inputs) == 1 and len(self.inputs[0].shape) == 2
        if self._single:
            self._dtype = np.float32 if "float)" in self.inputs[0].type else np.float64
            self.input_kind = InputKind.MATRIX if _all_numeric(manifest) else InputKind.FRAME
        elif {i.name for i in self.inputs} != set(names):
            raise ModelError(
                f"ONNX inputs {[i.name for i in self.inputs]} match neither one 2-D tensor "
                f"nor the features {names}"
            )
        self._outputs = [o.name for o in self.session.get_outputs()]
        self._pick = self._choose_output()

    def _choose_output(self) -> str:
        outs = self.session.get_outputs()
        if self.manifest.target_type.is_classification:
            for o in outs:
                if "seq(map" in o.type or ("float" in o.type and len(o.shape) == 2 and o.shape[1] != 1):
                    return str(o.name)
        return str(outs[0].name)

    @staticmethod
    def _column(values: Any, onnx_type: str) -> np.ndarray:
        if "string" in onnx_type:
            arr = np.asarray(values).astype(str).astype(object)
        elif "int64" in onnx_type:
            arr = np.asarray(values, dtype=np.int64)
        elif "double" in onnx_type:
            arr = np.asarray(values, dtype=np.float64)
        elif "bool" in onnx_type:
            arr = np.asarray(values, dtype=bool)
        else:
            arr = np.asarray(values, dtype=np.float32)
        return arr.reshape(-1, 1)

    def predict(self, rows: Rows) -> Scores:
        names = self.manifest.feature_names
        if isinstance(rows, Columns):
            rows = rows.frame()
        if self._single:
            matrix = rows if isinstance(rows, np.ndarray) else rows.to_numpy()
            if self._dtype is np.float32:
                _check_float32_range(matrix, names)
            feed = {self.inputs[0].name: np.ascontiguousarray(matrix, dtype=self._dtype)}
        else:
            frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=names)
            feed = {i.name: self._column(frame[i.name].to_numpy(), i.type) for i in self.inputs}
            for i in self.inputs:
                if feed[i.name].dtype == np.float32:
                    _check_float32_range(frame[[i.name]].to_numpy(), [i.name])
        (raw,) = self.session.run([self._pick], feed)
        scores = normalize_output(raw, self.manifest, len(rows))
        _refuse_unscored_rows(scores, rows, names)
        return scores


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_float32_range(matrix: np.ndarray, names: Sequence[str]) -> None:
    """A value finite as a double may be infinite once cast to float32: name the first one."""
    if matrix.dtype.kind != "f" or matrix.dtype == np.float32:
        return
    beyond = np.abs(matrix) > _FLOAT32_MAX
    if beyond.any():
        row, col = (int(v) for v in np.argwhere(beyond)[0])
        raise InputRejected(
            f"{matrix[row, col]} is out of range for this model (float32 input)", row=row, column=names[col]
        )


def _refuse_unscored_rows(scores: Scores, rows: np.ndarray | pd.DataFrame, names: Sequence[str]) -> None:
    """A graph that cannot take a missing value scores its row as NaN: say which value, not null."""
    out = scores.probabilities if scores.probabilities is not None else scores.values
    if out is None or out.dtype.kind != "f":
        return
    bad = ~np.isfinite(out if out.ndim == 1 else out.reshape(len(out), -1)).all(axis=-1)
    if not bad.any():
        return
    row = int(np.argmax(bad))
    values = rows[row] if isinstance(rows, np.ndarray) else rows.iloc[row].to_numpy()
    missing = [i for i, v in enumerate(values) if v is None or (isinstance(v, float) and np.isnan(v))]
    if missing:
        raise InputRejected(
            "missing value; this model does not accept missing values", row=row, column=names[missing[0]]
        )
    raise ModelError(f"the model returned a non-finite score for row {row}")


class BoosterModel(LoadedModel):
    """An XGBoost or LightGBM booster from its native file (`boosters`): a float matrix in,
    through the booster's own compiled predict; missing values go to the trees' default branches."""

    input_kind = InputKind.MATRIX

    def __init__(self, manifest: Manifest, model_file: Path) -> None:
        from shipmate.packages import boosters

        super().__init__(manifest)
        if not _all_numeric(manifest):
            raise ModelError(f"{manifest.framework} packages take numeric features only")
        self._framework = manifest.framework
        self.booster = boosters.load_booster(manifest.framework, model_file)
        objective = (
            boosters.xgboost_objective(self.booster)
            if manifest.framework is Framework.XGBOOST
            else boosters.lightgbm_objective(self.booster)
        )
        if objective.target_type is not manifest.target_type:
            raise ModelError(
                f"the model's objective makes it a {objective.target_type} model, "
                f"the manifest says {manifest.target_type}"
            )
        labels = manifest.class_labels or []
        if objective.classes and objective.classes != len(labels):
            raise ModelError(f"the model has {objective.classes} classes, the manifest {len(labels)} labels")
        self._order = boosters.column_order(
            boosters.booster_features(manifest.framework, self.booster),
            manifest.feature_names,
            boosters.input_width(manifest.framework, self.booster),
        )
        self._raw: Any = functools.partial(boosters.raw_predict, manifest.framework, self.booster)
        self.scoring = Scoring(ScorerKind.NATIVE, note=f"{manifest.framework}'s own compiled predict")
        self._direct: Any = None
        self._small: Any = None  # booster_onnx.OnnxBooster, once proven
        self._small_rows = (0, 0)  # the batch sizes (rows, inclusive) it scores

    def call_directly(self) -> None:
        """Call the booster's C predictor without its Python wrapper (`boosters.XGBoostDirect`,
        `boosters.LightGBMDirect`) once it has given exactly the public method's output on
        probe rows, edge rows (each feature missing, all missing, split thresholds and one
        float step either side), as a batch and one row at a time."""
        from shipmate.packages import boosters

        try:
            direct = (
                boosters.XGBoostDirect(self.booster)
                if self._framework is Framework.XGBOOST
                else boosters.LightGBMDirect(
                    self.booster, boosters.input_width(self._framework, self.booster)
                )
            )
        except Exception as exc:  # a release whose C API moved: keep the public method
            self.scoring = self.scoring.with_note(f"{self.scoring.note}; not called directly: {exc}")
            return
        batches = self._proof_batches()
        rows = sum(len(b) for b in batches)
        try:
            same = all(np.array_equal(direct(b), self._raw(b), equal_nan=True) for b in batches)
        except Exception as exc:
            same, why = False, f"{type(exc).__name__}: {exc}"
        else:
            why = "a different score"
        if not same:
            self.scoring = self.scoring.with_note(f"{self.scoring.note}; direct call refused: {why}")
            if isinstance(direct, boosters.LightGBMDirect):
                direct.close()
            return
        self._direct = direct
        self.scoring = Scoring(
            ScorerKind.NATIVE,
            0.0,
            f"{self._framework}'s own compiled predict, called through its C API without its Python "
            f"wrapper (equal to the public method on {rows} proof rows)",
        )

    def _proof_batches(self) -> list[np.ndarray]:
        """Probe and edge rows in the booster's column order: a batch of each, then each row alone."""
        from shipmate.packages import boosters

        names = self.manifest.feature_names
        probe = probe_frame(self.manifest.features, self.manifest.baseline, rows=8)[names].to_numpy(
            np.float64
        )
        if self._order is not None:
            probe = probe[:, self._order]
        base = probe[0]
        gaps = np.repeat(base[None, :], len(base) + 1, axis=0)
        gaps[np.arange(len(base)), np.arange(len(base))] = np.nan
        gaps[-1, :] = np.nan
        edges = np.vstack([gaps, boosters.threshold_rows(self._framework, self.booster, base)])
        batches = [np.ascontiguousarray(probe), np.ascontiguousarray(edges)]
        singles = np.vstack([probe, edges])[:_SINGLE_PROOF_ROWS]  # a wide model's load stays short
        return batches + [np.ascontiguousarray(singles[i : i + 1]) for i in range(len(singles))]

    def predict(self, rows: Rows) -> Scores:
        if not isinstance(rows, np.ndarray):
            rows = as_frame(rows, self.manifest.feature_names).to_numpy(dtype=np.float64)
        matrix = np.ascontiguousarray(rows if self._order is None else rows[:, self._order], dtype=np.float64)
        if self._small is not None and self._small_rows[0] <= len(matrix) <= self._small_rows[1]:
            try:
                return self._finish(self._small(matrix), len(rows))
            except Exception:  # the booster's own predictor below scores, or gives its own error
                pass
        return self._finish((self._raw if self._direct is None else self._direct)(matrix), len(rows))

    def _finish(self, out: np.ndarray, rows: int) -> Scores:
        if self.manifest.target_type is TargetType.BINARY:
            p = out.reshape(-1).astype(np.float64)
            return Scores(probabilities=np.column_stack([1.0 - p, p]))
        return normalize_output(out.astype(np.float64, copy=False), self.manifest, rows)

    def compile(self) -> None:
        """Score with the booster's trees rebuilt for onnxruntime (`booster_onnx`) the batches
        where that is cheaper (XGBoost: up to `booster_onnx.SMALL_BATCH` rows; LightGBM: from
        `booster_onnx.LIGHTGBM_MIN_ROWS`), once `proof.prove` has found the same labels and
        scores within `proof.TOLERANCE` of the public method on the probe and edge rows."""
        from shipmate.packages import booster_onnx

        xgb = self._framework is Framework.XGBOOST
        try:
            rebuilt = (
                booster_onnx.xgboost_ensemble(self.booster)
                if xgb
                else booster_onnx.lightgbm_ensemble(self.booster)
            )
        except booster_onnx.Unsupported as exc:
            self.scoring = self.scoring.with_note(f"{self.scoring.note}; not compiled: {exc}")
            return
        except Exception as exc:  # a model layout this release does not know
            self.scoring = self.scoring.with_note(
                f"{self.scoring.note}; not compiled: {type(exc).__name__}: {exc}"
            )
            return
        proof = prove(
            lambda b: _output(self._finish(self._raw(b), len(b))),
            lambda b: _output(self._finish(rebuilt(b), len(b))),
            self._proof_batches(),
            self.manifest,
        )
        if not proof.passed:
            self.scoring = self.scoring.with_note(
                f"{self.scoring.note}; compiled scorer refused: {proof.summary}"
            )
            return
        self._small = rebuilt
        self._small_rows = (1, booster_onnx.SMALL_BATCH) if xgb else (booster_onnx.LIGHTGBM_MIN_ROWS, 2**62)
        which = (
            f"batches of up to {booster_onnx.SMALL_BATCH} rows"
            if xgb
            else f"batches of {booster_onnx.LIGHTGBM_MIN_ROWS} rows or more"
        )
        self.scoring = Scoring(
            ScorerKind.COMPILED,
            proof.max_difference,
            f"{which}: the trees rebuilt for onnxruntime ({proof.summary}); others: {self.scoring.note}",
        )

    def close(self) -> None:
        direct, self._direct = self._direct, None  # a late request takes the public method
        if direct is not None and hasattr(direct, "close"):
            direct.close()


class PyfuncModel(LoadedModel):
    """An MLflow pyfunc model, scored through MLflow (schema enforcement included)."""

    def __init__(self, manifest: Manifest, pyfunc: Any) -> None:
        super().__init__(manifest)
        self.pyfunc = pyfunc

    def predict(self, rows: Rows) -> Scores:
        frame = as_frame(rows, self.manifest.feature_names)
        return normalize_output(self.pyfunc.predict(frame), self.manifest, len(frame))


class CustomModel(LoadedModel):
    """Hooks from ``custom.py``: ``load_model(model_dir)`` once, ``score(model, frame)`` per batch."""

    def __init__(self, manifest: Manifest, module: Any, model_dir: Path) -> None:
        super().__init__(manifest)
        self.module = module
        load = getattr(module, "load_model", None)
        self.model = load(str(model_dir)) if callable(load) else None

    def predict(self, rows: Rows) -> Scores:
        frame = as_frame(rows, self.manifest.feature_names)
        return normalize_output(self.module.score(self.model, frame), self.manifest, len(frame))


def _import_hooks(path: Path) -> Any:
    name = f"shipmate_custom_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PackageError(f"{path.name}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    if not callable(getattr(module, "score", None)):
        raise PackageError(f"{path.name} must define score(model, data)")
    return module


def _sklearn_model(manifest: Manifest, estimator: Any, compile: bool) -> SklearnModel:
    model = SklearnModel(manifest, estimator)
    model.choose_input_kind()
    if compile and manifest.compiled_scoring:
        model.compile()
    elif compile:
        model.scoring = model.scoring.with_note("compilation turned off when the package was built")
    else:
        model.scoring = model.scoring.with_note("compilation turned off for this server")
    return model


_SINGLE_PROOF_ROWS = 256
"""Proof rows also scored one at a time (single rows take their own paths in both boosters)."""


def _booster_model(manifest: Manifest, model_file: Path, compile: bool) -> BoosterModel:
    model = BoosterModel(manifest, model_file)
    if compile and manifest.compiled_scoring:
        model.call_directly()
        model.compile()
    elif compile:
        model.scoring = model.scoring.with_note("compilation turned off when the package was built")
    else:
        model.scoring = model.scoring.with_note("compilation turned off for this server")
    return model


def _mlflow_model(manifest: Manifest, model_dir: Path, compile: bool) -> LoadedModel:
    try:
        with warnings.catch_warnings():  # mlflow warns about its own type hints on import
            warnings.simplefilter("ignore")
            import mlflow.pyfunc
    except ImportError:
        raise ModelError("this package holds an MLflow model: install mlflow-skinny to serve it") from None
    pyfunc = mlflow.pyfunc.load_model(str(model_dir))
    try:  # an sklearn flavour scores faster (and with probabilities) without the pyfunc wrapper
        raw = pyfunc.get_raw_model()
    except Exception:
        raw = None
    if raw is not None and hasattr(raw, "predict") and hasattr(raw, "fit"):
        return _sklearn_model(manifest, raw, compile)
    return PyfuncModel(manifest, pyfunc)


def load_model(root: str | Path, manifest: Manifest, *, compile: bool = True) -> LoadedModel:
    """Load the model of an unpacked, verified package. Pickled frameworks execute code here:
    call it only for packages you trust (see docs/packages.md). ``compile``: try a compiled
    scorer (scikit-learn models; used only once proven, see `SklearnModel.compile`)."""
    root = Path(root)
    target = root / manifest.model_path
    try:
        model: LoadedModel
        if manifest.framework is Framework.SKLEARN:
            import joblib

            model = _sklearn_model(manifest, joblib.load(target), compile)
        elif manifest.framework is Framework.ONNX:
            model = OnnxModel(manifest, target)
        elif manifest.framework is Framework.MLFLOW:
            model = _mlflow_model(manifest, target, compile)
        elif manifest.framework in (Framework.XGBOOST, Framework.LIGHTGBM):
            model = _booster_model(manifest, target, compile)
        else:
            model = CustomModel(manifest, _import_hooks(root / CUSTOM_HOOKS_FILE), root)
    except (PackageError, ModelError):
        raise
    except Exception as exc:
        raise ModelError(
            f"loading the {manifest.framework} model {manifest.model_path!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return model
