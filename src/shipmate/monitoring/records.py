"""The monitoring record: what the prediction server spools, the monitoring agent forwards
and the service stores, and the one rule that merges two of them.

A record is one deployment's traffic for one model within one UTC minute. Everything in
it adds up: counts are summed, minima and maxima kept, latency histograms summed bucket
by bucket, bin counts summed element by element. So the prediction server may flush as
often as it likes, the agent may merge records before it posts them, and the service may
merge them into minute, hour and day buckets, and every level gets the same counts as if
all the rows had been counted at once (float sums differ only by rounding).

Standard library only: the service decodes these records too, and must not pull in the
prediction server's dependencies. The JSON form (``MinuteAggregate.to_json``/``from_json``)
is the wire and spool format, documented in docs/monitoring.md: written in version 3, read
in versions 1, 2 and 3 (records spooled by an earlier release are not lost on upgrade);
``from_json`` checks every field and raises `RecordError` naming the first one that is
wrong. The columns' and histograms' own ``to_json``/``from_json`` are the whole version 1
objects, which the service also stores.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 1
"""The version of raw-row sample records (``shipmate.monitoring.samples``)."""
AGGREGATE_VERSION = 3
"""Aggregates are written in version 3 (zero runs and long moments packed); versions 1 to 3 are read."""
READABLE_AGGREGATE_VERSIONS = (1, 2, 3)
LATENCY_SCALE = 3
"""Latency buckets grow by 2**(1/8), about 9 %: bucket i holds (2**((i-1)/8), 2**(i/8)] ms."""
MAX_CONSUMERS = 256
"""Distinct consumers kept per record; more are counted in ``consumers_overflow``."""


class RecordError(ValueError):
    """A record that is not in the documented format; the message names the field."""


# ---- latency histograms --------------------------------------------------------------------


def latency_bucket(milliseconds: float) -> int:
    """The bucket index of one latency; zero and below share one bucket of their own."""
    if milliseconds <= 0.0:
        return -(2**15)
    return math.ceil(math.log2(milliseconds) * (1 << LATENCY_SCALE))


def bucket_upper_bound(index: int) -> float:
    """The largest latency, in ms, that falls into bucket ``index``."""
    if index <= -(2**15):
        return 0.0
    return float(2.0 ** (index / (1 << LATENCY_SCALE)))


@dataclass(slots=True)
class LatencyHistogram:
    """Latencies in ms as sparse base-2 exponential buckets (mergeable across processes)."""

    buckets: dict[int, int] = field(default_factory=dict)
    total_ms: float = 0.0
    max_ms: float = 0.0

    def observe(self, milliseconds: float) -> None:
        index = latency_bucket(milliseconds)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.total_ms += milliseconds
        if milliseconds > self.max_ms:
            self.max_ms = milliseconds

    @property
    def count(self) -> int:
        return sum(self.buckets.values())

    def merge(self, other: LatencyHistogram) -> None:
        for index, count in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + count
        self.total_ms += other.total_ms
        self.max_ms = max(self.max_ms, other.max_ms)

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding the q-quantile (at most 9 % above the truth)."""
        total = self.count
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return min(bucket_upper_bound(index), self.max_ms)
        return self.max_ms

    def count_above(self, threshold_ms: float) -> int:
        """Observations above the threshold, at bucket resolution: the bucket holding it is left out."""
        cut = latency_bucket(threshold_ms)
        return sum(count for index, count in self.buckets.items() if index > cut)

    def to_json(self) -> dict[str, Any]:
        return {
            "scale": LATENCY_SCALE,
            "buckets": {str(index): count for index, count in sorted(self.buckets.items())},
            "totalMs": self.total_ms,
            "maxMs": self.max_ms,
        }

    def to_wire(self) -> dict[str, Any]:
        """The form of version 3: the counts of the buckets ``first``, ``first + 1`` ... with
        runs of empty buckets packed (`pack_zeros`), the zero bucket apart; the scale is the
        version's (3)."""
        doc: dict[str, Any] = {}
        indices = [i for i in self.buckets if i > _ZERO_BUCKET]
        if indices:
            first, last = min(indices), max(indices)
            doc["first"] = first
            doc["counts"] = pack_zeros([self.buckets.get(i, 0) for i in range(first, last + 1)])
        if _ZERO_BUCKET in self.buckets:
            doc["zero"] = self.buckets[_ZERO_BUCKET]
        doc["sum"] = self.total_ms
        doc["max"] = self.max_ms
        return doc

    @classmethod
    def from_wire(cls, doc: Any, where: str) -> LatencyHistogram:
        """A histogram of version 3 (`to_wire`)."""
        doc = _mapping(doc, where)
        if doc.get("scale", LATENCY_SCALE) != LATENCY_SCALE:
            raise RecordError(
                f"{where}.scale: version 3 histograms have scale {LATENCY_SCALE}, got {doc['scale']!r}"
            )
        unknown = set(doc) - _WIRE_HISTOGRAM_KEYS
        if unknown:
            raise RecordError(f"{where}: unknown key {sorted(unknown)[0]!r} (a version 3 histogram has "
                              "first, counts, zero, sum, max)")  # fmt: skip
        buckets: dict[int, int] = {}
        if "counts" in doc:
            first = doc.get("first")
            if isinstance(first, bool) or not isinstance(first, int) or abs(first) > _MAX_BUCKET_INDEX:
                raise RecordError(f"{where}.first: expected a bucket index, got {first!r}")
            counts = unpack_zeros(doc["counts"], f"{where}.counts", _MAX_BUCKET_INDEX - first + 1)
            buckets = {first + offset: count for offset, count in enumerate(counts) if count}
        if "zero" in doc:
            buckets[_ZERO_BUCKET] = _count(doc["zero"], f"{where}.zero")
        return cls(
            buckets=buckets,
            total_ms=_number(doc.get("sum", 0.0), f"{where}.sum"),
            max_ms=_number(doc.get("max", 0.0), f"{where}.max"),
        )

    @classmethod
    def from_json(cls, doc: Any, where: str) -> LatencyHistogram:
        doc = _mapping(doc, where)
        if doc.get("scale") != LATENCY_SCALE:
            raise RecordError(f"{where}.scale: expected {LATENCY_SCALE}, got {doc.get('scale')!r}")
        if "counts" in doc or "zero" in doc:
            return cls._from_version_2(doc, where)
        raw = _mapping(doc.get("buckets", {}), f"{where}.buckets")
        buckets: dict[int, int] = {}
        for key, count in raw.items():
            try:
                index = int(key)
            except ValueError:
                raise RecordError(f"{where}.buckets: key {key!r} is not an integer") from None
            buckets[index] = _count(count, f"{where}.buckets[{key}]")
        return cls(
            buckets=buckets,
            total_ms=_number(doc.get("totalMs", 0.0), f"{where}.totalMs"),
            max_ms=_number(doc.get("maxMs", 0.0), f"{where}.maxMs"),
        )

    @classmethod
    def _from_version_2(cls, doc: Mapping[str, Any], where: str) -> LatencyHistogram:
        """Version 2: ``first`` and the dense ``counts`` (zeros written out), ``zero`` apart."""
        counts = doc.get("counts", [])
        if not isinstance(counts, list) or len(counts) > _MAX_DENSE_BUCKETS:
            raise RecordError(f"{where}.counts: expected a list of at most {_MAX_DENSE_BUCKETS} counts")
        buckets: dict[int, int] = {}
        if counts:
            first = doc.get("first")
            if isinstance(first, bool) or not isinstance(first, int) or abs(first) > _MAX_DENSE_BUCKETS:
                raise RecordError(f"{where}.first: expected a bucket index, got {first!r}")
            for offset, count in enumerate(counts):
                if _count(count, f"{where}.counts[{offset}]"):
                    buckets[first + offset] = count
        if "zero" in doc:
            buckets[_ZERO_BUCKET] = _count(doc["zero"], f"{where}.zero")
        return cls(
            buckets=buckets,
            total_ms=_number(doc.get("totalMs", 0.0), f"{where}.totalMs"),
            max_ms=_number(doc.get("maxMs", 0.0), f"{where}.maxMs"),
        )


