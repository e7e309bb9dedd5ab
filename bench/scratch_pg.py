"""What the monitoring benches on PostgreSQL share (drift_bench.py, monitoring_scale.py): a scratch
database created and dropped around a run, CPU seconds of a process from /proc, the manifest
fields of a package whose numeric features and output have a fixed ``BINS``-bin baseline, and
minute bin counts against it with one feature in twenty shifted.

PostgreSQL is the one at 127.0.0.1:5432 with trust authentication (database ``test``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PG_ADMIN = "postgresql://root@127.0.0.1:5432/test"
ADMIN_TOKEN = "smt_bench-admin-token-0123456789abcdef"
BINS = 10
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def scratch_database(name: str) -> Iterator[str]:
    """Create the database ``name``, yield its SQLAlchemy URL, and drop it afterwards (whatever
    the run did). When PostgreSQL does not answer, say so in one line and exit with status 2."""
    import psycopg

    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except Exception as exc:
        log(f"PostgreSQL at 127.0.0.1:5432 is unreachable: {exc}")
        raise SystemExit(2) from None
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://root@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (None when /proc cannot see it, as for a PostgreSQL
    backend in another container)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def baseline_manifest(names: list[str]) -> dict[str, Any]:
    """The manifest fields that make ``names`` numeric features with ``BINS`` equal bins over
    [0, BINS] (1,000 sample rows in each), the output ``value`` likewise, and importance falling
    with the feature's position."""
    edges = [float(i) for i in range(BINS + 1)]
    spec = {"type": "numeric", "edges": edges, "counts": [0, *[1000] * BINS, 0, 0]}
    return {
        "features": [{"name": n, "type": "numeric"} for n in names],
        "baseline": {n: {"bins": spec} for n in names},
        "predictionBaseline": {"value": spec},
        "featureImportance": {n: round(1.0 / (1 + i), 4) for i, n in enumerate(names)},
    }


def minute_counts(rng: Any, rows: int, features: int) -> Any:
    """One minute's inner bin counts, features x ``BINS`` (a numpy array): ``rows`` rows spread
    evenly over the baseline's bins, except the first feature in twenty, shifted."""
    import numpy as np

    clean = np.full(BINS, 1.0 / BINS)
    shifted = np.linspace(0.1, 1.9, BINS) / np.linspace(0.1, 1.9, BINS).sum()
    drifting = max(1, features // 20)
    counts = rng.multinomial(rows, clean, size=features)
    counts[:drifting] = rng.multinomial(rows, shifted, size=drifting)
    return counts
