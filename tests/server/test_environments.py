"""An environment's overall health is computed from the same records its deployments show:
never "passing" beside a failing deployment, never "failing" when every deployment passes."""

from __future__ import annotations

from typing import Any

import httpx

V1 = "/api/v1"


def _report(api: httpx.Client, world: dict[str, Any], deployment_id: str, status: str, state: str) -> None:
    report = {
        "deploymentId": deployment_id,
        "generation": 1,
        "action": "deployment_start",
        "phase": "finished",
        "status": status,
        "state": state,
    }
    response = api.post(
        f"{V1}/environments/{world['env']['id']}/reports",
        json={"reports": [report]},
        headers={"Authorization": f"Bearer {world['agent_token']}"},
    )
    assert response.status_code == 200, response.text


def test_overall_health_joins_the_agents_check_with_its_deployments(
    api: httpx.Client, world: dict[str, Any]
) -> None:
    env_id = world["env"]["id"]
    agent = {"Authorization": f"Bearer {world['agent_token']}"}
    assert api.post(
        f"{V1}/environments/{env_id}/health", json={"status": "passing"}, headers=agent
    ).is_success
    second = api.post(
        f"{V1}/deployments",
        json={"environmentId": env_id, "modelPackageId": world["package"]["id"], "name": "second"},
    ).json()
    _report(api, world, world["deployment"]["id"], "passing", "ready")
    _report(api, world, second["id"], "passing", "ready")
    overall = api.get(f"{V1}/environments/{env_id}").json()["overall"]
    assert overall == {"status": "passing", "deployments": "2 deployments: 2 ready"}
    _report(api, world, second["id"], "failing", "errored")
    listed = api.get(f"{V1}/environments").json()["items"][0]
    assert listed["health"]["status"] == "passing"  # what the agent said of the environment itself
    assert listed["overall"] == {"status": "failing", "deployments": "2 deployments: 1 errored, 1 ready"}
