"""Cutting a request body into chunks of whole rows without parsing it, and joining the scores.

Pure code (no I/O), used to score one large batch on several worker processes at once
(`shipmate.serving.fanout`). A cut is made only where the format puts a row
boundary; when there is no such place, the body is not cut.

JSON records are cut after a ``}`` that is followed by ``,`` and ``{``, and each
chunk is closed again into an array. Those bytes could also occur inside a string
or a nested array, but then a chunk is not valid JSON on its own (one ``]``
cannot close a string or two levels), so the decoder refuses it and the request
is scored whole: a body whose chunks all decode was cut between records.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from shipmate.packages import Scores

_RECORD_GAP = re.compile(rb"\}\s*,\s*\{")
_NON_SPACE = re.compile(rb"\S")


def _joined(prefix: bytes, body: bytearray, start: int, stop: int, suffix: bytes = b"") -> bytes:
    """``prefix + body[start:stop] + suffix``, copying the rows once (a chunk is about 250 KB)."""
    with memoryview(body) as view, view[start:stop] as rows:
        return b"".join((prefix, rows, suffix))


def _targets(size: int, shares: Sequence[float]) -> list[int]:
    """Byte offsets at which each chunk but the first should start, from each chunk's share."""
    total = sum(shares)
    offsets, acc = [], 0.0
    for share in shares[:-1]:
        acc += share
        offsets.append(int(size * acc / total))
    return offsets


class Cutter:
    """Cuts a body into chunks of whole rows while it arrives, so early chunks can go out first.

    ``feed`` each piece as it comes; it returns the chunks that are complete (every
    chunk but the last, each as soon as a row boundary past its share of ``size``
    bytes is in). ``finish`` returns the last chunk, or ``None`` when the body could
    not be cut (not an array of records or CSV with a header, a quote in CSV, no
    boundary where one was needed). Chunks are whole JSON arrays or CSV bodies with
    the header. ``size`` is the body's length as declared (Content-Length).
    """

    def __init__(self, fmt: str, size: int, shares: Sequence[float]) -> None:
        self.fmt = fmt
        self.body = bytearray()
        self.sent = 0  # chunks returned by feed
        self.refused = len(shares) < 2
        self._targets = _targets(size, shares)
        self._begin: int | None = None  # where the next chunk's rows start, once known
        self._header = b""

    def feed(self, piece: bytes) -> list[bytes]:
        self.body += piece
        if self.fmt == "csv" and b'"' in piece:  # a quoted field may hold a line break
            self.refused = True
        if self.refused or (self._begin is None and not self._start()):
            return []
        chunks = []
        while self.sent < len(self._targets):
            chunk = self._cut(self._targets[self.sent])
            if chunk is None:
                break
            chunks.append(chunk)
            self.sent += 1
        return chunks

    def finish(self) -> bytes | None:
        """The last chunk, once the whole body is in (``None``: score the body whole)."""
        if self.refused or self._begin is None or self.sent < len(self._targets):
            return None
        body, begin = self.body, self._begin
        if self.fmt == "csv":
            return _joined(self._header, body, begin, len(body)) if _NON_SPACE.search(body, begin) else None
        end = len(body)
        while end > begin and body[end - 1] in b" \t\n\r\x0b\x0c":  # bytes.isspace()
            end -= 1
        return _joined(b"[", body, begin, len(body)) if end > begin and body[end - 1] == ord("]") else None

    def _start(self) -> bool:
        """Find where the first row starts (after ``[``, or after the CSV header)."""
        if self.fmt == "csv":
            header_end = self.body.find(b"\n")
            if header_end < 0:
                return False
            self._header = bytes(self.body[: header_end + 1])
            self._begin = header_end + 1
            return True
        first = _NON_SPACE.search(self.body)
        if first is None:
            return False
        if first.group() != b"[":
            self.refused = True
            return False
        self._begin = first.end()
        return True

    def _cut(self, target: int) -> bytes | None:
        assert self._begin is not None
        begin, body = self._begin, self.body
        if self.fmt == "csv":
            newline = body.find(b"\n", max(target, begin))
            if newline < 0 or newline + 1 >= len(body):  # the rest may be a line still arriving
                return None
            if not body[begin:newline].strip():
                self.refused = True
                return None
            self._begin = newline + 1
            return _joined(self._header, body, begin, newline + 1)
        gap = _RECORD_GAP.search(body, max(target, begin))
        if gap is None:
            return None
        self._begin = gap.end() - 1  # at the next record's "{"
        return _joined(b"[", body, begin, gap.start() + 1, b"]")


def cut(body: bytes, fmt: str, shares: Sequence[float]) -> list[bytes] | None:
    """A whole body as ``len(shares)`` chunks of consecutive rows sized by share, or ``None``."""
    cutter = Cutter(fmt, len(body), shares)
    chunks = cutter.feed(body)
    last = cutter.finish()
    return None if last is None else [*chunks, last]


def guess_rows(chunk: bytes, fmt: str) -> int:
    """How many rows a chunk holds, as far as can be told without parsing it.

    Exact for records of plain values (one ``{`` each) and for CSV lines. It is only a
    guess: whoever joins the chunks' encoded rows checks where each chunk's rows
    really started, and encodes again where the guess was wrong.
    """
    if fmt == "json":
        return _count(chunk, b"{")
    return _count(chunk, b"\n") - 1 + (chunk[-1:] != b"\n")  # less the header


def _count(data: bytes, byte: bytes) -> int:
    """``data.count(byte)``, faster for a chunk of a large batch (docs/serving.md)."""
    return int(np.count_nonzero(np.frombuffer(data, np.uint8) == byte[0]))


def balanced_share(own_share: float, own_s: float, sibling_s: float, siblings: int) -> float:
    """The receiving worker's share of rows that would have made everyone finish together.

    From one batch: ``own_s`` seconds for its own share, ``sibling_s`` for the slowest
    sibling's (each sibling had an equal part of the rest). Per-row speeds are assumed to
    hold for the next batch; callers smooth the result.
    """
    own_pace = own_s / own_share  # seconds for the whole batch at each one's pace
    sibling_pace = sibling_s * siblings / (1 - own_share)
    return sibling_pace / (siblings * own_pace + sibling_pace)


def join_scores(parts: Sequence[Scores]) -> Scores:
    """The scores of consecutive chunks as the scores of the whole batch, in row order."""
    if all(p.probabilities is not None for p in parts):
        return Scores(probabilities=np.concatenate([p.probabilities for p in parts]))
    if all(p.values is not None for p in parts):
        return Scores(values=np.concatenate([p.values for p in parts]))
    raise ValueError("chunks of one batch were scored differently (probabilities and values)")
