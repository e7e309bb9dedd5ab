#!/usr/bin/env python3
"""CPU time and size of one monitoring record, written and read back.

Builds a minute aggregate as the recorder does for 1,000 single-row requests (latencies over
about 45 histogram buckets) with ``--features`` numeric columns of 13 bins and 17-digit moments,
then times, in this process with CPU time (``time.process_time``), writing it (``to_json`` and
``orjson.dumps``, what the prediction server's flusher and the agent do) and reading it
(``orjson.loads`` and ``MinuteAggregate.from_json``, what the agent and the service do).

``--records PATH`` measures another ``records.py`` instead of this checkout's, e.g. an earlier
format version::

    python3 bench/monitoring_record_codec.py
    git show <commit>:src/shipmate/monitoring/records.py > /tmp/records_old.py
    python3 bench/monitoring_record_codec.py --records /tmp/records_old.py
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import orjson


def _module(path: Path | None) -> ModuleType:
    if path is None:
        from shipmate.monitoring import records

        return records
    spec = importlib.util.spec_from_file_location("records_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def build(records: ModuleType, features: int) -> Any:
    rng = np.random.default_rng(0)
    record = records.MinuteAggregate(deployment_id="d", minute=1, model_id="m")
    for ms in rng.lognormal(0.5, 0.6, 1000).tolist():
        record.response_ms.observe(ms)
        record.execution_ms.observe(ms / 2)
    for i in range(features):
        values = rng.normal(size=1000)
        counts = [0, *np.histogram(values, bins=10)[0].tolist(), 0, 0]
        record.features[f"f{i}"] = records.BinCounts(
            counts=counts,
            count=sum(counts),
            missing=0,
            minimum=float(values.min()),
            maximum=float(values.max()),
            total=float(values.sum()),
            total_sq=float((values * values).sum()),
        )
    return record


def cpu_us(fn: Callable[[], object], repeats: int) -> float:
    started = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - started) / repeats * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=Path, help="another records.py to measure")
    ap.add_argument("--features", type=int, nargs="+", default=[20, 1000])
    args = ap.parse_args()
    records = _module(args.records)
    for features in args.features:
        repeats = max(20, 40_000 // features)
        record = build(records, features)
        payload = orjson.dumps(record.to_json())
        write = cpu_us(lambda r=record: orjson.dumps(r.to_json()), repeats)
        read = cpu_us(lambda p=payload: records.MinuteAggregate.from_json(orjson.loads(p)), repeats)
        print(
            f"{features:,} features, version {orjson.loads(payload)['v']}: {len(payload):,} bytes; "
            f"write {write:,.1f} µs, read {read:,.1f} µs of CPU (mean of {repeats:,})"
        )


if __name__ == "__main__":
    main()
