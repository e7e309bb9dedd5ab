"""The FILESYSTEM spool: append-only files in one directory, bounded, crash-safe, shared safely.

Layout (documented in docs/monitoring.md):

- ``fs_spool.<N>``: records, each framed as a 12-byte header (``b"SM"``, a kind byte ``A``
  aggregate, ``S`` sample or ``P`` predictions, a flags byte, the stored payload's length and its CRC-32, both
  4-byte big-endian) and the payload: UTF-8 JSON, zlib-compressed when flag bit 0 is set
  (payloads over 512 bytes; a 1,000-row record of 20 features shrinks from 4.4 to 1.8 KB).
  A frame is written with one ``write``, so after a SIGKILL a file ends with whole frames
  and at most one torn frame, which the
  reader recognises (short, or a wrong CRC) and skips: a record is whole or absent.
- Every producer (each worker process of ``shipmate serve``) writes only files it created
  itself, holding an exclusive ``flock`` on the file it is writing. A file is created under
  a temporary name and linked to the next free ``N`` (the link fails if another producer
  took ``N``), so producers sharing the directory never write one file. The kernel releases
  the lock when the producer closes the file or dies, which is how the reader knows a file
  will not grow any more.
- Bounded: at most ``max_files`` files of at most ``file_max_size`` bytes. When a new file
  would exceed ``max_files`` the spool is full: aggregates are dropped and counted; raw
  samples are dropped as soon as half the files are in use, so they go first.
- ``spool_meta.consumer``: the consumer's acknowledged offset in each file (JSON, replaced
  atomically). ``spool_meta.lock``: held by the one reader of the directory.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import struct
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

from shipmate.monitoring.spool import (
    AGGREGATE,
    PREDICTIONS,
    SAMPLE,
    Spool,
    SpoolBatch,
    SpooledRecord,
    SpoolError,
    SpoolReader,
)

log = logging.getLogger(__name__)

PREFIX = "fs_spool."
OFFSETS_FILE = "spool_meta.consumer"
READER_LOCK = "spool_meta.lock"
HEADER = struct.Struct(">2sBBII")
MAGIC = b"SM"
_KIND_BYTES = {AGGREGATE: ord("A"), SAMPLE: ord("S"), PREDICTIONS: ord("P")}
_KINDS = {v: k for k, v in _KIND_BYTES.items()}
MAX_RECORD_BYTES = 64 << 20
RETRY_OPEN_S = 5.0


COMPRESS_ABOVE = 512
FLAG_ZLIB = 1


def encode_frame(payload: bytes, kind: str = AGGREGATE) -> bytes:
    """One framed record; payloads above 512 bytes are stored zlib-compressed (flag bit 0)."""
    flags = 0
    if len(payload) > COMPRESS_ABOVE:
        payload, flags = compress(payload), FLAG_ZLIB
    return HEADER.pack(MAGIC, _KIND_BYTES[kind], flags, len(payload), zlib.crc32(payload)) + payload


def compress(payload: bytes) -> bytes:
    """A zlib stream with a 4 KB window: zlib's default 32 KB window costs 100 µs to set up, more
    than compressing a record, for no gain on records of a few KB."""
    deflater = zlib.compressobj(1, zlib.DEFLATED, 12, 4)
    return deflater.compress(payload) + deflater.flush()


def decode_payload(stored: bytes, flags: int) -> bytes:
    """The record's JSON bytes from a frame's payload (refusing to inflate past the record limit)."""
    if not flags & FLAG_ZLIB:
        return stored
    inflater = zlib.decompressobj()
    data = inflater.decompress(stored, MAX_RECORD_BYTES)
    if inflater.unconsumed_tail or not inflater.eof:
        raise ValueError("compressed record is damaged or larger than the limit")
    return data


def spool_files(directory: Path) -> list[tuple[int, Path]]:
    """The spool's files in order of their number."""
    found = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry.name.startswith(PREFIX) and entry.name[len(PREFIX) :].isdigit():
            found.append((int(entry.name[len(PREFIX) :]), Path(entry.path)))
    return sorted(found)