_ZERO_BUCKET = -(2**15)
_MAX_DENSE_BUCKETS = 1 << 12
"""Version 2: bucket indices within +-4096 cover 2**-512 .. 2**512 ms; a dense list is at most that long."""
_MAX_BUCKET_INDEX = 1 << 14
"""Version 3: every positive finite latency (2**-1074 .. 2**1024 ms) has its bucket within +-16384."""
_WIRE_HISTOGRAM_KEYS = frozenset({"first", "counts", "zero", "sum", "max", "scale"})
_MAX_BINS = 1 << 16
"""The longest bin layout a column may have once its zero runs are unpacked."""


# ---- the packed forms of version 3 -----------------------------------------------------------


def pack_zeros(counts: list[int]) -> list[int]:
    """Counts with each run of two or more zeros written as one negative entry: ``-n`` for ``n``
    zeros (a lone zero stays ``0``, which is as short). Counts are never negative, so it is exact."""
    if 0 not in counts:
        return counts
    packed: list[int] = []
    zeros = 0
    for count in counts:
        if count == 0:
            zeros += 1
            continue
        if zeros:
            packed.append(-zeros if zeros > 1 else 0)
            zeros = 0
        packed.append(count)
    if zeros:
        packed.append(-zeros if zeros > 1 else 0)
    return packed


