"""Compiling scikit-learn models into vectorised numpy scorers.

A realistic pipeline (imputers, a scaler and a one-hot encoder in a
``ColumnTransformer``, then a forest or a boosted model) spends almost all of a
single-row call in scikit-learn's Python dispatch: input validation at every step,
DataFrame handling, joblib for the forest's trees. The arithmetic is tiny. This module
rebuilds that arithmetic from the fitted attributes with plain numpy, one column at a
time, so a row costs microseconds per step instead of milliseconds:

- ``SimpleImputer`` (mean, median, most_frequent, constant), ``StandardScaler``,
  ``MinMaxScaler``, ``OneHotEncoder`` and ``OrdinalEncoder`` (no infrequent categories,
  no dropped category), ``ColumnTransformer`` (with passthrough and drop), ``Pipeline``;
- final estimators: ``LogisticRegression`` and linear regressors (``X @ coef + intercept``),
  ``HistGradientBoosting*`` (its own preprocessor of categorical features, then its tree
  predictors, minus the checks), forests and single
  trees (all trees at once, `trees`) and gradient boosting (`sklearn_direct`).

Anything else (another transformer, a parameter this module does not reproduce) raises
`Unsupported` while compiling, and the model keeps its public methods. A compiled scorer
is only a candidate either way: `shipmate.packages.runtime` proves it against the public
method on probe and edge rows before using it, and hands any batch it raises on to the
public method, so errors keep scikit-learn's words.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shipmate.packages.sklearn_direct import direct_scorer
from shipmate.packages.trees import SMALL_BATCH_CELLS, HistWalk, tree_scorer

Block = list[np.ndarray]
"""Columns between steps: one 1-D array per column (float64, or object for categories)."""

Step = Callable[[Block], Block]
Scorer = Callable[[Mapping[str, np.ndarray]], np.ndarray]
"""The feature columns of a batch (by name) → what the public method returns for them."""


class Unsupported(Exception):
    """This estimator, or one of its parameters, is not reproduced here."""


@dataclass(frozen=True, slots=True)
class Compiled:
    """A compiled model, fed either the feature columns by name or the float matrix of the
    package's features in order (for models the server gives a matrix)."""

    from_columns: Scorer
    from_matrix: Callable[[np.ndarray], np.ndarray]


def compile_model(estimator: Any, names: Sequence[str], probabilities: bool) -> Compiled:
    """A scorer of ``estimator``'s ``predict_proba`` (``probabilities``) or ``predict``, whose
    input columns are ``names`` (the package's features); `Unsupported` when it cannot be built."""
    steps, final = _split(estimator)
    inputs = _input_names(estimator, names)
    transforms = [_transformer(step) for step in steps]
    score = _final(final, probabilities)
    own = _own_preprocessor(final)
    if own is not None:
        transforms.append(_column_transformer(own))

    def from_columns(columns: Mapping[str, np.ndarray]) -> np.ndarray:
        block: Block = [columns[name] for name in inputs]
        if any(col.dtype.kind == "f" and np.isinf(col).any() for col in block):
            # frame input is not checked for infinities; scikit-learn's steps refuse them (or a
            # histogram-boosting model takes them): the public method says which
            raise ValueError("an infinite number")
        for transform in transforms:
            block = transform(block)
        return score(_matrix(block))

    if not transforms and inputs == list(names):
        return Compiled(from_columns, score)  # the server's matrix is already the estimator's input
    ordered = list(names)
    return Compiled(from_columns, lambda matrix: from_columns(dict(zip(ordered, matrix.T, strict=True))))


def _split(estimator: Any) -> tuple[list[Any], Any]:
    from sklearn.pipeline import Pipeline

    if type(estimator) is not Pipeline:
        return [], estimator
    steps = [step for _, step in estimator.steps if step not in (None, "passthrough")]
    if not steps:
        raise Unsupported("an empty pipeline")
    return steps[:-1], steps[-1]


def _own_preprocessor(final: Any) -> Any:
    """The ``ColumnTransformer`` a ``HistGradientBoosting*`` model with categorical features
    runs first (categories to ordinal codes, the rest to float64; its trees read that order)."""
    if not type(final).__name__.startswith("HistGradientBoosting"):
        return None
    return getattr(final, "_preprocessor", None)


