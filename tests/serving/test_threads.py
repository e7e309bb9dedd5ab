"""Each worker's native thread pools are sized so several workers do not fight over the cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from shipmate.serving.threads import POOL_VARIABLES, pool_environment, threads_per_worker


def test_the_cores_are_shared_out_and_every_worker_keeps_one_thread() -> None:
    assert threads_per_worker(cpus=2, workers=2) == 1
    assert threads_per_worker(cpus=8, workers=2) == 4
    assert threads_per_worker(cpus=2, workers=4) == 1
    assert threads_per_worker(cpus=16, workers=3) == 5


def test_a_pool_size_the_operator_set_is_left_alone() -> None:
    env = {"OMP_NUM_THREADS": "3"}
    assert pool_environment(env, 1) == {name: "1" for name in POOL_VARIABLES if name != "OMP_NUM_THREADS"}


def test_a_worker_of_two_limits_pools_loaded_before_and_after() -> None:
    """In a fresh process, as a spawned worker: numpy's BLAS is loaded before the limit,
    scikit-learn's OpenMP after it; both end up with the worker's share of the cores."""
    code = (
        "import numpy, json\n"
        "from shipmate.serving.threads import limit_thread_pools\n"
        "limit_thread_pools(workers=2, cpus=2)\n"
        "import sklearn.ensemble\n"
        "from sklearn.utils._openmp_helpers import _openmp_effective_n_threads\n"
        "from threadpoolctl import threadpool_info\n"
        "print(json.dumps({'openmp': _openmp_effective_n_threads(),"
        " 'pools': [p['num_threads'] for p in threadpool_info()]}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in POOL_VARIABLES}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["openmp"] == 1
    assert got["pools"] and set(got["pools"]) == {1}


_BOOSTERS = """
import json, os, sys
import numpy as np
if sys.argv[1] == "limit":
    from shipmate.serving.threads import limit_thread_pools
    limit_thread_pools(workers=2, cpus=2)
before = len(os.listdir("/proc/self/task"))
import lightgbm, xgboost
from threadpoolctl import threadpool_info
xgb = xgboost.Booster()
xgb.load_model(sys.argv[2])
lgb = lightgbm.Booster(model_file=sys.argv[3])
X = np.random.default_rng(0).normal(size=(3000, 8))
for _ in range(3):
    xgb.inplace_predict(X)
    lgb.predict(X)
print(json.dumps({"threads": len(os.listdir("/proc/self/task")) - before,
                  "openmp": [p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"]}))
"""


def test_xgboost_and_lightgbm_start_no_openmp_threads_in_a_worker_of_two(tmp_path: Path) -> None:
    """Both bring an OpenMP runtime (XGBoost's loaded with scikit-learn's libgomp, LightGBM's
    the system's), loaded after the limit: loading and scoring batches start no pool thread.
    The same code without the limit does, on more than one core (so the check can fail)."""
    import lightgbm
    import numpy as np
    import xgboost
    from threadpoolctl import threadpool_limits

    X = np.random.default_rng(0).normal(size=(500, 8))
    y = (X[:, 0] > 0).astype(int)
    with threadpool_limits(limits=1):
        xgboost.XGBClassifier(n_estimators=5, max_depth=3).fit(X, y).get_booster().save_model(
            tmp_path / "x.json"
        )
        lightgbm.LGBMClassifier(n_estimators=5, verbose=-1, n_jobs=1).fit(X, y).booster_.save_model(
            tmp_path / "l.txt"
        )
    env = {k: v for k, v in os.environ.items() if k not in POOL_VARIABLES}

    def run(mode: str) -> dict[str, Any]:
        args = [sys.executable, "-c", _BOOSTERS, mode, str(tmp_path / "x.json"), str(tmp_path / "l.txt")]
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    limited = run("limit")
    assert limited["threads"] == 0 and limited["openmp"] and set(limited["openmp"]) == {1}
    if (os.cpu_count() or 1) > 1:
        assert run("default")["threads"] != 0
