"""The alert webhook's durable outbox, on SQLite and PostgreSQL, against a real HTTP receiver on
127.0.0.1: a receiver that was down gets each change once it is up, in order per deployment; a
restarted service delivers what its predecessor could not; two deliverers on two engines post each
change once; what outlives the retention is dropped, logged once and counted; the upgrade from 0005.
Also: two evaluators that read their signals before either writes open one alert, not two."""

from __future__ import annotations

import datetime as dt
import http.server
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from alembic import command
from alembic.config import Config
from pydantic import SecretStr
from sqlalchemy import inspect, select
from tests.server.test_monitoring import post, record

from shipmate.common.backoff import Backoff
from shipmate.server.db import MIGRATIONS_DIR, Database
from shipmate.server.models import AlertDelivery
from shipmate.server.services import alerts
from shipmate.server.settings import ServerSettings
from shipmate.server.testing import TEST_ADMIN_TOKEN, live_server

SECRET = "whsec-0123456789abcdef-very-secret"
QUICK = Backoff(initial=0.05, maximum=0.2)


class Receiver:
    """A webhook receiver on a fixed loopback port that can be down (nothing listening) or up."""

    def __init__(self, *, delay: float = 0.0) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.delay = delay
        self.answers: list[int] = []
        self.received: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(owner.delay)
                with owner._lock:
                    status = owner.answers.pop(0) if owner.answers else 200
                    if status < 300:
                        owner.received.append((dict(self.headers.items()), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ids(self) -> list[int]:
        with self._lock:
            return [int(headers["X-Shipmate-Delivery"]) for headers, _ in self.received]

    def alerts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [a for _, body in self.received for a in orjson.loads(body)["alerts"]]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.down()


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None, receiver: Receiver) -> ServerSettings:
    return ServerSettings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        admin_token=SecretStr(TEST_ADMIN_TOKEN),
        max_upload_bytes=1024 * 1024,
        alert_interval_seconds=0,
        alert_webhook_url=receiver.url,
        alert_webhook_secret=SecretStr(SECRET),
        alert_webhook_backoff_seconds=0.05,
        alert_webhook_backoff_max_seconds=0.2,
        alert_webhook_poll_seconds=0.1,
    )


@pytest.fixture
def db(settings: ServerSettings, server: Any) -> Iterator[Database]:
    database = Database(settings.resolved_database_url())
    yield database
    database.dispose()