def _input_names(estimator: Any, names: Sequence[str]) -> list[str]:
    """The columns the first step reads, in its order: by name when it was fitted on a
    DataFrame, else by position (the package's feature order, as the server passes them)."""
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is None:
        return list(names)
    missing = [str(n) for n in fitted if str(n) not in set(names)]
    if missing:
        raise Unsupported(f"fitted on columns the package lacks: {missing}")
    return [str(n) for n in fitted]


def _matrix(block: Block) -> np.ndarray:
    """The estimator's float matrix, converting as scikit-learn's checks do (True is 1.0, None
    NaN); text raises, and the public method then says what is wrong."""
    if not block:
        raise ValueError("no columns reach the estimator")
    return np.column_stack([c if c.dtype.kind == "f" else c.astype(np.float64) for c in block])


def _is_missing(values: np.ndarray, marker: Any = np.nan) -> np.ndarray:
    """Where ``values`` hold ``marker`` (NaN or None, as scikit-learn's imputers tell them apart)."""
    if marker is None:
        return np.fromiter((v is None for v in values.tolist()), dtype=bool, count=len(values))
    if values.dtype.kind == "f":
        return np.asarray(np.isnan(values))
    return np.fromiter((v != v for v in values.tolist()), dtype=bool, count=len(values))


def _numeric(col: np.ndarray) -> np.ndarray:
    if col.dtype.kind == "f":
        return col
    if col.dtype.kind in "iub":
        return col.astype(np.float64)
    raise ValueError("a numeric step was given categories")  # the public method then says what is wrong


# -- transformers ---------------------------------------------------------------------------------


def _transformer(step: Any) -> Step:
    build = _TRANSFORMERS.get(type(step).__name__)
    if build is None or not type(step).__module__.startswith("sklearn."):
        raise Unsupported(f"{type(step).__name__} is not compiled")
    return build(step)


def _pipeline(pipe: Any) -> Step:
    steps, final = _split(pipe)
    transforms = [_transformer(s) for s in [*steps, final]]

    def run(block: Block) -> Block:
        for transform in transforms:
            block = transform(block)
        return block

    return run


def _imputer(imp: Any) -> Step:
    if imp.add_indicator:
        raise Unsupported("SimpleImputer(add_indicator=True)")
    marker = imp.missing_values
    if not (marker is None or (isinstance(marker, float) and np.isnan(marker))):
        raise Unsupported(f"SimpleImputer(missing_values={marker!r})")
    stats = list(imp.statistics_)
    if any(isinstance(s, float) and np.isnan(s) for s in stats) and not imp.keep_empty_features:
        raise Unsupported("SimpleImputer dropping empty columns")
    numeric = np.asarray(imp.statistics_).dtype.kind == "f"

    def run(block: Block) -> Block:
        if len(block) != len(stats):
            raise ValueError(f"expected {len(stats)} columns, got {len(block)}")
        out = []
        for col, stat in zip(block, stats, strict=True):
            gaps = _is_missing(col, marker)
            if numeric:
                col = np.where(gaps, stat, _numeric(col))
            elif gaps.any():
                col = col.copy()
                col[gaps] = stat
            out.append(col)
        return out

    return run


def _standard(scaler: Any) -> Step:
    mean = scaler.mean_ if scaler.with_mean else None
    scale = scaler.scale_ if scaler.with_std else None

    def run(block: Block) -> Block:
        out = []
        for i, col in enumerate(block):
            col = _numeric(col)
            if mean is not None:
                col = col - mean[i]
            if scale is not None:
                col = col / scale[i]
            out.append(col)
        return out

    return run


def _minmax(scaler: Any) -> Step:
    scale, low = scaler.scale_, scaler.min_
    clip = scaler.feature_range if scaler.clip else None

    def run(block: Block) -> Block:
        out = []
        for i, col in enumerate(block):
            col = _numeric(col) * scale[i] + low[i]
            if clip is not None:
                col = np.clip(col, clip[0], clip[1])
            out.append(col)
        return out

    return run


