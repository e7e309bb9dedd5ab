"""Text of many rows at once, shared by the DataRobot JSON and CSV encoders.

Responses are built column by column: each value's text comes from one orjson call
over a whole array, and the pieces are interleaved by slice assignment and joined
once, so the cost is a few C-level passes over the rows rather than a Python dict
per row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import orjson


def numbers(values: np.ndarray, dtype: type = np.float64) -> list[bytes]:
    """Each value as its JSON text (orjson formats a whole array in one call; NaN becomes null)."""
    if len(values) == 0:
        return []
    text = orjson.dumps(np.ascontiguousarray(values, dtype=dtype), option=orjson.OPT_SERIALIZE_NUMPY)
    return text[1:-1].split(b",")


def interleave(n: int, pieces: Sequence[bytes | list[bytes]]) -> bytes:
    """``n`` rows, each the concatenation of ``pieces`` (constant bytes, or one item per row)."""
    stride = len(pieces)
    parts: list[bytes] = [b""] * (stride * n)
    for j, piece in enumerate(pieces):
        parts[j::stride] = piece if isinstance(piece, list) else [piece] * n
    return b"".join(parts)


def pick(texts: list[bytes], indices: np.ndarray) -> list[bytes]:
    """``texts[i]`` for each ``i`` in ``indices``."""
    return list(np.array(texts, dtype=object)[indices].tolist())
