"""``GET /alerts`` refuses a query parameter it does not know (an old ``deployment_id`` used to be
ignored, answering every alert unfiltered), naming it and the parameter meant."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize(
    ("query", "named", "meant"),
    [("deployment_id=d-1", "deployment_id", "deploymentId"), ("State=open", "State", "state"),
     ("deployment=d-1", "deployment", "deploymentId")],
)  # fmt: skip
def test_an_unknown_query_parameter_is_a_422_naming_the_right_one(
    api: httpx.Client, query: str, named: str, meant: str
):
    answer = api.get(f"/api/v1/alerts?{query}")
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert named in body["detail"] and meant in body["detail"] and body["field"] == named


def test_known_parameters_still_filter(api: httpx.Client):
    assert (
        api.get("/api/v1/alerts", params={"deploymentId": "d-none", "state": "open", "limit": 5}).json() == []
    )
    nothing_known = api.get("/api/v1/alerts?colour=red")
    assert nothing_known.status_code == 422
    assert "deploymentId, state, limit" in nothing_known.json()["detail"]