def _category_lookup(categories: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Each value's index in ``categories``, -1 when unseen (None and NaN are categories of
    their own, as scikit-learn counts them)."""
    index: dict[Any, int] = {}
    nan_at = -1
    for i, c in enumerate(categories.tolist()):
        if isinstance(c, float) and c != c:
            nan_at = i
        else:
            index[c] = i
    get = index.get

    def lookup(values: np.ndarray) -> np.ndarray:
        return np.fromiter(
            (nan_at if (isinstance(v, float) and v != v) else get(v, -1) for v in values.tolist()),
            dtype=np.intp,
            count=len(values),
        )

    return lookup


def _encoder_checks(enc: Any) -> None:
    if getattr(enc, "_infrequent_enabled", False):
        raise Unsupported(f"{type(enc).__name__} with infrequent categories")


def _onehot(enc: Any) -> Step:
    _encoder_checks(enc)
    if enc.drop_idx_ is not None:
        raise Unsupported("OneHotEncoder(drop=...)")
    if np.dtype(enc.dtype).kind != "f":
        raise Unsupported(f"OneHotEncoder(dtype={enc.dtype})")
    lookups = [_category_lookup(c) for c in enc.categories_]
    sizes = [len(c) for c in enc.categories_]
    strict = enc.handle_unknown == "error"

    def run(block: Block) -> Block:
        out: Block = []
        for col, lookup, size in zip(block, lookups, sizes, strict=True):
            at = lookup(col)
            if strict and (at < 0).any():
                raise ValueError("unknown category")  # the public method then raises its own error
            hot = np.zeros((len(col), size))
            rows = np.flatnonzero(at >= 0)
            hot[rows, at[rows]] = 1.0
            out.extend(hot.T)
        return out

    return run


def _ordinal(enc: Any) -> Step:
    _encoder_checks(enc)
    if np.dtype(enc.dtype).kind != "f":
        raise Unsupported(f"OrdinalEncoder(dtype={enc.dtype})")
    lookups = [_category_lookup(c) for c in enc.categories_]
    missing_code = float(enc.encoded_missing_value)
    unknown = float(enc.unknown_value) if enc.handle_unknown == "use_encoded_value" else None
    with_nan = [
        any(v is None or (isinstance(v, float) and v != v) for v in c.tolist()) for c in enc.categories_
    ]

    def run(block: Block) -> Block:
        out: Block = []
        for col, lookup, has_gap in zip(block, lookups, with_nan, strict=True):
            at = lookup(col).astype(np.float64)
            unseen = at < 0
            if unseen.any():
                if unknown is None:
                    raise ValueError("unknown category")
                at[unseen] = unknown
            if has_gap:
                at[_is_missing(col) | _is_missing(col, None)] = missing_code
            out.append(at)
        return out

    return run


def _function(ft: Any) -> Step:
    """Only the identity (what ``ColumnTransformer`` makes of ``"passthrough"``), and the
    float64 conversion of ``HistGradientBoosting``'s own preprocessor."""
    if ft.func is None:
        return lambda block: block
    if is_float_check(ft.func):
        return lambda block: [_numeric(col) for col in block]
    raise Unsupported("FunctionTransformer with a function")


def is_float_check(func: Any) -> bool:
    """``func`` is ``check_array(dtype=[float64], ...)``, as ``HistGradientBoosting*`` converts
    its numeric columns (missing values kept)."""
    from functools import partial

    from sklearn.utils.validation import check_array

    if not isinstance(func, partial) or func.func is not check_array or func.args:
        return False
    return list(func.keywords.get("dtype", [])) == [np.float64] and set(func.keywords) <= {
        "dtype",
        "ensure_all_finite",
        "force_all_finite",
    }


def _column_transformer(ct: Any) -> Step:
    # a sparse output is dense here: the estimator then gets the same values
    parts: list[tuple[Step | None, list[int]]] = []
    for name, trans, _ in ct.transformers_:
        indices = [int(i) for i in ct._transformer_to_input_indices[name]]
        if isinstance(trans, str):
            if trans == "drop":
                continue
            if trans != "passthrough":
                raise Unsupported(f"ColumnTransformer step {trans!r}")
            parts.append((None, indices))
        else:
            parts.append((_transformer(trans), indices))

    def run(block: Block) -> Block:
        out: Block = []
        for transform, indices in parts:
            picked = [block[i] for i in indices]
            out.extend(picked if transform is None else transform(picked))
        return out

    return run