def unpack_zeros(value: Any, where: str, limit: int = _MAX_BINS) -> list[int]:
    """The counts `pack_zeros` packed; at most ``limit`` of them, so a record cannot ask for more memory."""
    if not isinstance(value, list):
        raise RecordError(f"{where}: expected a list of counts")
    counts: list[int] = []
    for i, entry in enumerate(value):
        if isinstance(entry, bool) or not isinstance(entry, int):
            raise RecordError(f"{where}[{i}]: expected a whole number, got {entry!r}")
        if entry < 0:
            if len(counts) - entry > limit:
                raise RecordError(f"{where}[{i}]: {-entry} zeros make more than {limit} counts")
            counts.extend([0] * -entry)
        else:
            counts.append(entry)
    if len(counts) > limit:
        raise RecordError(f"{where}: more than {limit} counts")
    return counts


_MOMENTS = struct.Struct("<4d")
_PACKED_MOMENTS_CHARS = 4 * ((_MOMENTS.size + 2) // 3)
"""44: the base64 text of four doubles."""


def pack_moments(moments: tuple[float, float, float, float]) -> str | None:
    """min, max, sum and sum of squares as base64 of four little-endian IEEE 754 doubles, bit for
    bit (44 characters, where continuous values take about 75 as decimals); None when their
    decimals are as short: whole numbers and short binary fractions (24480.0, 0.5), as columns of
    counts or constant outputs have. The cheap test comes first: the flusher encodes every column."""
    low, high, total, total_sq = moments
    if (
        (low * 64.0).is_integer()
        and (high * 64.0).is_integer()
        and (total * 64.0).is_integer()
        and (total_sq * 64.0).is_integer()
        and len(repr(low)) + len(repr(high)) + len(repr(total)) + len(repr(total_sq)) + 3
        <= _PACKED_MOMENTS_CHARS + 2
    ):
        return None
    return base64.b64encode(_MOMENTS.pack(low, high, total, total_sq)).decode("ascii")


def unpack_moments(text: str, where: str) -> tuple[float, float, float, float]:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RecordError(f"{where}: not base64") from None
    if len(raw) != _MOMENTS.size:
        raise RecordError(f"{where}: expected {_MOMENTS.size} bytes (four doubles), got {len(raw)}")
    minimum, maximum, total, total_sq = (
        _number(v, f"{where}.{name}")
        for v, name in zip(_MOMENTS.unpack(raw), ("min", "max", "sum", "sumSq"), strict=True)
    )
    return minimum, maximum, total, total_sq


# ---- bin counts ----------------------------------------------------------------------------


def _written_moments(doc: list[Any], where: str) -> tuple[float, float, float, float]:
    """A column's min, max, sum and sum of squares written out as ``[counts, min, max, sum, sumSq]``."""
    return (
        _number(doc[1], f"{where}.min"),
        _number(doc[2], f"{where}.max"),
        _number(doc[3], f"{where}.sum"),
        _number(doc[4], f"{where}.sumSq"),
    )


@dataclass(slots=True)
class BinCounts:
    """One column's values counted into the baseline's fixed bins, plus moments.

    ``counts`` follows the layout of the column's baseline bins (docs/monitoring.md):
    the same length for every record of one model, so merging is element-wise addition.
    ``minimum``/``maximum``/``total``/``total_sq`` are kept for numeric columns only.
    """

    counts: list[int]
    count: int = 0
    missing: int = 0
    minimum: float | None = None
    maximum: float | None = None
    total: float = 0.0
    total_sq: float = 0.0

    def merge(self, other: BinCounts, where: str = "bins") -> None:
        if len(other.counts) != len(self.counts):
            raise RecordError(
                f"{where}: {len(other.counts)} bins cannot merge with {len(self.counts)} "
                "(the records come from different baselines)"
            )
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.count += other.count
        self.missing += other.missing
        self.minimum = _least(self.minimum, other.minimum)
        self.maximum = _greatest(self.maximum, other.maximum)
        self.total += other.total
        self.total_sq += other.total_sq

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"counts": self.counts, "count": self.count, "missing": self.missing}
        if self.minimum is not None:
            doc.update(min=self.minimum, max=self.maximum, sum=self.total, sumSq=self.total_sq)
        return doc

    def to_wire(self) -> list[Any] | dict[str, Any]:
        """The form of version 3: ``[counts]``, ``[counts, min, max, sum, sumSq]``, or
        ``[counts, "<base64 of the four moments>"]`` when that is shorter (`pack_moments`), the
        counts' zero runs packed (`pack_zeros`). ``count`` and ``missing`` are left out, being
        the sum of the counts and the last one (the missing bin) in every layout; a column where
        they are not is written whole (the version 1 object)."""
        counts = self.counts
        if self.count != sum(counts) or self.missing != (counts[-1] if counts else 0):
            return self.to_json()
        packed = pack_zeros(counts)
        if self.minimum is None:
            return [packed]
        moments = (self.minimum, self.maximum or 0.0, self.total, self.total_sq)
        text = pack_moments(moments)
        return [packed, *moments] if text is None else [packed, text]

    @classmethod
    def from_wire(cls, doc: Any, where: str) -> BinCounts:
        """A column of version 3 (`to_wire`), or the whole object."""
        if not isinstance(doc, list):
            return cls.from_json(doc, where)
        if len(doc) not in (1, 2, 5) or (len(doc) == 2 and not isinstance(doc[1], str)):
            raise RecordError(
                f"{where}: expected [counts], [counts, min, max, sum, sumSq] or [counts, moments]"
            )
        counts = unpack_zeros(doc[0], f"{where}[0]")
        bins = cls(counts=counts, count=sum(counts), missing=counts[-1] if counts else 0)
        if len(doc) == 2:
            bins.minimum, bins.maximum, bins.total, bins.total_sq = unpack_moments(doc[1], f"{where}[1]")
        elif len(doc) == 5:
            bins.minimum, bins.maximum, bins.total, bins.total_sq = _written_moments(doc, where)
        return bins

    @classmethod
    def from_version_2(cls, doc: Any, where: str) -> BinCounts:
        """A column of version 2: ``[counts]`` or ``[counts, min, max, sum, sumSq]`` (zeros written
        out), or the whole object."""
        if not isinstance(doc, list):
            return cls.from_json(doc, where)
        if len(doc) not in (1, 5) or not isinstance(doc[0], list):
            raise RecordError(f"{where}: expected [counts] or [counts, min, max, sum, sumSq]")
        counts = [_count(c, f"{where}[0][{i}]") for i, c in enumerate(doc[0])]
        bins = cls(counts=counts, count=sum(counts), missing=counts[-1] if counts else 0)
        if len(doc) == 5:
            bins.minimum, bins.maximum, bins.total, bins.total_sq = _written_moments(doc, where)
        return bins

    @classmethod
    def from_json(cls, doc: Any, where: str) -> BinCounts:
        doc = _mapping(doc, where)
        counts = doc.get("counts")
        if not isinstance(counts, list):
            raise RecordError(f"{where}.counts: expected a list of counts")
        minimum = doc.get("min")
        return cls(
            counts=[_count(c, f"{where}.counts[{i}]") for i, c in enumerate(counts)],
            count=_count(doc.get("count", 0), f"{where}.count"),
            missing=_count(doc.get("missing", 0), f"{where}.missing"),
            minimum=None if minimum is None else _number(minimum, f"{where}.min"),
            maximum=None if minimum is None else _number(doc.get("max"), f"{where}.max"),
            total=_number(doc.get("sum", 0.0), f"{where}.sum"),
            total_sq=_number(doc.get("sumSq", 0.0), f"{where}.sumSq"),
        )


