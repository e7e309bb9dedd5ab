"""The receiving worker's side: connections to the sibling workers found in the shared directory."""

from __future__ import annotations

import asyncio
import mmap
import socket
import time
from pathlib import Path

from shipmate.serving.fanout.frames import STREAM_LIMIT, ChunkHeader, ChunkReply, frame, read_frame
from shipmate.serving.fanout.load import LOAD, is_quiet, load_file

REST_S = 1.0
"""How long a sibling that did not answer in time, or has stopped, is left out of fan-outs."""

Answer = asyncio.Future[tuple[ChunkReply, bytes]]
"""A sibling's reply to one chunk, and its payload, to come."""


class Link:
    """One connection to a sibling; answers are matched to chunks by id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending: dict[int, Answer] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._load: mmap.mmap | None = None

    @property
    def busy(self) -> bool:
        """The sibling is busy with clients of its own (unknown counts as busy)."""
        if self._load is None:
            return True
        count, idle_since = LOAD.unpack_from(self._load, 0)
        return not is_quiet(count, idle_since, time.monotonic())

    @property
    def open(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        with open(load_file(self.path), "rb") as f:
            self._load = mmap.mmap(f.fileno(), LOAD.size, access=mmap.ACCESS_READ)
        reader, writer = await asyncio.open_unix_connection(str(self.path), limit=STREAM_LIMIT)
        writer.transport.set_write_buffer_limits(high=0)  # drain() returns once the kernel has it all
        # room in the kernel for a whole chunk: else its tail waits for this worker's event loop,
        # busy reading the rest of the body, while the sibling waits for the tail
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_LIMIT)
        self._writer = writer
        self._reading = asyncio.create_task(self._read_answers(reader))

    def send(self, header: ChunkHeader, body: bytes) -> Answer:
        """The sibling's answer to come (already failed if the sibling went away meanwhile)."""
        future: Answer = asyncio.get_running_loop().create_future()
        if not self.open:
            future.set_exception(ConnectionError(f"sibling {self.path.name} went away"))
            return future
        assert self._writer is not None
        self.pending[header.id] = future
        self._writer.writelines(frame(header, body))
        return future

    async def flush(self) -> None:
        if self._writer is not None:
            await self._writer.drain()

    @property
    def flushed(self) -> bool:
        """Everything sent has reached the kernel (the usual case: no need to wait for it)."""
        return self._writer is None or self._writer.transport.get_write_buffer_size() == 0

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header, payload = await read_frame(reader, ChunkReply)
                future = self.pending.pop(header.id, None)
                if future is not None and not future.done():
                    future.set_result((header, payload))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"sibling {self.path.name} went away"))
        self.pending.clear()
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        if self._load is not None:
            self._load.close()
            self._load = None


class Siblings:
    """The other workers of this server, found as sockets in the shared directory."""

    RESCAN_S = 1.0

    def __init__(self, directory: Path, own: Path) -> None:
        self.directory = directory
        self.own = own
        self._links: dict[Path, Link] = {}
        self._paths: list[Path] = []
        self._scanned = -1e9
        self._busy_until: dict[Path, float] = {}

    def _scan(self) -> None:
        now = time.monotonic()
        if now - self._scanned >= self.RESCAN_S:
            self._paths = sorted(p for p in self.directory.glob("*.sock") if p != self.own)
            self._scanned = now

    async def available(self) -> list[Link]:
        """Connected links to the quiet siblings (connecting on first use)."""
        self._scan()
        now = time.monotonic()
        links = []
        for path in self._paths:
            if self._busy_until.get(path, 0.0) > now:
                continue
            link = self._links.get(path)
            if link is None or not link.open:
                link = Link(path)
                try:
                    await link.connect()
                except (OSError, ValueError):  # a worker that stopped: look again later
                    link.close()
                    self._busy_until[path] = now + REST_S
                    continue
                self._links[path] = link
            if not link.busy:
                links.append(link)
        return links

    def rest(self, link: Link) -> None:
        self._busy_until[link.path] = time.monotonic() + REST_S

    def close(self) -> None:
        for link in self._links.values():
            link.close()
        self._links.clear()
