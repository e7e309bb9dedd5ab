"""The FILESYSTEM spool: framing, bounds, crash safety, several producers, the consumer's offsets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shipmate.monitoring.fs_spool import (
    OFFSETS_FILE,
    FilesystemSpool,
    FilesystemSpoolReader,
    encode_frame,
    spool_files,
)
from shipmate.monitoring.spool import AGGREGATE, SAMPLE, SpoolError


def _record(i: int, pad: int = 0) -> bytes:
    return json.dumps({"id": f"r{i}", "pad": "x" * pad}).encode()


def _read_all(reader: FilesystemSpoolReader) -> list[str]:
    ids = []
    while True:
        batch = reader.read(100)
        if not batch.records:
            return ids
        ids.extend(r.doc["id"] for r in batch.records)
        reader.ack(batch)


def test_records_round_trip_and_acknowledged_ones_never_come_back(tmp_path: Path) -> None:
    spool = FilesystemSpool(tmp_path, max_files=5, file_max_size=10_000)
    for i in range(10):
        assert spool.write(_record(i))
    with FilesystemSpoolReader(tmp_path) as reader:
        batch = reader.read(4)
        assert [r.doc["id"] for r in batch.records] == ["r0", "r1", "r2", "r3"]
        assert batch.records[0].kind == AGGREGATE
        reader.ack(batch)
        unacked = reader.read(3)
        assert [r.doc["id"] for r in unacked.records] == ["r4", "r5", "r6"]
    with FilesystemSpoolReader(tmp_path) as reader:  # a restarted consumer: from the last ack
        assert _read_all(reader) == [f"r{i}" for i in range(4, 10)]
    with FilesystemSpoolReader(tmp_path) as reader:
        assert reader.read(10).records == []
    spool.close()


def test_large_records_are_stored_compressed(tmp_path: Path) -> None:
    spool = FilesystemSpool(tmp_path)
    big = json.dumps({"id": "big", "counts": list(range(2000))}).encode()
    assert spool.write(big)
    spool.close()
    assert sum(p.stat().st_size for _, p in spool_files(tmp_path)) < len(big) / 2
    with FilesystemSpoolReader(tmp_path) as reader:
        (record,) = reader.read(10).records
    assert record.doc == json.loads(big)


def test_rewind_reads_again_from_the_last_acknowledgement(tmp_path: Path) -> None:
    spool = FilesystemSpool(tmp_path)
    for i in range(3):
        spool.write(_record(i))
    with FilesystemSpoolReader(tmp_path) as reader:
        first = reader.read(10)
        reader.rewind()
        again = reader.read(10)
        assert [r.doc for r in first.records] == [r.doc for r in again.records]


def test_files_rotate_and_consumed_closed_files_are_deleted(tmp_path: Path) -> None:
    spool = FilesystemSpool(tmp_path, max_files=10, file_max_size=300)
    for i in range(10):
        assert spool.write(_record(i, pad=100))
    assert len(spool_files(tmp_path)) >= 4
    with FilesystemSpoolReader(tmp_path) as reader:
        assert _read_all(reader) == [f"r{i}" for i in range(10)]
        assert len(spool_files(tmp_path)) == 1  # only the file still open for writing is kept
        assert reader.backlog_bytes() == 0
    spool.close()
    with FilesystemSpoolReader(tmp_path) as reader:
        reader.ack(reader.read(10))
    assert spool_files(tmp_path) == []


def test_an_empty_file_left_by_a_dead_producer_is_deleted(tmp_path: Path) -> None:
    (tmp_path / "fs_spool.7").write_bytes(b"")
    with FilesystemSpoolReader(tmp_path) as reader:
        reader.ack(reader.read(10))
    assert spool_files(tmp_path) == []


def test_a_full_spool_drops_samples_first_and_counts_every_drop(tmp_path: Path) -> None:
    spool = FilesystemSpool(tmp_path, max_files=4, file_max_size=300)
    written = [spool.write(_record(i, pad=100)) for i in range(4)]  # two frames per file: 2 files
    assert all(written)
    assert not spool.write(_record(99, pad=100), SAMPLE)  # half the files are in use
    assert spool.dropped["sample:full"] == 1
    more = [spool.write(_record(i, pad=100)) for i in range(4, 10)]
    assert more.count(True) == 4 and spool.dropped["aggregate:full"] == 2
    assert spool.dropped_total() == 3
    total = sum(p.stat().st_size for _, p in spool_files(tmp_path))
    assert total <= 4 * 300


def test_a_spool_that_cannot_be_written_counts_and_carries_on(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    spool = FilesystemSpool(blocker / "spool")
    assert spool.write(_record(1)) is False
    assert spool.dropped["aggregate:error"] == 1


def test_damaged_frames_are_skipped_and_named(tmp_path: Path) -> None:
    (tmp_path / "fs_spool.1").write_bytes(
        encode_frame(_record(1))
        + encode_frame(b"not json")
        + encode_frame(_record(2))[:-3]
        + b"zzz"
        + encode_frame(_record(3))
    )
    with FilesystemSpoolReader(tmp_path) as reader:
        batch = reader.read(10)
    assert [r.doc["id"] for r in batch.records] == ["r1", "r3"]
    assert batch.damaged == 2
    assert any("checksum mismatch" in d for d in batch.details)
    assert any("not a JSON object" in d for d in batch.details)


def test_one_reader_per_directory(tmp_path: Path) -> None:
    with FilesystemSpoolReader(tmp_path), pytest.raises(SpoolError, match="another reader"):
        FilesystemSpoolReader(tmp_path)


_WRITER = """
import json, sys, time
from pathlib import Path
from shipmate.monitoring.fs_spool import FilesystemSpool
spool = FilesystemSpool(Path(sys.argv[1]), max_files=1000, file_max_size=20_000)
name = sys.argv[2]
i = 0
while True:
    spool.write(json.dumps({"id": f"{name}-{i}", "pad": "y" * (i % 500)}).encode())
    i += 1
    if i == 200:
        print("ready", flush=True)
