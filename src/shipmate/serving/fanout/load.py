"""How busy each worker is, published in a small memory-mapped file its siblings read.

A worker is handed a chunk only when it has had no request in flight for a moment
(`QUIET_S`), so a worker busy with clients of its own is left to them.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import time
from pathlib import Path
from types import TracebackType

LOAD = struct.Struct("=qd")  # a worker's requests in flight, and since when it has had none
QUIET_S = 0.002
"""How long a sibling must have had no request in flight to be handed a chunk. A worker whose
own clients keep it busy is idle only between two of their requests, for well under this."""


class LoadGauge:
    """The requests this worker is scoring; with a path, also published for its siblings to read.

    Used as ``with gauge: ...`` around scoring a request. A sibling reads the count, and
    since when it has been zero (system-wide monotonic clock), from shared memory before it
    sends a chunk, so a worker busy with its own clients is not handed one (`is_quiet`).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.count = 0
        self.idle_since = 0.0  # monotonic; never busy yet
        self.path = path
        self._map: mmap.mmap | None = None
        if path is not None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.ftruncate(fd, LOAD.size)
                self._map = mmap.mmap(fd, LOAD.size)
            finally:
                os.close(fd)

    def __enter__(self) -> LoadGauge:
        self.count += 1
        self._publish()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.count -= 1
        if self.count == 0:
            self.idle_since = time.monotonic()
        self._publish()

    def _publish(self) -> None:
        if self._map is not None:
            LOAD.pack_into(self._map, 0, self.count, self.idle_since)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def is_quiet(count: int, idle_since: float, now: float) -> bool:
    """Whether a worker with this load can take a chunk: nothing in flight for `QUIET_S`."""
    return count == 0 and now - idle_since >= QUIET_S


def load_file(socket: Path) -> Path:
    """Where the worker listening on ``socket`` publishes its load."""
    return socket.with_suffix(".load")
