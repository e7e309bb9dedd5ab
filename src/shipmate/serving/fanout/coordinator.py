"""The receiving worker's side: one large batch cut as it arrives, scored here and on siblings, joined."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from shipmate.packages import Scores
from shipmate.serving import codecs
from shipmate.serving.dataplane import DataPlane
from shipmate.serving.deployments import Deployment
from shipmate.serving.errors import ServingError
from shipmate.serving.fanout.batching import Cutter, balanced_share, guess_rows, join_scores
from shipmate.serving.fanout.frames import ChunkHeader, take_array
from shipmate.serving.fanout.links import Answer, Link, Siblings
from shipmate.serving.fanout.scorer import Part, encode_part, identity, score_chunk
from shipmate.serving.protocol import InferenceRequest, InferenceResponse, InputError

log = logging.getLogger(__name__)

OWN_SHARE = 0.5
"""The receiving worker's first share of the rows with one sibling; then balanced by measurement."""


class FanOutDeclined(Exception):
    """The batch was not shared out: the caller scores ``body`` (all of it, read) the ordinary way.

    Raised when the body cannot be cut at row boundaries, or when a chunk fails to decode
    or score anywhere (so the error names the same row and column as without fan-out).
    """

    def __init__(self, body: bytes) -> None:
        super().__init__("the batch is scored by this worker alone")
        self.body = body


class _ChunkFailed(Exception):
    """A chunk could not be decoded or scored: the whole request goes down the ordinary path."""


@dataclass
class _Sent:
    """The chunks sent to siblings while the body arrived, and the one this worker keeps."""

    chunks: list[bytes] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
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
    ) -> bytes:
        """Read a ``size``-byte body from ``pieces`` and score it here and on the idle siblings.

        Each sibling is sent its chunk as soon as that has arrived; this worker keeps the
        last one. Returns the encoded response (``out``: ``"json"`` or ``"csv"``); raises
        `FanOutDeclined` with the whole body when the ordinary path must score it.
        """
        # a sibling sends rows back only as floats: a frame-input model's rows (text columns)
        # cannot reach the hooks from there, so with hooks only a float-matrix model shares
        shareable = bool(deployment.matrix_features) or not self.dataplane.hooks
        links = await self.siblings.available() if shareable else []
        key = (deployment.key, fmt, len(links))
        own_share = self.own_shares.get(key, OWN_SHARE / max(len(links), 1))
        cutter = Cutter(fmt, size, [(1 - own_share) / max(len(links), 1)] * len(links) + [own_share])
        sent = _Sent()
        try:
            await self._send_while_reading(deployment, pieces, cutter, links, sent, fmt, out)
            if sent.kept is None:
                raise _ChunkFailed
            parts, own_done, siblings_done = await self._score(deployment, links, sent, fmt, out)
        except _ChunkFailed:
            sent.cancel()
            raise FanOutDeclined(bytes(cutter.body)) from None
        except BaseException:
            sent.cancel()
            raise
        if siblings_done > 0:
            balanced = balanced_share(own_share, own_done - sent.at, siblings_done - sent.at, len(links))
            smoothed = (1 - self.SMOOTHING) * own_share + self.SMOOTHING * balanced
            self.own_shares[key] = min(0.9, max(0.1, smoothed))
        return self._join(deployment, parts, sent.first_rows, out)

    async def _send_while_reading(
        self,
        deployment: Deployment,
        pieces: AsyncIterator[bytes],
        cutter: Cutter,
        links: list[Link],
        sent: _Sent,
        fmt: str,
        out: str,
    ) -> None:
        route, version, want_rows = deployment.key, identity(deployment), bool(self.dataplane.hooks)
        async for piece in pieces:
            for chunk in cutter.feed(piece):
                sent.at = sent.at or time.monotonic()
                link = links[len(sent.answers)]
                header = ChunkHeader(
                    next(self._ids), route, version, fmt, out, sent.first_rows[-1], want_rows
                )
                sent.answers.append(link.send(header, chunk))
                sent.chunks.append(chunk)
                sent.first_rows.append(sent.first_rows[-1] + guess_rows(chunk, fmt))
        sent.kept = cutter.finish() if sent.chunks else None
        if not all(link.flushed for link in links):
            with contextlib.suppress(ConnectionError):  # then the answer fails too: the chunk is scored here
                await asyncio.gather(*(link.flush() for link in links if not link.flushed))

    async def _score(
        self, deployment: Deployment, links: list[Link], sent: _Sent, fmt: str, out: str
    ) -> tuple[list[tuple[Part, bytes | None]], float, float]:
        """Every chunk's rows, scores and encoded rows, in order (text ``None``: encode it), and when
        this worker and the slowest sibling were done."""
        assert sent.kept is not None
        own = self._score_here(deployment, sent.kept, fmt)
        own_text = encode_part(deployment, own[1], out, sent.first_rows[-1])
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
        fragments: list[bytes] = []
        first = 0
        for ((_, scores), encoded), guessed in zip(parts, first_rows, strict=True):
            if encoded is None or (first != guessed and out == "json"):  # CSV rows carry no row number
                encoded = encode_part(deployment, scores, out, first)
            fragments.append(encoded)
            first += len(scores)
        if self.dataplane.hooks:
            matrix = np.concatenate([np.asarray(rows) for (rows, _), _ in parts])
            scores = join_scores([s for (_, s), _ in parts])
            self.dataplane.notify(deployment, InferenceRequest(deployment.features, rows=matrix), scores)
        any_part = InferenceResponse(deployment.id, deployment.manifest, parts[-1][0][1])  # CSV header
        return codecs.join_rows(any_part, fragments, out)

    def _score_here(self, deployment: Deployment, chunk: bytes, fmt: str) -> Part:
        try:
            return score_chunk(self.dataplane, deployment, chunk, fmt)
        except (InputError, ServingError):
            raise _ChunkFailed from None

    async def _answer(self, link: Link, future: Answer, patience: float) -> tuple[Part, float, bytes] | None:
        """The sibling's rows, scores, when it was done and its encoded rows; ``None`` when it did
        not score the chunk."""
        try:
            async with asyncio.timeout(patience):
                reply, payload = await future
        except (TimeoutError, ConnectionError) as exc:
            future.cancel()
            log.debug(
                "sibling %s: no answer (%s): scoring its chunk here", link.path.name, type(exc).__name__
            )
            self.siblings.rest(link)
            return None
        if not reply.ok:
            log.debug("sibling %s did not score its chunk: %s", link.path.name, reply.reason)
            if reply.reason == "failed":
                raise _ChunkFailed
            return None
        values, rest = take_array(memoryview(payload), reply.shape)
        rows = np.empty((0, 0))
        if reply.rows_shape is not None:
            rows, rest = take_array(rest, reply.rows_shape)
        scores = Scores(probabilities=values) if reply.kind == "probabilities" else Scores(values=values)
        return (rows, scores), reply.done_at, bytes(rest)
