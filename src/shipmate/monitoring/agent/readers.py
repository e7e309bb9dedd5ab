"""Where the monitoring agent reads records from: the `SpoolReader` protocol and two readers.

A reader hands out records in order, each with an opaque, increasing offset, and forgets
nothing until the agent acknowledges an offset: ``ack(offset)`` consumes every record up to
and including it, for good (a restarted reader starts after it). Records read but not
acknowledged when the agent dies are read again by the next agent; the service ignores the
ones it stored already (by record id), so nothing is lost and nothing counts twice.

* `JsonLinesDirectoryReader`: a directory of ``*.jsonl`` files, one JSON record per line,
  with the consumer offset in ``.<name>.offset``; the stand-in for the prediction server's
  filesystem spool until its own reader is plugged in (`filesystem_reader`).
* `RabbitMQReader`: a durable queue, manual acknowledgement (``multiple=True`` up to the
  offset, which is the delivery tag); a lost connection raises `ReaderReset` and the broker
  delivers the unacknowledged records again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


class ReaderReset(Exception):
    """The channel lost its state: records read but not acknowledged will be delivered again,
    so the agent drops its pending batch (without posting it) and reads afresh."""


class SpoolReader(Protocol):
    """What the monitoring agent needs of a channel."""

    name: str

    def read(self, max_records: int, timeout: float) -> list[tuple[Any, bytes]]:
        """Up to ``max_records`` (offset, record bytes) after the last ones returned, waiting at
        most ``timeout`` seconds for the first; ``[]`` when there is nothing."""
        ...

    def ack(self, offset: Any) -> None:
        """Every record up to and including ``offset`` is consumed and never delivered again."""
        ...

    def close(self) -> None: ...


class JsonLinesDirectoryReader:
    """Records as lines of ``*.jsonl`` files in one directory, files consumed in name order.

    Only complete lines (ending in a newline) are read, so a writer killed mid-line leaves a
    tail that is never delivered. Files wholly before the acknowledged offset are deleted.
    """

    def __init__(self, directory: Path, name: str = "agent", poll_interval: float = 0.05) -> None:
        self.name = name
        self.directory = directory
        self.poll_interval = poll_interval
        self._offset_file = directory / f".{name}.offset"
        self._file, self._position = self._load_offset()

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

    def read(self, max_records: int, timeout: float) -> list[tuple[Any, bytes]]:
        deadline = time.monotonic() + timeout
        while True:
            records = self._read_now(max_records)
            if records or time.monotonic() >= deadline:
                return records
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    def _read_now(self, max_records: int) -> list[tuple[Any, bytes]]:
        out: list[tuple[Any, bytes]] = []
        for name in self._files():
            if name < self._file:
                continue
            start = self._position if name == self._file else 0
            with (self.directory / name).open("rb") as handle:
                handle.seek(start)
                while len(out) < max_records:
                    line = handle.readline()
                    if not line.endswith(b"\n"):
                        break  # end of file, or a line still being written
                    start += len(line)
                    if line.strip():
                        out.append(((name, start), line))
            self._file, self._position = name, start
            if len(out) >= max_records:
                break
        return out

    def ack(self, offset: Any) -> None:
        name, position = offset
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
        for older in self._files():
            if older < name:
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / older).unlink()

    def close(self) -> None:
        return None


def filesystem_reader(directory: Path, name: str) -> SpoolReader:
    """The reader for an ``FS_SPOOL`` channel (the one place to plug the spool's own reader in)."""
    return JsonLinesDirectoryReader(directory, name)


class RabbitMQReader:
    """A durable RabbitMQ queue read with manual acknowledgements (pika, blocking)."""

    def __init__(self, url: str, queue: str, name: str = "rabbitmq", prefetch: int = 1000) -> None:
        self.name = name
        self.url = url
        self.queue = queue
        self.prefetch = prefetch
        self._connection: Any = None
        self._channel: Any = None

    def _connect(self) -> Any:
        import pika

        if self._channel is None:
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
        return self._channel

    def read(self, max_records: int, timeout: float) -> list[tuple[Any, bytes]]:
        import pika.exceptions

        deadline = time.monotonic() + timeout
        out: list[tuple[Any, bytes]] = []
        try:
            channel = self._connect()
            for method, _properties, body in channel.consume(self.queue, inactivity_timeout=0.05):
                if method is not None:
                    out.append((method.delivery_tag, body))
                if len(out) >= max_records or time.monotonic() >= deadline or (method is None and out):
                    break
        except (pika.exceptions.AMQPError, OSError) as exc:
            self._drop()
            raise ReaderReset(f"{self.name}: lost the broker ({exc!r})") from None
        return out

    def ack(self, offset: Any) -> None:
        import pika.exceptions

        try:
            self._connect().basic_ack(delivery_tag=offset, multiple=True)
        except (pika.exceptions.AMQPError, OSError) as exc:
            self._drop()
            raise ReaderReset(f"{self.name}: acknowledgement lost with the broker ({exc!r})") from None

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def close(self) -> None:
        self._drop()