_TRANSFORMERS: dict[str, Callable[[Any], Step]] = {
    "Pipeline": _pipeline,
    "SimpleImputer": _imputer,
    "StandardScaler": _standard,
    "MinMaxScaler": _minmax,
    "OneHotEncoder": _onehot,
    "OrdinalEncoder": _ordinal,
    "ColumnTransformer": _column_transformer,
    "FunctionTransformer": _function,
}


# -- final estimators -----------------------------------------------------------------------------


def _final(estimator: Any, probabilities: bool) -> Callable[[np.ndarray], np.ndarray]:
    if not type(estimator).__module__.startswith("sklearn."):
        raise Unsupported(f"{type(estimator).__name__} is not compiled")
    direct = tree_scorer(estimator, probabilities) or direct_scorer(estimator, probabilities)
    if direct is not None:
        return direct
    name = type(estimator).__name__
    if name.startswith("HistGradientBoosting"):
        return _hist_boosting(estimator, probabilities)
    if name == "LogisticRegression" and probabilities:
        return _logistic(estimator)
    from sklearn.base import is_regressor
    from sklearn.linear_model._base import LinearModel

    if isinstance(estimator, LinearModel) and is_regressor(estimator) and not probabilities:
        return _linear(estimator)
    raise Unsupported(f"{name} is not compiled")


def _width_checked(
    width: int, score: Callable[[np.ndarray], np.ndarray], *, finite: bool = False
) -> Callable[[np.ndarray], np.ndarray]:
    """``score`` for matrices of ``width`` columns (and, with ``finite``, no missing value:
    the public method then gives its own error)."""

    def run(matrix: np.ndarray) -> np.ndarray:
        if matrix.ndim != 2 or matrix.shape[1] != width:
            raise ValueError(f"expected a matrix of {width} columns, got shape {matrix.shape}")
        if finite and not np.isfinite(matrix).all():
            raise ValueError("a missing or infinite value")
        return score(matrix)

    return run


def _linear(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    coef = np.asarray(model.coef_, dtype=np.float64)
    if coef.ndim != 1:
        raise Unsupported("a multi-output linear model")
    intercept = model.intercept_
    return _width_checked(len(coef), lambda m: m @ coef + intercept, finite=True)


def _logistic(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    from scipy.special import expit
    from sklearn.utils.extmath import softmax

    coef_t = np.asarray(model.coef_, dtype=np.float64).T
    intercept = model.intercept_
    binary = len(model.classes_) <= 2

    def proba(matrix: np.ndarray) -> np.ndarray:
        scores = matrix @ coef_t + intercept
        if binary:
            prob = expit(scores.reshape(-1))
            return np.stack([1 - prob, prob], axis=1)
        return np.asarray(softmax(scores, copy=False))

    return _width_checked(coef_t.shape[0], proba, finite=True)


def _hist_boosting(model: Any, probabilities: bool) -> Callable[[np.ndarray], np.ndarray]:
    from sklearn.base import is_classifier
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    if is_classifier(model) != probabilities:
        raise Unsupported("HistGradientBoosting: only predict_proba of classifiers, predict of regressors")
    known, f_idx_map = model._bin_mapper.make_known_categories_bitsets()
    predictors, baseline = model._predictors, model._baseline_prediction
    per_row, loss = int(model.n_trees_per_iteration_), model._loss
    try:
        walk: HistWalk | None = HistWalk(predictors, baseline)
    except (ValueError, KeyError, IndexError):  # categorical splits, or a layout not known here
        walk = None

    def raw(matrix: np.ndarray) -> np.ndarray:
        matrix = np.ascontiguousarray(matrix, dtype=np.float64)
        if walk is not None and len(matrix) * walk.trees <= SMALL_BATCH_CELLS:
            return walk.raw(matrix)
        out = np.zeros((len(matrix), per_row), dtype=baseline.dtype, order="F")
        out += baseline
        threads = _openmp_effective_n_threads()
        for stage in predictors:
            for k, predictor in enumerate(stage):
                out[:, k] += predictor.predict(matrix, known, f_idx_map, threads)
        return out

    width = int(model.n_features_in_)
    if probabilities:
        return _width_checked(width, lambda m: np.asarray(loss.predict_proba(raw(m))))
    return _width_checked(width, lambda m: np.asarray(loss.link.inverse(raw(m).ravel())))
