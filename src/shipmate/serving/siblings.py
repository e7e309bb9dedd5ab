"""Scoring one large batch on several worker processes at once.

Why: the server's workers are processes, one busy core each under the GIL. A
1,000-row batch sent to an otherwise idle server keeps one core busy and leaves
the others idle; cut into chunks and scored side by side it is answered sooner
(on two cores here, about 1.35x the rows per second of one worker; docs/serving.md
has the figures).

How: with ``--workers`` above one, the parent process makes a directory that only
the server's user can enter. Every worker listens there on a Unix socket and
publishes how many requests it is scoring, and since when it has had none, in a
small memory-mapped file. A worker that starts receiving a large batch looks for
siblings that have had nothing in flight for a moment (`QUIET_S`: a sibling with
clients of its own is idle only between their requests) and cuts the body into chunks of
whole rows as it arrives (`shipmate.serving.batching.Cutter`): each sibling is sent
its chunk as soon as that chunk's rows are in, and the receiving worker keeps the
last. A sibling decodes, checks and scores its chunk exactly as it would a request,
with the same package (it refuses when it serves another version), encodes its
rows of the response, numbered from where the receiving worker guessed they start,
and sends them back with the scores (and the rows, when score hooks need them).
The receiving worker checks every guess, encodes again where one was wrong, joins
the texts in order and tells the score hooks once, with every row, as if it had
scored the batch alone.

Whatever goes wrong ends in the ordinary path: a sibling that is gone, does not
answer in time or serves another version leaves its chunk to be scored here (and
is left alone for a while); a chunk that fails to decode or score, anywhere,
sends the whole request down the ordinary path, so an error names the same row
and column as it would without fan-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import mmap
import os
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import orjson
import pandas as pd

from shipmate.packages import Scores
from shipmate.serving import codecs
from shipmate.serving.batching import Cutter, balanced_share, guess_rows, join_scores
from shipmate.serving.dataplane import DataPlane
from shipmate.serving.deployments import Deployment, Registry
from shipmate.serving.errors import ServingError
from shipmate.serving.protocol import InferenceRequest, InputError

log = logging.getLogger(__name__)

OWN_SHARE = 0.5
"""The receiving worker's first share of the rows with one sibling; then balanced by measurement."""
REST_S = 1.0
"""How long a sibling that did not answer in time, or has stopped, is left out of fan-outs."""

_HEAD = struct.Struct("!II")  # header length, payload length
_LOAD = struct.Struct("=qd")  # a worker's requests in flight, and since when it has had none
QUIET_S = 0.002
"""How long a sibling must have had no request in flight to be handed a chunk. A worker whose
own clients keep it busy is idle only between two of their requests, for well under this."""
_STREAM_LIMIT = 4 << 20
"""Bytes a link holds in the kernel and in its reader: a chunk of a 1,000-row batch (about
250 KB) goes across in one write and is read without pausing."""


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
                os.ftruncate(fd, _LOAD.size)
                self._map = mmap.mmap(fd, _LOAD.size)
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
            _LOAD.pack_into(self._map, 0, self.count, self.idle_since)

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


# ---------------------------------------------------------------- frames


async def _read_frame(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes]:
    header_size, payload_size = _HEAD.unpack(await reader.readexactly(_HEAD.size))
    header = orjson.loads(await reader.readexactly(header_size))
    payload = await reader.readexactly(payload_size) if payload_size else b""
    return header, payload


def _frame(header: dict[str, Any], *payload: bytes) -> list[bytes]:
    head = orjson.dumps(header)
    return [_HEAD.pack(len(head), sum(map(len, payload))), head, *payload]


Part = tuple[np.ndarray | pd.DataFrame, Scores]  # the rows as the model saw them, and their scores


def score_chunk(dataplane: DataPlane, deployment: Deployment, chunk: bytes, fmt: str) -> Part:
    """Decode and score one chunk of a batch, on whichever worker holds it (the hooks are told later)."""
    return dataplane.score(deployment, codecs.decode(chunk, fmt, deployment.matrix_features))


def identity(deployment: Deployment) -> str:
    """What two workers must agree on to score chunks of one batch: the same package and config."""
    return f"{deployment.package_sha256}:{deployment.fingerprint}"


