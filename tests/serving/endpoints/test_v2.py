"""The Open Inference Protocol v2 endpoints, against the real app in-process."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.testclient import TestClient

IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def test_open_inference_protocol_v2(iris: TestClient, iris_rows: list[dict[str, float]]) -> None:
    assert iris.get("/v2/health/live").json() == {"live": True}
    assert iris.get("/v2/health/ready").status_code == 200
    meta = iris.get("/v2/models/dep-iris").json()
    assert [i["name"] for i in meta["inputs"]] == IRIS_COLUMNS
    assert iris.get("/v2/models/iris/ready").json()["ready"] is True
    matrix = [[r[c] for c in IRIS_COLUMNS] for r in iris_rows]
    body = {
        "id": "r1",
        "inputs": [
            {
                "name": "input-0",
                "shape": [3, 4],
                "datatype": "FP64",
                "data": [v for row in matrix for v in row],
            }
        ],
    }
    reply = iris.post("/v2/models/dep-iris/infer", json=body).json()
    assert reply["id"] == "r1" and reply["model_name"] == "dep-iris"
    outputs = {o["name"]: o for o in reply["outputs"]}
    assert outputs["predict"]["data"] == [0, 1, 2]
    assert outputs["predict_proba"]["shape"] == [3, 3]
    per_column = {
        "inputs": [
            {"name": c, "shape": [3], "datatype": "FP64", "data": [r[c] for r in iris_rows]}
            for c in IRIS_COLUMNS
        ]
    }
    reply2 = iris.post("/v2/models/iris/infer", json=per_column).json()
    assert reply2["outputs"][0]["data"] == [0, 1, 2]
    assert iris.get("/v2/models/nope").status_code == 404
    bad = iris.post(
        "/v2/models/iris/infer",
        json={"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]},
    )
    assert bad.status_code == 422 and "3 columns" in bad.json()["message"]


def test_integers_beyond_the_declared_datatype_are_refused(iris: TestClient) -> None:
    """An INT64 tensor with 1e30 (or 2**70) must not be cast silently to a wrong integer."""
    for value in (1e30, 2**70, 1.5):
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, value]}]}
        reply = iris.post("/v2/models/iris/infer", json=body)
        assert reply.status_code == 400, (value, reply.text)
        assert "INT64" in reply.json()["message"], reply.text
    fine = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]}]}
    assert iris.post("/v2/models/iris/infer", json=fine).status_code == 200


def test_an_empty_or_unknown_datatype_is_refused_in_one_plain_line(iris: TestClient) -> None:
    """Found by the fuzz: an empty datatype passed for an integer one, and its refusal came wrapped
    in a second message ("data does not fit shape []: inputs[0]: unsupported datatype ''")."""
    for datatype in ("", "I", "UINT7", "FP128"):
        body = {"inputs": [{"name": "x", "shape": [], "datatype": datatype, "data": []}]}
        reply = iris.post("/v2/models/iris/infer", json=body)
        assert reply.status_code == 400, reply.text
        assert reply.json() == {"message": f"inputs[0]: unsupported datatype {datatype!r}"}
