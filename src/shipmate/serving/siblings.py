"""Scoring one large batch on several worker processes at once.

Why: the server's workers are processes, one busy core each under the GIL. A
1,000-row batch sent to an otherwise idle server keeps one core busy and leaves
the others idle; cut into chunks and scored side by side it is answered in a
little over half the time on two cores (docs/serving.md has the figures).

How: with ``--workers`` above one, the parent process makes a directory that only
the server's user can enter, and every worker listens there on a Unix socket. A
worker that receives a large batch while it has no other request in flight cuts
the body into chunks of whole rows (`shipmate.serving.batching`), sends all but
the first to sibling workers, scores the first itself and joins the scores in
order. A sibling decodes, checks and scores its chunk exactly as it would a
request, with the same package (it refuses when it serves another version), and
sends back the scores (and the rows, when score hooks need them). The receiving
worker encodes one response and tells the score hooks once, with every row, as
if it had scored the batch alone.

Whatever goes wrong ends in the ordinary path: a sibling that is gone, busy past
its pick-up deadline or serving another version leaves its chunk to be scored
here (and is left alone for a while); a chunk that fails to decode or score,
anywhere, sends the whole request down the ordinary path, so an error names the
same row and column as it would without fan-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from shipmate.packages import InputKind, Scores
from shipmate.serving import codecs
from shipmate.serving.batching import cut_csv, cut_json_records, join_scores
from shipmate.serving.dataplane import DataPlane
from shipmate.serving.deployments import Deployment, Registry
from shipmate.serving.errors import ServingError
from shipmate.serving.protocol import InferenceRequest, InferenceResponse, InputError

log = logging.getLogger(__name__)

OWN_SHARE = 0.5
"""The receiving worker's share of the rows with one sibling: it also reads the body and writes the answer."""
PICKUP_S = 0.005
"""A sibling that has not started on a chunk this long after it was sent is busy: it hands it back."""
BUSY_PAUSE_S = 0.5
"""How long a sibling that was busy is left out of fan-outs."""

_HEAD = struct.Struct("!II")  # header length, payload length


# ---------------------------------------------------------------- frames


async def _read_frame(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes]:
    header_size, payload_size = _HEAD.unpack(await reader.readexactly(_HEAD.size))
    header = orjson.loads(await reader.readexactly(header_size))
    payload = await reader.readexactly(payload_size) if payload_size else b""
    return header, payload


def _frame(header: dict[str, Any], *payload: bytes) -> list[bytes]:
    head = orjson.dumps(header)
    return [_HEAD.pack(len(head), sum(map(len, payload))), head, *payload]


def identity(deployment: Deployment) -> str:
    """What two workers must agree on to score chunks of one batch: the same package and config."""
    return f"{deployment.package_sha256}:{deployment.fingerprint}"


def _array(payload: memoryview, shape: list[int]) -> tuple[np.ndarray, memoryview]:
    size = int(np.prod(shape)) * 8
    return np.frombuffer(payload[:size], dtype=np.float64).reshape(shape), payload[size:]


# ---------------------------------------------------------------- the sibling's side


class ChunkScorer:
    """Scores chunks that sibling workers send to this worker's socket."""

    def __init__(self, registry: Registry, dataplane: DataPlane, path: Path, load: Callable[[], int]) -> None:
        self.registry = registry
        self.dataplane = dataplane
        self.path = path
        self.load = load  # this worker's own requests in flight, reported with each answer
        self.scored = 0  # chunks scored for siblings
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
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
        """Answer one chunk: scores (and rows) as float64 bytes, or why not (pure but for the model)."""
        reply: dict[str, Any] = {"id": header["id"], "load": self.load()}
        if time.monotonic() > header["pickupBy"]:
            return {**reply, "ok": False, "reason": "late"}, []
        deployment = self.registry.get_key(header["route"])
        if deployment is None or identity(deployment) != header["identity"]:
            return {**reply, "ok": False, "reason": "version"}, []
        try:
            request = codecs.decode(body, header["format"], deployment.features)
            rows, scores = self.dataplane.score(deployment, request)
        except (InputError, ServingError) as exc:
            return {**reply, "ok": False, "reason": "failed", "message": str(exc)}, []
        self.scored += 1
        out = scores.probabilities if scores.probabilities is not None else scores.values
        assert out is not None and isinstance(rows, np.ndarray)
        payload = [np.ascontiguousarray(out, dtype=np.float64).tobytes()]
        kind = "probabilities" if scores.probabilities is not None else "values"
        reply.update(ok=True, kind=kind, shape=list(out.shape))
        if header.get("wantRows"):
            payload.append(np.ascontiguousarray(rows, dtype=np.float64).tobytes())
            reply["rowsShape"] = list(rows.shape)
        return reply, payload


# ---------------------------------------------------------------- the receiving worker's side