"""


def test_sigkilled_producers_leave_whole_records_only(tmp_path: Path) -> None:
    """Two producer processes write one directory; both are killed mid-write; the consumer reads
    every record whole, in order per producer, each exactly once, across a consumer restart."""
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), name], stdout=subprocess.PIPE)
        for name in ("a", "b")
    ]
    try:
        for w in writers:
            assert w.stdout is not None and w.stdout.readline().strip() == b"ready"
        seen: list[str] = []
        with FilesystemSpoolReader(tmp_path) as reader:
            for _ in range(5):
                batch = reader.read(300)
                seen.extend(r.doc["id"] for r in batch.records)
                reader.ack(batch)
        time.sleep(0.2)
    finally:
        for w in writers:
            os.kill(w.pid, signal.SIGKILL)
            w.wait()
    with FilesystemSpoolReader(tmp_path) as reader:  # a restarted consumer
        seen.extend(_read_all(reader))
    assert len(seen) == len(set(seen)), "a record was delivered twice"
    for name in ("a", "b"):
        numbers = [int(s.split("-")[1]) for s in seen if s.startswith(name)]
        assert numbers == list(range(len(numbers))), f"producer {name}: a record is missing or out of order"
        assert len(numbers) >= 200
    assert json.loads((tmp_path / OFFSETS_FILE).read_text())["v"] == 1


def test_a_reader_killed_while_deleting_finished_files_skips_nothing_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between deleting a finished file and saving its offsets, a reader left an offset for
    a name a new producer could reuse, and skipped that file's first records. Offsets are saved
    first now: the worst a crash there does is read a finished file again (duplicates, which
    the service drops by record id)."""
    spool = FilesystemSpool(tmp_path)
    for i in range(3):
        assert spool.write(_record(i))
    spool.flush()
    (finished,) = [path.name for _, path in spool_files(tmp_path)]
    reader = FilesystemSpoolReader(tmp_path)
    reader.ack(reader.read(100))  # all three read while the producer still holds the file
    spool.close()  # now the file is finished: the next acknowledgement deletes it

    def killed(self: Path, missing_ok: bool = False) -> None:  # the process dies right there
        raise SystemExit("killed")

    batch = reader.read(100)
    monkeypatch.setattr(Path, "unlink", killed)
    with pytest.raises(SystemExit):
        reader.ack(batch)
    monkeypatch.undo()
    reader.close()
    saved = json.loads((tmp_path / OFFSETS_FILE).read_text())["offsets"]
    assert finished not in saved  # never an offset that a file of the same name could inherit
    (tmp_path / finished).unlink()
    again = FilesystemSpool(tmp_path)  # a new producer may take the same name
    for i in range(3, 5):
        assert again.write(_record(i))
    again.close()
    with FilesystemSpoolReader(tmp_path) as fresh:
        assert _read_all(fresh) == ["r3", "r4"]
