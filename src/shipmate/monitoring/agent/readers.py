"""Where the monitoring agent reads records from: the `SpoolReader` protocol and two readers.

The protocol is the consumer side of the prediction server's spools (``SpoolReader`` in
``shipmate.monitoring.spool``), restated here as a structural type so the agent depends
on its shape only:

* ``read(max_records, timeout)`` returns a batch: ``records`` (each with ``kind`` —
  ``"aggregate"`` or ``"sample"`` — and ``doc``, the decoded JSON object) and ``damaged``
  (frames skipped as unreadable; the reader logs them). Reading continues after the
  previous batch whether or not it was acknowledged.
* ``ack(batch)`` acknowledges that batch and every batch read before it: they are never
  delivered again, after a restart either.
* ``rewind()`` goes back to the last acknowledged position.
* ``read`` and ``ack`` may raise when the channel is lost (a broker going away); the agent
  then drops what it has not acknowledged, rewinds and reads again later.

Records read but not acknowledged when the agent dies are read again by the next agent;
the service ignores the ones it stored already (by record id), so nothing is lost and
nothing counts twice.

Two readers live here: `JsonLinesDirectoryReader`, a directory of ``*.jsonl`` files (a
stand-in for the prediction server's filesystem spool and handy for tests and imports),
and `RabbitMQReader`, a durable queue read with manual acknowledgements.
`filesystem_reader` is the one place that chooses the ``FS_SPOOL`` reader.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

AGGREGATE = "aggregate"


class ReaderReset(Exception):
    """The channel lost its state; unacknowledged records will be delivered again."""


class RecordLike(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def doc(self) -> dict[str, Any]: ...


class BatchLike(Protocol):
    @property
    def records(self) -> Sequence[RecordLike]: ...

    @property
    def damaged(self) -> int: ...


class SpoolReader(Protocol):
    """What the monitoring agent needs of a channel (see the module's docstring)."""

    def read(self, max_records: int = 1000, timeout: float = 0.0) -> Any: ...

    def ack(self, batch: Any) -> None: ...

    def rewind(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ReadRecord:
    kind: str
    doc: dict[str, Any]
    where: str


@dataclass(frozen=True, slots=True)
class ReadBatch:
    records: list[ReadRecord]
    position: Any
    damaged: int = 0
    details: list[str] = field(default_factory=list)


def _decode(raw: bytes, where: str) -> tuple[ReadRecord | None, str | None]:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        return None, f"{where}: not JSON ({exc}); record skipped"
    if not isinstance(doc, dict):
        return None, f"{where}: not a JSON object; record skipped"
    return ReadRecord(kind=str(doc.get("kind", AGGREGATE)), doc=doc, where=where), None


class JsonLinesDirectoryReader:
    """Records as lines of ``*.jsonl`` files in one directory, files consumed in name order.

    Only complete lines (ending in a newline) are read, so a writer killed mid-line leaves a
    tail that is never delivered. The acknowledged position is kept in ``.<name>.offset``
    (written atomically); files wholly before it are deleted.
    """

    def __init__(self, directory: Path, name: str = "agent", poll_interval: float = 0.05) -> None:
        self.directory = Path(directory)
        self.poll_interval = poll_interval
        self._offset_file = self.directory / f".{name}.offset"
        self._acked = self._load_offset()
        self._cursor = self._acked

    def _load_offset(self) -> tuple[str, int]:
        try:
            doc = json.loads(self._offset_file.read_text())
            return str(doc["file"]), int(doc["position"])
        except FileNotFoundError:
            return "", 0
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{self._offset_file}: unreadable consumer offset ({exc}); fix or remove it"
            ) from None

    def _files(self) -> list[str]:
        return sorted(p.name for p in self.directory.glob("*.jsonl"))

    def read(self, max_records: int = 1000, timeout: float = 0.0) -> ReadBatch:
        deadline = time.monotonic() + timeout
        while True:
            batch = self._read_now(max_records)
            if batch.records or batch.damaged or time.monotonic() >= deadline:
                return batch
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    def _read_now(self, max_records: int) -> ReadBatch:
        records: list[ReadRecord] = []
        details: list[str] = []
        name, position = self._cursor
        for candidate in self._files():
            if candidate < name or len(records) + len(details) >= max_records:
                continue
            start = position if candidate == name else 0
            with (self.directory / candidate).open("rb") as handle:
                handle.seek(start)
                while len(records) + len(details) < max_records:
                    line = handle.readline()
                    if not line.endswith(b"\n"):
                        break  # end of file, or a line still being written
                    where = f"{candidate}@{start}"
                    start += len(line)
                    if line.strip():
                        record, why = _decode(line, where)
                        if record is not None:
                            records.append(record)
                        else:
                            details.append(why or where)
            name, position = candidate, start
        self._cursor = (name, position)
        for problem in details:
            log.warning("spool %s: %s", self.directory, problem)
        return ReadBatch(records=records, position=self._cursor, damaged=len(details), details=details)

    def ack(self, batch: Any) -> None:
        name, position = batch.position
        temporary = self._offset_file.with_suffix(".tmp")
        with temporary.open("w") as handle:
            json.dump({"file": name, "position": position}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self._offset_file)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self._acked = (name, position)
        for older in self._files():
            if older < name:
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / older).unlink()

    def rewind(self) -> None:
        self._cursor = self._acked

    def close(self) -> None:
        return None


