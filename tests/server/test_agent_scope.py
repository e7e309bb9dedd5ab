"""What an agent may read or write is decided by what the service recorded for its environment,
never by what the agent claims (docs/security.md)."""

from __future__ import annotations

from typing import Any

import httpx
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

V1 = "/api/v1"


def _agent(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _second_world(api: httpx.Client, make_package: Any, upload_package: Any) -> dict[str, Any]:
    env = api.post(f"{V1}/environments", json={"name": "other", "platform": "filesystem"}).json()
    package = upload_package(api, make_package(name="secret-model"))
    dep = api.post(
        f"{V1}/deployments",
        json={"environmentId": env["id"], "modelPackageId": package["id"], "name": "theirs"},
    ).json()
    return {"env": env, "package": package, "deployment": dep}


def test_an_agent_cannot_claim_a_foreign_package_to_download_it(
    api: httpx.Client, world: dict[str, Any], make_package: Any, upload_package: Any
) -> None:
    foreign = _second_world(api, make_package, upload_package)
    agent = _agent(world["agent_token"])
    url = f"{V1}/model-packages/{foreign['package']['id']}/download"
    assert api.get(url, headers=agent).status_code == 403
    claim = {
        "deploymentId": world["deployment"]["id"],
        "generation": 1,
        "action": "deployment_status",
        "phase": "observed",
        "status": "passing",
        "state": "ready",
        "data": {"currentModelId": foreign["package"]["id"]},
    }
    response = api.post(
        f"{V1}/environments/{world['env']['id']}/reports", json={"reports": [claim]}, headers=agent
    )
    assert response.status_code == 200, response.text
    assert api.get(url, headers=agent).status_code == 403
    assert api.get(f"{V1}/model-packages/{foreign['package']['id']}", headers=agent).status_code == 403
    deployment = api.get(f"{V1}/deployments/{world['deployment']['id']}").json()
    assert deployment["observed"].get("modelPackageId") != foreign["package"]["id"]


def test_a_model_the_service_once_assigned_is_still_recognised(
    api: httpx.Client, world: dict[str, Any], make_package: Any, upload_package: Any
) -> None:
    """After a replacement the agent may still run (and report) the model it was asked for before."""
    dep_id = world["deployment"]["id"]
    newer = upload_package(api, make_package())
    api.post(f"{V1}/deployments/{dep_id}/replace-model", json={"modelPackageId": newer["id"]})
    agent = _agent(world["agent_token"])
    claim = {
        "deploymentId": dep_id,
        "generation": 2,
        "action": "deployment_status",
        "phase": "observed",
        "status": "passing",
        "state": "ready",
        "data": {"currentModelId": world["package"]["id"]},
    }
    response = api.post(
        f"{V1}/environments/{world['env']['id']}/reports", json={"reports": [claim]}, headers=agent
    )
    assert response.status_code == 200, response.text
    deployment = api.get(f"{V1}/deployments/{dep_id}").json()
    assert deployment["observed"]["modelPackageId"] == world["package"]["id"]
    download = api.get(f"{V1}/model-packages/{world['package']['id']}/download", headers=agent)
    assert download.status_code == 200


def test_an_agent_cannot_write_events_about_another_environments_deployment(
    api: httpx.Client, world: dict[str, Any], make_package: Any, upload_package: Any
) -> None:
    foreign = _second_world(api, make_package, upload_package)
    agent = _agent(world["agent_token"])
    response = api.post(
        f"{V1}/environments/{world['env']['id']}/events",
        json={
            "type": "deployment.health_changed",
            "deploymentId": foreign["deployment"]["id"],
            "message": "forged",
        },
        headers=agent,
    )
    assert response.status_code == 404, response.text
    history = api.get(f"{V1}/events", params={"deploymentId": foreign["deployment"]["id"]}).json()
    assert all(event["message"] != "forged" for event in history["events"])


# ---- property: whatever an agent sends, nothing outside its environment is reached ---------

_OPS = ("download", "package", "report", "event", "events", "deployment", "desired", "health", "replace")


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(_OPS), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)),
        min_size=1,
        max_size=6,
    )
)
def test_no_agent_request_reaches_outside_its_environment(
    api: httpx.Client, world: dict[str, Any], make_package: Any, upload_package: Any, steps: list[Any]
) -> None:
    """Ids are drawn from the agent's own environment, a foreign one, and forged ones."""
    foreign = world.setdefault("foreign", None) or _second_world(api, make_package, upload_package)
    world["foreign"] = foreign
    agent = _agent(world["agent_token"])
    own_env, other_env = world["env"]["id"], foreign["env"]["id"]
    envs = (own_env, other_env, "e-forged")
    deps = (world["deployment"]["id"], foreign["deployment"]["id"], "d-forged")
    pkgs = (world["package"]["id"], foreign["package"]["id"], "m-forged")
    before = api.get(f"{V1}/deployments/{foreign['deployment']['id']}").json()
    for op, e, d, p in steps:
        env, dep, pkg = envs[e], deps[d], pkgs[p]
        if op == "download":
            response = api.get(f"{V1}/model-packages/{pkg}/download", headers=agent)
        elif op == "package":
            response = api.get(f"{V1}/model-packages/{pkg}", headers=agent)
        elif op == "report":
            report = {
                "deploymentId": dep,
                "generation": 1,
                "action": "deployment_status",
                "phase": "observed",
                "status": "passing",
                "state": "ready",
                "data": {"currentModelId": pkg, "predictionUrl": "http://127.0.0.1:1/forged"},
            }
            response = api.post(f"{V1}/environments/{env}/reports", json={"reports": [report]}, headers=agent)
        elif op == "event":
            body = {"type": "deployment.health_changed", "deploymentId": dep, "message": "forged"}
            response = api.post(f"{V1}/environments/{env}/events", json=body, headers=agent)
        elif op == "events":
            response = api.get(f"{V1}/events", params={"environmentId": env}, headers=agent)
        elif op == "deployment":
            response = api.get(f"{V1}/deployments/{dep}", headers=agent)
        elif op == "desired":
            response = api.get(f"{V1}/environments/{env}/desired-state", headers=agent)
        elif op == "health":
            response = api.post(f"{V1}/environments/{env}/health", json={"status": "failing"}, headers=agent)
        else:
            response = api.post(
                f"{V1}/deployments/{dep}/replace-model", json={"modelPackageId": pkg}, headers=agent
            )
        assert response.status_code < 500, response.text
        uses_env = op in ("report", "event", "events", "desired", "health")
        touches_foreign = (uses_env and env == other_env) or (
            op in ("deployment", "replace", "event") and dep == deps[1]
        )
        touches_foreign = touches_foreign or (op in ("download", "package") and pkg == pkgs[1])
        if touches_foreign or op == "replace":
            assert response.status_code in (403, 404), (op, env, dep, pkg, response.text)
    # what the service holds about the foreign environment is untouched by the agent
    after = api.get(f"{V1}/deployments/{foreign['deployment']['id']}").json()
    assert after == before
    foreign_events = api.get(f"{V1}/events", params={"environmentId": other_env, "limit": 1000}).json()
    assert not [e for e in foreign_events["events"] if e["actor"].startswith("agent:")]
    by_deployment = api.get(
        f"{V1}/events", params={"deploymentId": foreign["deployment"]["id"], "limit": 1000}
    ).json()
    assert not [e for e in by_deployment["events"] if e["actor"].startswith("agent:")]
    assert api.get(f"{V1}/model-packages/{pkgs[1]}/download", headers=agent).status_code == 403
    foreign_env = api.get(f"{V1}/environments/{other_env}").json()
    assert foreign_env["health"]["status"] != "failing"
