"""Raw-row samples: deterministic by association id (or row number), spooled as their own kind."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import orjson
import pandas as pd
from tests.monitoring.conftest import FakeDeployment

from shipmate.monitoring.recorder import Recorder
from shipmate.monitoring.samples import keep_ids, keep_numbers
from shipmate.monitoring.settings import MonitorSettings, SpoolerType
from shipmate.monitoring.spool import AGGREGATE, PREDICTIONS, SAMPLE, Spool
from shipmate.packages import Scores


class KindSpool(Spool):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[tuple[str, dict[str, Any]]] = []

    def write(self, payload: bytes, kind: str = AGGREGATE) -> bool:
        self.written.append((kind, orjson.loads(payload)))
        return True


class Request:
    def __init__(self, columns: tuple[str, ...], rows: Any = None, frame: pd.DataFrame | None = None) -> None:
        self.columns, self.rows, self.frame = columns, rows, frame


def _recorder(percentage: float, column: str | None = "request_id") -> tuple[Recorder, KindSpool]:
    settings = replace(
        MonitorSettings(enabled=True, spooler_type=SpoolerType.NONE),
        sample_percentage=percentage,
        association_id_column=column,
    )
    spool = KindSpool()
    return Recorder(settings, spool, clock=lambda: 6000.0), spool


def _frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "request_id": [f"req-{i}" for i in range(n)],
            "x0": rng.normal(size=n),
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "colour": rng.choice(["red", "blue"], size=n),
        }
    )


def _scores(n: int) -> Scores:
    return Scores(probabilities=np.column_stack([np.full(n, 0.3), np.full(n, 0.7)]))


def test_association_ids_decide_which_rows_are_kept_the_same_way_every_time(
    deployment: FakeDeployment,
) -> None:
    frame = _frame(400)
    kept = []
    for _ in range(2):
        recorder, spool = _recorder(25.0)
        recorder.on_scored(deployment, Request(tuple(frame.columns), frame=frame), _scores(400))
        recorder.flush()
        (sample,) = [doc for kind, doc in spool.written if kind == SAMPLE]
        kept.append(sample["associationIds"])
        assert [kind for kind, _ in spool.written] == [AGGREGATE, PREDICTIONS, SAMPLE]  # after aggregates
    assert kept[0] == kept[1] and 60 <= len(kept[0]) <= 140
    assert sample["features"] == ["x0", "x1", "x2", "colour"]
    first = kept[0][0]
    row = frame[frame["request_id"] == first].iloc[0]
    index = sample["associationIds"].index(first)
    assert sample["rows"][index] == [row["x0"], row["x1"], row["x2"], row["colour"]]
    assert sample["predictions"][index] == [0.3, 0.7]
    assert keep_ids(kept[0], 25.0).all()


def test_rows_without_association_ids_are_kept_by_row_number(numeric: FakeDeployment) -> None:
    recorder, spool = _recorder(10.0)
    matrix = np.arange(3000, dtype=np.float64).reshape(1000, 3)
    recorder.bin_now(numeric, Request(numeric.features, rows=matrix), _scores(1000))
    recorder.flush()
    (sample,) = [doc for kind, doc in spool.written if kind == SAMPLE]
    assert sample["associationIds"] == [None] * len(sample["rows"])
    assert 50 <= len(sample["rows"]) <= 150
    expected = matrix[keep_numbers(0, 1000, 10.0)].tolist()
    assert sample["rows"] == expected


def test_no_samples_unless_asked(numeric: FakeDeployment) -> None:
    recorder, spool = _recorder(0.0, None)
    recorder.on_scored(numeric, Request(numeric.features, rows=np.ones((5, 3))), _scores(5))
    recorder.flush()
    assert [kind for kind, _ in spool.written] == [AGGREGATE]


def test_sample_records_hold_at_most_1000_rows(numeric: FakeDeployment) -> None:
    recorder, spool = _recorder(100.0)
    recorder.bin_now(numeric, Request(numeric.features, rows=np.ones((2500, 3))), _scores(2500))
    recorder.flush()
    sizes = [len(doc["rows"]) for kind, doc in spool.written if kind == SAMPLE]
    assert sizes == [1000, 1000, 500]