def _array(payload: memoryview, shape: list[int]) -> tuple[np.ndarray, memoryview]:
    size = math.prod(shape) * 8
    return np.frombuffer(payload[:size], dtype=np.float64).reshape(shape), payload[size:]


# ---------------------------------------------------------------- the sibling's side


class ChunkScorer:
    """Scores chunks that sibling workers send to this worker's socket."""

    def __init__(self, registry: Registry, dataplane: DataPlane, path: Path) -> None:
        self.registry = registry
        self.dataplane = dataplane
        self.path = path
        self.scored = 0  # chunks scored for siblings
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=_STREAM_LIMIT)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header, body = await _read_frame(reader)
                reply, payload = self.score(header, body)
                writer.writelines(_frame(reply, *payload))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the sibling closed its end
        except Exception:
            log.exception("a sibling sent a chunk that could not be read")
        finally:
            writer.close()

    def score(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], list[bytes]]:
        """Answer one chunk: its scores (and rows) as float64 bytes, or why it was not scored."""
        reply: dict[str, Any] = {"id": header["id"]}
        deployment = self.registry.get_key(header["route"])
        if deployment is None or identity(deployment) != header["identity"]:
            return {**reply, "ok": False, "reason": "version"}, []
        try:
            rows, scores = score_chunk(self.dataplane, deployment, body, header["format"])
        except (InputError, ServingError) as exc:
            return {**reply, "ok": False, "reason": "failed", "message": str(exc)}, []
        self.scored += 1
        log.debug("scored a chunk of %d rows for a sibling", len(scores))
        values = scores.probabilities if scores.probabilities is not None else scores.values
        assert values is not None and isinstance(rows, np.ndarray)
        payload = [np.ascontiguousarray(values, dtype=np.float64).tobytes()]
        kind = "probabilities" if scores.probabilities is not None else "values"
        reply.update(ok=True, kind=kind, shape=list(values.shape))
        if header.get("wantRows"):
            payload.append(np.ascontiguousarray(rows, dtype=np.float64).tobytes())
            reply["rowsShape"] = list(rows.shape)
        payload.append(codecs.encode_rows(deployment.manifest, scores, header["out"], header["firstRow"]))
        reply["doneAt"] = time.monotonic()
        return reply, payload


# ---------------------------------------------------------------- the receiving worker's side


class _Link:
    """One connection to a sibling; answers are matched to chunks by id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending: dict[int, asyncio.Future[tuple[dict[str, Any], bytes]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._load: mmap.mmap | None = None

    @property
    def busy(self) -> bool:
        """The sibling is busy with clients of its own (unknown counts as busy)."""
        if self._load is None:
            return True
        count, idle_since = _LOAD.unpack_from(self._load, 0)
        return not is_quiet(count, idle_since, time.monotonic())

    @property
    def open(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        with open(load_file(self.path), "rb") as f:
            self._load = mmap.mmap(f.fileno(), _LOAD.size, access=mmap.ACCESS_READ)
        reader, writer = await asyncio.open_unix_connection(str(self.path), limit=_STREAM_LIMIT)
        writer.transport.set_write_buffer_limits(high=0)  # drain() returns once the kernel has it all
        # room in the kernel for a whole chunk: else its tail waits for this worker's event loop,
        # busy reading the rest of the body, while the sibling waits for the tail
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _STREAM_LIMIT)
        self._writer = writer
        self._reading = asyncio.create_task(self._read_answers(reader))

    def send(self, header: dict[str, Any], body: bytes) -> asyncio.Future[tuple[dict[str, Any], bytes]]:
        """The sibling's answer to come (already failed if the sibling went away meanwhile)."""
        future: asyncio.Future[tuple[dict[str, Any], bytes]] = asyncio.get_running_loop().create_future()
        if not self.open:
            future.set_exception(ConnectionError(f"sibling {self.path.name} went away"))
            return future
        assert self._writer is not None
        self.pending[header["id"]] = future
        self._writer.writelines(_frame(header, body))
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
                header, payload = await _read_frame(reader)
                future = self.pending.pop(header["id"], None)
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
        self._links: dict[Path, _Link] = {}
        self._paths: list[Path] = []
        self._scanned = -1e9
        self._busy_until: dict[Path, float] = {}

    def _scan(self) -> None:
        now = time.monotonic()
        if now - self._scanned >= self.RESCAN_S:
            self._paths = sorted(p for p in self.directory.glob("*.sock") if p != self.own)
            self._scanned = now

    async def available(self) -> list[_Link]:
        """Connected links to the quiet siblings (connecting on first use)."""
        self._scan()
        now = time.monotonic()
        links = []
        for path in self._paths:
            if self._busy_until.get(path, 0.0) > now:
                continue
            link = self._links.get(path)
            if link is None or not link.open:
                link = _Link(path)
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

    def rest(self, link: _Link) -> None:
        self._busy_until[link.path] = time.monotonic() + REST_S

    def close(self) -> None:
        for link in self._links.values():
            link.close()
        self._links.clear()


