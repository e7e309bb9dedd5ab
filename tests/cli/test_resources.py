"""The resource commands against a real service: tables for people, JSON for scripts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from shipmate.cli.main import build_app
from shipmate.server.testing import LiveServer


@pytest.fixture
def shipmate(server: LiveServer) -> Any:
    runner = CliRunner()
    app = build_app()
    env = {"SHIPMATE_URL": server.base_url, "SHIPMATE_TOKEN": server.admin_token, "COLUMNS": "200"}

    def run(*args: str, ok: bool = True) -> Any:
        result = runner.invoke(app, list(args), env=env)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run


def test_a_deployment_from_the_shell(shipmate: Any, make_package: Any):
    env = json.loads(
        shipmate("env", "create", "dev", "--platform", "filesystem", "--config", "region=eu", "--json").output
    )
    assert env["config"] == {"region": "eu"}
    assert "dev" in shipmate("env", "list").output

    package = json.loads(shipmate("model", "push", str(make_package(name="churn")), "--json").output)
    assert package["name"] == "churn"

    dep = json.loads(shipmate("deploy", package["id"], "--env", "dev", "--kv", "replicas=2", "--json").output)
    assert dep["name"] == "churn" and dep["keyValueConfig"] == {"replicas": 2}
    assert dep["desired"]["state"] == "running"

    listed = json.loads(shipmate("deployments", "list", "--env", "dev", "--json").output)
    assert [d["id"] for d in listed["items"]] == [dep["id"]]
    table = shipmate("deployments", "list").output
    assert dep["id"] in table and "running" in table

    assert json.loads(shipmate("deployments", "deactivate", dep["id"], "--json").output)["generation"] == 2
    assert shipmate("deployments", "relaunch", dep["id"], ok=False).exit_code == 1  # stopped: 409
    assert json.loads(shipmate("deployments", "activate", dep["id"], "--json").output)["generation"] == 3
    newer = make_package(name="churn")
    replaced = json.loads(shipmate("deployments", "replace", dep["id"], str(newer), "--json").output)
    assert replaced["generation"] == 4 and replaced["modelPackage"]["id"] != package["id"]
    deleted = json.loads(shipmate("deployments", "delete", dep["id"], "--force", "--json").output)
    assert deleted["desired"]["force"] is True
    missing = shipmate("deployments", "show", dep["id"], ok=False)
    assert missing.exit_code == 1 and "not found" in missing.output

    events = json.loads(shipmate("events", "--deployment", dep["id"], "--json").output)
    assert [e["generation"] for e in events if e["type"] == "deployment.desired_changed"] == [1, 2, 3, 4, 5]


def test_tokens_from_the_shell(shipmate: Any):
    shipmate("env", "create", "dev", "--platform", "docker")
    created = json.loads(shipmate("token", "create", "--env", "dev", "--name", "dev agent", "--json").output)
    secret = created["secret"]
    listing = shipmate("token", "list").output
    assert created["token"]["prefix"] in listing and secret not in listing
    assert "revoked" in shipmate("token", "revoke", created["token"]["id"]).output
    assert created["token"]["id"] not in shipmate("token", "list", "--json").output


def test_errors_are_one_line_with_the_field(shipmate: Any):
    result = shipmate("env", "create", "dev", "--platform", "mainframe", ok=False)
    assert result.exit_code == 1
    assert "platform" in result.output
