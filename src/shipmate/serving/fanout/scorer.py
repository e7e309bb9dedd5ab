"""The sibling's side: score chunks that other workers send to this worker's socket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

import numpy as np

from shipmate.packages import Columns, Scores
from shipmate.serving import codecs
from shipmate.serving.dataplane import DataPlane, respond
from shipmate.serving.deployments import Deployment, Registry
from shipmate.serving.errors import ServingError
from shipmate.serving.fanout.frames import STREAM_LIMIT, ChunkHeader, ChunkReply, frame, read_frame
from shipmate.serving.protocol import InputError

log = logging.getLogger(__name__)

Part = tuple[np.ndarray | Columns, Scores]  # the rows as the model saw them, and their scores


def score_chunk(dataplane: DataPlane, deployment: Deployment, chunk: bytes, fmt: str) -> Part:
    """Decode and score one chunk of a batch, on whichever worker holds it (the hooks are told later)."""
    return dataplane.score(deployment, codecs.decode(chunk, fmt, deployment.matrix_features))


def encode_part(deployment: Deployment, scores: Scores, out: str, first_row: int) -> bytes:
    """A chunk's rows of the response, numbered from ``first_row``."""
    return codecs.encode_rows(respond(deployment.id, deployment.manifest, scores), out, first_row)


def identity(deployment: Deployment) -> str:
    """What two workers must agree on to score chunks of one batch: the same package and config."""
    return f"{deployment.package_sha256}:{deployment.fingerprint}"


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
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=STREAM_LIMIT)
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
                header, body = await read_frame(reader, ChunkHeader)
                reply, payload = self.score(header, body)
                writer.writelines(frame(reply, *payload))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the sibling closed its end
        except Exception:
            log.exception("a sibling sent a chunk that could not be read")
        finally:
            writer.close()

    def score(self, header: ChunkHeader, body: bytes) -> tuple[ChunkReply, list[bytes]]:
        """Answer one chunk: its scores (and rows) as float64 bytes, or why it was not scored."""
        deployment = self.registry.get_key(header.route)
        if deployment is None or identity(deployment) != header.identity:
            return ChunkReply(header.id, ok=False, reason="version"), []
        try:
            rows, scores = score_chunk(self.dataplane, deployment, body, header.format)
        except (InputError, ServingError) as exc:
            return ChunkReply(header.id, ok=False, reason="failed", message=str(exc)), []
        self.scored += 1
        log.debug("scored a chunk of %d rows for a sibling", len(scores))
        values = scores.probabilities if scores.probabilities is not None else scores.values
        assert values is not None
        payload = [np.ascontiguousarray(values, dtype=np.float64).tobytes()]
        rows_shape = None
        if header.want_rows:  # only asked for float-matrix models (coordinator.FanOut.infer)
            assert isinstance(rows, np.ndarray)
            payload.append(np.ascontiguousarray(rows, dtype=np.float64).tobytes())
            rows_shape = rows.shape
        payload.append(encode_part(deployment, scores, header.out, header.first_row))
        reply = ChunkReply(
            header.id,
            ok=True,
            kind="probabilities" if scores.probabilities is not None else "values",
            shape=values.shape,
            rows_shape=rows_shape,
            done_at=time.monotonic(),
        )
        return reply, payload
