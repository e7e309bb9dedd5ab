"""Each worker's native thread pools are sized so several workers do not fight over the cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