class _ChunkFailed(Exception):
    """A chunk could not be decoded or scored: the whole request goes down the ordinary path."""


@dataclass
class _Sent:
    """The chunks sent to siblings while the body arrived, and the one this worker keeps."""

    chunks: list[bytes] = field(default_factory=list)
    answers: list[asyncio.Future[tuple[dict[str, Any], bytes]]] = field(default_factory=list)
    first_rows: list[int] = field(default_factory=lambda: [0])  # guessed, the kept chunk's last
    at: float = 0.0  # when the first chunk went out (monotonic)
    kept: bytes | None = None

    def cancel(self) -> None:
        for answer in self.answers:
            answer.cancel()


class FanOut:
    """Scores one batch on this worker and its idle siblings (`infer`)."""

    PATIENCE_S = 0.05
    """Beyond four times its own chunk's time, how long the receiving worker waits for a sibling."""
    SMOOTHING = 0.2
    """Weight of the latest batch in the receiving worker's share (see `balanced_share`)."""

    def __init__(self, dataplane: DataPlane, siblings: Siblings) -> None:
        self.dataplane = dataplane
        self.siblings = siblings
        self.own_shares: dict[tuple[str, str, int], float] = {}  # by deployment, format, siblings
        self._ids = itertools.count()

    async def infer(
        self, deployment: Deployment, pieces: AsyncIterator[bytes], size: int, fmt: str, out: str
    ) -> tuple[bytes | None, bytes]:
        """Read a ``size``-byte body from ``pieces`` and score it here and on the idle siblings.

        Each sibling is sent its chunk as soon as that has arrived; this worker keeps the
        last one. Returns the encoded response (``out``: ``"json"`` or ``"csv"``) and no
        body, or ``None`` and the whole body, which the ordinary path then scores.
        """
        links = await self.siblings.available() if deployment.matrix_features else []
        key = (deployment.key, fmt, len(links))
        own_share = self.own_shares.get(key, OWN_SHARE / max(len(links), 1))
        cutter = Cutter(fmt, size, [(1 - own_share) / max(len(links), 1)] * len(links) + [own_share])
        sent = _Sent()
        try:
            await self._send_while_reading(deployment, pieces, cutter, links, sent, fmt, out)
            if sent.kept is None:
                sent.cancel()
                return None, bytes(cutter.body)
            parts, own_done, siblings_done = await self._score(deployment, links, sent, fmt, out)
        except _ChunkFailed:
            sent.cancel()
            return None, bytes(cutter.body)
        except BaseException:
            sent.cancel()
            raise
        if siblings_done > 0:
            balanced = balanced_share(own_share, own_done - sent.at, siblings_done - sent.at, len(links))
            smoothed = (1 - self.SMOOTHING) * own_share + self.SMOOTHING * balanced
            self.own_shares[key] = min(0.9, max(0.1, smoothed))
        return self._join(deployment, parts, sent.first_rows, out), b""

    async def _send_while_reading(
        self,
        deployment: Deployment,
        pieces: AsyncIterator[bytes],
        cutter: Cutter,
        links: list[_Link],
        sent: _Sent,
        fmt: str,
        out: str,
    ) -> None:
        header = {
            "route": deployment.key,
            "identity": identity(deployment),
            "format": fmt,
            "out": out,
            "wantRows": bool(self.dataplane.hooks),
        }
        async for piece in pieces:
            for chunk in cutter.feed(piece):
                sent.at = sent.at or time.monotonic()
                link = links[len(sent.answers)]
                sent.answers.append(
                    link.send({**header, "id": next(self._ids), "firstRow": sent.first_rows[-1]}, chunk)
                )
                sent.chunks.append(chunk)
                sent.first_rows.append(sent.first_rows[-1] + guess_rows(chunk, fmt))
        sent.kept = cutter.finish() if sent.chunks else None
        if not all(link.flushed for link in links):
            with contextlib.suppress(ConnectionError):  # then the answer fails too: the chunk is scored here
                await asyncio.gather(*(link.flush() for link in links if not link.flushed))

    async def _score(
        self, deployment: Deployment, links: list[_Link], sent: _Sent, fmt: str, out: str
    ) -> tuple[list[tuple[Part, bytes | None]], float, float]:
        """Every chunk's rows, scores and encoded rows, in order (text ``None``: encode it), and when
        this worker and the slowest sibling were done."""
        assert sent.kept is not None
        own = self._score_here(deployment, sent.kept, fmt)
        own_text = codecs.encode_rows(deployment.manifest, own[1], out, sent.first_rows[-1])
        own_done = time.monotonic()
        patience = 4 * (own_done - sent.at) + self.PATIENCE_S
        parts: list[tuple[Part, bytes | None]] = []
        siblings_done = 0.0  # from the same system-wide clock
        for link, answer, chunk in zip(links, sent.answers, sent.chunks, strict=True):
            got = await self._answer(link, answer, patience)
            if got is None:
                parts.append((self._score_here(deployment, chunk, fmt), None))
                continue
            part, done_at, text = got
            parts.append((part, text))
            siblings_done = max(siblings_done, done_at)
        parts.append((own, own_text))
        return parts, own_done, siblings_done

    def _join(
        self, deployment: Deployment, parts: list[tuple[Part, bytes | None]], first_rows: list[int], out: str
    ) -> bytes:
        """The response from the parts' encoded rows, encoding again any part whose rows were
        guessed to start elsewhere; the hooks hear of the whole batch here, once."""
        manifest = deployment.manifest
        fragments: list[bytes] = []
        first = 0
        for ((_, scores), encoded), guessed in zip(parts, first_rows, strict=True):
            if encoded is None or (first != guessed and out == "json"):  # CSV rows carry no row number
                encoded = codecs.encode_rows(manifest, scores, out, first)
            fragments.append(encoded)
            first += len(scores)
        if self.dataplane.hooks:
            matrix = np.concatenate([np.asarray(rows) for (rows, _), _ in parts])
            scores = join_scores([s for (_, s), _ in parts])
            self.dataplane.notify(deployment, InferenceRequest(deployment.features, rows=matrix), scores)
        return codecs.join_rows(manifest, parts[-1][0][1], fragments, out)

    def _score_here(self, deployment: Deployment, chunk: bytes, fmt: str) -> Part:
        try:
            return score_chunk(self.dataplane, deployment, chunk, fmt)
        except (InputError, ServingError):
            raise _ChunkFailed from None

    async def _answer(
        self, link: _Link, future: asyncio.Future[tuple[dict[str, Any], bytes]], patience: float
    ) -> tuple[Part, float, bytes] | None:
        """The sibling's rows, scores, when it was done and its encoded rows; ``None`` when it did
        not score the chunk."""
        try:
            async with asyncio.timeout(patience):
                header, payload = await future
        except (TimeoutError, ConnectionError) as exc:
            future.cancel()
            log.debug(
                "sibling %s: no answer (%s): scoring its chunk here", link.path.name, type(exc).__name__
            )
            self.siblings.rest(link)
            return None
        if not header["ok"]:
            log.debug("sibling %s did not score its chunk: %s", link.path.name, header["reason"])
            if header["reason"] == "failed":
                raise _ChunkFailed
            return None
        values, rest = _array(memoryview(payload), header["shape"])
        rows = np.empty((0, 0))
        if "rowsShape" in header:
            rows, rest = _array(rest, header["rowsShape"])
        scores = Scores(probabilities=values) if header["kind"] == "probabilities" else Scores(values=values)
        return (rows, scores), float(header["doneAt"]), bytes(rest)
