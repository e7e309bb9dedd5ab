"""Monitoring through the client and the CLI: records posted, health read back as a table, JSON and
a sparkline; ``print_service_health`` for the demo; bad options get one line."""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from shipmate.cli.main import build_app
from shipmate.cli.monitoring import auto_resolution, parse_since, print_service_health, sparkline
from shipmate.client import ShipmateClient
from shipmate.monitoring.records import MinuteAggregate
from shipmate.server.testing import LiveServer


@pytest.fixture
def deployment(admin: ShipmateClient, make_package: Any) -> str:
    env = admin.create_environment("mon", "filesystem")
    package = admin.upload_model_package(make_package(name="churn"))
    dep = admin.create_deployment(env.id, package.id, name="churn")
    now = int(time.time() // 60)
    records = []
    for minute, requests in ((now - 3, 4), (now - 2, 10), (now - 1, 1)):
        record = MinuteAggregate(deployment_id=dep.id, minute=minute, model_id="m-1")
        for i in range(requests):
            record.response_ms.observe(10.0 * (i + 1))
        record.requests, record.rows, record.flushed_at = requests, requests * 5, time.time()
        record.add_consumer("alice")
        records.append(record.to_json())
    result = admin.post_monitoring_aggregates(records)
    assert (result.stored, result.duplicate, result.rejected) == (3, 0, 0)
    assert admin.post_monitoring_aggregates(records).duplicate == 3
    return dep.id


def test_the_client_reads_service_health(admin: ShipmateClient, deployment: str):
    health = admin.service_health(deployment, resolution="minute", slow_threshold_ms=50)
    assert health.summary.total_requests == 15 and health.summary.total_predictions == 75
    assert health.summary.slow_requests == 5  # 60..100 ms in the 10-request minute
    assert health.summary.distinct_consumers == 1 and health.models == ["m-1"]
    assert len(health.periods) in (24 * 60, 24 * 60 + 1)  # the range widened to whole minutes
    assert health.last_received_at is not None


def test_shipmate_health_prints_a_table_a_chart_and_json(server: LiveServer, deployment: str):
    runner = CliRunner()
    app = build_app()
    env = {"SHIPMATE_URL": server.base_url, "SHIPMATE_TOKEN": server.admin_token, "COLUMNS": "200"}
    table = runner.invoke(app, ["health", deployment, "--since", "1h"], env=env)
    assert table.exit_code == 0, table.output
    assert "total requests" in table.output and "15" in table.output
    assert "requests per minute:" in table.output and "█" in table.output
    args = ["health", "churn", "--json", "--since", "2h", "--resolution", "hour"]
    by_name = runner.invoke(app, args, env=env)
    assert by_name.exit_code == 0, by_name.output
    doc = json.loads(by_name.output)
    assert doc["deploymentId"] == deployment and doc["summary"]["totalRequests"] == 15
    assert doc["resolution"] == "hour"
    bad = runner.invoke(app, ["health", deployment, "--since", "yesterday"], env=env)
    assert bad.exit_code == 1 and bad.output.startswith("error: --since 'yesterday': expected a duration")
    missing = runner.invoke(app, ["health", "d-none"], env=env)
    assert missing.exit_code == 1 and "not found" in missing.output


def test_print_service_health_is_what_the_demo_calls(admin: ShipmateClient, deployment: str):
    out = io.StringIO()
    result = print_service_health(admin, deployment, since="30m", console=Console(file=out, width=140))
    assert result.summary.total_requests == 15
    assert "service health of" in out.getvalue() and "median / peak load" in out.getvalue()


def test_time_helpers():
    now = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
    assert parse_since("90m", now) == now - dt.timedelta(minutes=90)
    assert parse_since("2026-12-07T10:00:00", now) == dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)
    assert auto_resolution(now - dt.timedelta(hours=1), now) == "minute"
    assert auto_resolution(now - dt.timedelta(days=2), now) == "hour"
    assert auto_resolution(now - dt.timedelta(days=30), now) == "day"
    assert sparkline([0, 1, 2, 4]) == " ▃▅█"
    assert sparkline([0, 0]) == "  "