def filesystem_reader(directory: Path, name: str) -> SpoolReader:
    """The reader for an ``FS_SPOOL`` channel: the one place to plug the spool's own reader in."""
    return JsonLinesDirectoryReader(directory, name)


class RabbitMQReader:
    """A durable RabbitMQ queue read with manual acknowledgements (pika, blocking).

    The position of a batch is (connection generation, last delivery tag): after the
    connection is renewed, an older batch cannot be acknowledged (the broker delivers its
    records again), so its ``ack`` does nothing.
    """

    def __init__(self, url: str, queue: str, prefetch: int = 1000) -> None:
        self.url = url
        self.queue = queue
        self.prefetch = prefetch
        self._connection: Any = None
        self._channel: Any = None
        self._generation = 0

    def _connect(self) -> Any:
        import pika

        if self._channel is None or not self._channel.is_open:
            self._drop()
            parameters = pika.URLParameters(self.url)
            parameters.heartbeat = 30
            parameters.blocked_connection_timeout = 30
            parameters.socket_timeout = 5
            parameters.connection_attempts = 1
            self._connection = pika.BlockingConnection(parameters)
            channel = self._connection.channel()
            channel.queue_declare(queue=self.queue, durable=True)
            channel.basic_qos(prefetch_count=self.prefetch)
            self._channel = channel
            self._generation += 1
        return self._channel

    def read(self, max_records: int = 1000, timeout: float = 0.0) -> ReadBatch:
        import pika.exceptions

        deadline = time.monotonic() + timeout
        records: list[ReadRecord] = []
        details: list[str] = []
        last_tag = 0
        try:
            channel = self._connect()
            for method, properties, body in channel.consume(self.queue, inactivity_timeout=0.05):
                if method is not None:
                    last_tag = method.delivery_tag
                    record, problem = _decode(body, f"{self.queue}#{last_tag}")
                    if record is not None:
                        if properties.type:
                            record = ReadRecord(properties.type, record.doc, record.where)
                        records.append(record)
                    else:
                        details.append(problem or "")
                got = len(records) + len(details)
                if got >= max_records or time.monotonic() >= deadline or (method is None and got):
                    break
        except (pika.exceptions.AMQPError, OSError) as exc:
            self._drop()
            raise ReaderReset(f"{self.queue}: lost the broker ({exc!r})") from None
        for line in details:
            log.warning("queue %s: %s", self.queue, line)
        return ReadBatch(records, (self._generation, last_tag), damaged=len(details), details=details)

    def ack(self, batch: Any) -> None:
        import pika.exceptions

        generation, tag = batch.position
        if tag == 0 or generation != self._generation or self._channel is None:
            return  # the connection was renewed: the broker delivers these records again
        try:
            self._channel.basic_ack(delivery_tag=tag, multiple=True)
        except (pika.exceptions.AMQPError, OSError) as exc:
            self._drop()
            raise ReaderReset(f"{self.queue}: acknowledgement lost with the broker ({exc!r})") from None

    def rewind(self) -> None:
        """Give every unacknowledged message back to the queue (or drop the connection, which does)."""
        import pika.exceptions

        if self._channel is not None and self._channel.is_open:
            try:
                self._channel.cancel()
                self._channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)
            except (pika.exceptions.AMQPError, OSError):
                self._drop()

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def close(self) -> None:
        self._drop()
