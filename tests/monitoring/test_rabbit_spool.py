"""The RABBITMQ spool against the real broker (127.0.0.1:5672); outages through a local TCP relay."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pika
import pytest

from shipmate.monitoring.rabbit_spool import RabbitSpool, RabbitSpoolReader
from shipmate.monitoring.spool import SAMPLE

BROKER = ("127.0.0.1", 5672)


def _broker_up() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(BROKER, timeout=1):
        return True
    return False


pytestmark = pytest.mark.skipif(not _broker_up(), reason="RabbitMQ is not running at 127.0.0.1:5672")


def _url(port: int = 5672) -> str:
    return f"amqp://guest:guest@127.0.0.1:{port}/%2f"


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"shipmate-test-{uuid.uuid4().hex[:8]}"
    yield name
    connection = pika.BlockingConnection(pika.URLParameters(_url()))
    connection.channel().queue_delete(queue=name)
    connection.close()


class Relay:
    """A TCP relay to the broker that can be cut and restored: a broker outage as clients see it."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.listener.listen()
        self.up = True
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(BROKER)
            self.pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError):
            while True:
                ready, _, _ = select.select([a, b], [], [], 0.5)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        raise OSError("closed")
                    (b if s is a else a).sendall(data)

    def cut(self) -> None:
        self.up = False
        for a, b in self.pairs:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
        self.pairs.clear()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


def _ids(reader: RabbitSpoolReader, expected: int, timeout: float = 5.0) -> list[str]:
    ids: list[str] = []
    deadline = time.monotonic() + timeout
    while len(ids) < expected and time.monotonic() < deadline:
        batch = reader.read(100, timeout=0.5)
        ids.extend(r.doc["id"] for r in batch.records)
        reader.ack(batch)
    return ids


def test_published_records_are_read_and_acknowledged_once(queue: str) -> None:
    spool = RabbitSpool(_url(), queue)
    for i in range(5):  # the last ones large enough to travel compressed
        assert spool.write(json.dumps({"id": f"r{i}", "pad": "x" * (300 * i)}).encode())
    assert spool.buffered == 0 and spool.published == 5
    spool.close()
    reader = RabbitSpoolReader(_url(), queue)
    try:
        assert _ids(reader, 5) == [f"r{i}" for i in range(5)]
        assert reader.read(10, timeout=0.2).records == []
    finally:
        reader.close()


def test_records_read_but_not_acknowledged_come_again(queue: str) -> None:
    spool = RabbitSpool(_url(), queue)
    spool.write(json.dumps({"id": "a"}).encode(), SAMPLE)
    spool.close()
    reader = RabbitSpoolReader(_url(), queue)
    first = reader.read(10, timeout=2)
    assert [r.kind for r in first.records] == [SAMPLE]
    reader.close()  # a consumer that died before acknowledging
    again = RabbitSpoolReader(_url(), queue)
    try:
        assert _ids(again, 1) == ["a"]
    finally:
        again.close()


def test_an_outage_loses_no_record_and_buffers_within_bounds(queue: str) -> None:
    relay = Relay()
    spool = RabbitSpool(_url(relay.port), queue, max_buffered=4)
    try:
        for i in range(3):
            assert spool.write(json.dumps({"id": f"before-{i}"}).encode())
        assert spool.published == 3
        relay.cut()
        written = [spool.write(json.dumps({"id": f"during-{i}"}).encode()) for i in range(5)]
        assert written == [True, True, True, True, False]  # the buffer holds 4; the fifth is counted
        assert spool.dropped["aggregate:full"] == 1 and spool.buffered == 4
        assert not spool.write(b'{"id": "s"}', SAMPLE)  # samples go first: half the buffer is enough
        relay.restore()
        deadline = time.monotonic() + 120  # reconnecting takes a while on a busy machine
        while spool.buffered and time.monotonic() < deadline:
            time.sleep(0.2)
            spool.flush()
        assert spool.buffered == 0
    finally:
        spool.close()
        relay.close()
    reader = RabbitSpoolReader(_url(), queue)
    try:
        got = _ids(reader, 7)
    finally:
        reader.close()
    assert got == [f"before-{i}" for i in range(3)] + [f"during-{i}" for i in range(4)]
