"""Drift on the service: minute aggregates posted by the monitoring agent's route, read back as
data and prediction drift per deployment (access as service health), settings, bad input; on
SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

import httpx
import pytest

from shipmate.monitoring.records import BinCounts, MinuteAggregate
from shipmate.server.db import Database
from shipmate.server.services import drift as drift_store
from shipmate.server.testing import LiveServer

from .conftest import upload

EDGES = [float(i) for i in range(11)]
BASELINE = {
    "x": {"bins": {"type": "numeric", "edges": EDGES, "counts": [0, *[100] * 10, 0, 0]}},
    "c": {"bins": {"type": "categorical", "values": ["a", "b"], "counts": [600, 400, 0, 0]}},
    "empty": {"bins": {"type": "numeric", "edges": [], "counts": [0, 0, 1000]}},
}
PREDICTION_BASELINE = {"value": {"type": "numeric", "edges": EDGES, "counts": [0, *[100] * 10, 0, 0]}}
FEATURES = [{"name": "x", "type": "numeric"}, {"name": "c", "type": "categorical"},
            {"name": "empty", "type": "numeric"}]  # fmt: skip


@pytest.fixture
def drifting(api: httpx.Client, make_package: Any) -> dict[str, Any]:
    env = api.post("/api/v1/environments", json={"name": "dev", "platform": "filesystem"}).json()
    package = upload(
        api,
        make_package(
            extra_manifest={
                "features": FEATURES,
                "baseline": BASELINE,
                "predictionBaseline": PREDICTION_BASELINE,
                "featureImportance": {"x": 1.0, "c": 0.1, "empty": 0.0},
            }
        ),
    )
    dep = api.post(
        "/api/v1/deployments", json={"environmentId": env["id"], "modelPackageId": package["id"], "name": "d"}
    ).json()
    token = api.post("/api/v1/tokens", json={"name": "a", "kind": "agent", "environmentId": env["id"]}).json()
    return {"env": env, "deployment": dep["id"], "package": package["id"], "token": token["secret"]}


def record(deployment_id: str, minute: int, x: list[int], c: list[int], rows: int) -> dict[str, Any]:
    aggregate = MinuteAggregate(deployment_id=deployment_id, minute=minute, model_id="m-1", rows=rows)
    aggregate.features = {
        "x": BinCounts(counts=x, count=sum(x)),
        "c": BinCounts(counts=c, count=sum(c)),
        "empty": BinCounts(counts=[0, 0, rows], missing=rows),
    }
    aggregate.predictions = {"value": BinCounts(counts=x, count=sum(x))}
    return aggregate.to_json()


def post(api: httpx.Client, token: str, *records: dict[str, Any]) -> None:
    answer = api.post(
        "/api/v1/monitoring/aggregates",
        json={"records": list(records)},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200 and answer.json()["stored"] == len(records), answer.text


def get_drift(api: httpx.Client, deployment_id: str, **params: Any) -> dict[str, Any]:
    answer = api.get(f"/api/v1/deployments/{deployment_id}/drift", params=params)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def no_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(no_nan(v) for v in value.values())
    if isinstance(value, list):
        return all(no_nan(v) for v in value)
    return True


def test_drift_is_green_on_baseline_traffic_and_red_once_an_important_feature_shifts(
    api: httpx.Client, drifting: dict[str, Any], server: LiveServer
):
    dep, token = drifting["deployment"], drifting["token"]
    empty = get_drift(api, dep)
    assert (
        empty["status"] == "green"
        and empty["rows"] == 0
        and empty["reason"] == "no traffic counted in this range"
    )
    assert {f["name"]: f["status"] for f in empty["features"]} == {"x": "ok", "c": "ok", "empty": "ok"}

    now = int(time.time() // 60)
    minute = now - now % 15 - 30  # two slots ago: a clean slot, then a shifted one
    clean = [record(dep, minute + i, [0, *[30] * 10, 0, 0], [180, 120, 0, 0], 300) for i in range(3)]
    post(api, token, *clean)
    result = get_drift(api, dep)
    assert result["status"] == "green" and result["rows"] == 900 and result["reference"] == "baseline"
    x = next(f for f in result["features"] if f["name"] == "x")
    assert x["status"] == "ok" and x["value"] == pytest.approx(0.0) and x["rows"] == 900
    assert x["thresholdWarning"] == pytest.approx(0.1) and x["thresholdAtRisk"] == pytest.approx(0.25)
    assert x["importance"] == 1.0 and x["important"] is True and x["metric"] == "psi"
    gone = next(f for f in result["features"] if f["name"] == "empty")
    assert gone["value"] is None and gone["missingRate"] == 1.0 and gone["status"] == "ok"
    assert "no present values" in gone["reason"]

    shifted = [record(dep, minute + 15 + i, [0, *[0] * 7, 100, 100, 100, 0, 0], [180, 120, 0, 0], 300)
               for i in range(3)]  # fmt: skip
    post(api, token, *shifted)
    result = get_drift(api, dep, windows="true")
    assert result["status"] == "red"
    x = next(f for f in result["features"] if f["name"] == "x")
    assert x["status"] == "at_risk" and x["value"] > x["thresholdAtRisk"]
    assert result["predictions"][0]["name"] == "value" and result["predictions"][0]["status"] == "at_risk"
    assert [w["rows"] for w in result["windows"]] == [900, 900]
    assert [w["status"] for w in result["series"]["feature:x"]] == ["ok", "at_risk"]
    assert no_nan(result)

    # only the later slot; JS; one feature
    later = get_drift(api, dep, since=dt.datetime.fromtimestamp((minute + 15) * 60, dt.UTC).isoformat(),
                      metric="js", feature="c")  # fmt: skip
    assert later["rows"] == 900 and [f["name"] for f in later["features"]] == ["c"]
    assert later["features"][0]["metric"] == "js" and later["status"] == "green"

    # the alert engine's entry point agrees
    db = Database(server.settings.resolved_database_url())
    try:
        with db.read() as session:
            start = dt.datetime.fromtimestamp(minute * 60, dt.UTC)
            assert (
                drift_store.deployment_drift_status(session, dep, start, start + dt.timedelta(minutes=15))
                == "green"
            )
            assert (
                drift_store.deployment_drift_status(session, dep, start, start + dt.timedelta(hours=1))
                == "red"
            )
            assert (
                drift_store.deployment_drift_status(session, "d-none", start, start + dt.timedelta(hours=1))
                == "green"
            )
    finally:
        db.dispose()


def test_settings_change_metric_min_rows_stars_and_the_reference_window(
    api: httpx.Client, drifting: dict[str, Any]
):
    dep, token = drifting["deployment"], drifting["token"]
    url = f"/api/v1/deployments/{dep}/drift/settings"
    assert api.get(url).json()["metric"] == "psi" and api.get(url).json()["minRows"] == 200
    now = int(time.time() // 60)
    minute = now - now % 15 - 30
    # c's categories moved from 60/40 to 20/80: at risk; c is not important, so yellow
    post(
        api, token, *[record(dep, minute + i, [0, *[30] * 10, 0, 0], [60, 240, 0, 0], 300) for i in range(2)]
    )
    assert get_drift(api, dep)["status"] == "yellow"
    put = api.put(url, json={"metric": "hellinger", "minRows": 50, "starred": ["c"]})
    assert put.status_code == 200, put.text
    assert put.json()["starred"] == ["c"] and put.json()["updatedBy"]
    result = get_drift(api, dep)
    c = next(f for f in result["features"] if f["name"] == "c")
    assert result["status"] == "red" and c["important"] and c["metric"] == "hellinger"
    # against a reference window of the same traffic, nothing drifts
    since = dt.datetime.fromtimestamp(minute * 60, dt.UTC)
    put = api.put(url, json={"referenceSince": since.isoformat(),
                             "referenceUntil": (since + dt.timedelta(minutes=5)).isoformat()})  # fmt: skip
    assert put.status_code == 200, put.text
    result = get_drift(api, dep)
    assert result["reference"] == "window" and result["status"] == "green", result
    bad = api.put(url, json={"referenceSince": since.isoformat()})
    assert bad.status_code == 422 and "referenceUntil" in bad.json()["detail"]


def test_access_and_bad_input_give_clear_answers(
    api: httpx.Client, drifting: dict[str, Any], make_package: Any, monkeypatch: pytest.MonkeyPatch
):
    dep = drifting["deployment"]
    other = api.post("/api/v1/environments", json={"name": "other", "platform": "filesystem"}).json()
    stranger = api.post(
        "/api/v1/tokens", json={"name": "s", "kind": "agent", "environmentId": other["id"]}
    ).json()
    headers = {"Authorization": f"Bearer {stranger['secret']}"}
    assert api.get(f"/api/v1/deployments/{dep}/drift", headers=headers).status_code == 403
    own = {"Authorization": f"Bearer {drifting['token']}"}
    assert api.get(f"/api/v1/deployments/{dep}/drift", headers=own).status_code == 200
    assert api.put(f"/api/v1/deployments/{dep}/drift/settings", json={}, headers=own).status_code == 403
    assert httpx.get(f"{api.base_url}/api/v1/deployments/{dep}/drift").status_code == 401
    assert api.get("/api/v1/deployments/d-nope/drift").status_code == 404
    for params in ({"metric": "ks"}, {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
                   {"since": "yesterday"}, {"since": "2000-01-01T00:00:00Z"}):  # fmt: skip
        answer = api.get(f"/api/v1/deployments/{dep}/drift", params=params)
        assert answer.status_code == 422 and "\n" not in answer.json()["detail"], (params, answer.text)
    put = api.put(f"/api/v1/deployments/{dep}/drift/settings", json={"metric": "ks", "minRows": 0})
    assert put.status_code == 422
    post(api, drifting["token"], record(dep, int(time.time() // 60), [0, *[1] * 10, 0, 0], [1, 1, 0, 0], 10))
    monkeypatch.setattr(drift_store, "MAX_COLUMN_SLOTS", 3)  # one slot x 4 columns is too much now
    too_much = api.get(f"/api/v1/deployments/{dep}/drift")
    assert too_much.status_code == 422 and "shorter range" in too_much.json()["detail"]
    assert get_drift(api, dep, feature="x")["rows"] == 10  # fewer columns fit
    bare = upload(api, make_package(name="bare"))  # a package without monitoring bins
    body = {"environmentId": drifting["env"]["id"], "modelPackageId": bare["id"], "name": "bare"}
    dep2 = api.post("/api/v1/deployments", json=body).json()["id"]
    result = get_drift(api, dep2)
    assert result["status"] == "green" and result["features"][0]["reason"].startswith("the package has no")


def test_the_drift_alert_rule_reads_the_drift_service(
    api: httpx.Client, drifting: dict[str, Any], server: LiveServer
):
    """The alert engine's ``drift`` rule, wired to the real drift computation: two shifted
    15-minute windows open one alert; a window with fewer rows than ``minRows`` judges nothing."""
    from shipmate.server.services import alerts

    dep, token = drifting["deployment"], drifting["token"]
    rule = api.put(f"/api/v1/deployments/{dep}/alert-rules/drift", json={"windowMinutes": 15})
    assert rule.status_code == 200, rule.text
    now = int(time.time() // 60)
    start = now - now % 15 - 60  # four whole slots ago
    shifted = [0, *[0] * 7, 100, 100, 100, 0, 0]
    post(api, token, *[record(dep, start + i, shifted, [180, 120, 0, 0], 300) for i in range(2)])
    post(api, token, *[record(dep, start + 15 + i, shifted, [180, 120, 0, 0], 300) for i in range(2)])
    post(api, token, record(dep, start + 30, shifted, [1, 0, 0, 0], 1))  # too few rows to judge

    database = Database(server.settings.resolved_database_url())
    try:
        states = []
        for window_end in (start + 15, start + 30, start + 45):
            with database.write() as session:
                at = dt.datetime.fromtimestamp(window_end * 60 + 5, dt.UTC)
                states.append([(c.rule, c.state) for c in alerts.evaluate(session, now=at)])
    finally:
        database.dispose()
    assert states == [[], [("drift", "open")], []]
    (opened,) = api.get("/api/v1/alerts", params={"deploymentId": dep, "state": "open"}).json()
    assert opened["kind"] == "drift" and opened["rule"] == "drift"
