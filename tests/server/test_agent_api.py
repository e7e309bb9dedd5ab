"""The agent's side of the API: desired state, the change feed, reports and health (docs/agent-api.md)."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

V1 = "/api/v1"


def as_agent(world: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {world['agent_token']}"}


def report(api: httpx.Client, world: dict[str, Any], *reports: dict[str, Any]) -> Any:
    response = api.post(
        f"{V1}/environments/{world['env']['id']}/reports",
        json={"reports": list(reports)},
        headers=as_agent(world),
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_desired_state_lists_the_environments_deployments_with_a_cursor(
    api: httpx.Client, world: dict[str, Any]
):
    env_id = world["env"]["id"]
    body = api.get(f"{V1}/environments/{env_id}/desired-state", headers=as_agent(world)).json()
    assert [d["id"] for d in body["deployments"]] == [world["deployment"]["id"]]
    spec = body["deployments"][0]
    assert spec["generation"] == 1
    assert spec["desired"] == {
        "state": "running",
        "modelPackageId": world["package"]["id"],
        "relaunchGeneration": 0,
        "force": False,
    }
    assert spec["modelPackage"]["sha256"] == world["package"]["sha256"]
    latest = api.get(f"{V1}/events", params={"limit": 1000}).json()["events"][-1]["id"]
    assert body["cursor"] == latest


def test_every_desired_change_bumps_the_generation_and_appends_the_spec(
    api: httpx.Client, world: dict[str, Any], make_package: Any, upload_package: Any
):
    dep_id = world["deployment"]["id"]
    cursor = api.get(f"{V1}/environments/{world['env']['id']}/desired-state").json()["cursor"]
    other = upload_package(api, make_package())
    assert (
        api.post(f"{V1}/deployments/{dep_id}/replace-model", json={"modelPackageId": other["id"]}).json()[
            "generation"
        ]
        == 2
    )
    assert api.post(f"{V1}/deployments/{dep_id}/relaunch").json()["desired"]["relaunchGeneration"] == 3
    assert api.post(f"{V1}/deployments/{dep_id}/deactivate").json()["desired"]["state"] == "stopped"
    assert api.post(f"{V1}/deployments/{dep_id}/deactivate").json()["generation"] == 4  # no change, no bump
    assert api.post(f"{V1}/deployments/{dep_id}/activate").json()["generation"] == 5
    page = api.get(
        f"{V1}/events",
        params={"environmentId": world["env"]["id"], "after": cursor, "type": "deployment.desired_changed"},
        headers=as_agent(world),
    ).json()
    assert [e["generation"] for e in page["events"]] == [2, 3, 4, 5]
    assert [e["data"]["generation"] for e in page["events"]] == [2, 3, 4, 5]
    assert page["events"][0]["data"]["desired"]["modelPackageId"] == other["id"]
    assert page["events"][0]["data"]["modelPackage"]["id"] == other["id"]
    assert page["cursor"] == page["events"][-1]["id"]


def test_reports_update_observed_state_and_old_generations_never_overwrite(
    api: httpx.Client, world: dict[str, Any]
):
    dep_id = world["deployment"]["id"]
    api.post(f"{V1}/deployments/{dep_id}/relaunch")  # generation 2
    result = report(
        api,
        world,
        {
            "deploymentId": dep_id,
            "generation": 2,
            "action": "deployment_relaunch",
            "phase": "started",
            "status": "unknown",
            "state": "launching",
        },
        {
            "deploymentId": dep_id,
            "generation": 2,
            "action": "deployment_relaunch",
            "phase": "finished",
            "status": "passing",
            "state": "ready",
            "duration": 0.25,
            "data": {"predictionUrl": "http://127.0.0.1:8080/d/predict"},
        },
        {
            "deploymentId": dep_id,
            "generation": 1,
            "action": "deployment_start",
            "phase": "finished",
            "status": "failing",
            "state": "errored",
            "message": "late news",
        },
    )
    assert result == {"accepted": 3, "stale": [dep_id], "removed": [], "unknown": []}
    observed = api.get(f"{V1}/deployments/{dep_id}").json()["observed"]
    assert observed["state"] == "ready"
    assert observed["status"] == "passing"
    assert observed["generation"] == 2
    assert observed["predictionUrl"] == "http://127.0.0.1:8080/d/predict"
    assert observed["modelPackageId"] == world["package"]["id"]
    assert observed["duration"] == 0.25
    kinds = [
        (e["type"], e["generation"], e["status"])
        for e in api.get(f"{V1}/events", params={"deploymentId": dep_id, "limit": 100}).json()["events"]
        if e["type"].startswith("action.")
    ]
    assert kinds == [
        ("action.started", 2, "unknown"),
        ("action.finished", 2, "passing"),
        ("action.finished", 1, "failing"),
    ]


def test_a_report_for_a_future_generation_is_rejected_whole(api: httpx.Client, world: dict[str, Any]):
    dep_id = world["deployment"]["id"]
    response = api.post(
        f"{V1}/environments/{world['env']['id']}/reports",
        json={
            "reports": [
                {
                    "deploymentId": dep_id,
                    "generation": 1,
                    "action": "deployment_start",
                    "phase": "finished",
                    "status": "passing",
                    "state": "ready",
                },
                {
                    "deploymentId": dep_id,
                    "generation": 9,
                    "action": "deployment_start",
                    "phase": "finished",
                    "status": "passing",
                    "state": "ready",
                },
            ]
        },
        headers=as_agent(world),
    )
    assert response.status_code == 422
    assert response.json()["field"] == "reports[1].generation"
    assert api.get(f"{V1}/deployments/{dep_id}").json()["observed"]["generation"] == 0  # nothing half-written


def test_delete_waits_for_the_agent_then_removes_the_record(api: httpx.Client, world: dict[str, Any]):
    dep_id = world["deployment"]["id"]
    deleted = api.delete(f"{V1}/deployments/{dep_id}")
    assert deleted.status_code == 202
    assert deleted.json()["desired"]["state"] == "deleted"
    assert api.get(f"{V1}/deployments").json()["total"] == 0
    pending = api.get(f"{V1}/environments/{world['env']['id']}/desired-state", headers=as_agent(world)).json()
    assert [(d["id"], d["desired"]["state"]) for d in pending["deployments"]] == [(dep_id, "deleted")]
    assert api.post(f"{V1}/deployments/{dep_id}/activate").status_code == 409
    # a failed stop keeps the record
    result = report(
        api,
        world,
        {
            "deploymentId": dep_id,
            "generation": 2,
            "action": "deployment_stop",
            "phase": "finished",
            "status": "failing",
            "state": "errored",
        },
    )
    assert result["removed"] == []
    result = report(
        api,
        world,
        {
            "deploymentId": dep_id,
            "generation": 2,
            "action": "deployment_stop",
            "phase": "finished",
            "status": "passing",
            "state": "stopped",
        },
    )
    assert result["removed"] == [dep_id]
    assert api.get(f"{V1}/deployments/{dep_id}").status_code == 404
    assert api.get(f"{V1}/environments/{world['env']['id']}/desired-state").json()["deployments"] == []
    types = [e["type"] for e in api.get(f"{V1}/events", params={"deploymentId": dep_id}).json()["events"]]
    assert types[-1] == "deployment.removed"


def test_force_delete_is_gone_at_once_and_the_agents_attempt_is_recorded(
    api: httpx.Client, world: dict[str, Any]
):
    dep_id = world["deployment"]["id"]
    assert api.delete(f"{V1}/deployments/{dep_id}", params={"force": "true"}).status_code == 202
    assert api.get(f"{V1}/deployments/{dep_id}").status_code == 404
    assert api.post(f"{V1}/deployments/{dep_id}/relaunch").status_code == 404
    pending = api.get(f"{V1}/environments/{world['env']['id']}/desired-state", headers=as_agent(world)).json()
    assert pending["deployments"][0]["desired"]["force"] is True
    result = report(
        api,
        world,
        {
            "deploymentId": dep_id,
            "generation": 2,
            "action": "deployment_stop",
            "phase": "finished",
            "status": "failing",
            "message": "environment unreachable",
        },
    )
    assert result["removed"] == [dep_id]
    events = api.get(f"{V1}/events", params={"deploymentId": dep_id}).json()["events"]
    finished = [e for e in events if e["type"] == "action.finished"]
    assert finished[0]["status"] == "failing" and finished[0]["message"] == "environment unreachable"


def test_reports_for_unknown_deployments_are_logged_not_applied(api: httpx.Client, world: dict[str, Any]):
    result = report(
        api,
        world,
        {
            "deploymentId": "d-nothere",
            "generation": 1,
            "action": "deployment_status",
            "phase": "observed",
            "status": "passing",
            "state": "ready",
        },
    )
    assert result == {"accepted": 0, "stale": [], "removed": [], "unknown": ["d-nothere"]}
    events = api.get(f"{V1}/events", params={"deploymentId": "d-nothere"}).json()["events"]
    assert events[0]["data"]["unknownDeployment"] is True


def test_health_is_stored_and_only_changes_append_events(api: httpx.Client, world: dict[str, Any]):
    env_id = world["env"]["id"]
    for status in ("passing", "passing", "failing"):
        response = api.post(
            f"{V1}/environments/{env_id}/health",
            json={"status": status, "message": status, "agentVersion": "0.1"},
            headers=as_agent(world),
        )
        assert response.status_code == 200, response.text
    env = api.get(f"{V1}/environments/{env_id}").json()
    assert env["health"]["status"] == "failing"
    assert env["lastSeenAt"] is not None and env["agentVersion"] == "0.1"
    changes = api.get(f"{V1}/events", params={"type": "environment.health_changed"}).json()["events"]
    assert [e["status"] for e in changes] == ["passing", "failing"]


def test_an_agent_token_reaches_only_its_environment(api: httpx.Client, world: dict[str, Any]):
    other = api.post(f"{V1}/environments", json={"name": "prod", "platform": "docker"}).json()
    agent = as_agent(world)
    assert api.get(f"{V1}/environments/{other['id']}/desired-state", headers=agent).status_code == 403
    assert (
        api.post(
            f"{V1}/environments/{other['id']}/health", json={"status": "passing"}, headers=agent
        ).status_code
        == 403
    )
    assert api.get(f"{V1}/events", params={"environmentId": other["id"]}, headers=agent).status_code == 403
    assert (
        api.post(f"{V1}/environments", json={"name": "x", "platform": "docker"}, headers=agent).status_code
        == 403
    )
    assert (
        api.post(f"{V1}/deployments/{world['deployment']['id']}/relaunch", headers=agent).status_code == 403
    )
    assert [e["id"] for e in api.get(f"{V1}/environments", headers=agent).json()["items"]] == [
        world["env"]["id"]
    ]
    # events without a filter are narrowed to the agent's environment
    events = api.get(f"{V1}/events", params={"limit": 1000}, headers=agent).json()["events"]
    assert events and {e["environmentId"] for e in events} == {world["env"]["id"]}
    download = api.get(f"{V1}/model-packages/{world['package']['id']}/download", headers=agent)
    assert download.status_code == 200
    assert download.headers["X-Shipmate-Sha256"] == world["package"]["sha256"]


def test_long_poll_returns_as_soon_as_a_change_lands(api: httpx.Client, world: dict[str, Any]):
    env_id = world["env"]["id"]
    cursor = api.get(f"{V1}/environments/{env_id}/desired-state").json()["cursor"]
    result: dict[str, Any] = {}

    def follow() -> None:
        started = time.monotonic()
        result["page"] = api.get(
            f"{V1}/events",
            params={"environmentId": env_id, "after": cursor, "wait": 20},
            headers=as_agent(world),
        ).json()
        result["waited"] = time.monotonic() - started

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(0.3)
    assert follower.is_alive()  # nothing yet: still waiting
    api.post(f"{V1}/deployments/{world['deployment']['id']}/deactivate")
    follower.join(timeout=20)
    assert not follower.is_alive()
    assert [e["type"] for e in result["page"]["events"]] == ["deployment.desired_changed"]
    assert result["waited"] < 20  # woke on the change, not on the timeout


def test_long_poll_times_out_with_the_same_cursor(api: httpx.Client, world: dict[str, Any]):
    cursor = api.get(f"{V1}/environments/{world['env']['id']}/desired-state").json()["cursor"]
    page = api.get(
        f"{V1}/events", params={"environmentId": world["env"]["id"], "after": cursor, "wait": 0.2}
    ).json()
    assert page == {"cursor": cursor, "events": []}


def test_a_started_report_without_status_keeps_the_last_status(api: httpx.Client, world: dict[str, Any]):
    dep_id = world["deployment"]["id"]
    report(
        api,
        world,
        {
            "deploymentId": dep_id,
            "generation": 1,
            "action": "deployment_start",
            "phase": "finished",
            "status": "passing",
            "state": "ready",
        },
    )
    api.post(f"{V1}/deployments/{dep_id}/relaunch")
    report(
        api,
        world,
        {
            "deploymentId": dep_id,
            "generation": 2,
            "action": "deployment_relaunch",
            "phase": "started",
            "status": None,
            "state": "launching",
        },
    )
    observed = api.get(f"{V1}/deployments/{dep_id}").json()["observed"]
    assert (observed["status"], observed["state"], observed["generation"]) == ("passing", "launching", 2)
    assert observed["phase"] == "started" and observed["action"] == "deployment_relaunch"


def test_periodic_observations_log_only_changes(api: httpx.Client, world: dict[str, Any]):
    dep_id = world["deployment"]["id"]
    observe = {"deploymentId": dep_id, "generation": 1, "action": "deployment_status", "phase": "observed"}
    for status, state in [
        ("passing", "ready"),
        ("passing", "ready"),
        ("passing", "ready"),
        ("failing", "errored"),
    ]:
        report(api, world, {**observe, "status": status, "state": state})
    changes = api.get(
        f"{V1}/events", params={"deploymentId": dep_id, "type": "deployment.health_changed"}
    ).json()
    assert [e["status"] for e in changes["events"]] == ["passing", "failing"]
