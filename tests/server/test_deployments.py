"""Deployments: validation, filters and paging, updates, conflicts, not-found."""

from __future__ import annotations

from typing import Any

import httpx

V1 = "/api/v1"


def create(api: httpx.Client, env_id: str, package_id: str, name: str, **extra: Any) -> dict[str, Any]:
    response = api.post(
        f"{V1}/deployments",
        json={"environmentId": env_id, "modelPackageId": package_id, "name": name, **extra},
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def test_list_filters_and_pages(api: httpx.Client, world: dict[str, Any]):
    env_id, package_id = world["env"]["id"], world["package"]["id"]
    other = api.post(f"{V1}/environments", json={"name": "prod", "platform": "kubernetes"}).json()
    made = [create(api, env_id, package_id, f"dep-{n}") for n in range(5)]
    create(api, other["id"], package_id, "elsewhere")
    stopped = create(api, env_id, package_id, "idle", active=False)

    page = api.get(f"{V1}/deployments", params={"environmentId": env_id, "limit": 3}).json()
    assert page["total"] == 7 and len(page["items"]) == 3
    second = api.get(f"{V1}/deployments", params={"environmentId": env_id, "limit": 3, "offset": 3}).json()
    seen = [d["id"] for d in page["items"] + second["items"]]
    rest = api.get(f"{V1}/deployments", params={"environmentId": env_id, "limit": 3, "offset": 6}).json()
    seen += [d["id"] for d in rest["items"]]
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == {d["id"] for d in made} | {world["deployment"]["id"], stopped["id"]}

    by_name = api.get(f"{V1}/deployments", params={"name": "dep-3"}).json()
    assert [d["id"] for d in by_name["items"]] == [made[3]["id"]]
    by_desired = api.get(f"{V1}/deployments", params={"desiredState": "stopped"}).json()
    assert [d["id"] for d in by_desired["items"]] == [stopped["id"]]
    by_state = api.get(f"{V1}/deployments", params={"state": "ready"}).json()
    assert by_state["total"] == 0
    assert api.get(f"{V1}/deployments", params={"limit": 0}).status_code == 422
    assert api.get(f"{V1}/deployments", params={"desiredState": "sleeping"}).status_code == 422


def test_update_changes_label_and_config_but_not_the_generation(api: httpx.Client, world: dict[str, Any]):
    dep_id = world["deployment"]["id"]
    updated = api.patch(f"{V1}/deployments/{dep_id}", json={"name": "renamed", "keyValueConfig": {"a": 1}})
    assert updated.status_code == 200
    body = updated.json()
    assert body["name"] == "renamed" and body["keyValueConfig"] == {"a": 1} and body["generation"] == 1
    events = api.get(f"{V1}/events", params={"deploymentId": dep_id, "type": "deployment.updated"}).json()[
        "events"
    ]
    assert events[0]["data"]["keyValueConfig"] == {"a": 1}


def test_invalid_input_names_the_field(api: httpx.Client, world: dict[str, Any]):
    env_id, package_id = world["env"]["id"], world["package"]["id"]
    cases = [
        ({"environmentId": env_id, "modelPackageId": package_id, "name": "  "}, "name"),
        ({"environmentId": env_id, "modelPackageId": package_id}, "name"),
        (
            {"environmentId": env_id, "modelPackageId": package_id, "name": "x", "keyValueConfig": "no"},
            "keyValueConfig",
        ),
        ({"environmentId": env_id, "modelPackageId": package_id, "name": "x", "colour": "red"}, "colour"),
        ({"environmentId": env_id, "modelPackageId": package_id, "name": "a\u0000b"}, "name"),
    ]
    for body, field in cases:
        response = api.post(f"{V1}/deployments", json=body)
        assert response.status_code == 422, body
        assert response.json()["field"] == field, response.json()
    missing_env = api.post(
        f"{V1}/deployments", json={"environmentId": "e-nope", "modelPackageId": package_id, "name": "x"}
    )
    assert missing_env.status_code == 404 and missing_env.json()["field"] == "environmentId"
    missing_pkg = api.post(
        f"{V1}/deployments", json={"environmentId": env_id, "modelPackageId": "m-nope", "name": "x"}
    )
    assert missing_pkg.status_code == 404 and missing_pkg.json()["field"] == "modelPackageId"
    assert api.get(f"{V1}/deployments").json()["total"] == 1  # nothing half-written


def test_unknown_ids_are_404_and_conflicts_409(api: httpx.Client, world: dict[str, Any]):
    for method, path in [
        ("GET", "/deployments/d-nope"),
        ("POST", "/deployments/d-nope/relaunch"),
        ("DELETE", "/deployments/d-nope"),
        ("PATCH", "/deployments/d-nope"),
    ]:
        response = api.request(method, V1 + path, json={} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path)
    dep_id = world["deployment"]["id"]
    api.delete(f"{V1}/deployments/{dep_id}")
    replaced = api.post(
        f"{V1}/deployments/{dep_id}/replace-model", json={"modelPackageId": world["package"]["id"]}
    )
    assert replaced.status_code == 409
    assert api.patch(f"{V1}/deployments/{dep_id}", json={"name": "x"}).status_code == 409
    # an environment with deployments cannot go
    assert api.delete(f"{V1}/environments/{world['env']['id']}").status_code == 409


def test_environment_crud(api: httpx.Client):
    created = api.post(
        f"{V1}/environments",
        json={
            "name": "k8s",
            "platform": "kubernetes",
            "config": {"namespace": "ml"},
            "pluginConfig": {"ingressClass": "nginx"},
        },
    )
    assert created.status_code == 201
    env_id = created.json()["id"]
    assert api.post(f"{V1}/environments", json={"name": "k8s", "platform": "docker"}).status_code == 409
    patched = api.patch(f"{V1}/environments/{env_id}", json={"description": "cluster A"}).json()
    assert patched["description"] == "cluster A" and patched["pluginConfig"] == {"ingressClass": "nginx"}
    assert api.delete(f"{V1}/environments/{env_id}").status_code == 204
    assert api.get(f"{V1}/environments/{env_id}").status_code == 404
