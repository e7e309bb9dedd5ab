"""Fixtures of the fault suite: real processes in their own process groups and a TCP proxy that
can cut the service off from PostgreSQL (the fresh PostgreSQL database per test, `pg_database`
and `pg_url`, and `iris_packages` are tests/conftest.py's).

Everything a test starts is registered here and SIGKILLed (whole process group) at
teardown, whatever the test's outcome. Figures a test measures are printed on one line
starting with ``FAULT-FIGURES`` (run pytest with ``-s`` to see them; docs/reliability.md
quotes them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.agent.kills import kill_group

ADMIN_TOKEN = "smt_fault-suite-admin-token-0123456789"
SHIPMATE = [sys.executable, "-c", "from shipmate.cli.main import main; main()"]
"""The ``shipmate`` command, run by this interpreter."""
PG_HOST, PG_PORT = "127.0.0.1", 5432


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll until ``predicate`` returns something truthy; that value, or None after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def figures(test: str, **values: Any) -> None:
    """Print what a test measured, on one line docs/reliability.md can quote."""
    print(f"\nFAULT-FIGURES {test}: " + ", ".join(f"{k}={v}" for k, v in values.items()), flush=True)


# -- processes ------------------------------------------------------------------------------------


@dataclass
class Started:
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (the process and anything it spawned)."""
        kill_group(self.process)

    def terminate(self, timeout: float = 30) -> int | None:
        """SIGTERM the process and wait; SIGKILL the group if it does not end in ``timeout`` s."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def tail(self, size: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return ""


class Processes:
    """Starts commands in new sessions and kills every process group it started at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[Started] = []

    def start(self, argv: list[str], name: str, env: Mapping[str, str] | None = None) -> Started:
        log = self.folder / f"{name}.log"
        with open(log, "ab") as output:
            process = subprocess.Popen(
                argv,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = Started(process, log)
        self.started.append(started)
        return started

    def kill_all(self) -> None:
        for started in self.started:
            started.kill()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    registry = Processes(tmp_path)
    try:
        yield registry
    finally:
        registry.kill_all()


def http_ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Server:
    started: Started
    url: str

    def client(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=timeout
        )


def start_server(
    processes: Processes,
    name: str,
    data_dir: Path,
    database_url: str | None,
    env: Mapping[str, str] | None = None,
    wait: bool = True,
) -> Server:
    """``shipmate server`` on a free loopback port; waits for its health check unless ``wait`` is off."""
    port = free_port()
    argv = [*SHIPMATE, "server", "--data-dir", str(data_dir), "--port", str(port), "--log-level", "warning"]
    if database_url:
        argv += ["--database-url", database_url]
    started = processes.start(argv, name, env={"SHIPMATE_ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})})
    server = Server(started, f"http://127.0.0.1:{port}")
    if wait:
        up = wait_until(lambda: not started.alive() or http_ready(f"{server.url}/api/v1/health"), 90, 0.1)
        assert up and started.alive(), f"{name} did not start: {started.tail()}"
    return server


# -- the fault injector at the database boundary --------------------------------------------------


class TcpProxy:
    """A TCP proxy on 127.0.0.1 in front of one upstream, on its own thread and event loop.

    ``cut()`` closes every open connection and refuses new ones (accepted and closed at
    once) until ``restore()``: to the service this looks like a database that went away.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.refused = 0
        self.cut_connections = 0
        self._down = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-proxy", daemon=True)

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        if self._down:  # cut while the upstream connection was being opened
            self.refused += 1
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

    async def _cut(self) -> None:
        self._down = True
        self.cut_connections += len(self._writers) // 2
        for writer in list(self._writers):
            writer.transport.abort()  # RST both ways: the service and PostgreSQL see the link die
        self._writers.clear()

    async def _restore(self) -> None:
        self._down = False

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._restore())

    async def _close(self) -> None:
        await self._cut()
        if self._server is not None:
            self._server.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy((PG_HOST, PG_PORT)).start()
    try:
        yield proxy
    finally:
        proxy.close()


# -- followers of the event log ------------------------------------------------------------------


class LongPollFollower(threading.Thread):
    """Follows ``GET /api/v1/events?after=<cursor>&wait=<s>`` from 0, as a client would: on a 503 it
    waits for Retry-After, on a broken connection it retries, always from its cursor."""

    def __init__(self, url: str, wait: float = 5.0) -> None:
        super().__init__(name="long-poll-follower", daemon=True)
        self.url = url
        self.wait = wait
        self.ids: list[int] = []
        self.statuses: Counter[int] = Counter()
        self.retry_after_missing = 0
        self.errors: Counter[str] = Counter()
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(self.wait + 30)
        assert not self.is_alive(), "the long-poll follower did not stop"

    def run(self) -> None:
        cursor = 0
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        # the client's timeout is the bound on a hang: the service must answer within wait + 20 s
        with httpx.Client(base_url=self.url, headers=headers, timeout=self.wait + 20) as client:
            while not self._stop_event.is_set():
                try:
                    reply = client.get(
                        "/api/v1/events", params={"after": cursor, "wait": self.wait, "limit": 1000}
                    )
                except httpx.HTTPError as exc:
                    self.errors[type(exc).__name__] += 1
                    self._stop_event.wait(0.5)
                    continue
                self.statuses[reply.status_code] += 1
                if reply.status_code == 200:
                    page = reply.json()
                    self.ids.extend(event["id"] for event in page["events"])
                    cursor = page["cursor"]
                    continue
                if "Retry-After" not in reply.headers:
                    self.retry_after_missing += 1
                self._stop_event.wait(float(reply.headers.get("Retry-After", "1")))


class SseFollower(threading.Thread):
    """Follows ``/api/v1/events/stream`` from 0 and reconnects with ``Last-Event-ID`` when the stream
    breaks (after a 503, waiting for its Retry-After), as an EventSource does."""

    def __init__(self, url: str) -> None:
        super().__init__(name="sse-follower", daemon=True)
        self.url = url
        self.ids: list[int] = []
        self.statuses: Counter[int] = Counter()
        self.retry_after_missing = 0
        self.errors: Counter[str] = Counter()
        self.connections = 0
        self._stop_event = threading.Event()
        self._client: httpx.Client | None = None

    def stop(self) -> None:
        self._stop_event.set()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()  # breaks a read blocked between keep-alives
        self.join(30)
        assert not self.is_alive(), "the SSE follower did not stop"

    def run(self) -> None:
        last: int | None = None
        # read timeout: the stream sends a keep-alive every 15 s, so 30 s of silence is a hang
        timeout = httpx.Timeout(30, connect=10)
        while not self._stop_event.is_set():
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            self._client = client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
            try:
                with client.stream("GET", "/api/v1/events/stream") as reply:
                    self.statuses[reply.status_code] += 1
                    if reply.status_code != 200:
                        reply.read()
                        if "Retry-After" not in reply.headers:
                            self.retry_after_missing += 1
                        self._stop_event.wait(float(reply.headers.get("Retry-After", "1")))
                        continue
                    self.connections += 1
                    for line in reply.iter_lines():
                        if line.startswith("id: "):
                            last = int(line[4:])
                            self.ids.append(last)
            except (httpx.HTTPError, RuntimeError) as exc:  # RuntimeError: closed by stop()
                if not self._stop_event.is_set():
                    self.errors[type(exc).__name__] += 1
                    self._stop_event.wait(0.5)
            finally:
                client.close()


@pytest.fixture
def followers() -> Iterator[Callable[..., Any]]:
    """Starts followers: ``followers("long-poll", url, wait=5)`` or ``followers("sse", url)``;
    any still running at teardown is stopped."""
    made: list[LongPollFollower | SseFollower] = []

    def start(kind: str, url: str, **options: Any) -> LongPollFollower | SseFollower:
        follower = LongPollFollower(url, **options) if kind == "long-poll" else SseFollower(url)
        made.append(follower)
        follower.start()
        return follower

    yield start
    for follower in made:
        if follower.is_alive():
            with contextlib.suppress(AssertionError):
                follower.stop()


def kill_process_groups_of(marker: str) -> int:
    """SIGKILL the process group of every process whose command line contains ``marker`` (a path
    unique to one test): commands a test's processes started in sessions of their own."""
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if marker.encode() not in handle.read():
                    continue
            os.killpg(os.getpgid(int(entry)), signal.SIGKILL)
            killed += 1
        except (OSError, ProcessLookupError):
            continue
    return killed


def all_event_ids(url: str) -> list[int]:
    """Every event id in the log, read page by page from ``url``."""
    ids: list[int] = []
    cursor = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30) as c:
        while True:
            reply = c.get("/api/v1/events", params={"after": cursor, "limit": 1000})
            assert reply.status_code == 200, reply.text
            page = reply.json()
            if not page["events"]:
                return ids
            ids.extend(event["id"] for event in page["events"])
            cursor = page["cursor"]


def check_followed(name: str, seen: list[int], log: list[int]) -> dict[str, int]:
    """A follower saw every id of the log once, in order: assert it, and return the counts."""
    duplicates = len(seen) - len(set(seen))
    missed = sorted(set(log) - set(seen))
    assert duplicates == 0, f"{name} saw {duplicates} event(s) twice"
    assert not missed, f"{name} missed {len(missed)} event(s): {missed[:20]}"
    assert seen == sorted(seen), f"{name} saw events out of order"
    assert set(seen) <= set(log), f"{name} saw ids the log does not hold"
    return {"followed": len(seen), "missed": len(missed), "twice": duplicates}


@pytest.fixture
def faults() -> Any:
    """The helpers above, for test modules (which cannot import this file)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        admin_token=ADMIN_TOKEN,
        shipmate=SHIPMATE,
        free_port=free_port,
        wait_until=wait_until,
        figures=figures,
        start_server=start_server,
        http_ready=http_ready,
        pg=(PG_HOST, PG_PORT),
        LongPollFollower=LongPollFollower,
        SseFollower=SseFollower,
        all_event_ids=all_event_ids,
        check_followed=check_followed,
        kill_process_groups_of=kill_process_groups_of,
    )
