"""ShipmateClient against the real service: typed results, typed errors, the agent's calls."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipmate.client import (
    BadRequest,
    ChecksumMismatch,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Report,
    ServiceUnavailable,
    ShipmateClient,
    Unauthorized,
)
from shipmate.plugin.status import ActionStatus, DeploymentState
from shipmate.server.testing import LiveServer


def test_the_agents_round_trip(admin: ShipmateClient, server: LiveServer, make_package: Any, tmp_path: Path):
    env = admin.create_environment("dev", "filesystem", plugin_config={"baseDir": "/srv"})
    path = make_package()
    package = admin.upload_model_package(path)
    assert package.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert package.size == path.stat().st_size and package.framework == "custom"
    dep = admin.create_deployment(env.id, package.id, name="churn", key_value_config={"replicas": 2})
    _, secret = admin.create_token("agent", env.id, name="dev agent")

    with ShipmateClient(server.base_url, secret) as agent:
        assert agent.get_environment(env.id).plugin_config == {"baseDir": "/srv"}
        desired = agent.desired_state(env.id)
        assert [d.id for d in desired.deployments] == [dep.id]
        spec = desired.deployments[0]
        assert spec.generation == 1 and spec.desired.state == "running"
        assert spec.key_value_config == {"replicas": 2}

        sha = agent.download_model_package(spec.model_package.id, tmp_path / "dl" / "model.mlpkg")
        assert sha == package.sha256
        assert (tmp_path / "dl" / "model.mlpkg").read_bytes() == path.read_bytes()

        result = agent.report(
            env.id,
            [
                Report(
                    deployment_id=dep.id,
                    generation=1,
                    action="deployment_start",
                    phase="finished",
                    status=ActionStatus.OK,
                    state=DeploymentState.READY,
                    duration=0.1,
                    data={"predictionUrl": "http://127.0.0.1:9/x/predict"},
                ),
            ],
        )
        assert result.accepted == 1 and result.stale == []
        observed = agent.get_deployment(dep.id).observed
        assert observed.state is DeploymentState.READY and observed.status is ActionStatus.OK
        assert observed.prediction_url == "http://127.0.0.1:9/x/predict"

        health = agent.report_health(env.id, "passing", "all ok", {"disk": "fine"}, agent_version="0.1.0")
        assert health.health.status is ActionStatus.OK and health.last_seen_at is not None
        event = agent.post_event(env.id, "agent.unknown_deployment", "found a stray", deployment_id="d-stray")
        assert event.type == "agent.unknown_deployment" and event.deployment_id == "d-stray"

        page = agent.events(environment_id=env.id, after=desired.cursor)
        assert [e.type for e in page.events] == [
            "action.finished",
            "environment.health_changed",
            "agent.unknown_deployment",
        ]
        assert page.cursor == page.events[-1].id

        with pytest.raises(Forbidden):
            agent.create_environment("other", "docker")


def test_long_poll_and_desired_changed_events_carry_the_spec(admin: ShipmateClient, make_package: Any):
    env = admin.create_environment("dev", "filesystem")
    package = admin.upload_model_package(make_package())
    dep = admin.create_deployment(env.id, package.id, name="a")
    cursor = admin.desired_state(env.id).cursor
    pages: list[Any] = []
    follower = threading.Thread(
        target=lambda: pages.append(admin.events(environment_id=env.id, after=cursor, wait=20))
    )
    follower.start()
    admin.relaunch(dep.id)
    follower.join(timeout=30)
    assert not follower.is_alive()
    [event] = pages[0].events
    spec = event.deployment()
    assert spec is not None and spec.generation == 2 and spec.desired.relaunch_generation == 2


def test_follow_events_yields_in_order_without_repeats(admin: ShipmateClient):
    for number in range(5):
        admin.create_environment(f"env-{number}", "docker")
    stop = threading.Event()
    seen = []
    for event in admin.follow_events(after=0, wait=0.5, stop=stop.is_set, types=["environment.created"]):
        seen.append(event)
        if len(seen) >= 5:
            stop.set()
    ids = [e.id for e in seen]
    assert ids == sorted(set(ids))
    assert [e.type for e in seen] == ["environment.created"] * 5


def test_errors_are_typed_and_name_the_field(admin: ShipmateClient, server: LiveServer, make_package: Any):
    with pytest.raises(NotFound):
        admin.get_deployment("d-missing")
    with pytest.raises(BadRequest) as invalid:
        admin.create_environment("", "filesystem")
    assert invalid.value.field == "name" and invalid.value.status == 422
    admin.create_environment("dup", "docker")
    with pytest.raises(Conflict) as dup:
        admin.create_environment("dup", "docker")
    assert dup.value.field == "name"
    with pytest.raises(PayloadTooLarge):
        admin.upload_model_package(make_package(payload=os.urandom(600 * 1024)))
    with ShipmateClient(server.base_url, "smt_not-a-real-token") as stranger, pytest.raises(Unauthorized):
        stranger.list_environments()


def test_connection_problems_are_retryable_service_unavailable():
    with (
        ShipmateClient("http://127.0.0.1:9", "smt_x", timeout=2) as client,
        pytest.raises(ServiceUnavailable) as failure,
    ):
        client.list_environments()
    assert failure.value.retryable


def test_a_download_whose_bytes_do_not_match_is_refused(tmp_path: Path):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"tampered", headers={"X-Shipmate-Sha256": "0" * 64})

    dest = tmp_path / "m.mlpkg"
    transport = httpx.MockTransport(handler)
    with (
        ShipmateClient("http://service", "smt_x", transport=transport) as client,
        pytest.raises(ChecksumMismatch),
    ):
        client.download_model_package("m-1", dest)
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_tokens_are_shown_once_and_revocable(admin: ShipmateClient, server: LiveServer):
    env = admin.create_environment("dev", "filesystem")
    info, secret = admin.create_token("agent", env.id, name="a")
    assert secret.startswith(info.prefix) and len(secret) > 30
    listed = {t.id: t for t in admin.list_tokens()}
    assert listed[info.id].prefix == info.prefix
    assert secret not in repr(listed[info.id].model_dump())
    admin.revoke_token(info.id)
    with ShipmateClient(server.base_url, secret) as agent, pytest.raises(Unauthorized):
        agent.desired_state(env.id)
