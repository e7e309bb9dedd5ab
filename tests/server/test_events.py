"""The event log: filters, ordering under concurrent writers, Server-Sent Events with resume."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import httpx

V1 = "/api/v1"


def test_filters_by_type_deployment_and_time(api: httpx.Client, world: dict[str, Any]):
    dep_id = world["deployment"]["id"]
    before = dt.datetime.now(dt.UTC)
    api.post(f"{V1}/deployments/{dep_id}/deactivate")
    by_time = api.get(f"{V1}/events", params={"since": before.isoformat()}).json()["events"]
    assert [e["type"] for e in by_time] == ["deployment.desired_changed"]
    until = api.get(f"{V1}/events", params={"until": before.isoformat(), "limit": 1000}).json()["events"]
    assert by_time[0]["id"] not in {e["id"] for e in until}
    several = api.get(
        f"{V1}/events", params=[("type", "deployment.created"), ("type", "token.created")]
    ).json()
    assert {e["type"] for e in several["events"]} == {"deployment.created", "token.created"}
    assert api.get(f"{V1}/events", params={"after": -1}).status_code == 422
    assert api.get(f"{V1}/events", params={"since": "yesterday"}).status_code == 422


def test_concurrent_writers_never_let_a_reader_skip_an_id(api: httpx.Client, world: dict[str, Any]):
    """Followers read while several threads write; each follower must see every event exactly once."""
    env_id = world["env"]["id"]
    start = api.get(f"{V1}/environments/{env_id}/desired-state").json()["cursor"]
    package_id = world["package"]["id"]
    writers, per_writer = 4, 15
    done = threading.Event()
    followed: list[int] = []

    def write(n: int) -> None:
        with httpx.Client(base_url=api.base_url, headers=api.headers, timeout=60) as client:
            for i in range(per_writer):
                response = client.post(
                    f"{V1}/deployments",
                    json={"environmentId": env_id, "modelPackageId": package_id, "name": f"w{n}-{i}"},
                )
                assert response.status_code == 201

    def follow() -> None:
        cursor = start
        with httpx.Client(base_url=api.base_url, headers=api.headers, timeout=60) as client:
            while True:
                page = client.get(f"{V1}/events", params={"after": cursor, "wait": 0.2, "limit": 7}).json()
                followed.extend(e["id"] for e in page["events"])
                cursor = page["cursor"]
                if done.is_set() and not page["events"]:
                    return

    follower = threading.Thread(target=follow)
    follower.start()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    done.set()
    follower.join(timeout=60)
    everything = [
        e["id"] for e in api.get(f"{V1}/events", params={"after": start, "limit": 10_000}).json()["events"]
    ]
    assert len(everything) == writers * per_writer * 2  # created + desired_changed each
    assert followed == everything  # in order, none skipped, none twice


def test_server_sent_events_resume_from_last_event_id(api: httpx.Client, world: dict[str, Any]):
    dep_id = world["deployment"]["id"]
    cursor = api.get(f"{V1}/environments/{world['env']['id']}/desired-state").json()["cursor"]
    for action in ("deactivate", "activate", "relaunch"):
        api.post(f"{V1}/deployments/{dep_id}/{action}")

    def read(count: int, **headers: str) -> list[tuple[str, str]]:
        got: list[tuple[str, str]] = []
        params = {"environmentId": world["env"]["id"], "after": cursor}
        with api.stream("GET", f"{V1}/events/stream", params=params, headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                if line.startswith(("id:", "event:")):
                    key, _, value = line.partition(": ")
                    fields[key.rstrip(":")] = value
                elif line == "" and "id" in fields:
                    got.append((fields["id"], fields["event"]))
                    fields = {}
                    if len(got) == count:
                        return got
        return got

    first = read(3)
    assert [kind for _, kind in first] == ["deployment.desired_changed"] * 3
    resumed = read(2, **{"Last-Event-ID": first[0][0]})
    assert [event_id for event_id, _ in resumed] == [first[1][0], first[2][0]]
