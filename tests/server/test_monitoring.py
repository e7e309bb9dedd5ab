"""Monitoring on the service: ingest of minute aggregates (access, duplicates, refusals), roll-up
to hours with retention, and service health read back over the API, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipmate.monitoring.records import BinCounts, MinuteAggregate
from shipmate.server.db import Database
from shipmate.server.models import (
    Deployment,
    DesiredState,
    Environment,
    ModelPackage,
    MonitoringBucket,
    Platform,
)
from shipmate.server.services import monitoring as store

INGEST = "/api/v1/monitoring/aggregates"
RETENTION = store.Retention(minute_hours=48, hour_days=400, max_future_minutes=10)


def record(deployment_id: str, minute: int | None = None, **fields: Any) -> MinuteAggregate:
    aggregate = MinuteAggregate(
        deployment_id=deployment_id, minute=minute if minute is not None else int(time.time() // 60)
    )
    aggregate.model_id = fields.pop("model_id", "m-1")
    latencies = fields.pop("latencies", [10.0, 20.0, 1500.0])
    for ms in latencies:
        aggregate.response_ms.observe(ms)
        aggregate.execution_ms.observe(ms / 2)
    aggregate.requests = len(latencies)
    aggregate.rows = fields.pop("rows", 30)
    aggregate.flushed_at = time.time() - 2
    for consumer in fields.pop("consumers", ["alice"]):
        aggregate.add_consumer(consumer)
    aggregate.features = {"x": BinCounts(counts=[1, 2, 3], count=6, minimum=0.0, maximum=1.0)}
    for key, value in fields.items():
        setattr(aggregate, key, value)
    return aggregate


def post(client: httpx.Client, *records: MinuteAggregate | dict[str, Any], token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    docs = [r.to_json() if isinstance(r, MinuteAggregate) else r for r in records]
    response = client.post(INGEST, json={"records": docs}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def health(client: httpx.Client, deployment_id: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/v1/deployments/{deployment_id}/service-health", params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_records_are_stored_once_and_read_back_as_service_health(api: httpx.Client, world: dict[str, Any]):
    dep = world["deployment"]["id"]
    token = world["agent_token"]
    first, second = record(dep, consumers=["alice", "bob"]), record(dep, user_errors=1)
    assert post(api, first, second, token=token) == {
        "stored": 2, "duplicate": 0, "rejected": 0, "partial": 0, "problems": []
    }  # fmt: skip
    again = post(api, first, token=token)
    assert again["stored"] == 0 and again["duplicate"] == 1
    assert again["problems"][0] == {
        "index": 0, "id": first.record_id, "outcome": "duplicate", "reason": None, "seenIds": []
    }  # fmt: skip
    # a record merged from both is a duplicate too: every id it stands for is stored
    merged = MinuteAggregate.from_json(first.to_json())
    merged.merge(MinuteAggregate.from_json(second.to_json()))
    assert post(api, merged, token=token)["duplicate"] == 1

    summary = health(api, dep, resolution="day")["summary"]
    assert summary["totalRequests"] == 6
    assert summary["totalPredictions"] == 60
    assert summary["slowRequests"] == 2
    assert summary["userErrorRate"] == pytest.approx(1 / 6)
    assert summary["serverErrorRate"] == 0
    assert summary["distinctConsumers"] == 2
    assert summary["responseTimeMs"]["p50"] == pytest.approx(20.0, rel=0.1)
    assert summary["responseTimeMs"]["p99"] == pytest.approx(1500.0, rel=0.1)
    assert summary["peakLoad"] == 6 and summary["medianLoad"] == 6
    assert summary["monitoringLagMeanS"] >= 1.5


def test_a_merged_record_that_overlaps_stored_ids_is_refused_as_partial(
    api: httpx.Client, world: dict[str, Any]
):
    dep = world["deployment"]["id"]
    first, second = record(dep), record(dep)
    post(api, first, token=world["agent_token"])
    merged = MinuteAggregate.from_json(first.to_json())
    merged.merge(MinuteAggregate.from_json(second.to_json()))
    result = post(api, merged, token=world["agent_token"])
    assert (result["stored"], result["partial"]) == (0, 1)
    assert result["problems"][0]["seenIds"] == [first.record_id]
    assert post(api, second, token=world["agent_token"])["stored"] == 1
    assert health(api, dep)["summary"]["totalRequests"] == 6


def test_refusals_are_per_record_with_a_reason(
    api: httpx.Client, world: dict[str, Any], make_package: Any, upload_package: Any
):
    dep = world["deployment"]["id"]
    other_env = api.post("/api/v1/environments", json={"name": "other", "platform": "filesystem"}).json()
    foreign = api.post(
        "/api/v1/deployments",
        json={"environmentId": other_env["id"], "modelPackageId": world["package"]["id"], "name": "x"},
    ).json()
    now = int(time.time() // 60)
    bad = record(dep).to_json()
    bad["requests"] = -1
    result = post(
        api,
        record(dep),
        record(foreign["id"]),  # the deployment exists, but in another environment
        record("d-unknown"),
        bad,
        record(dep, minute=now + 60),  # the producer's clock is an hour ahead
        record(dep, minute=now - 50 * 60),  # older than the minute retention: rolled up already
        {"not": "a record"},
        token=world["agent_token"],
    )
    assert (result["stored"], result["rejected"]) == (1, 6)
    reasons = {p["index"]: p["reason"] for p in result["problems"]}
    assert "not a deployment of this token's environment" in reasons[1]
    assert "not a deployment of this token's environment" in reasons[2]
    assert reasons[3].startswith("malformed record: requests:")
    assert "ahead of the service's clock" in reasons[4]
    assert "older than the 48 h minute retention" in reasons[5]
    assert reasons[6].startswith("malformed record: v:")
    # the admin may post for any deployment; the foreign one is then stored
    assert post(api, record(foreign["id"]))["stored"] == 1
    assert health(api, foreign["id"])["summary"]["totalRequests"] == 3
    assert health(api, dep)["summary"]["totalRequests"] == 3


def test_health_needs_access_to_the_deployment(api: httpx.Client, world: dict[str, Any], server: Any):
    dep = world["deployment"]["id"]
    other_env = api.post("/api/v1/environments", json={"name": "other", "platform": "filesystem"}).json()
    other_token = api.post(
        "/api/v1/tokens", json={"name": "a2", "kind": "agent", "environmentId": other_env["id"]}
    ).json()["secret"]
    url = f"/api/v1/deployments/{dep}/service-health"
    with httpx.Client(base_url=server.base_url) as anonymous:
        assert anonymous.get(url).status_code == 401
        assert anonymous.post(INGEST, json={"records": []}).status_code == 401
        denied = anonymous.get(url, headers={"Authorization": f"Bearer {other_token}"})
        assert denied.status_code == 403
        mine = anonymous.get(url, headers={"Authorization": f"Bearer {world['agent_token']}"})
        assert mine.status_code == 200
    assert api.get("/api/v1/deployments/d-none/service-health").status_code == 404
    too_many = api.get(url, params={"since": "2000-01-01T00:00:00Z", "resolution": "minute"})
    assert too_many.status_code == 422 and "coarser resolution" in too_many.json()["detail"]
    assert api.get(url, params={"resolution": "week"}).status_code == 422


def test_periods_follow_the_resolution_and_the_threshold_is_a_parameter(
    api: httpx.Client, world: dict[str, Any]
):
    dep = world["deployment"]["id"]
    base = (int(time.time() // 60) - 30) // 60 * 60  # an hour boundary at most 90 minutes ago
    post(api, record(dep, minute=base), record(dep, minute=base + 1, latencies=[5.0] * 9, model_id="m-2"))
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base * 60))
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base * 60 + 600))
    result = health(api, dep, since=since, until=until, resolution="minute", slowThresholdMs=15)
    assert len(result["periods"]) == 10
    assert [p["totalRequests"] for p in result["periods"][:3]] == [3, 9, 0]
    assert result["summary"]["slowRequests"] == 2
    assert result["summary"]["peakLoad"] == 9 and result["summary"]["medianLoad"] == 6
    assert result["models"] == ["m-1", "m-2"]
    only = health(api, dep, since=since, until=until, modelId="m-2")
    assert only["summary"]["totalRequests"] == 9 and len(only["periods"]) == 1


def test_old_minutes_roll_up_to_hours_and_expire(tmp_path: Path, database_url: str | None):
    db = Database(database_url or f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate()
    now = 1_800_000_000.0
    now_minute = int(now // 60)
    with db.write() as session:
        session.add(Environment(id="e-1", name="e", platform=Platform.FILESYSTEM, created_by="t"))
        session.add(
            ModelPackage(
                id="p-1", name="p", version="1", filename="f", sha256="0" * 64, size=1, created_by="t"
            )
        )
        session.flush()
        session.add(
            Deployment(
                id="d-1", name="d", environment_id="e-1", model_package_id="p-1",
                desired_state=DesiredState.RUNNING, created_by="t",
            )
        )  # fmt: skip
    hour = now_minute - now_minute % 60
    docs = [record("d-1", minute=hour + i % 3).to_json() for i in range(6)]
    with db.write() as session:
        assert store.ingest(session, docs, environment_id="e-1", retention=RETENTION, now=now).stored == 6
    with db.read() as session:
        buckets = {b.minute: b for b in session.query(MonitoringBucket)}
        assert sorted(buckets) == [hour, hour + 1, hour + 2]
        assert len(buckets[hour].record_ids) == 2 and buckets[hour].width == 1
    # nothing to roll up yet: a maintenance pass changes nothing
    with db.write() as session:
        assert store.maintain(session, retention=RETENTION, now=now + 3600).rolled_up == 0
    later = now + 49 * 3600
    with db.write() as session:
        done = store.maintain(session, retention=RETENTION, now=later)
    assert done.rolled_up == 3
    with db.read() as session:
        (rolled,) = session.query(MonitoringBucket).all()
        assert (rolled.width, rolled.minute, rolled.records, rolled.requests) == (60, hour, 6, 18)
        assert rolled.features["x"]["counts"] == [6, 12, 18] and rolled.record_ids == []
    # a record for a rolled-up minute, delivered again, is refused rather than counted twice
    with db.write() as session:
        again = store.ingest(session, docs[:1], environment_id="e-1", retention=RETENTION, now=later)
    assert (again.stored, again.rejected) == (0, 1)
    assert "rolled up to hours" in (again.problems[0].reason or "")
    with db.write() as session:
        gone = store.maintain(session, retention=RETENTION, now=now + 401 * 86400)
    assert gone.expired_buckets == 1
    with db.read() as session:
        assert session.query(MonitoringBucket).count() == 0
    db.dispose()


def test_the_openapi_spec_documents_the_monitoring_routes(api: httpx.Client):
    spec = api.get("/api/v1/openapi.json").json()
    ingest = spec["paths"][INGEST]["post"]
    assert {"200", "401", "403", "422", "503"} <= set(ingest["responses"])
    health_route = spec["paths"]["/api/v1/deployments/{deployment_id}/service-health"]["get"]
    assert {"200", "401", "403", "404", "422"} <= set(health_route["responses"])
    names = {p["name"] for p in health_route["parameters"]}
    assert {"since", "until", "resolution", "slowThresholdMs", "modelId"} <= names
