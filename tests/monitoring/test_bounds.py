"""Monitoring stays bounded: memory per feature whatever the traffic and the cardinality, a
model of 1,000 features, and compiled bins that leave with their deployment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from tests.monitoring.conftest import FakeDeployment, make_manifest

from shipmate.monitoring.asgi import MonitoringMiddleware, ServeMetrics
from shipmate.monitoring.fs_spool import FilesystemSpool
from shipmate.monitoring.recorder import Recorder
from shipmate.monitoring.records import MinuteAggregate
from shipmate.monitoring.settings import MonitorSettings, SpoolerType
from shipmate.monitoring.spool import NoSpool, Spool
from shipmate.packages import Scores


@dataclass
class Request:
    columns: tuple[str, ...]
    rows: Any = None
    frame: pd.DataFrame | None = None


class Served:
    """The prediction server's registry, as the middleware reads it."""

    def __init__(self, *deployments: FakeDeployment) -> None:
        self.deployments = list(deployments)

    def all(self) -> list[FakeDeployment]:
        return list(self.deployments)


def _recorder(spool: Spool | None = None, **changes: Any) -> Recorder:
    settings = MonitorSettings(enabled=True, spooler_type=SpoolerType.NONE, **changes)
    return Recorder(settings, spool or NoSpool(), clock=lambda: 6000.0)


def _scores(n: int) -> Scores:
    p = np.random.default_rng(0).uniform(size=n)
    return Scores(probabilities=np.column_stack([1 - p, p]))


def test_bins_of_a_deployment_no_longer_served_are_evicted_after_its_last_flush() -> None:
    manifest = make_manifest(categorical=False)
    features = tuple(manifest.feature_names)
    staying = FakeDeployment(id="d-1", manifest=manifest, features=features)
    leaving = FakeDeployment(id="d-2", manifest=manifest, features=features, package_sha256="1" * 64)
    recorder = _recorder()
    registry = Served(staying, leaving)
    MonitoringMiddleware(lambda *a: None, recorder, ServeMetrics(SpoolerType.NONE), registry, lambda r: None)  # type: ignore[arg-type]
    rows = np.ones((3, len(features)))
    for dep in (staying, leaving):
        recorder.on_scored(dep, Request(features, rows), _scores(3))
    recorder._flush_and_tell()
    assert recorder.compiled == 2
    registry.deployments.remove(leaving)  # undeployed (multi-model mode): its last rows still wait
    recorder.on_scored(leaving, Request(features, rows), _scores(3))
    recorder._flush_and_tell()
    assert recorder.compiled == 1
    recorder._flush_and_tell()
    assert recorder.compiled == 1


def test_memory_per_feature_does_not_grow_with_traffic_or_cardinality() -> None:
    """Every flush makes records of the bins' fixed size, whatever values arrive: 200,000 distinct
    categories, 1,000 distinct consumers, latencies over ten decades. Rows waiting for a flush are
    capped (``max_pending_rows``); more are counted, not held."""
    dep = FakeDeployment(id="d-1", manifest=make_manifest(), features=("x0", "x1", "x2", "colour"))
    recorder = _recorder(max_pending_rows=50_000)
    rng = np.random.default_rng(1)
    sizes = set()
    for flush in range(4):
        for part in range(5):
            n = 10_000
            frame = pd.DataFrame(
                {
                    "x0": rng.normal(size=n) * 10.0 ** rng.integers(-3, 300),
                    "x1": rng.normal(size=n),
                    "x2": rng.normal(size=n),
                    "colour": [f"c{flush}-{part}-{i}" for i in range(n)],  # never seen before
                }
            )
            recorder.on_scored(dep, Request(tuple(frame.columns), frame=frame), _scores(n))
            for i in range(200):
                ms = float(10.0 ** rng.uniform(-3, 7))
                recorder.on_request(
                    dep, rows=50, response_ms=ms, execution_ms=ms, status=200, consumer=f"u{i}-{part}"
                )
        recorder.on_scored(dep, Request(tuple(frame.columns), frame=frame), _scores(n))  # over the cap
        (record,) = recorder.flush()
        assert record.features["colour"].counts[-2] == 50_000  # all "other"
        sizes.add(tuple(len(bins.counts) for bins in record.features.values()))
        assert len(record.consumers) == 256 and record.consumers_overflow == 1000 - 256
        assert len(record.response_ms.buckets) <= 8 * 33  # 2**(1/8) buckets over 1e-3 .. 1e7 ms
        assert len(orjson.dumps(record.to_json())) < 8_000
    assert len(sizes) == 1
    assert recorder.unbinned_rows == 4 * 10_000


def test_a_model_of_1000_features_is_recorded_spooled_and_read_back(tmp_path: Path) -> None:
    manifest = make_manifest(features=1000)
    features = tuple(manifest.feature_names)
    dep = FakeDeployment(id="d-1", manifest=manifest, features=features)
    spool = FilesystemSpool(tmp_path / "spool")
    recorder = _recorder(spool)
    rng = np.random.default_rng(2)
    frames = []
    for _ in range(2):
        frame = pd.DataFrame(rng.normal(size=(1000, 1000)), columns=list(features[:-1]))
        frame["colour"] = rng.choice(["red", "blue", "violet"], size=1000)
        frames.append(frame)
        recorder.on_scored(dep, Request(tuple(frame.columns), frame=frame), _scores(1000))
        recorder.on_request(dep, rows=1000, response_ms=80.0, execution_ms=60.0, status=200)
        recorder.flush()
    batch = spool.reader().read()
    first, second = (MinuteAggregate.from_json(r.doc) for r in batch.records)
    assert len(first.features) == 1001 and len(first.predictions) == 3
    first.merge(second)
    both = pd.concat(frames)
    assert first.rows == 2000 and first.features["x999"].count == 2000
    assert first.features["x999"].minimum == both["x999"].min()
    assert first.features["colour"].counts[-2] == int((both["colour"] == "violet").sum())
    spool.close()
