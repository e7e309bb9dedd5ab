"""What the commands say about state: pending until the agent acts, health from the deployments' rows,
fixed event columns, the manifest after a push, and the resources the API has (env update/delete)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from shipmate.cli.environments import health_summary
from shipmate.cli.events import COLUMNS, event_line
from shipmate.cli.main import build_app
from shipmate.client import Deployment
from shipmate.server.testing import LiveServer


@pytest.fixture
def shipmate(server: LiveServer) -> Any:
    runner = CliRunner()
    app = build_app()
    env = {"SHIPMATE_URL": server.base_url, "SHIPMATE_TOKEN": server.admin_token, "COLUMNS": "250"}

    def run(*args: str, ok: bool = True) -> Any:
        result = runner.invoke(app, list(args), env=env)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run


def _deployment(generation: int, observed_generation: int, state: str, status: str, desired: str = "running"):
    return Deployment.model_validate(
        {
            "id": f"d-{generation}{observed_generation}{state}",
            "name": "m",
            "environmentId": "e-1",
            "generation": generation,
            "desired": {"state": desired, "modelPackageId": "p-1"},
            "modelPackage": {"id": "p-1", "name": "m", "version": "1", "sha256": "0" * 64, "size": 1},
            "observed": {
                "state": state,
                "generation": observed_generation,
                "status": status,
                "phase": "finished",
            },
            "createdBy": "admin",
            "createdAt": "2026-01-01T00:00:00Z",
            "updatedAt": "2026-01-01T00:00:00Z",
        }
    )


def test_health_is_the_worse_of_the_agent_check_and_the_deployments():
    both_pass = [_deployment(1, 1, "ready", "passing"), _deployment(2, 2, "ready", "passing")]
    assert health_summary("passing", both_pass) == ("passing", "2 deployments: 2 ready")
    one_fails = [_deployment(1, 1, "ready", "passing"), _deployment(1, 1, "errored", "failing")]
    assert health_summary("passing", one_fails) == ("failing", "2 deployments: 1 errored, 1 ready")
    # a change the agent has not carried out yet is pending, whatever the last report said
    assert health_summary("passing", [_deployment(2, 1, "ready", "passing")]) == (
        "passing",
        "1 deployment: 1 pending",
    )
    assert health_summary("failing", []) == ("failing", "0 deployments")


def test_event_rows_have_fixed_columns():
    header = event_line(COLUMNS)
    row = event_line(("12", "2026-01-01 00:00:00", "deployment.desired_changed.long.type", "passing",
                      "e-1", "d-1", "3", "a message"))  # fmt: skip
    assert header.index("status") == row.index("passing")
    assert header.index("message") == row.index("a message")
    assert "…" in row  # the over-long type is cut, not allowed to shift the columns


def test_a_new_deployment_is_pending_and_wait_says_why_it_gives_up(shipmate: Any, make_package: Any):
    shipmate("env", "create", "dev", "--platform", "filesystem")
    package = json.loads(shipmate("model", "push", str(make_package(name="churn")), "--json").output)
    created = shipmate("deploy", package["id"], "--env", "dev")
    assert "pending" in created.output and "--wait" in created.output
    assert "ready" not in created.output.split("pending", 1)[0].split("\n")[-1]
    waited = shipmate("deploy", "churn", "--env", "dev", "--wait", "--timeout", "1", ok=False)
    assert waited.exit_code == 1 and "not ready after 1 s" in waited.output and "agent" in waited.output
    listed = shipmate("env", "list").output
    assert "2 deployments: 2 pending" in listed


def test_push_shows_the_manifest(shipmate: Any, make_package: Any):
    shown = shipmate("model", "push", str(make_package(name="churn", target_type="regression"))).output
    assert "manifest {}" not in shown and "regression" in shown and "features" in shown
    assert shipmate("model", "push", str(make_package(name="churn")), "--quiet").stdout.startswith("m-")


def test_environments_can_be_updated_and_deleted(shipmate: Any, tmp_path: Any):
    shipmate("env", "create", "dev", "--platform", "filesystem")
    updated = json.loads(shipmate("env", "update", "dev", "--description", "for tests", "--json").output)
    assert updated["description"] == "for tests"
    nothing = shipmate("env", "update", "dev", ok=False)
    assert nothing.exit_code == 1 and "nothing to change" in nothing.output
    assert "deleted environment" in shipmate("env", "delete", "dev").output
    assert "dev" not in shipmate("env", "list").output


def test_pull_speaks_json(shipmate: Any, make_package: Any, tmp_path: Any):
    package = json.loads(shipmate("model", "push", str(make_package()), "--json").output)
    pulled = json.loads(
        shipmate("model", "pull", package["id"], str(tmp_path / "copy.mlpkg"), "--json").output
    )
    assert pulled["sha256"] == package["sha256"] and (tmp_path / "copy.mlpkg").is_file()


@pytest.mark.parametrize(
    ("command", "defaults"),
    [
        (["serve"], ["8080", "127.0.0.1", "one per CPU", "50"]),
        (["server"], ["8000", "4 GiB", "shipmate-data"]),
        (["demo"], ["8000", "8080", "shipmate-demo"]),
        (["init"], ["agent.yaml", "filesystem", "9464"]),
    ],
)
def test_help_shows_the_defaults(command: list[str], defaults: list[str]):
    shown = CliRunner().invoke(build_app(), [*command, "--help"], env={"COLUMNS": "200"}).output
    for default in defaults:
        assert f"default: {default}" in shown or f"default: ({default}" in shown, (default, shown)
