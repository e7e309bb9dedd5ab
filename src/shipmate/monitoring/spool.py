"""Spoolers: where the prediction server puts monitoring records for the monitoring agent.

One interface (`Spool`, the producer side; `SpoolReader`, the consumer side), chosen by
``spooler_type``: ``FILESYSTEM`` (`shipmate.monitoring.fs_spool`), ``RABBITMQ``
(`shipmate.monitoring.rabbit_spool`), ``STDOUT`` and ``NONE``. A record is one JSON
object (`MinuteAggregate.to_json()`, ``kind`` "aggregate"); spools carry its UTF-8 bytes
unchanged.

Producers call `Spool.write` from one thread (the recorder's flusher), never from a
request. ``write`` never raises for a full or broken spool: it returns False and counts the
record in ``dropped``; the caller logs and reports the count.
"""

from __future__ import annotations

import sys
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from shipmate.monitoring.settings import MonitorSettings, SpoolerType

AGGREGATE = "aggregate"
SAMPLE = "sample"
PREDICTIONS = "predictions"
"""Association ids with their predictions (`shipmate.monitoring.predictions`), kept like aggregates."""
KINDS = (AGGREGATE, SAMPLE, PREDICTIONS)


class SpoolError(RuntimeError):
    """A spool that cannot be opened or read at all (for the consumer; producers count instead)."""


class Spool(ABC):
    """The producer side: append records; a full or broken spool drops and counts them."""

    def __init__(self) -> None:
        self.dropped: Counter[str] = Counter()  # by "<kind>:<reason>", reasons "full" and "error"
        self.on_drop: Callable[[str, str], None] | None = None  # told of every drop (Prometheus)
        self._lock = threading.Lock()

    @abstractmethod
    def write(self, payload: bytes, kind: str = AGGREGATE) -> bool:
        """Append one record (JSON bytes); False when it was dropped (and counted)."""

    def drop(self, kind: str, reason: str) -> bool:
        with self._lock:
            self.dropped[f"{kind}:{reason}"] += 1
        if self.on_drop is not None:
            self.on_drop(kind, reason)
        return False

    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def backlog_bytes(self) -> int:
        """Bytes written and not yet acknowledged by a consumer, as far as this producer can tell."""
        return 0

    def flush(self) -> None:  # noqa: B027 - optional
        """Push buffered records out (a no-op for spools that write through)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release files or connections."""


class NoSpool(Spool):
    """``NONE``: records are counted into /metrics only."""

    def write(self, payload: bytes, kind: str = AGGREGATE) -> bool:
        return True


class StdoutSpool(Spool):
    """``STDOUT``: one JSON record per line, for debugging."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream or sys.stdout

    def write(self, payload: bytes, kind: str = AGGREGATE) -> bool:
        try:
            self.stream.write(payload.decode() + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            return self.drop(kind, "error")
        return True


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    """One record read back: its kind, its decoded JSON and where it was in the spool."""

    kind: str
    doc: dict[str, Any]
    where: str


@dataclass(frozen=True, slots=True)
class SpoolBatch:
    """Records read by `SpoolReader.read`, and the position to acknowledge once they are stored.

    Positions are cumulative: acknowledging a batch acknowledges every batch read before it.
    """

    records: list[SpooledRecord]
    position: Any
    damaged: int = 0
    """Frames skipped because they were damaged or not JSON (logged and counted by the reader)."""
    details: list[str] = field(default_factory=list)


class SpoolReader(ABC):
    """The consumer side, for the monitoring agent: read a batch, store it, then acknowledge it.

    ``read`` continues after the previous batch whether or not it was acknowledged;
    ``rewind`` goes back to the last acknowledged position (to retry after a failed post);
    after a restart reading starts at the last acknowledged position, so an acknowledged
    record is never delivered again and an unacknowledged one is delivered again.
    """

    @abstractmethod
    def read(self, max_records: int = 1000, timeout: float = 0.0) -> SpoolBatch:
        """Up to ``max_records`` records (waiting up to ``timeout`` s for the first one)."""

    @abstractmethod
    def ack(self, batch: SpoolBatch) -> None:
        """Acknowledge ``batch`` and every batch read before it: they are never read again."""

    @abstractmethod
    def rewind(self) -> None:
        """Read again from the last acknowledged position."""

    def backlog_bytes(self) -> int:
        return 0

    def close(self) -> None:  # noqa: B027 - optional
        """Release files or connections."""


def open_spool(settings: MonitorSettings) -> Spool:
    """The producer side of the configured spooler."""
    kind = settings.spooler_type
    if kind is SpoolerType.FILESYSTEM:
        from shipmate.monitoring.fs_spool import FilesystemSpool

        assert settings.directory is not None
        return FilesystemSpool(settings.directory, settings.max_files, settings.file_max_size)
    if kind is SpoolerType.RABBITMQ:
        from shipmate.monitoring.rabbit_spool import RabbitSpool
        from shipmate.monitoring.settings import tls_context

        assert settings.rabbitmq_queue_url is not None and settings.rabbitmq_queue_name is not None
        return RabbitSpool(
            settings.rabbitmq_queue_url,
            settings.rabbitmq_queue_name,
            max_buffered=settings.max_buffered_records,
            tls=tls_context(settings) if settings.rabbitmq_tls else None,
        )
    if kind is SpoolerType.STDOUT:
        return StdoutSpool()
    return NoSpool()
