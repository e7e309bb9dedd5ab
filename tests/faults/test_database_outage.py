"""A 30 s PostgreSQL outage under a running service, with followers and a writer attached.

PostgreSQL here is shared, so it is not stopped: a TCP proxy (the fault injector, at the
system boundary) stands between ``shipmate server`` and the database and is cut — every
open connection reset, every new one refused — for the length of the outage. Meanwhile
the service must answer 503 with Retry-After (never a 500, never a hang past the client's
timeout); afterwards writes work again and the long-poll and SSE followers resume from
their cursors without missing or repeating an event.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipmate.server.testing import write_test_package

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(300)]

V1 = "/api/v1"
OUTAGE_SECONDS = float(os.environ.get("SHIPMATE_FAULTS_OUTAGE_SECONDS", "30"))
REQUEST_TIMEOUT = 20.0
"""A request not answered within this is a hang (the service's own waits are shorter)."""


class Probe(threading.Thread):
    """Writes (creates a deployment) and reads (health, a deployment list) every 0.2 s, recording
    each answer by phase: before, during and after the outage. A request sent in one phase and
    answered in the next is counted apart ("edge"): its outcome may honestly be either."""

    def __init__(self, url: str, token: str, env_id: str, package_id: str) -> None:
        super().__init__(name="probe", daemon=True)
        self.url, self.token, self.env_id, self.package_id = url, token, env_id, package_id
        self.phase = "before"
        phases = ("before", "during", "after", "edge")
        self.answers: dict[str, Counter[str]] = {p: Counter() for p in phases}
        self.acknowledged: dict[str, str] = {}
        self.problems: list[str] = []
        self.slowest = dict.fromkeys(phases, 0.0)
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(REQUEST_TIMEOUT * 3 + 10)

    def _record(self, what: str, call: Any) -> httpx.Response | None:
        phase = self.phase
        began = time.monotonic()
        try:
            reply: httpx.Response = call()
            phase = phase if phase == self.phase else "edge"
        except httpx.TimeoutException:
            self.answers[phase][f"{what} timeout"] += 1
            self.problems.append(f"{phase}: {what} hung past {REQUEST_TIMEOUT}s")
            return None
        except httpx.HTTPError as exc:
            self.answers[phase][f"{what} {type(exc).__name__}"] += 1
            self.problems.append(f"{phase}: {what} broke: {exc!r}")
            return None
        self.answers[phase][f"{what} {reply.status_code}"] += 1
        self.slowest[phase] = max(self.slowest[phase], time.monotonic() - began)
        if reply.status_code >= 500 and (reply.status_code != 503 or "Retry-After" not in reply.headers):
            self.problems.append(f"{phase}: {what} {reply.status_code} {reply.headers} {reply.text[:300]}")
        return reply

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=REQUEST_TIMEOUT) as client:
            n = 0
            while not self._stop_event.is_set():
                n += 1
                name = f"probe-{n}"
                body = {"environmentId": self.env_id, "modelPackageId": self.package_id, "name": name}
                reply = self._record("write", lambda b=body: client.post(f"{V1}/deployments", json=b))
                if reply is not None and reply.status_code == 201:
                    self.acknowledged[name] = reply.json()["id"]
                self._record("health", lambda: client.get(f"{V1}/health"))
                self._record("list", lambda: client.get(f"{V1}/deployments", params={"limit": 5}))
                self._stop_event.wait(0.2)


