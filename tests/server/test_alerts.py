"""Alerts on the service, on SQLite and PostgreSQL: default rules, edits, evaluation window by window
(two bad windows open, hysteresis clears, one open alert per rule), events, the drift rule on real
drift (the webhook: test_alert_webhook.py)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.server import test_drift as drift_case
from tests.server.conftest import upload
from tests.server.test_monitoring import post, record

from shipmate.server.db import Database
from shipmate.server.services import alerts
from shipmate.server.settings import ServerSettings


@pytest.fixture
def db(settings: ServerSettings, server: Any) -> Iterator[Database]:
    database = Database(settings.resolved_database_url())
    yield database
    database.dispose()


def evaluate(db: Database, minute: int) -> list[alerts.Change]:
    with db.write() as session:
        return alerts.evaluate(session, now=dt.datetime.fromtimestamp(minute * 60 + 5, dt.UTC))


def test_rules_fire_after_two_bad_windows_and_clear_with_hysteresis(
    api: httpx.Client, world: dict[str, Any], db: Database, make_package: Any
) -> None:
    dep = world["deployment"]["id"]
    rules = api.get(f"/api/v1/deployments/{dep}/alert-rules").json()
    assert [r["name"] for r in rules] == ["error_rate", "latency_p95", "accuracy", "drift"]
    assert rules[2]["metric"] == "r2"  # the test package is a regression model

    base = (int(dt.datetime.now(dt.UTC).timestamp() // 60) // 5 - 12) * 5
    errors = [2, 2, 0, 0]  # of 3 requests in each 5-minute window
    for i, bad in enumerate(errors):
        post(api, record(dep, minute=base + 5 * i, server_errors=bad, latencies=[10.0, 20.0, 30.0]))
    seen = [evaluate(db, base + 5 * (i + 1)) for i in range(len(errors))]
    assert [[c.state for c in changes] for changes in seen] == [[], ["open"], [], ["cleared"]]
    assert evaluate(db, base + 20) == []  # a window is judged once

    listed = api.get("/api/v1/alerts", params={"deploymentId": dep}).json()
    assert len(listed) == 1 and listed[0]["state"] == "cleared" and listed[0]["rule"] == "error_rate"
    assert set(listed[0]) == {
        "id",
        "deploymentId",
        "rule",
        "kind",
        "state",
        "openedAt",
        "clearedAt",
        "message",
    }
    assert "above 0.05 for 2 consecutive 5-minute windows" in listed[0]["message"]
    assert api.get("/api/v1/alerts", params={"state": "open"}).json() == []
    assert api.get("/api/v1/alerts", params={"deploymentId": "another"}).json() == []  # the filter applies
    events = api.get(
        "/api/v1/events", params={"deploymentId": dep, "type": ["alert.opened", "alert.cleared"]}
    )
    assert [e["type"] for e in events.json()["events"]] == ["alert.opened", "alert.cleared"]
    edited_rules_and_real_drift(api, world, db, make_package)  # one live service for all (test time)


def edited_rules_and_real_drift(
    api: httpx.Client, world: dict[str, Any], db: Database, make_package: Any
) -> None:
    dep = world["deployment"]["id"]
    url = f"/api/v1/deployments/{dep}/alert-rules"
    changed = api.put(f"{url}/drift", json={"windowMinutes": 5})
    assert changed.status_code == 200 and changed.json()["windowMinutes"] == 5
    refused = api.put(f"{url}/error_rate", json={"clearThreshold": 0.5})
    assert refused.status_code == 422 and "clearThreshold must not be above threshold" in refused.text
    assert api.put(f"{url}/nope", json={"enabled": False}).status_code == 404
    agent = {"Authorization": f"Bearer {world['agent_token']}"}
    assert api.put(f"{url}/drift", json={"enabled": False}, headers=agent).status_code == 403

    # real drift: a deployment of a package with a baseline, its important feature shifted from the
    # baseline in three 15-minute windows, then two windows of baseline traffic, through ingest
    manifest = {"features": drift_case.FEATURES, "baseline": drift_case.BASELINE,
                "predictionBaseline": drift_case.PREDICTION_BASELINE,
                "featureImportance": {"x": 1.0, "c": 0.1, "empty": 0.0}}  # fmt: skip
    package = upload(api, make_package(extra_manifest=manifest))
    drifting = api.post(
        "/api/v1/deployments",
        json={"environmentId": world["env"]["id"], "modelPackageId": package["id"], "name": "drifting"},
    ).json()["id"]
    rule = api.put(f"/api/v1/deployments/{drifting}/alert-rules/drift", json={"windowMinutes": 15})
    assert rule.status_code == 200, rule.text
    now = int(time.time() // 60)
    start = now - now % 15 - 75  # five whole 15-minute windows ago
    shifted, clean = [0, *[0] * 7, 100, 100, 100, 0, 0], [0, *[30] * 10, 0, 0]
    for i, x in enumerate([shifted, shifted, shifted, clean, clean]):
        minutes = (start + 15 * i, start + 15 * i + 1)
        drift_case.post(api, world["agent_token"], *[drift_case.record(drifting, m, x, [180, 120, 0, 0], 300)
                                                     for m in minutes])  # fmt: skip
    states = [
        [c.state for c in evaluate(db, start + 15 * (i + 1)) if c.deployment_id == drifting] for i in range(5)
    ]
    assert states == [[], ["open"], [], [], ["cleared"]]  # one open alert however long it stays red
    (alert,) = api.get("/api/v1/alerts", params={"deploymentId": drifting, "state": "cleared"}).json()
    assert alert["kind"] == "drift" and alert["rule"] == "drift"
