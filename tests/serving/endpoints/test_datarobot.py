"""The DataRobot-compatible endpoints (PPS): wire formats and errors, against the real app in-process."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from starlette.testclient import TestClient

IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def test_ping_and_info(iris: TestClient) -> None:
    assert iris.get("/ping").json()["ready"] is True
    info = iris.get("/info").json()
    assert info["deploymentId"] == "dep-iris" and info["modelId"] == "model-7"
    assert info["targetType"] == "multiclass" and info["classLabels"] == [0, 1, 2]
    assert [f["name"] for f in info["features"]] == IRIS_COLUMNS
    assert len(info["packageSha256"]) == 64


def test_json_records_in_datarobot_shape_out(iris: TestClient, iris_rows: list[dict[str, float]]) -> None:
    reply = iris.post("/predictions", json=iris_rows)
    assert reply.status_code == 200, reply.text
    data = reply.json()["data"]
    assert [row["rowId"] for row in data] == [0, 1, 2]
    assert [row["prediction"] for row in data] == [0, 1, 2]
    for row in data:
        values = {pv["label"]: pv["value"] for pv in row["predictionValues"]}
        assert set(values) == {0, 1, 2}
        assert sum(values.values()) == pytest.approx(1.0)
        assert max(values, key=values.__getitem__) == row["prediction"]


def test_every_input_format_gives_the_same_predictions(
    iris: TestClient, iris_rows: list[dict[str, float]]
) -> None:
    expected = iris.post("/predictions", json=iris_rows).json()
    columns = {c: [r[c] for r in iris_rows] for c in IRIS_COLUMNS}
    split = {
        "dataframe_split": {
            "columns": IRIS_COLUMNS,
            "data": [[r[c] for c in IRIS_COLUMNS] for r in iris_rows],
        }
    }
    shuffled = [dict(reversed(list(r.items()))) for r in iris_rows]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=IRIS_COLUMNS)
    writer.writeheader()
    writer.writerows(iris_rows)
    assert iris.post("/predictions", json=columns).json() == expected
    assert iris.post("/predictions", json=split).json() == expected
    assert iris.post("/predictions", json={"dataframe_records": iris_rows}).json() == expected
    assert iris.post("/predictions", json=shuffled).json() == expected
    reply = iris.post("/predictions", content=text.getvalue(), headers={"content-type": "text/csv"})
    assert reply.json() == expected


def test_csv_out(iris: TestClient, iris_rows: list[dict[str, float]]) -> None:
    reply = iris.post("/predictions", json=iris_rows, headers={"accept": "text/csv"})
    assert reply.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert list(rows[0]) == ["0_PREDICTION", "1_PREDICTION", "2_PREDICTION", "PREDICTION"]
    assert [r["PREDICTION"] for r in rows] == ["0", "1", "2"]


def test_binary_threshold_and_string_labels(
    make_client: Callable[..., TestClient], packages: dict[str, Path]
) -> None:
    client = make_client(model=packages["cancer"])
    row = {"mean radius": 20.0, "mean texture": 25.0, "mean perimeter": 130.0, "mean area": 1200.0}
    data = client.post("/predictions", json=[row]).json()["data"][0]
    assert data["predictionThreshold"] == 0.5
    values = {pv["label"]: pv["value"] for pv in data["predictionValues"]}
    assert set(values) == {"benign", "malignant"}
    assert data["prediction"] == ("malignant" if values["malignant"] > 0.5 else "benign")
    out = client.post("/predictions", json=[row], headers={"accept": "text/csv"}).text.splitlines()
    assert out[0] == "benign_PREDICTION,malignant_PREDICTION,PREDICTION,THRESHOLD,POSITIVE_CLASS"
    assert out[1].endswith(",0.5,malignant")


def test_regression(make_client: Callable[..., TestClient], packages: dict[str, Path]) -> None:
    client = make_client(model=packages["diabetes"])
    row = dict.fromkeys(["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"], 0.01)
    data = client.post("/predictions", json=[row]).json()["data"][0]
    assert isinstance(data["prediction"], float)
    assert data["predictionValues"] == [{"label": "progression", "value": data["prediction"]}]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ([{"sepal length (cm)": 1.0}], 422, "row 0, column 'sepal width (cm)': missing"),
        (
            [{c: 1.0 for c in IRIS_COLUMNS}, {c: (1.0 if i else "abc") for i, c in enumerate(IRIS_COLUMNS)}],
            422,
            "row 1, column 'sepal length (cm)': expected a number, got 'abc'",
        ),
        (
            [{c: 1.0 for c in IRIS_COLUMNS}, {c: 1.0 for c in IRIS_COLUMNS[:3]}],
            422,
            "row 1, column 'petal width (cm)': missing",
        ),
        ([{c: 1.0 for c in IRIS_COLUMNS}, [1, 2, 3, 4]], 400, "row 1: expected an object"),
        (
            {"dataframe_split": {"columns": IRIS_COLUMNS, "data": [[1, 2, 3]]}},
            400,
            "row 0: expected a list of 4",
        ),
        ({c: [1.0, 2.0] if i else [1.0] for i, c in enumerate(IRIS_COLUMNS)}, 400, "has 2 values"),
        ([], 400, "no rows"),
        ([{c: [1.0] for c in IRIS_COLUMNS}], 422, "expected a number, got list"),
    ],
)
def test_bad_input_names_row_and_column(iris: TestClient, body: Any, status: int, message: str) -> None:
    reply = iris.post("/predictions", json=body)
    assert reply.status_code == status, reply.text
    assert message in reply.json()["message"]


def test_misnamed_column_hints_at_the_unexpected_one(iris: TestClient) -> None:
    row = {c: 1.0 for c in IRIS_COLUMNS[:3]} | {"petal_width": 1.0}
    message = iris.post("/predictions", json=[row]).json()["message"]
    assert "column 'petal width (cm)': missing" in message and "unexpected columns ['petal_width']" in message


def test_malformed_bodies(iris: TestClient) -> None:
    bad_json = iris.post("/predictions", content=b"[{", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["message"]
    bad_csv = iris.post("/predictions", content=b"a,b\n1,2,3,4\n", headers={"content-type": "text/csv"})
    assert bad_csv.status_code in (400, 422)
    xml = iris.post("/predictions", content=b"<rows/>", headers={"content-type": "application/xml"})
    assert xml.status_code == 415


def test_body_limit(
    make_client: Callable[..., TestClient], packages: dict[str, Path], iris_rows: list[dict[str, float]]
) -> None:
    client = make_client(model=packages["iris"], max_body_bytes=200)
    assert client.post("/predictions", json=iris_rows[:1]).status_code == 200
    reply = client.post("/predictions", json=iris_rows * 10)
    assert reply.status_code == 413
    assert "limit" in reply.json()["message"] and "200" in reply.json()["message"]


def test_model_that_raises_gives_500_and_server_keeps_serving(
    make_client: Callable[..., TestClient], packages: dict[str, Path]
) -> None:
    client = make_client(model=packages["flaky"])
    bad = client.post("/predictions", json=[{"x": -1.0}])
    assert bad.status_code == 500
    assert "negative x is not supported" in bad.json()["message"]
    good = client.post("/predictions", json=[{"x": 2.0}])
    assert good.status_code == 200 and good.json()["data"][0]["prediction"] == 4.0


def test_management_disabled_in_single_mode_without_key(iris: TestClient, packages: dict[str, Path]) -> None:
    reply = iris.post("/deployments/x", content=packages["iris"].read_bytes())
    assert reply.status_code == 403 and "API key" in reply.json()["message"]
    assert iris.delete("/deployments/dep-iris").status_code == 403


def test_prediction_key_required_when_configured(
    make_client: Callable[..., TestClient], packages: dict[str, Path], iris_rows: list[dict[str, float]]
) -> None:
    key = "k" * 20
    client = make_client(model=packages["iris"], api_key=key, require_key_for_predictions=True)
    assert client.post("/predictions", json=iris_rows).status_code == 401
    assert client.post("/predictions", json=iris_rows, headers={"x-api-key": "wrong" * 4}).status_code == 401
    assert (
        client.post("/predictions", json=iris_rows, headers={"authorization": f"Bearer {key}"}).status_code
        == 200
    )
    assert client.get("/ping").status_code == 200  # health stays open
    assert client.get("/v2/health/ready").status_code == 200
    # a model's readiness or metadata would tell a stranger which names exist
    for url in ("/v2/models/iris/ready", "/v2/models/nosuch/ready", "/v2/models/iris", "/info"):
        assert client.get(url).status_code == 401, url
    assert client.get("/v2/models/iris/ready", headers={"x-api-key": key}).status_code == 200


def test_not_ready_until_loaded_and_broken_package_never_ready(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.mlpkg"
    broken.write_bytes(b"not a zip")
    client = make_client(model=broken, ready=False)
    from time import sleep

    sleep(0.3)
    ping = client.get("/ping")
    assert ping.status_code == 503
    assert "not a valid model package" in str(ping.json()["failed"])
    assert str(tmp_path) not in ping.text  # the health check shows no path of this machine
    assert "broken.mlpkg" in ping.text
    assert client.post("/predictions", json=[{"x": 1}]).status_code == 503


def test_body_without_content_type_is_sniffed(iris: TestClient, iris_rows: list[dict[str, float]]) -> None:
    import json

    expected = iris.post("/predictions", json=iris_rows).json()
    as_json = iris.post("/predictions", content=json.dumps(iris_rows).encode(), headers={"content-type": ""})
    assert as_json.json() == expected
    text = (
        ",".join(f'"{c}"' for c in IRIS_COLUMNS)
        + "\n"
        + "\n".join(",".join(str(r[c]) for c in IRIS_COLUMNS) for r in iris_rows)
    )
    as_csv = iris.post("/predictions", content=text.encode(), headers={"content-type": ""})
    assert as_csv.json() == expected


def test_missing_value_for_a_model_that_cannot_take_it(iris: TestClient) -> None:
    row = dict.fromkeys(IRIS_COLUMNS, 1.0) | {"petal length (cm)": None}
    reply = iris.post("/predictions", json=[dict.fromkeys(IRIS_COLUMNS, 1.0), row])
    assert reply.status_code == 422
    assert reply.json()["message"].startswith("row 1, column 'petal length (cm)': missing value")


def test_an_infinite_value_is_named_not_a_model_failure(iris: TestClient) -> None:
    body = ",".join(IRIS_COLUMNS) + "\n1,2,3,4\n5,6,-inf,8\n"
    reply = iris.post("/predictions", content=body.encode(), headers={"content-type": "text/csv"})
    assert reply.status_code == 422
    assert reply.json()["message"] == "row 1, column 'petal length (cm)': -inf is not a finite number"
    assert iris.post("/predictions", json=[dict.fromkeys(IRIS_COLUMNS, 1.0)]).status_code == 200


def test_pipeline_with_categorical_and_boolean_features(
    make_client: Callable[..., TestClient], packages: dict[str, Path]
) -> None:
    client = make_client(model=packages["churn"])
    info = client.get("/info").json()
    assert {f["name"]: f["type"] for f in info["features"]} == {
        "plan": "categorical",
        "tenure": "numeric",
        "promo": "boolean",
    }
    assert info["inputLayout"] == "frame"
    assert info["scoring"]["scorer"] == "compiled", info["scoring"]
    assert 0 <= info["scoring"]["maxDifference"] <= 1e-6
    rows = [{"plan": "basic", "tenure": 3, "promo": True}, {"plan": "team", "tenure": 60, "promo": "false"}]
    data = client.post("/predictions", json=rows).json()["data"]
    assert [d["prediction"] for d in data] == ["yes", "no"]
    csv_body = "plan,tenure,promo\nbasic,3,true\nteam,60,false\n"
    as_csv = client.post("/predictions", content=csv_body, headers={"content-type": "text/csv"}).json()[
        "data"
    ]
    assert [d["prediction"] for d in as_csv] == ["yes", "no"]
    bad_bool = client.post("/predictions", json=[{"plan": "pro", "tenure": 3, "promo": "maybe"}])
    assert bad_bool.status_code == 422
    assert bad_bool.json()["message"] == "row 0, column 'promo': expected true or false, got 'maybe'"
    bad_number = client.post("/predictions", json=[*rows, {"plan": "pro", "tenure": "ten", "promo": True}])
    assert bad_number.status_code == 422
    assert bad_number.json()["message"] == "row 2, column 'tenure': expected a number, got 'ten'"


@pytest.mark.parametrize("content_type", ["application/json", "text/csv"])
def test_an_onnx_model_refuses_what_its_float32_input_cannot_take(
    make_client: Callable[..., TestClient], onnx_package: Path, content_type: str
) -> None:
    """A missing value, or one finite as a double but infinite as float32, gets the 422 that the
    same model as scikit-learn gets, never a 200 with null probabilities."""
    client = make_client(model=onnx_package)
    fine = dict.fromkeys(IRIS_COLUMNS, 1.0)
    for bad, expected in ((None, "missing value"), (1e39, "out of range")):
        rows = [fine, fine | {"petal length (cm)": bad}]
        if content_type == "text/csv":
            lines = [",".join(IRIS_COLUMNS)] + [
                ",".join("" if r[c] is None else repr(r[c]) for c in IRIS_COLUMNS) for r in rows
            ]
            reply = client.post(
                "/predictions", content="\n".join(lines).encode(), headers={"content-type": content_type}
            )
        else:
            reply = client.post("/predictions", json=rows)
        assert reply.status_code == 422, reply.text
        message = reply.json()["message"]
        assert message.startswith("row 1, column 'petal length (cm)'") and expected in message, message
    assert client.post("/predictions", json=[fine]).status_code == 200


def test_a_csv_header_naming_a_column_twice_is_refused(
    iris: TestClient, iris_rows: list[dict[str, float]]
) -> None:
    columns = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
    header = ",".join([*columns, columns[0]])
    for rows in (3, 2000):  # the small-body reader and pandas
        body = header + "\n" + "\n".join("1,2,3,4,5" for _ in range(rows)) + "\n"
        reply = iris.post("/predictions", content=body.encode(), headers={"content-type": "text/csv"})
        assert reply.status_code == 400, reply.text
        assert "'sepal length (cm)' appears twice" in reply.json()["message"]


def test_an_unparseable_content_type_is_refused(iris: TestClient, iris_rows: list[dict[str, float]]) -> None:
    import json

    for ctype in (";charset=utf-8", "json", "/"):
        reply = iris.post(
            "/predictions", content=json.dumps(iris_rows).encode(), headers={"content-type": ctype}
        )
        assert reply.status_code == 415, (ctype, reply.text)


def test_a_missing_value_the_model_cannot_take_is_a_422_naming_it(
    make_client: Callable[..., TestClient], packages: dict[str, Path]
) -> None:
    """Found by the fuzz: a null where a DataFrame model (here a pipeline) cannot take one was a
    500 carrying scikit-learn's whole paragraph; the client's input is what is wrong."""
    client = make_client(model=packages["churn"])
    reply = client.post(
        "/predictions",
        json=[{"plan": "basic", "promo": True, "tenure": 3}, {"plan": "pro", "promo": True, "tenure": None}],
    )
    assert reply.status_code == 422, reply.text
    message = reply.json()["message"]
    assert reply.json()["row"] == 1 and reply.json()["column"] == "tenure"
    assert "missing value" in message and "\n" not in message and "Input X contains NaN" in message
    fine = client.post("/predictions", json=[{"plan": None, "promo": True, "tenure": 3}])
    assert fine.status_code == 200, fine.text  # a missing value the model does take still scores


def test_a_server_told_not_to_compile_serves_with_the_models_own_methods(
    make_client: Callable[..., TestClient], packages: dict[str, Path]
) -> None:
    client = make_client(model=packages["churn"], compile=False)
    scoring = client.get("/info").json()["scoring"]
    assert scoring["scorer"] == "original"
    assert "turned off for this server" in scoring["note"]
    bad = [{"plan": "basic", "tenure": 3, "promo": True}, {"plan": "team", "tenure": "ten", "promo": True}]
    reply = client.post("/predictions", json=bad)
    assert reply.status_code == 422
    assert reply.json()["message"] == "row 1, column 'tenure': expected a number, got 'ten'"