# ---- the record ----------------------------------------------------------------------------


@dataclass(slots=True)
class MinuteAggregate:
    """One deployment's traffic for one model in one UTC minute (``minute`` = epoch seconds // 60).

    ``record_id`` is unique per record as first written: the service ignores a record id it
    has stored already, so a record delivered twice is counted once. A record built by
    merging others gets a new id and lists the ids it absorbed in ``merged_ids``, which the
    service checks too.
    """

    deployment_id: str
    minute: int
    model_id: str | None = None
    record_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    merged_ids: list[str] = field(default_factory=list)
    requests: int = 0
    rows: int = 0
    user_errors: int = 0
    server_errors: int = 0
    response_ms: LatencyHistogram = field(default_factory=LatencyHistogram)
    execution_ms: LatencyHistogram = field(default_factory=LatencyHistogram)
    consumers: dict[str, int] = field(default_factory=dict)
    consumers_overflow: int = 0
    features: dict[str, BinCounts] = field(default_factory=dict)
    predictions: dict[str, BinCounts] = field(default_factory=dict)
    dropped: int = 0
    """Records the producer dropped (spool full or broken) since its previous record."""
    flushed_at: float = 0.0
    """The producer's wall clock (epoch seconds) when it wrote the record: monitoring lag."""

    @property
    def key(self) -> tuple[str, str | None, int]:
        return (self.deployment_id, self.model_id, self.minute)

    def source_ids(self) -> list[str]:
        """Every original record id this record stands for."""
        return self.merged_ids or [self.record_id]

    def add_consumer(self, consumer: str, requests: int = 1) -> None:
        if consumer in self.consumers or len(self.consumers) < MAX_CONSUMERS:
            self.consumers[consumer] = self.consumers.get(consumer, 0) + requests
        else:
            self.consumers_overflow += requests

    def merge(self, other: MinuteAggregate) -> None:
        """Add ``other`` (same deployment, model and minute) into this record."""
        if other.key != self.key:
            raise RecordError(f"cannot merge record for {other.key} into {self.key}")
        ids = self.source_ids() + other.source_ids()
        self.merged_ids = ids
        self.record_id = uuid.uuid4().hex
        self.requests += other.requests
        self.rows += other.rows
        self.user_errors += other.user_errors
        self.server_errors += other.server_errors
        self.response_ms.merge(other.response_ms)
        self.execution_ms.merge(other.execution_ms)
        for consumer, count in other.consumers.items():
            self.add_consumer(consumer, count)
        self.consumers_overflow += other.consumers_overflow
        _merge_columns(self.features, other.features, "features")
        _merge_columns(self.predictions, other.predictions, "predictions")
        self.dropped += other.dropped
        self.flushed_at = max(self.flushed_at, other.flushed_at)

    def to_json(self) -> dict[str, Any]:
        """The wire and spool form (version 3, docs/monitoring.md): zero counts and empty fields
        left out (``kind`` too: an aggregate is the default), columns and histograms packed
        (`BinCounts.to_wire`, `LatencyHistogram.to_wire`)."""
        doc: dict[str, Any] = {
            "v": AGGREGATE_VERSION,
            "id": self.record_id,
            "deploymentId": self.deployment_id,
            "modelId": self.model_id,
            "minute": self.minute,
            "requests": self.requests,
            "rows": self.rows,
        }
        optional = (
            ("userErrors", self.user_errors),
            ("serverErrors", self.server_errors),
            ("consumersOverflow", self.consumers_overflow),
            ("dropped", self.dropped),
        )
        doc.update((key, value) for key, value in optional if value)
        for key, histogram in (("responseMs", self.response_ms), ("executionMs", self.execution_ms)):
            if histogram.buckets:
                doc[key] = histogram.to_wire()
        if self.consumers:
            doc["consumers"] = self.consumers
        doc["features"] = {name: bins.to_wire() for name, bins in self.features.items()}
        doc["predictions"] = {name: bins.to_wire() for name, bins in self.predictions.items()}
        doc["flushedAt"] = self.flushed_at
        if self.merged_ids:
            doc["mergedIds"] = self.merged_ids
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> MinuteAggregate:
        doc = _mapping(doc, "record")
        version = doc.get("v")
        if version not in READABLE_AGGREGATE_VERSIONS or isinstance(version, bool):
            raise RecordError(f"v: expected format version 1, 2 or 3, got {version!r}")
        column, histogram = _READERS[version]
        if doc.get("kind", "aggregate") != "aggregate":
            raise RecordError(f"kind: expected 'aggregate', got {doc.get('kind')!r}")
        model_id = doc.get("modelId")
        merged = doc.get("mergedIds", [])
        if not isinstance(merged, list) or not all(isinstance(i, str) and i for i in merged):
            raise RecordError("mergedIds: expected a list of record ids")
        consumers = _mapping(doc.get("consumers", {}), "consumers")
        return cls(
            record_id=_text(doc.get("id"), "id"),
            merged_ids=list(merged),
            deployment_id=_text(doc.get("deploymentId"), "deploymentId"),
            model_id=None if model_id is None else _text(model_id, "modelId"),
            minute=_count(doc.get("minute"), "minute"),
            requests=_count(doc.get("requests", 0), "requests"),
            rows=_count(doc.get("rows", 0), "rows"),
            user_errors=_count(doc.get("userErrors", 0), "userErrors"),
            server_errors=_count(doc.get("serverErrors", 0), "serverErrors"),
            response_ms=_histogram(doc, "responseMs", histogram),
            execution_ms=_histogram(doc, "executionMs", histogram),
            consumers={_text(k, "consumers"): _count(v, f"consumers[{k}]") for k, v in consumers.items()},
            consumers_overflow=_count(doc.get("consumersOverflow", 0), "consumersOverflow"),
            features=_columns(doc.get("features", {}), "features", column),
            predictions=_columns(doc.get("predictions", {}), "predictions", column),
            dropped=_count(doc.get("dropped", 0), "dropped"),
            flushed_at=_number(doc.get("flushedAt", 0.0), "flushedAt"),
        )