def test_followers_and_writes_through_a_database_outage(
    processes: Any,
    pg_database: str,
    pg_proxy: Any,
    tmp_path: Path,
    faults: Any,
    followers: Any,
    request: pytest.FixtureRequest,
) -> None:
    url = f"postgresql+psycopg://root@127.0.0.1:{pg_proxy.port}/{pg_database}"
    server = faults.start_server(processes, "server", tmp_path / "data", url)
    with server.client() as admin:
        env = admin.post(f"{V1}/environments", json={"name": "outage", "platform": "filesystem"}).json()
        package = write_test_package(tmp_path / "m.mlpkg")
        uploaded = admin.post(
            f"{V1}/model-packages", params={"filename": "m.mlpkg"}, content=package.read_bytes()
        )
        assert uploaded.status_code == 201, uploaded.text

    long_poll = followers("long-poll", server.url, wait=5)
    sse = followers("sse", server.url)
    probe = Probe(server.url, faults.admin_token, env["id"], uploaded.json()["id"])
    request.addfinalizer(probe.stop)
    probe.start()
    assert faults.wait_until(lambda: len(probe.acknowledged) >= 5, 30), probe.answers
    assert faults.wait_until(lambda: sse.connections == 1 and long_poll.ids, 30)

    pg_proxy.cut()
    probe.phase = "during"
    cut_at = time.monotonic()
    lp_before = Counter(long_poll.statuses)
    sse_before = Counter(sse.statuses)
    time.sleep(OUTAGE_SECONDS)
    pg_proxy.restore()
    probe.phase = "after"
    lp_during = long_poll.statuses - lp_before
    sse_during = sse.statuses - sse_before

    # writes work again
    written_after = len(probe.acknowledged)
    recovered = faults.wait_until(lambda: probe.answers["after"]["write 201"] >= 1, 60, 0.05)
    recovery_s = time.monotonic() - cut_at - OUTAGE_SECONDS
    assert recovered, f"writes did not recover: {probe.answers['after']}; {server.started.tail()}"
    assert faults.wait_until(lambda: probe.answers["after"]["write 201"] >= 5, 30), probe.answers["after"]
    assert len(probe.acknowledged) > written_after
    probe.stop()
    assert not probe.is_alive()

    # every acknowledged write is there
    with server.client() as admin:
        page = admin.get(f"{V1}/deployments", params={"environmentId": env["id"], "limit": 1000}).json()
    stored = {d["name"]: d["id"] for d in page["items"]}
    lost = {n for n, i in probe.acknowledged.items() if stored.get(n) != i}
    assert not lost, f"acknowledged writes lost: {sorted(lost)}"

    # the followers resumed from their cursors and caught up, each id once
    log = faults.all_event_ids(server.url)
    faults.wait_until(lambda: set(log) <= set(long_poll.ids) and set(log) <= set(sse.ids), 60, 0.2)
    long_poll.stop()
    sse.stop()
    followed_lp = faults.check_followed("the long-poll follower", long_poll.ids, log)
    followed_sse = faults.check_followed("the SSE follower", sse.ids, log)

    # during the outage: clean 503s with Retry-After, nothing else, no hang
    assert not probe.problems, probe.problems[:10]
    during = probe.answers["during"]
    assert during["write 503"] > 0 and during["health 503"] > 0 and during["list 503"] > 0, during
    assert set(during) <= {"write 503", "health 503", "list 503"}, during
    assert set(lp_during) <= {200, 503} and lp_during[503] > 0, lp_during
    assert set(sse_during) <= {200, 503}, sse_during
    for follower in (long_poll, sse):
        assert follower.retry_after_missing == 0
        assert 500 not in follower.statuses
        assert "ReadTimeout" not in follower.errors, follower.errors  # no hang past its timeout
    if OUTAGE_SECONDS >= 20:  # the stream reads the log at least every 15 s (its keep-alive)
        assert sse.connections >= 2, "the SSE stream should have broken and been resumed"
    # a stream the outage ends is closed on purpose, with one log line, not an unhandled exception
    service_log = server.started.log.read_text(errors="replace")
    assert "Traceback" not in service_log, service_log[-3000:]

    faults.figures(
        "database_outage",
        outage_s=OUTAGE_SECONDS,
        connections_reset=pg_proxy.cut_connections,
        connections_refused=pg_proxy.refused,
        answers_during=dict(during),
        answers_across_an_edge=dict(probe.answers["edge"]),
        long_poll_during=dict(lp_during),
        sse_reconnects_during=dict(sse_during),
        sse_stream_breaks=dict(sse.errors),
        server_errors=0,
        hangs=0,
        slowest_answer_during_s=round(probe.slowest["during"], 2),
        first_write_after_s=round(recovery_s, 1),
        acknowledged=len(probe.acknowledged),
        lost=len(lost),
        events=len(log),
        long_poll_followed=followed_lp["followed"],
        sse_followed=followed_sse["followed"],
        sse_connections=sse.connections,
        missed=followed_lp["missed"] + followed_sse["missed"],
        twice=followed_lp["twice"] + followed_sse["twice"],
    )
