"""What two workers say to each other about one chunk: a typed header and raw bytes.

A frame is two lengths, a header (msgspec JSON of `ChunkHeader` or `ChunkReply`) and
a payload: the chunk's body on the way out; on the way back the scores (and the
rows, when score hooks need them) as float64 bytes, then the chunk's encoded rows.
"""

from __future__ import annotations

import asyncio
import math
import struct
from typing import Any, Literal, TypeVar

import msgspec
import numpy as np

HEAD = struct.Struct("!II")  # header length, payload length
STREAM_LIMIT = 4 << 20
"""Bytes a link holds in the kernel and in its reader: a chunk of a 1,000-row batch (about
250 KB) goes across in one write and is read without pausing."""


class ChunkHeader(msgspec.Struct, frozen=True, gc=False):
    """A chunk sent to a sibling: which deployment and version, the formats, where its rows start."""

    id: int
    route: str  # the deployment's key (directory name, or "default")
    identity: str  # package and configuration (`shipmate.serving.fanout.scorer.identity`)
    format: str  # the body's: "json" or "csv"
    out: str  # the response's: "json" or "csv"
    first_row: int  # the row number the receiving worker guessed the chunk starts at
    want_rows: bool = False  # send the rows back too (score hooks need every row)


class ChunkReply(msgspec.Struct, frozen=True, gc=False):
    """A sibling's answer: scored (with the payload's shapes), or why not."""

    id: int
    ok: bool
    reason: Literal["version", "failed"] | None = None  # another package or config; a bad chunk
    message: str = ""
    kind: Literal["probabilities", "values"] = "values"
    shape: tuple[int, ...] = ()
    rows_shape: tuple[int, ...] | None = None
    done_at: float = 0.0  # system-wide monotonic clock


Header = TypeVar("Header", ChunkHeader, ChunkReply)
_ENCODER = msgspec.json.Encoder()
_DECODERS: dict[type, msgspec.json.Decoder[Any]] = {
    ChunkHeader: msgspec.json.Decoder(ChunkHeader),
    ChunkReply: msgspec.json.Decoder(ChunkReply),
}


async def read_frame(reader: asyncio.StreamReader, kind: type[Header]) -> tuple[Header, bytes]:
    header_size, payload_size = HEAD.unpack(await reader.readexactly(HEAD.size))
    header: Header = _DECODERS[kind].decode(await reader.readexactly(header_size))
    payload = await reader.readexactly(payload_size) if payload_size else b""
    return header, payload


def frame(header: ChunkHeader | ChunkReply, *payload: bytes) -> list[bytes]:
    head = _ENCODER.encode(header)
    return [HEAD.pack(len(head), sum(map(len, payload))), head, *payload]


def take_array(payload: memoryview, shape: tuple[int, ...]) -> tuple[np.ndarray, memoryview]:
    """A float64 array of ``shape`` from the front of ``payload``, and the rest."""
    size = math.prod(shape) * 8
    return np.frombuffer(payload[:size], dtype=np.float64).reshape(shape), payload[size:]