class _Link:
    """One connection to a sibling; answers are matched to chunks by id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending: dict[int, asyncio.Future[tuple[dict[str, Any], bytes]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        reader, writer = await asyncio.open_unix_connection(str(self.path))
        writer.transport.set_write_buffer_limits(high=0)  # drain() returns once the kernel has it all
        self._writer = writer
        self._reading = asyncio.create_task(self._read_answers(reader))

    def send(self, header: dict[str, Any], body: bytes) -> asyncio.Future[tuple[dict[str, Any], bytes]]:
        assert self._writer is not None
        future: asyncio.Future[tuple[dict[str, Any], bytes]] = asyncio.get_running_loop().create_future()
        self.pending[header["id"]] = future
        self._writer.writelines(_frame(header, body))
        return future

    async def flush(self) -> None:
        assert self._writer is not None
        await self._writer.drain()

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
        """Connected links to the siblings not known to be busy (connecting on first use)."""
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
                except OSError:  # a worker that stopped: look again at the next scan
                    self._busy_until[path] = now + BUSY_PAUSE_S
                    continue
                self._links[path] = link
            links.append(link)
        return links

    def rest(self, link: _Link, seconds: float = BUSY_PAUSE_S) -> None:
        self._busy_until[link.path] = time.monotonic() + seconds

    def close(self) -> None:
        for link in self._links.values():
            link.close()
        self._links.clear()


class _ChunkFailed(Exception):
    """A chunk could not be decoded or scored: the whole request goes down the ordinary path."""


Part = tuple[np.ndarray | pd.DataFrame, Scores]  # the rows as the model saw them, and their scores


class FanOut:
    """Scores one batch on this worker and its idle siblings; ``None`` means: use the ordinary path."""

    def __init__(self, dataplane: DataPlane, siblings: Siblings, pickup_s: float = PICKUP_S) -> None:
        self.dataplane = dataplane
        self.siblings = siblings
        self.pickup_s = pickup_s
        self._ids = itertools.count()

    async def infer(self, deployment: Deployment, body: bytes, fmt: str) -> InferenceResponse | None:
        if deployment.model.input_kind is not InputKind.MATRIX:
            return None
        links = await self.siblings.available()
        if not links:
            return None
        shares = [OWN_SHARE] + [(1 - OWN_SHARE) / len(links)] * len(links)
        chunks = cut_csv(body, shares) if fmt == "csv" else cut_json_records(body, shares)
        if chunks is None:
            return None
        pickup_by = time.monotonic() + self.pickup_s
        common = {
            "route": deployment.key,
            "identity": identity(deployment),
            "format": fmt,
            "pickupBy": pickup_by,
            "wantRows": bool(self.dataplane.hooks),
        }
        sent = [
            link.send({**common, "id": next(self._ids)}, chunk)
            for link, chunk in zip(links, chunks[1:], strict=True)
        ]
        with contextlib.suppress(ConnectionError):  # then the answer fails too, and the chunk is scored here
            await asyncio.gather(*(link.flush() for link in links))
        started = time.monotonic()
        try:
            parts = [self._score_here(deployment, chunks[0], fmt)]
            patience = max(0.0, pickup_by - time.monotonic()) + 4 * (time.monotonic() - started) + 0.02
            for link, future, chunk in zip(links, sent, chunks[1:], strict=True):
                part = await self._answer(link, future, patience)
                parts.append(part if part is not None else self._score_here(deployment, chunk, fmt))
        except _ChunkFailed:
            for future in sent:
                future.cancel()
            return None
        scores = join_scores([s for _, s in parts])
        if self.dataplane.hooks:
            matrix = np.concatenate([np.asarray(rows) for rows, _ in parts])
            self.dataplane.notify(deployment, InferenceRequest(deployment.features, rows=matrix), scores)
        return InferenceResponse(deployment_id=deployment.id, manifest=deployment.manifest, scores=scores)

    def _score_here(self, deployment: Deployment, chunk: bytes, fmt: str) -> Part:
        try:
            return self.dataplane.score(deployment, codecs.decode(chunk, fmt, deployment.features))
        except (InputError, ServingError):
            raise _ChunkFailed from None

    async def _answer(
        self, link: _Link, future: asyncio.Future[tuple[dict[str, Any], bytes]], patience: float
    ) -> Part | None:
        """The sibling's rows and scores, or ``None`` when it did not score the chunk."""
        try:
            header, payload = await asyncio.wait_for(asyncio.shield(future), patience)
        except (TimeoutError, ConnectionError):
            future.cancel()
            self.siblings.rest(link, 2 * BUSY_PAUSE_S)
            return None
        if header.get("load"):
            self.siblings.rest(link)  # it had work of its own: leave it alone for a while
        if not header["ok"]:
            if header["reason"] == "failed":
                raise _ChunkFailed
            if header["reason"] == "late":
                self.siblings.rest(link)
            return None
        values, rest = _array(memoryview(payload), header["shape"])
        rows = _array(rest, header["rowsShape"])[0] if "rowsShape" in header else np.empty((0, 0))
        scores = Scores(probabilities=values) if header["kind"] == "probabilities" else Scores(values=values)
        return rows, scores
