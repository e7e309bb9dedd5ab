"""Predictions with association ids, actuals and accuracy on the service, on SQLite and PostgreSQL:
ids stored once, every bad actual refused with a reason (never a 500), late actuals within the window,
accuracy by prediction time with no NaN."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sklearn.metrics import accuracy_score, roc_auc_score
from tests.server.conftest import upload

from shipmate.client import ShipmateClient
from shipmate.server.settings import ServerSettings
from shipmate.server.testing import TEST_ADMIN_TOKEN, live_server

PREDICTIONS = "/api/v1/monitoring/predictions"


def prediction_record(
    dep: str, ids: list[str], probs: list[float], minute: int, **extra: Any
) -> dict[str, Any]:
    return {
        "v": 1, "kind": "predictions", "id": f"r-{ids[0]}-{minute}", "deploymentId": dep, "modelId": "m-1",
        "minute": minute, "flushedAt": minute * 60.0, "associationIds": ids, "classLabels": ["no", "yes"],
        "labels": ["yes" if p >= 0.5 else "no" for p in probs],
        "probabilities": [[1 - p, p] for p in probs], "values": None, **extra,
    }  # fmt: skip


@pytest.fixture
def binary(api: httpx.Client, world: dict[str, Any], make_package: Any) -> dict[str, Any]:
    package = upload(api, make_package(target_type="binary", extra_manifest={"classLabels": ["no", "yes"]}))
    dep = api.post(
        "/api/v1/deployments",
        json={"environmentId": world["env"]["id"], "modelPackageId": package["id"], "name": "churn-b"},
    ).json()
    return {**world, "dep": dep["id"]}


def post_predictions(api: httpx.Client, token: str, *records: dict[str, Any]) -> dict[str, Any]:
    response = api.post(
        PREDICTIONS, json={"records": list(records)}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_actuals_join_predictions_and_accuracy_is_reported_by_prediction_time(
    api: httpx.Client, world: dict[str, Any], binary: dict[str, Any]
) -> None:
    dep, token = binary["dep"], binary["agent_token"]
    hour = int(time.time() // 3600) * 60 - 120  # two hours ago, on the hour
    probs_a = [0.9, 0.8, 0.3, 0.6]
    probs_b = [0.2, 0.7, 0.1]
    first = prediction_record(dep, ["a1", "a2", "a3", "a4"], probs_a, hour)
    second = prediction_record(dep, ["b1", "b2", "b3"], probs_b, hour + 60)
    assert post_predictions(api, token, first, second)["stored"] == 2
    again = post_predictions(api, token, first, prediction_record("d-unknown", ["x"], [0.5], hour))
    assert (again["duplicate"], again["rejected"]) == (1, 1)
    assert "not a deployment of this token's environment" in again["problems"][1]["reason"]

    truth = {"a1": "yes", "a2": "no", "a3": "no", "a4": "yes", "b1": "no", "b2": "no", "b3": "yes"}
    rows = [{"associationId": k, "actualValue": v, "wasActedOn": False} for k, v in truth.items()]
    rows += [
        {"associationId": "a1", "actualValue": "no"},  # a second actual for a1
        {"associationId": "zz", "actualValue": "yes"},  # never predicted
        {"associationId": "b1", "actualValue": "maybe"},  # not a class
        {"associationId": "b2", "actualValue": {"x": 1}},  # not a label at all
        {"associationId": "b3", "actualValue": "yes", "timestamp": "yesterday"},
        {"associationId": None, "actualValue": "yes"},
    ]
    response = api.post(f"/api/v1/deployments/{dep}/actuals", json={"data": rows})
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["received"], result["stored"], result["duplicate"], result["rejected"]) == (13, 7, 1, 5)
    reasons = {p["index"]: p["reason"] for p in result["problems"]}
    assert "has an actual already" in reasons[7]
    assert "no prediction with association id 'zz'" in reasons[8]
    assert "'maybe' is not one of the model's classes ['no', 'yes']" in reasons[9]
    assert "is not a class label" in reasons[10]
    assert "is not an ISO 8601 time" in reasons[11]
    assert "associationId must be a string" in reasons[12]

    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(hour * 60))
    answer = api.get(f"/api/v1/deployments/{dep}/accuracy", params={"since": since, "resolution": "hour"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["deploymentId"] == dep and body["targetType"] == "binary" and body["rows"] == 7
    actual = [1 if truth[k] == "yes" else 0 for k in ["a1", "a2", "a3", "a4", "b1", "b2", "b3"]]
    scores = probs_a + probs_b
    assert body["metrics"]["accuracy"] == pytest.approx(accuracy_score(actual, [s >= 0.5 for s in scores]))
    assert body["metrics"]["auc"] == pytest.approx(roc_auc_score(actual, scores), abs=1e-3)
    timeline = body["timeline"]
    assert [p["rows"] for p in timeline] == [4, 3, 0]  # by prediction time, empty periods included
    assert timeline[2]["metrics"]["accuracy"] is None
    assert timeline[0]["metrics"]["accuracy"] == pytest.approx(0.75)
    keys = {"deploymentId", "targetType", "since", "until", "resolution", "rows", "metrics", "timeline"}
    assert set(body) == keys
    assert set(timeline[0]) == {"start", "rows", "metrics"} and "balanced_accuracy" in timeline[0]["metrics"]
    assert "NaN" not in answer.text
    late_actuals_wrong_targets_and_unknown_deployments(api, world, binary)  # one live service for both


def late_actuals_wrong_targets_and_unknown_deployments(
    api: httpx.Client, world: dict[str, Any], binary: dict[str, Any]
) -> None:
    """Late actuals, wrong targets and unknown deployments get reasons, not errors."""
    old_minute = int(time.time() // 60) - 31 * 1440
    post_predictions(api, binary["agent_token"], prediction_record(binary["dep"], ["old"], [0.9], old_minute))
    rows: list[dict[str, Any]] = [{"associationId": "old", "actualValue": "yes"}]
    late = api.post(f"/api/v1/deployments/{binary['dep']}/actuals", json={"data": rows})
    assert "before the 30-day window for actuals" in late.json()["problems"][0]["reason"]

    regression = world["deployment"]["id"]  # the default test package is a regression model
    minute = int(time.time() // 60) - 5
    record = prediction_record(
        regression, ["r1"], [0.5], minute, labels=None, probabilities=None, values=[3.0]
    )
    assert post_predictions(api, world["agent_token"], record)["stored"] == 1
    rows = [{"associationId": "r1", "actualValue": "yes"}]
    problem = api.post(f"/api/v1/deployments/{regression}/actuals", json={"data": rows}).json()["problems"][0]
    assert "is not a number (the model is a regression)" in problem["reason"]
    rows = [{"associationId": "r1", "actualValue": 2.5}]
    assert api.post(f"/api/v1/deployments/{regression}/actuals", json={"data": rows}).json()["stored"] == 1
    metrics = api.get(f"/api/v1/deployments/{regression}/accuracy").json()["metrics"]
    assert metrics == {"rmse": 0.5, "mae": 0.5, "mape": 20.0, "r2": None}  # one row: R² undefined

    assert api.post("/api/v1/deployments/d-nope/actuals", json={"data": []}).status_code == 404
    assert api.post(f"/api/v1/deployments/{regression}/actuals", json={"rows": []}).status_code == 422
    params = {"resolution": "minute", "since": "2020-01-01T00:00:00Z"}
    bad = api.get(f"/api/v1/deployments/{regression}/accuracy", params=params)
    assert bad.status_code == 422 and "coarser resolution" in bad.text


def test_the_server_expires_predictions_by_age_and_count_on_its_own(
    tmp_path: Path, database_url: str | None, make_package: Any
) -> None:
    settings = ServerSettings(
        data_dir=tmp_path / "bounded",
        database_url=database_url,
        admin_token=SecretStr(TEST_ADMIN_TOKEN),
        alert_interval_seconds=0.2,  # the periodic pass also applies retention
        monitoring_prediction_retention_days=1,
        monitoring_max_predictions=2,
    )
    with live_server(settings) as running, ShipmateClient(running.base_url, running.admin_token) as admin:
        env = admin.create_environment("bounded", "filesystem")
        package = admin.upload_model_package(make_package(name="bounded"))
        dep = admin.create_deployment(env.id, package.id, name="bounded").id
        now = int(time.time() // 60)
        values: dict[str, Any] = {"labels": None, "probabilities": None}
        old = prediction_record(dep, ["old"], [0.0], now - 2 * 1440, **values, values=[1.0])
        recent = prediction_record(
            dep, ["r1", "r2", "r3"], [0, 0, 0], now - 1, **values, values=[1.0, 2.0, 3.0]
        )
        assert admin.post_monitoring_predictions([old, recent]).stored == 2

        def kept() -> set[str]:  # a stored id answers stored or duplicate; a deleted one, rejected
            rows = [{"associationId": i, "actualValue": 1.0} for i in ("old", "r1", "r2", "r3")]
            answer = admin.post_actuals(dep, rows)
            return {"old", "r1", "r2", "r3"} - {
                p.association_id for p in answer.problems if p.outcome == "rejected"
            }

        assert kept() == {"old", "r1", "r2", "r3"} or kept() == {"r2", "r3"}  # before or after a pass
        deadline = time.monotonic() + 30
        while kept() != {"r2", "r3"} and time.monotonic() < deadline:
            time.sleep(0.2)
        # older than a day: gone; beyond two per deployment: the oldest gone
        assert kept() == {"r2", "r3"}
