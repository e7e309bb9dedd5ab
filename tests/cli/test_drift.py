"""``shipmate drift`` and the client: drift read back as a table with sparklines and as JSON, by id
or by name; ``print_drift`` for the demo; bad options get one line."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from shipmate.cli.drift import print_drift
from shipmate.cli.main import build_app
from shipmate.client import ShipmateClient
from shipmate.monitoring.records import BinCounts, MinuteAggregate
from shipmate.server.testing import LiveServer

EDGES = [float(i) for i in range(11)]
SPEC = {"type": "numeric", "edges": EDGES, "counts": [0, *[100] * 10, 0, 0]}


@pytest.fixture
def deployment(admin: ShipmateClient, make_package: Any) -> str:
    env = admin.create_environment("drift", "filesystem")
    manifest = {
        "features": [{"name": "x", "type": "numeric"}, {"name": "y", "type": "numeric"}],
        "baseline": {"x": {"bins": SPEC}, "y": {"bins": SPEC}},
        "predictionBaseline": {"value": SPEC},
        "featureImportance": {"x": 1.0, "y": 0.2},
    }
    package = admin.upload_model_package(make_package(name="churn", extra_manifest=manifest))
    dep = admin.create_deployment(env.id, package.id, name="churn")
    now = int(time.time() // 60)
    start = now - now % 15 - 30
    records = []
    for minute, x in ((start, [0, *[30] * 10, 0, 0]), (start + 15, [0, *[0] * 8, 150, 150, 0, 0])):
        record = MinuteAggregate(deployment_id=dep.id, minute=minute, model_id="m-1", rows=300)
        same = BinCounts(counts=[0, *[30] * 10, 0, 0], count=300)
        record.features = {"x": BinCounts(counts=x, count=300), "y": same}
        record.predictions = {"value": BinCounts(counts=list(same.counts), count=300)}
        records.append(record.to_json())
    assert admin.post_monitoring_aggregates(records).stored == 2
    return dep.id


def test_shipmate_drift_prints_drift_against_importance_and_json(server: LiveServer, deployment: str):
    runner = CliRunner()
    app = build_app()
    env = {"SHIPMATE_URL": server.base_url, "SHIPMATE_TOKEN": server.admin_token, "COLUMNS": "220"}
    table = runner.invoke(app, ["drift", "churn", "--since", "2h"], env=env)
    assert table.exit_code == 0, table.output
    assert "deployment drift status: red" in table.output
    assert "at_risk" in table.output and "output value" in table.output and "█" in table.output
    as_json = runner.invoke(app, ["drift", deployment, "--json", "--feature", "y", "--metric", "js"], env=env)
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.output)
    assert doc["status"] == "green" and [f["name"] for f in doc["features"]] == ["y"]
    assert doc["features"][0]["metric"] == "js" and doc["features"][0]["status"] == "ok"
    bad = runner.invoke(app, ["drift", deployment, "--metric", "ks"], env=env)
    assert bad.exit_code == 1 and bad.output.startswith("error: --metric 'ks'")
    missing = runner.invoke(app, ["drift", "d-none"], env=env)
    assert missing.exit_code == 1 and "not found" in missing.output


def test_print_drift_is_what_the_demo_calls(admin: ShipmateClient, deployment: str):
    out = io.StringIO()
    result = print_drift(admin, deployment, since="2h", console=Console(file=out, width=200))
    assert result.status == "red"
    assert {f.name: f.status for f in result.features} == {"x": "at_risk", "y": "ok"}
    assert "drift of" in out.getvalue(), out.getvalue()
    settings = admin.set_drift_settings(deployment, {"metric": "hellinger", "starred": ["y"]})
    assert settings.metric == "hellinger" and admin.drift_settings(deployment).starred == ["y"]