def merge_all(records: list[MinuteAggregate]) -> list[MinuteAggregate]:
    """Merge records that share deployment, model and minute; one record per key, in key order."""
    merged: dict[tuple[str, str | None, int], MinuteAggregate] = {}
    for record in records:
        existing = merged.get(record.key)
        if existing is None:
            merged[record.key] = record
        else:
            existing.merge(record)
    return [merged[key] for key in sorted(merged, key=lambda k: (k[0], k[1] or "", k[2]))]


# ---- helpers -------------------------------------------------------------------------------

_READERS: dict[int, tuple[Callable[[Any, str], BinCounts], Callable[[Any, str], LatencyHistogram]]] = {
    1: (BinCounts.from_json, LatencyHistogram.from_json),
    2: (BinCounts.from_version_2, LatencyHistogram.from_json),
    3: (BinCounts.from_wire, LatencyHistogram.from_wire),
}
"""How each readable version writes its columns and histograms."""


def _histogram(
    doc: Mapping[str, Any], key: str, read: Callable[[Any, str], LatencyHistogram]
) -> LatencyHistogram:
    return read(doc[key], key) if key in doc else LatencyHistogram()


def _merge_columns(into: dict[str, BinCounts], other: dict[str, BinCounts], where: str) -> None:
    for name, bins in other.items():
        mine = into.get(name)
        if mine is None:
            into[name] = BinCounts.from_json(bins.to_json(), f"{where}[{name}]")
        else:
            mine.merge(bins, f"{where}[{name}]")


def _columns(
    doc: Any, where: str, column: Callable[[Any, str], BinCounts] = BinCounts.from_json
) -> dict[str, BinCounts]:
    return {
        _text(name, where): column(bins, f"{where}[{name}]") for name, bins in _mapping(doc, where).items()
    }


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RecordError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise RecordError(f"{where}: expected a non-empty string of at most 200 characters")
    return value


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RecordError(f"{where}: expected a whole number >= 0, got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RecordError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _least(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _greatest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)
