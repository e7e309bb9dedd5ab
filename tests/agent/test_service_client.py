"""The agent's boundary with the service: each answer is parsed once into the agent's typed values, and a
document that does not validate is refused there with the field named, never guessed."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipmate.agent.model import DesiredDeployment, ModelPackageRef, ServiceObserved
from shipmate.agent.ports import ControlPlaneRejected, Report
from shipmate.agent.service_client import ServiceControlPlane
from shipmate.client import ShipmateClient
from shipmate.common.vocabulary import DesiredState, EventType, ReportPhase
from shipmate.plugin.actions import Action
from shipmate.plugin.status import ActionStatus, DeploymentState
from shipmate.server.settings import ServerSettings
from shipmate.server.testing import LiveServer, live_server, write_test_package


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(ServerSettings(data_dir=tmp_path / "data")) as running:
        yield running


def test_the_desired_spec_from_the_snapshot_and_the_feed_is_the_same_typed_value(
    server: LiveServer, tmp_path: Path
) -> None:
    with ShipmateClient(server.base_url, server.admin_token) as admin:
        env = admin.create_environment("dev", "filesystem")
        package = admin.upload_model_package(write_test_package(tmp_path / "m.mlpkg", name="churn"))
        dep = admin.create_deployment(env.id, package.id, name="churn", key_value_config={"replicas": 2})
        _, secret = admin.create_token("agent", env.id, name="dev agent")
    plane = ServiceControlPlane(ShipmateClient(server.base_url, secret))
    try:
        snapshot = plane.desired_state(env.id)
        page = plane.changes(env.id, after=0, wait=0)
        expected = DesiredDeployment(
            dep.id,
            1,
            DesiredState.RUNNING,
            ModelPackageRef(package.id, package.sha256, "churn", package.version, package.size),
            name="churn",
            description="",
            key_value_config={"replicas": 2},
            observed=ServiceObserved(0, "unknown", "unknown"),
        )
        assert list(snapshot.deployments) == [expected]
        [change] = [c for c in page.changes if c.type == EventType.DESIRED_CHANGED]
        assert change.spec == expected
        outcome = plane.report(
            env.id,
            [
                Report(dep.id, 1, Action.DEPLOYMENT_START, ReportPhase.STARTED,
                       state=DeploymentState.LAUNCHING),
                Report(dep.id, 1, Action.DEPLOYMENT_START, ReportPhase.FINISHED, status=ActionStatus.OK,
                       state=DeploymentState.READY, data={"predictionUrl": "http://x/p"}),
            ],
        )  # fmt: skip
        assert outcome.accepted == 2
        [after] = plane.desired_state(env.id).deployments
        assert after.observed == ServiceObserved(1, "ready", "passing")
    finally:
        plane.close()


def _deployment(desired: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "d-1", "name": "d", "environmentId": "e-1", "generation": 3, "desired": desired,
        "modelPackage": {"id": "m-1", "name": "m", "version": "1", "sha256": "ab" * 32, "size": 1},
        "observed": {"state": "unknown", "generation": 0, "status": "unknown"},
        "createdBy": "admin:x", "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z",
    }  # fmt: skip


def _service(answers: dict[str, Any]) -> ServiceControlPlane:
    """The service, faked at the HTTP boundary, answering each path with a fixed document."""

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answers[request.url.path])

    return ServiceControlPlane(
        ShipmateClient("http://service", "t" * 20, transport=httpx.MockTransport(handle))
    )


NO_STATE = {"modelPackageId": "m-1", "relaunchGeneration": 0, "force": False}


def test_a_snapshot_without_a_desired_state_is_refused_naming_the_field() -> None:
    plane = _service(
        {"/api/v1/environments/e-1/desired-state": {"cursor": 5, "deployments": [_deployment(NO_STATE)]}}
    )
    with pytest.raises(ControlPlaneRejected, match=r"desired\.state: Field required"):
        plane.desired_state("e-1")


def test_a_feed_event_without_a_desired_state_is_ignored_with_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = _deployment({**NO_STATE, "state": "stopped"})
    event = {"type": "deployment.desired_changed", "timestamp": "2026-01-01T00:00:00Z", "actor": "admin:x",
             "environmentId": "e-1", "deploymentId": "d-1", "generation": 3}  # fmt: skip
    plane = _service(
        {
            "/api/v1/events": {
                "cursor": 2,
                "events": [
                    {**event, "id": 1, "data": _deployment(NO_STATE)},
                    {**event, "id": 2, "data": good},
                ],
            }
        }
    )
    with caplog.at_level(logging.ERROR, logger="shipmate.agent.service_client"):
        page = plane.changes("e-1", after=0, wait=0)
    assert page.cursor == 2
    assert [(c.id, c.spec.state if c.spec else None) for c in page.changes] == [(2, DesiredState.STOPPED)]
    assert any("event 1" in r.message and "desired.state" in r.message for r in caplog.records)
