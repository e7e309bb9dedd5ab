"""The RABBITMQ spool: one durable queue, persistent messages, publisher confirms (pika).

Producer (`RabbitSpool`): a record is a message whose body is the record's JSON (zlib-
compressed with ``content_encoding`` ``deflate`` when over 512 bytes), with
``type`` = its kind, ``content_type`` ``application/json`` and ``delivery_mode`` 2
(persistent), published to the default exchange with routing key = the queue (declared
durable). With publisher confirms on, ``basic_publish`` returns only once the broker has
taken the message; a record stays in the producer's bounded memory buffer until then. When
the broker is down the buffer holds records (samples are refused once it is half full,
aggregates once it is full, each drop counted) and the spool reconnects with capped
backoff; after a broker restart nothing confirmed is lost (the queue is durable, the
messages persistent) and the unconfirmed ones are published again.

Consumer (`RabbitSpoolReader`): ``basic_get`` up to a batch, manual acknowledgement with
``multiple``. After a reconnect, records read but not acknowledged before it are delivered
again by the broker (they keep their record id, which the service checks).
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import time
from collections import deque
from typing import Any

import pika
import pika.exceptions

from shipmate.monitoring.fs_spool import COMPRESS_ABOVE, FLAG_ZLIB, compress, decode_payload
from shipmate.monitoring.settings import mask_url
from shipmate.monitoring.spool import (
    AGGREGATE,
    SAMPLE,
    Spool,
    SpoolBatch,
    SpooledRecord,
    SpoolError,
    SpoolReader,
)

log = logging.getLogger(__name__)

_BACKOFF_MIN_S, _BACKOFF_MAX_S = 0.5, 30.0
_ERRORS = (pika.exceptions.AMQPError, OSError)


def connection_parameters(url: str, tls: ssl.SSLContext | None = None, timeout: float = 5.0) -> Any:
    """pika's parameters for the URL; with ``tls`` the connection is made with that context
    (DataRobot's ``MLOPS_RABBITMQ_SSL_*`` settings), checking the broker's name against the URL's host."""
    params = pika.URLParameters(url)
    if tls is not None:
        params.ssl_options = pika.SSLOptions(tls, server_hostname=params.host)
    params.socket_timeout = timeout
    params.blocked_connection_timeout = timeout
    params.connection_attempts = 1
    params.heartbeat = 30
    return params


def _connect(url: str, queue: str, tls: ssl.SSLContext | None, timeout: float = 5.0) -> tuple[Any, Any]:
    connection = pika.BlockingConnection(connection_parameters(url, tls, timeout))
    channel = connection.channel()
    channel.queue_declare(queue=queue, durable=True)
    return connection, channel


class RabbitSpool(Spool):
    """The producer side. Not thread-safe: one flusher thread per process writes."""

    def __init__(
        self, url: str, queue: str, max_buffered: int = 10_000, tls: ssl.SSLContext | None = None
    ) -> None:
        super().__init__()
        self.url, self.queue, self.max_buffered, self.tls = url, queue, max_buffered, tls
        self._pending: deque[tuple[bytes, str]] = deque()
        self._connection: Any = None
        self._channel: Any = None
        self._next_attempt = 0.0
        self._backoff = _BACKOFF_MIN_S
        self._down_since: float | None = None
        self.published = 0

    def write(self, payload: bytes, kind: str = AGGREGATE) -> bool:
        limit = self.max_buffered // 2 if kind == SAMPLE else self.max_buffered
        if len(self._pending) >= limit:
            self.flush()
            if len(self._pending) >= limit:
                return self.drop(kind, "full")
        self._pending.append((payload, kind))
        self.flush()
        return True

    def flush(self) -> None:
        """Publish the buffered records, each confirmed by the broker before it leaves the buffer."""
        if not self._pending or not self._connected():
            return
        try:
            while self._pending:
                payload, kind = self._pending[0]
                encoding = None
                if len(payload) > COMPRESS_ABOVE:
                    payload, encoding = compress(payload), "deflate"
                self._channel.basic_publish(
                    exchange="",
                    routing_key=self.queue,
                    body=payload,
                    properties=pika.BasicProperties(
                        content_type="application/json",
                        content_encoding=encoding,
                        delivery_mode=2,
                        type=kind,
                    ),
                    mandatory=True,
                )
                self._pending.popleft()  # confirmed: the broker has it
                self.published += 1
        except pika.exceptions.UnroutableError:
            log.error("monitoring queue %s: the broker could not route a record; retrying", self.queue)
            self._disconnect()
        except _ERRORS as exc:
            self._lost(exc)

    def _connected(self) -> bool:
        if self._channel is not None and self._channel.is_open:
            return True
        now = time.monotonic()
        if now < self._next_attempt:
            return False
        try:
            self._connection, self._channel = _connect(self.url, self.queue, self.tls)
            self._channel.confirm_delivery()
        except _ERRORS as exc:
            self._lost(exc)
            return False
        if self._down_since is not None:
            log.info(
                "monitoring queue %s reachable again after %.0f s; %d records buffered",
                self.queue,
                now - self._down_since,
                len(self._pending),
            )
        self._down_since = None
        self._backoff = _BACKOFF_MIN_S
        return True

    def _lost(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            log.error(
                "monitoring queue %s at %s unreachable (%s: %s); buffering up to %d records",
                self.queue,
                mask_url(self.url),
                type(exc).__name__,
                exc,
                self.max_buffered,
            )
        self._disconnect()
        self._next_attempt = now + self._backoff
        self._backoff = min(self._backoff * 2, _BACKOFF_MAX_S)

    def _disconnect(self) -> None:
        with contextlib.suppress(Exception):
            if self._connection is not None and self._connection.is_open:
                self._connection.close()
        self._connection = self._channel = None

    @property
    def buffered(self) -> int:
        return len(self._pending)

    def backlog_bytes(self) -> int:
        return sum(len(payload) for payload, _ in self._pending)

    def close(self) -> None:
        self._next_attempt = 0.0
        self.flush()
        if self._pending:
            log.warning(
                "monitoring queue %s: %d records not published at exit", self.queue, len(self._pending)
            )
            for _, kind in self._pending:
                self.drop(kind, "error")
        self._disconnect()


class RabbitSpoolReader(SpoolReader):
    """The consumer side of a RABBITMQ spool (one queue)."""

    def __init__(self, url: str, queue: str, tls: ssl.SSLContext | None = None) -> None:
        self.url, self.queue, self.tls = url, queue, tls
        self._connection: Any = None
        self._channel: Any = None
        self._generation = 0

    def _ensure(self) -> Any:
        if self._channel is None or not self._channel.is_open:
            self._disconnect()
            self._connection, self._channel = _connect(self.url, self.queue, self.tls)
            self._generation += 1
        return self._channel

    def read(self, max_records: int = 1000, timeout: float = 0.0) -> SpoolBatch:
        """Up to ``max_records`` records; raises `SpoolError` when the broker is unreachable or lost
        (the caller retries; records not acknowledged come back)."""
        deadline = time.monotonic() + timeout
        records: list[SpooledRecord] = []
        damaged, details = 0, []
        last_tag = 0
        try:
            channel = self._ensure()
            while len(records) < max_records:
                method, properties, body = channel.basic_get(self.queue, auto_ack=False)
                if method is None:
                    if records or damaged or time.monotonic() >= deadline:
                        break
                    self._connection.sleep(0.05)
                    continue
                last_tag = method.delivery_tag
                where = f"{self.queue}#{method.delivery_tag}"
                try:
                    if properties.content_encoding == "deflate":
                        body = decode_payload(body, FLAG_ZLIB)
                    doc = json.loads(body)
                    if not isinstance(doc, dict):
                        raise ValueError("not a JSON object")
                except ValueError as exc:
                    damaged += 1
                    details.append(f"{where}: not a JSON object ({exc}); record skipped")
                    continue
                records.append(SpooledRecord(kind=properties.type or AGGREGATE, doc=doc, where=where))
        except _ERRORS as exc:
            raise self._lost(exc) from exc
        for line in details:
            log.warning("monitoring queue: %s", line)
        return SpoolBatch(
            records=records, position=(self._generation, last_tag), damaged=damaged, details=details
        )

    def ack(self, batch: SpoolBatch) -> None:
        generation, tag = batch.position
        if tag == 0:
            return
        if generation != self._generation or self._channel is None or not self._channel.is_open:
            log.info("monitoring queue: the connection was renewed; %s records come again", self.queue)
            return
        try:
            self._channel.basic_ack(delivery_tag=tag, multiple=True)
        except _ERRORS as exc:
            raise self._lost(exc) from exc

    def rewind(self) -> None:
        if self._channel is not None and self._channel.is_open:
            try:
                self._channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)
            except _ERRORS:
                self._disconnect()

    def backlog_bytes(self) -> int:
        return 0

    def pending_messages(self) -> int:
        """Messages ready in the queue (not counting those read and not yet acknowledged)."""
        channel = self._ensure()
        return int(channel.queue_declare(queue=self.queue, durable=True, passive=True).method.message_count)

    def _lost(self, exc: BaseException) -> SpoolError:
        self._disconnect()
        return SpoolError(f"queue {self.queue} at {mask_url(self.url)}: lost the broker "
                          f"({type(exc).__name__}: {exc})")  # fmt: skip

    def _disconnect(self) -> None:
        with contextlib.suppress(Exception):
            if self._connection is not None and self._connection.is_open:
                self._connection.close()
        self._connection = self._channel = None

    def close(self) -> None:
        self._disconnect()