def until(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def evaluate(db: Database, minute: int) -> list[alerts.Change]:
    """One pass as the server runs it: signals read first, the changes in a short write."""
    now = dt.datetime.fromtimestamp(minute * 60 + 5, dt.UTC)
    with db.read() as session:
        judged = alerts.gather(session, now=now)
    with db.write() as session:
        return alerts.apply(session, judged, now=now, outbox=True)


def outbox(api: httpx.Client) -> dict[str, Any]:
    found: dict[str, Any] = api.get("/api/v1/health").json()["alertWebhook"]
    return found


def test_a_receiver_down_then_up_gets_each_change_once_in_order(
    api: httpx.Client,
    world: dict[str, Any],
    db: Database,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dep = world["deployment"]["id"]
    base = (int(time.time() // 60) // 5 - 12) * 5
    for i, bad in enumerate([2, 2, 0, 0]):  # server errors of 3 requests in each 5-minute window
        post(api, record(dep, minute=base + 5 * i, server_errors=bad, latencies=[10.0, 20.0, 30.0]))
    with caplog.at_level(logging.WARNING):
        opened = [c for i in range(2) for c in evaluate(db, base + 5 * (i + 1))]
        assert [c.state for c in opened] == ["open"]
        # nothing listens: the change waits in the outbox, retried, and /health says so
        seen = until(lambda: (o := outbox(api))["failing"] and o)
        assert seen["pending"] == 1 and seen["dropped"] == 0
        cleared = [c for i in range(2, 4) for c in evaluate(db, base + 5 * (i + 1))]
        assert [c.state for c in cleared] == ["cleared"]
        receiver.up()
        until(lambda: len(receiver.received) >= 2)
        until(lambda: outbox(api)["pending"] == 0)
    time.sleep(0.3)  # a second post would come within a few polls
    assert [a["state"] for a in receiver.alerts()] == ["open", "cleared"]
    assert receiver.alerts() == [c.to_json() for c in opened + cleared]  # the payload, unchanged
    ids = receiver.ids()
    assert len(set(ids)) == 2 and ids == sorted(ids)
    headers, body = receiver.received[0]
    assert headers["Authorization"] == f"Bearer {SECRET}" and body.startswith(b'{"alerts":[{')
    assert "attempt 1 failed" in caplog.text
    assert SECRET not in caplog.text and SECRET[:12] + "*******" in caplog.text


def test_a_restarted_service_delivers_what_was_pending(settings: ServerSettings, receiver: Receiver) -> None:
    now = dt.datetime.now(dt.UTC)
    changes = [alerts.Change(i, "d-1", "error_rate", "error_rate", s, "m", 0.5, now)
               for i, s in ((1, "open"), (1, "cleared"), (2, "open"))]  # fmt: skip
    with live_server(settings) as first, httpx.Client(base_url=first.base_url, timeout=30) as api:
        db = Database(settings.resolved_database_url())
        with db.write() as session:  # what the first process's evaluation left in its outbox
            for change in changes:
                alerts.enqueue(session, change)
        db.dispose()
        until(lambda: outbox(api)["failing"])  # it tried; nothing listened
    receiver.up()
    with live_server(settings) as again, httpx.Client(base_url=again.base_url, timeout=30) as api:
        until(lambda: len(receiver.received) >= 3)
        until(lambda: outbox(api)["pending"] == 0)
        time.sleep(0.3)
    assert receiver.alerts() == [c.to_json() for c in changes]  # each once, in order


def test_two_deliverers_on_two_engines_post_each_change_once_in_order(
    tmp_path: Path, database_url: str | None, receiver: Receiver
) -> None:
    url = database_url or f"sqlite:///{tmp_path / 'two.db'}"
    setup = Database(url)
    setup.migrate()
    now = dt.datetime.now(dt.UTC)
    with setup.write() as session:
        for i in range(40):
            change = alerts.Change(i, f"d-{i % 4}", "error_rate", "error_rate", "open", "m", 0.5, now)
            alerts.enqueue(session, change)
    setup.dispose()
    receiver.delay = 0.01  # posts overlap
    receiver.answers = [503] * 3  # and a few fail, to be retried
    receiver.up()
    engines = [Database(url) for _ in range(2)]
    deliverers = [alerts.Deliverer(d, alerts.Webhook(receiver.url), backoff=QUICK) for d in engines]
    errors: list[BaseException] = []

    def run(deliverer: alerts.Deliverer) -> None:
        try:
            deadline = time.monotonic() + 30
            while len(receiver.received) < 40 and time.monotonic() < deadline:
                deliverer.run_once()
                time.sleep(0.01)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(d,)) for d in deliverers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for deliverer in deliverers:
        deliverer.stop()
    assert errors == []
    ids = receiver.ids()
    assert sorted(ids) == list(range(1, 41))  # each exactly once
    for deployment in range(4):  # and each deployment's in order
        mine = [a["id"] for a in receiver.alerts() if a["deploymentId"] == f"d-{deployment}"]
        assert mine == sorted(mine) and len(mine) == 10
    with engines[0].read() as session:
        assert alerts.outbox_counts(session).pending == 0
    for engine in engines:
        engine.dispose()


def test_what_outlives_the_retention_is_dropped_logged_once_and_counted(
    tmp_path: Path, database_url: str | None, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database(database_url or f"sqlite:///{tmp_path / 'r.db'}")
    db.migrate()
    then = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with db.write() as session:
        for i in range(3):
            alerts.enqueue(session, alerts.Change(i, "d-1", "drift", "drift", "open", "m", 1.0, then))
    deliverer = alerts.Deliverer(
        db, alerts.Webhook(receiver.url), retention=dt.timedelta(days=1), backoff=QUICK
    )
    with caplog.at_level(logging.WARNING):
        assert deliverer.sweep(now=then + dt.timedelta(hours=23)) == 0
        assert deliverer.sweep(now=then + dt.timedelta(days=1, minutes=1)) == 3
        assert deliverer.sweep(now=then + dt.timedelta(days=1, minutes=2)) == 0
    assert caplog.text.count("dropped 3 alert changes never delivered") == 1
    with db.read() as session:
        counts = alerts.outbox_counts(session, now=then + dt.timedelta(days=1, minutes=2))
    assert (counts.pending, counts.dropped, counts.oldest_pending_seconds) == (0, 3, None)
    receiver.up()
    assert deliverer.run_once() == 0 and receiver.received == []  # a dropped change is never sent
    deliverer.sweep(now=then + dt.timedelta(days=2, minutes=2))  # and forgotten a retention later
    with db.read() as session:
        assert session.scalars(select(AlertDelivery)).all() == []
    deliverer.stop()
    db.dispose()


def test_upgrade_from_0005_adds_the_outbox_and_downgrades(tmp_path: Path, database_url: str | None) -> None:
    db = Database(database_url or f"sqlite:///{tmp_path / 'm.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")  # the PostgreSQL copy comes migrated to the newest
        command.upgrade(config, "0005")
    assert "alert_deliveries" not in inspect(db.engine).get_table_names()
    db.migrate()
    now = dt.datetime.now(dt.UTC)
    with db.write() as session:
        row = alerts.enqueue(session, alerts.Change(1, "d-1", "drift", "drift", "open", "m", 1.0, now))
    with db.read() as session:
        assert alerts.outbox_counts(session).pending == 1 and row.id == 1
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    assert "alert_deliveries" not in inspect(db.engine).get_table_names()
    db.dispose()


def test_two_evaluators_reading_before_either_writes_open_one_alert(
    api: httpx.Client, world: dict[str, Any], db: Database
) -> None:
    dep = world["deployment"]["id"]
    base = (int(time.time() // 60) // 5 - 12) * 5
    for i in range(2):
        post(api, record(dep, minute=base + 5 * i, server_errors=3, latencies=[10.0, 20.0, 30.0]))
    assert evaluate(db, base + 5) == []
    now = dt.datetime.fromtimestamp((base + 10) * 60 + 5, dt.UTC)
    with db.read() as first, db.read() as second:
        judged = [alerts.gather(first, now=now), alerts.gather(second, now=now)]
    changes = []
    for each in judged:
        with db.write() as session:
            changes += alerts.apply(session, each, now=now, outbox=True)
    assert [c.state for c in changes] == ["open"]
    with db.read() as session:
        assert alerts.outbox_counts(session).pending == 1
    # a rule edited between the read and the write: its stale signal is not judged
    with db.read() as session:
        stale = alerts.gather(session, now=now + dt.timedelta(minutes=5))
    assert (
        api.put(f"/api/v1/deployments/{dep}/alert-rules/error_rate", json={"threshold": 0.9}).status_code
        == 200
    )
    with db.write() as session:
        assert alerts.apply(session, stale, now=now + dt.timedelta(minutes=5)) == []
    rules = api.get(f"/api/v1/deployments/{dep}/alert-rules").json()
    assert rules[0]["name"] == "error_rate" and rules[0]["badStreak"] == 0  # 1 had it been judged
