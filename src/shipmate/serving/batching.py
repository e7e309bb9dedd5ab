"""Cutting a request body into chunks of whole rows without parsing it, and joining the scores.

Pure functions, used to score one large batch on several worker processes at once
(`shipmate.serving.siblings`). A cut is made only where the format puts a row
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


def _targets(size: int, shares: Sequence[float]) -> list[int]:
    """Byte offsets at which each chunk but the first should start, from each chunk's share."""
    total = sum(shares)
    offsets, acc = [], 0.0
    for share in shares[:-1]:
        acc += share
        offsets.append(int(size * acc / total))
    return offsets


def cut_json_records(body: bytes, shares: Sequence[float]) -> list[bytes] | None:
    """A JSON array of objects as ``len(shares)`` arrays of consecutive objects, sized by share."""
    start = len(body) - len(body.lstrip())
    end = len(body.rstrip())
    if len(shares) < 2 or body[start : start + 1] != b"[" or body[end - 1 : end] != b"]":
        return None
    chunks: list[bytes] = []
    begin = start + 1  # just after the opening bracket
    for target in _targets(end, shares):
        gap = _RECORD_GAP.search(body, max(target, begin))
        if gap is None:
            return None
        chunks.append(b"[" + body[begin : gap.start() + 1] + b"]")
        begin = gap.end() - 1  # at the next record's "{"
    chunks.append(b"[" + body[begin:end])
    return chunks


def cut_csv(body: bytes, shares: Sequence[float]) -> list[bytes] | None:
    """CSV with a header row as ``len(shares)`` CSV bodies of consecutive rows, each with the header.

    Not cut when a quote appears anywhere: a quoted field may hold a line break.
    """
    header_end = body.find(b"\n")
    if len(shares) < 2 or header_end < 0 or b'"' in body:
        return None
    header = body[: header_end + 1]
    chunks: list[bytes] = []
    begin = header_end + 1
    for target in _targets(len(body), shares):
        newline = body.find(b"\n", max(target, begin))
        if newline < 0 or newline + 1 >= len(body) or not body[begin:newline].strip():
            return None
        chunks.append(header + body[begin : newline + 1])
        begin = newline + 1
    if not body[begin:].strip():
        return None
    chunks.append(header + body[begin:])
    return chunks


def guess_first_rows(chunks: Sequence[bytes], fmt: str) -> list[int]:
    """The number of each chunk's first row within the batch, as far as can be told without parsing.

    Exact for records of plain values (one ``{`` each) and for CSV lines. A guess is
    only a guess: whoever joins the encoded chunks checks it against the rows each
    chunk really had, and encodes again where it was wrong.
    """
    firsts, first = [0], 0
    for chunk in chunks[:-1]:  # the last chunk's size moves no one's first row
        if fmt == "json":
            first += _count(chunk, b"{")
        else:
            first += _count(chunk, b"\n") - 1 + (chunk[-1:] != b"\n")
        firsts.append(first)
    return firsts


def _count(data: bytes, byte: bytes) -> int:
    """``data.count(byte)``, five times faster for a chunk of a large batch."""
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
