"""Sizing each worker's native thread pools so several workers do not fight over the cores.

Models that bring their own thread pools (OpenMP in scikit-learn's
``HistGradientBoosting*``, XGBoost and LightGBM; the BLAS under numpy) start one thread
per CPU in every process. With one worker process per CPU that is CPUs² threads on CPUs
cores: OpenMP's threads spin-wait for each other between requests, and single-row
throughput collapsed (14-26 requests/s on two workers against 141-267 with one thread
each; docs/serving.md). Each worker therefore gets ``cpus // workers`` threads (at least
one). The limit is put in the environment before a library initialises its pool (what
OpenMP runtimes and BLAS read once, at load) and applied with ``threadpoolctl`` to the
pools already loaded. A variable the operator has set is left as it is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping

log = logging.getLogger(__name__)

POOL_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def threads_per_worker(cpus: int, workers: int) -> int:
    """The threads each worker's pools may use: the cores shared out, at least one."""
    return max(1, cpus // max(1, workers))


def pool_environment(env: MutableMapping[str, str], threads: int) -> dict[str, str]:
    """The pool variables to set (those the operator has not set), for libraries loaded later."""
    return {name: str(threads) for name in POOL_VARIABLES if not env.get(name)}


def limit_thread_pools(workers: int, cpus: int | None = None) -> int | None:
    """Size this worker's pools for ``workers`` processes sharing the machine; the threads
    per pool, or ``None`` when a single worker keeps the libraries' defaults."""
    if workers <= 1:
        return None
    threads = threads_per_worker(cpus or os.cpu_count() or 1, workers)
    explicit = os.environ.get("OMP_NUM_THREADS")
    os.environ.update(pool_environment(os.environ, threads))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # only the environment then (read by every pool that starts later)
        return threads
    # the operator's OMP_NUM_THREADS wins over ours for the pools already loaded too
    threadpool_limits(limits=int(explicit) if explicit and explicit.isdigit() else threads)
    log.debug("thread pools limited to %d thread(s) per worker", threads)
    return threads