def _writer_holds(path: Path) -> bool:
    """Whether a producer still holds the file open for writing (its lock)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the probe's lock
    return False


class FilesystemSpool(Spool):
    """The producer side. Not thread-safe: one flusher thread per process writes."""

    def __init__(self, directory: Path, max_files: int = 10, file_max_size: int = 10 << 20) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.max_files = max_files
        self.file_max_size = file_max_size
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._broken_until = 0.0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.error("monitoring spool directory %s cannot be created: %s", self.directory, exc)

    # -- writing

    def write(self, payload: bytes, kind: str = AGGREGATE) -> bool:
        frame = encode_frame(payload, kind)
        if len(frame) > min(self.file_max_size, MAX_RECORD_BYTES):
            log.error("monitoring record of %d bytes exceeds the spool's file size; dropped", len(frame))
            return self.drop(kind, "too_large")
        if kind == SAMPLE and self._half_full():
            return self.drop(kind, "full")
        if self._fd is None or self._size + len(frame) > self.file_max_size:
            self._close_file()
            if time.monotonic() < self._broken_until:
                return self.drop(kind, "error")
            try:
                if self._files_in_use() >= self.max_files:
                    return self.drop(kind, "full")
                self._open_file()
            except OSError as exc:
                self._broken_until = time.monotonic() + RETRY_OPEN_S
                log.error(
                    "monitoring spool %s is not writable (%s); records are dropped", self.directory, exc
                )
                return self.drop(kind, "error")
        assert self._fd is not None
        try:
            view = memoryview(frame)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            log.error("monitoring spool %s: writing failed (%s); record dropped", self._path, exc)
            self._close_file()  # a torn frame may be left: the next record goes to a new file
            return self.drop(kind, "error")
        self._size += len(frame)
        return True

    def _files_in_use(self) -> int:
        return len(spool_files(self.directory))

    def _half_full(self) -> bool:
        try:
            return self._files_in_use() * 2 >= self.max_files
        except OSError:
            return True

    def _open_file(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        files = spool_files(self.directory)
        number = files[-1][0] + 1 if files else 1
        temporary = self.directory / f".{PREFIX}{os.getpid()}.{uuid.uuid4().hex[:8]}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held until closed, or the process dies
            for _ in range(1000):
                target = self.directory / f"{PREFIX}{number}"
                try:
                    os.link(temporary, target)
                except FileExistsError:
                    number += 1
                    continue
                break
            else:
                raise OSError(errno.EEXIST, "no free spool file number")
        except BaseException:
            os.close(fd)
            raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        self._fd, self._path, self._size = fd, target, 0

    def _close_file(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd, self._path, self._size = None, None, 0

    def backlog_bytes(self) -> int:
        return backlog_bytes(self.directory)

    def close(self) -> None:
        self._close_file()

    def reader(self) -> FilesystemSpoolReader:
        """The consumer side of this directory (for tests; the agent opens `FilesystemSpoolReader`)."""
        return FilesystemSpoolReader(self.directory)


def _load_offsets(directory: Path) -> dict[str, int]:
    try:
        doc = json.loads((directory / OFFSETS_FILE).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SpoolError(f"{directory / OFFSETS_FILE}: unreadable consumer offsets ({exc})") from None
    offsets = doc.get("offsets") if isinstance(doc, dict) else None
    if not isinstance(offsets, dict):
        raise SpoolError(f"{directory / OFFSETS_FILE}: no 'offsets' object")
    return {str(k): int(v) for k, v in offsets.items()}


def backlog_bytes(directory: Path) -> int:
    """Bytes in the spool's files past the consumer's acknowledged offsets."""
    try:
        offsets = _load_offsets(directory)
    except SpoolError:
        offsets = {}
    total = 0
    for _, path in spool_files(directory):
        with contextlib.suppress(OSError):
            total += max(0, path.stat().st_size - offsets.get(path.name, 0))
    return total


class FilesystemSpoolReader(SpoolReader):
    """The consumer side of a FILESYSTEM spool (one reader per directory, enforced by a lock).

    Reads every file from its own offset (producers write several files at once), in file
    order. ``ack`` stores the offsets atomically and deletes the files that are read to the
    end and that no producer holds any more.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise SpoolError(f"{self.directory}: the spool directory does not exist")
        self._lock_fd = os.open(self.directory / READER_LOCK, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolError(f"{self.directory}: another reader is consuming this spool") from None
        self._acked = _load_offsets(self.directory)
        self._cursor = dict(self._acked)

    def read(self, max_records: int = 1000, timeout: float = 0.0) -> SpoolBatch:
        deadline = time.monotonic() + timeout
        while True:
            batch = self._read_once(max_records)
            if batch.records or batch.damaged or time.monotonic() >= deadline:
                return batch
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def _read_once(self, max_records: int) -> SpoolBatch:
        records: list[SpooledRecord] = []
        damaged = 0
        details: list[str] = []
        for _, path in spool_files(self.directory):
            if len(records) >= max_records:
                break
            got, bad, why = self._read_file(path, max_records - len(records))
            records.extend(got)
            damaged += bad
            details.extend(why)
        for line in details:
            log.warning("monitoring spool: %s", line)
        return SpoolBatch(records=records, position=dict(self._cursor), damaged=damaged, details=details)

    def _read_file(self, path: Path, limit: int) -> tuple[list[SpooledRecord], int, list[str]]:
        name = path.name
        offset = self._cursor.setdefault(name, 0)  # known, so an empty abandoned file is deleted too
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return [], 0, []
        if offset >= size:
            return [], 0, []
        records: list[SpooledRecord] = []
        damaged = 0
        details: list[str] = []
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(min(size - offset, 64 << 20))
        position = 0
        finished: bool | None = None
        while position < len(data) and len(records) < limit:
            header = data[position : position + HEADER.size]
            magic, kind_byte, flags, length, crc = (
                HEADER.unpack(header) if len(header) == HEADER.size else (b"", 0, 0, 0, 0)
            )
            end = position + HEADER.size + length
            complete = len(header) == HEADER.size and magic == MAGIC and end <= len(data)
            if not complete:
                if len(header) == HEADER.size and magic != MAGIC:
                    damaged += 1
                    details.append(f"{name} at byte {offset + position}: not a record frame; rest skipped")
                    position = len(data)
                    break
                if finished is None:
                    finished = not _writer_holds(path)
                if not finished or (len(data) < size - offset):  # still being written, or read more later
                    break
                damaged += 1
                details.append(f"{name} at byte {offset + position}: torn record at the end (writer stopped)")
                position = len(data)
                break
            payload = data[position + HEADER.size : end]
            where = f"{name}@{offset + position}"
            position = end
            if zlib.crc32(payload) != crc:
                damaged += 1
                details.append(f"{where}: checksum mismatch; record skipped")
                continue
            try:
                doc = json.loads(decode_payload(payload, flags))
                if not isinstance(doc, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                damaged += 1
                details.append(f"{where}: not a JSON object ({exc}); record skipped")
                continue
            records.append(SpooledRecord(kind=_KINDS.get(kind_byte, AGGREGATE), doc=doc, where=where))
        self._cursor[name] = offset + position
        return records, damaged, details

    def ack(self, batch: SpoolBatch) -> None:
        merged = dict(self._acked)
        for name, value in dict(batch.position).items():
            merged[name] = max(int(value), merged.get(name, 0))
        present = {path.name: path for _, path in spool_files(self.directory)}
        finished: list[Path] = []
        for name in list(merged):
            path = present.get(name)
            try:
                if path is not None and merged[name] >= path.stat().st_size and not _writer_holds(path):
                    finished.append(path)  # read to the end and closed by its producer: never grows again
                    path = None
            except FileNotFoundError:
                path = None
            if path is None:
                del merged[name]
        # Offsets first, deletions after: a crash in between leaves a finished file whose offset
        # is forgotten, read again (duplicates, which the service drops by record id), never a
        # stale offset that a new file of the same name would inherit (records skipped).
        self._store(merged)
        for path in finished:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._acked = merged
        self._cursor = {
            name: max(offset, merged.get(name, 0))
            for name, offset in self._cursor.items()
            if name in merged or (name in present and (self.directory / name).exists())
        }

    def _store(self, offsets: dict[str, int]) -> None:
        target = self.directory / OFFSETS_FILE
        temporary = target.with_name(f".{OFFSETS_FILE}.tmp")
        with open(temporary, "w") as f:
            json.dump({"v": 1, "offsets": offsets}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, target)

    def rewind(self) -> None:
        self._cursor = dict(self._acked)

    def backlog_bytes(self) -> int:
        return backlog_bytes(self.directory)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)

    def __enter__(self) -> FilesystemSpoolReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
