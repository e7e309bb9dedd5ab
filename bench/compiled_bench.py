"""In-process CPU cost of the compiled scorers of tree pipelines (no server).

    .venv/bin/python bench/compiled_bench.py [--models rf,et,dt,gb,hgb] [--reps 400]

Builds each pipeline of bench/pipeline_bench.py's shape (8 numeric and 3 categorical columns
with gaps; median imputer and scaler, most-frequent imputer and one-hot encoder; then the
final model), packages it, loads it as a server does and measures, in one OpenMP thread,
the median CPU time (``time.process_time``) of one call for 1 row and for 1,000 rows:

- ``public``: the pipeline's own ``predict_proba`` (a DataFrame in);
- ``served``: what the server calls (the proven scorer, the package's columns in);
- on the final model alone, fed the preprocessed float matrix: ``per-tree`` (each tree's
  ``predict_proba(check_input=False)``, what compiled scoring used before), ``all-trees``
  (`shipmate.packages.trees`, what it uses now) and, where skl2onnx is installed,
  ``onnxruntime`` (one thread), with its largest difference from the public method.

The machine is shared: medians of many repetitions, CPU time rather than wall time.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits


def _model(kind: str) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(0)
    n = 6000
    X = pd.DataFrame({f"n{i}": rng.normal(size=n).round(4) for i in range(8)})
    X["plan"] = rng.choice(["basic", "pro", "team", "enterprise"], n).astype(object)
    X["region"] = rng.choice(["eu", "us", "apac"], n).astype(object)
    X["channel"] = rng.choice(["web", "app", "phone", "store", "partner"], n).astype(object)
    for c in ["n0", "n3", "plan", "region"]:
        X.loc[rng.random(n) < 0.05, c] = np.nan
    y = ((X.n1.fillna(0) + (X.plan == "pro") * 1.0 + rng.normal(size=n) * 0.5) > 0.5).astype(int)
    num, cat = [f"n{i}" for i in range(8)], ["plan", "region", "channel"]
    pre = ColumnTransformer(
        [
            ("num", Pipeline([("imp", SimpleImputer(strategy="median")), ("sc", StandardScaler())]), num),
            (
                "cat",
                Pipeline(
                    [
                        ("imp", SimpleImputer(strategy="most_frequent")),
                        ("oh", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                cat,
            ),
        ]
    )
    final = {
        "rf": lambda: RandomForestClassifier(150, max_depth=12, random_state=0),
        "et": lambda: ExtraTreesClassifier(150, max_depth=12, random_state=0),
        "dt": lambda: DecisionTreeClassifier(max_depth=12, random_state=0),
        "gb": lambda: GradientBoostingClassifier(n_estimators=100, random_state=0),
        "hgb": lambda: HistGradientBoostingClassifier(max_iter=100, random_state=0),
    }[kind]()
    model = Pipeline([("pre", pre), ("m", final)]).fit(X, y)
    return model, X, X.sample(1000, random_state=1)


def _cpu(f: Callable[[], Any], reps: int) -> float:
    """Median CPU seconds of one call."""
    f()
    times = []
    for _ in range(reps):
        start = time.process_time()
        f()
        times.append(time.process_time() - start)
    return statistics.median(times)


def _onnx(final: Any, width: int) -> Callable[[np.ndarray], np.ndarray] | None:
    try:
        import onnxruntime as ort
        from skl2onnx import to_onnx
    except ImportError:
        return None
    try:
        onx = to_onnx(final, np.zeros((1, width), dtype=np.float32), options={"zipmap": False})
    except Exception:  # a model this skl2onnx and onnxruntime do not take together
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(onx.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda m: session.run(["probabilities"], {"X": m.astype(np.float32)})[0]


def run(kind: str, reps: int) -> list[tuple[str, float, float, str]]:
    from shipmate.packages import BuildOptions, build_sklearn_package, extract_package, load_model
    from shipmate.packages.runtime import _columns_of
    from shipmate.packages.sklearn_direct import direct_scorer

    try:  # an older checkout (for the figures before) has no all-trees scorer
        all_trees = importlib.import_module("shipmate.packages.trees").tree_scorer
    except ImportError:
        all_trees = None

    model, X, rows = _model(kind)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.mlpkg"
        build_sklearn_package(
            model, X.sample(2000, random_state=0), path, name=kind, options=BuildOptions(importance=False)
        )
        start = time.process_time()
        served = load_model(Path(tmp) / "x", extract_package(path, Path(tmp) / "x"))
        load_cpu = time.process_time() - start
    one, many = _columns_of(rows.head(1), served.manifest), _columns_of(rows, served.manifest)
    out = [
        (
            "public predict_proba",
            _cpu(lambda: model.predict_proba(rows.head(1)), reps // 4),
            _cpu(lambda: model.predict_proba(rows), reps // 20),
            "",
        ),
        (
            f"served ({served.scoring.scorer})",
            _cpu(lambda: served.predict(one), reps),
            _cpu(lambda: served.predict(many), reps // 10),
            f"max difference {served.scoring.max_difference}, load and proof {load_cpu * 1e3:.0f} ms CPU",
        ),
    ]
    final = model[-1]
    matrix = np.asarray(model[:-1].transform(rows), dtype=np.float64)
    expected = final.predict_proba(matrix)
    scorers: list[tuple[str, Callable[[np.ndarray], np.ndarray] | None]] = [
        ("final model, per-tree", direct_scorer(final, True)),
        ("final model, all-trees", all_trees(final, True) if all_trees else None),
        ("final model, onnxruntime", _onnx(final, matrix.shape[1])),
    ]
    for name, score in scorers:
        if score is None:
            continue
        diff = float(np.abs(score(matrix) - expected).max())
        out.append(
            (
                name,
                _cpu(partial(score, matrix[:1]), reps),
                _cpu(partial(score, matrix), reps // 10),
                f"max difference {diff:.2g}",
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="rf,et,dt,gb")
    parser.add_argument("--reps", type=int, default=400)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with threadpool_limits(limits=1):
        for kind in args.models.split(","):
            print(f"\n**{kind}** (CPU per call, median)\n")
            print("| scorer | 1 row | 1,000 rows | |\n|---|---|---|---|")
            for name, single, batch, note in run(kind, args.reps):
                print(f"| {name} | {single * 1e3:.3f} ms | {batch * 1e3:.2f} ms | {note} |")


if __name__ == "__main__":
    main()
