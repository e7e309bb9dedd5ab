"""Two ``shipmate server`` replicas on one PostgreSQL; one is SIGKILLed in the middle of a burst of
writes through both. Every write either replica acknowledged (2xx) is there afterwards, and
followers of the event log attached to the surviving replica (long poll and SSE) see every
event id exactly once, in order."""

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

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(240)]

V1 = "/api/v1"
WRITERS_PER_REPLICA = 3
BURST_SECONDS = float(os.environ.get("SHIPMATE_FAULTS_BURST_SECONDS", "8"))
"""How long the writers run; the first replica is killed a third of the way in."""


class Writer(threading.Thread):
    """Creates deployments through one replica as fast as it answers, remembering what was acknowledged."""

    def __init__(self, url: str, token: str, env_id: str, package_id: str, tag: str, until: float) -> None:
        super().__init__(name=f"writer-{tag}", daemon=True)
        self.url, self.token, self.env_id, self.package_id, self.tag = url, token, env_id, package_id, tag
        self.until = until
        self.acknowledged: dict[str, str] = {}
        """deployment name -> id, for every 2xx answer"""
        self.outcomes: Counter[str] = Counter()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=20) as client:
            n = 0
            while time.monotonic() < self.until:
                n += 1
                name = f"{self.tag}-{n}"
                try:
                    reply = client.post(
                        f"{V1}/deployments",
                        json={"environmentId": self.env_id, "modelPackageId": self.package_id, "name": name},
                    )
                except httpx.HTTPError as exc:
                    self.outcomes[type(exc).__name__] += 1
                    time.sleep(0.05)  # the replica is gone; a client would move on to another
                    continue
                self.outcomes[str(reply.status_code)] += 1
                if 200 <= reply.status_code < 300:
                    self.acknowledged[name] = reply.json()["id"]


def test_a_replica_killed_mid_burst_loses_no_acknowledged_write(
    processes: Any, pg_url: str, tmp_path: Path, faults: Any, followers: Any
) -> None:
    shared = tmp_path / "shared"
    one = faults.start_server(processes, "replica-1", shared, pg_url)
    two = faults.start_server(processes, "replica-2", shared, pg_url)
    with two.client() as admin:
        env = admin.post(f"{V1}/environments", json={"name": "burst", "platform": "filesystem"}).json()
        package = write_test_package(tmp_path / "m.mlpkg")
        uploaded = admin.post(
            f"{V1}/model-packages", params={"filename": "m.mlpkg"}, content=package.read_bytes()
        )
        assert uploaded.status_code == 201, uploaded.text

    long_poll = followers("long-poll", two.url, wait=5)
    sse = followers("sse", two.url)

    started = time.monotonic()
    until = started + BURST_SECONDS
    writers = [
        Writer(server.url, faults.admin_token, env["id"], uploaded.json()["id"], f"{label}{i}", until)
        for label, server in (("a", one), ("b", two))
        for i in range(WRITERS_PER_REPLICA)
    ]
    for writer in writers:
        writer.start()
    time.sleep(BURST_SECONDS / 3)
    one.started.kill()  # SIGKILL, mid-burst
    killed_at = time.monotonic() - started
    for writer in writers:
        writer.join(BURST_SECONDS + 60)
        assert not writer.is_alive()

    # every acknowledged write is there, read through the survivor
    acknowledged = {name: id_ for w in writers for name, id_ in w.acknowledged.items()}
    with two.client() as admin:
        page = admin.get(f"{V1}/deployments", params={"environmentId": env["id"], "limit": 1000}).json()
        assert page["total"] <= 1000, "more deployments than one page: raise the page size"
        stored = {d["name"]: d["id"] for d in page["items"]}
    lost = {name for name, id_ in acknowledged.items() if stored.get(name) != id_}
    assert not lost, f"{len(lost)} acknowledged write(s) lost: {sorted(lost)[:20]}"
    unacknowledged_but_stored = len(set(stored) - set(acknowledged))
    by_one = sum(len(w.acknowledged) for w in writers if w.tag.startswith("a"))
    assert by_one > 0 and len(acknowledged) > by_one, "both replicas must have acknowledged writes"

    # the followers on the survivor caught up with the whole log, each id once
    log = faults.all_event_ids(two.url)
    faults.wait_until(lambda: set(log) <= set(long_poll.ids) and set(log) <= set(sse.ids), 60, 0.2)
    long_poll.stop()
    sse.stop()
    followed_lp = faults.check_followed("the long-poll follower", long_poll.ids, log)
    followed_sse = faults.check_followed("the SSE follower", sse.ids, log)
    assert long_poll.statuses.keys() == {200} and not long_poll.errors, (long_poll.statuses, long_poll.errors)
    assert sse.connections == 1 and not sse.errors, (sse.connections, sse.errors)

    refused = Counter[str]()
    for w in writers:
        refused.update({k: v for k, v in w.outcomes.items() if not k.startswith("2")})
    faults.figures(
        "replica_kill",
        burst_s=BURST_SECONDS,
        killed_at_s=round(killed_at, 1),
        acknowledged=len(acknowledged),
        acknowledged_by_killed=by_one,
        lost=len(lost),
        unacknowledged_but_stored=unacknowledged_but_stored,
        failed_requests=dict(refused),
        events=len(log),
        long_poll_followed=followed_lp["followed"],
        sse_followed=followed_sse["followed"],
        missed=followed_lp["missed"] + followed_sse["missed"],
        twice=followed_lp["twice"] + followed_sse["twice"],
    )
