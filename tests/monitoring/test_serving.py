"""Monitoring wired into `shipmate serve`: records in the spool, /metrics, start-up refusals."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from tests.serving.conftest import deploy_dir, stop_server, wait_for, with_suppress_kill

from shipmate.monitoring.fs_spool import FilesystemSpoolReader, spool_files
from shipmate.monitoring.records import MinuteAggregate, merge_all
from shipmate.packages import BuildOptions, build_sklearn_package
from shipmate.server.testing import TEST_ADMIN_TOKEN
from shipmate.serving.server import build_app
from shipmate.serving.settings import ServeSettings


@pytest.fixture(scope="module")
def iris_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    X, y = load_iris(return_X_y=True, as_frame=True)
    path = tmp_path_factory.mktemp("pkg") / "iris.mlpkg"
    build_sklearn_package(
        LogisticRegression(max_iter=1000).fit(X, y),
        X,
        path,
        name="iris",
        options=BuildOptions(importance=False),
    )
    return path


@pytest.fixture(scope="module")
def churn_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"plan": rng.choice(["basic", "pro", "team"], 200), "tenure": rng.integers(0, 72, 200)})
    y = np.where((X["plan"] == "basic") & (X["tenure"] < 20), "yes", "no")
    model = make_pipeline(
        ColumnTransformer([("c", OneHotEncoder(handle_unknown="ignore"), ["plan"])], remainder="passthrough"),
        LogisticRegression(max_iter=1000),
    ).fit(X, y)
    path = tmp_path_factory.mktemp("pkg") / "churn.mlpkg"
    build_sklearn_package(model, X, path, name="churn", options=BuildOptions(importance=False))
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("MLOPS_", "PREDICTION_API_", "MONITOR", "PROMETHEUS_MULTIPROC")):
            monkeypatch.delenv(name)


def _records(spool: Path) -> list[MinuteAggregate]:
    with FilesystemSpoolReader(spool) as reader:
        batch = reader.read(10_000)
        reader.ack(batch)
    return [MinuteAggregate.from_json(r.doc) for r in batch.records]


def _client(settings: ServeSettings) -> Iterator[TestClient]:
    with TestClient(build_app(settings)) as client:
        wait_for(lambda: client.get("/ping").status_code == 200)
        yield client


IRIS_ROWS = [
    {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2},
    {"sepal length (cm)": 6.7, "sepal width (cm)": 3.0, "petal length (cm)": 5.2, "petal width (cm)": 2.3},
    {"sepal length (cm)": 99.0, "sepal width (cm)": 3.0, "petal length (cm)": 5.2, "petal width (cm)": 0.1},
]


def test_single_model_predictions_reach_the_spool_and_metrics(
    tmp_path: Path, iris_package: Path, clean_env: None
) -> None:
    spool = tmp_path / "spool"
    settings = ServeSettings(
        model=iris_package,
        work_dir=tmp_path / "work",
        deployment_id="dep-iris",
        model_id="model-7",
        monitor_settings=f"spooler_type=FILESYSTEM;directory={spool};flush_seconds=0.2",
    )
    for client in _client(settings):
        assert client.post("/predictions", json=IRIS_ROWS).status_code == 200
        assert client.post("/predictions", json=[{"nope": 1}]).status_code == 422
        assert (
            client.post(
                "/predictions", content=b"[", headers={"content-type": "application/json"}
            ).status_code
            == 400
        )
        metrics = wait_for(  # the flusher updates the metrics, every flush_seconds
            lambda c=client: (
                (text := c.get("/metrics").text)
                and 'shipmate_requests_total{deployment="dep-iris"} 3.0' in text
                and text
            )
        )
        assert 'shipmate_predictions_total{deployment="dep-iris"} 3.0' in metrics
        assert 'shipmate_request_errors_total{deployment="dep-iris",kind="user"} 2.0' in metrics
        assert 'shipmate_request_duration_seconds_bucket{deployment="dep-iris",le="+Inf"} 3.0' in metrics
        assert "shipmate_spool_backlog_bytes" in metrics and "summary" not in metrics
    (record,) = merge_all(_records(spool))  # the lifespan's end flushed what was left
    assert record.deployment_id == "dep-iris" and record.model_id == "model-7"
    assert (record.requests, record.rows, record.user_errors, record.server_errors) == (3, 3, 2, 0)
    assert record.response_ms.count == 3 and record.execution_ms.count == 1
    sepal = record.features["sepal length (cm)"]
    assert sepal.count == 3 and sepal.counts[-2] == 1  # 99 cm is over the baseline's maximum
    assert record.features["petal width (cm)"].minimum == 0.1
    assert set(record.predictions) == {"p:0", "p:1", "p:2", "label"}
    assert sum(record.predictions["label"].counts) == 3
    assert sum(record.consumers.values()) == 3


def test_multi_model_records_each_deployment_under_its_own_id(
    tmp_path: Path, iris_package: Path, churn_package: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_SPOOLER_TYPE", "FILESYSTEM")
    monkeypatch.setenv("MLOPS_FILESYSTEM_DIRECTORY", str(tmp_path / "spool"))
    monkeypatch.setenv("MLOPS_DEPLOYMENT_ID", "ignored-in-multi-mode")
    root = tmp_path / "deployments"
    deploy_dir(root, "d-iris", iris_package, model_id="m-iris")
    deploy_dir(root, "d-churn", churn_package, model_id="m-churn")
    settings = ServeSettings(deployments_dir=root, work_dir=tmp_path / "work", poll_interval_s=0.05)
    for client in _client(settings):
        wait_for(lambda c=client: len(c.get("/deployments").json()["data"]) == 2)
        assert client.post("/deployments/d-iris/predictions", json=IRIS_ROWS[:2]).status_code == 200
        churn = [
            {"plan": "pro", "tenure": 3},
            {"plan": "enterprise", "tenure": 40},
            {"plan": None, "tenure": 5},
        ]
        assert client.post("/deployments/d-churn/predictions", json=churn).status_code == 200
        assert client.post("/deployments/nobody/predictions", json=churn).status_code == 404
    records = {r.deployment_id: r for r in merge_all(_records(tmp_path / "spool"))}
    assert set(records) == {"d-iris", "d-churn"}
    assert records["d-iris"].model_id == "m-iris" and records["d-iris"].rows == 2
    plan = records["d-churn"].features["plan"]
    assert plan.count == 3 and plan.counts[-2] == 1 and plan.counts[-1] == 1  # "enterprise" is other
    assert plan.minimum is None  # no moments for a categorical column
    assert records["d-churn"].features["tenure"].total == 48.0


def test_metrics_need_the_key_when_predictions_do(
    tmp_path: Path, iris_package: Path, clean_env: None
) -> None:
    key = "k" * 20
    settings = ServeSettings(
        model=iris_package,
        work_dir=tmp_path / "work",
        api_key=key,
        require_key_for_predictions=True,
        monitor_settings="spooler_type=NONE",
    )
    for client in _client(settings):
        refused = client.get("/metrics")
        assert refused.status_code == 401 and "API key" in refused.json()["message"]
        assert client.get("/metrics", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_monitoring_is_off_unless_configured(tmp_path: Path, iris_package: Path, clean_env: None) -> None:
    for client in _client(ServeSettings(model=iris_package, work_dir=tmp_path / "work")):
        assert client.post("/predictions", json=IRIS_ROWS[:1]).status_code == 200
        assert client.get("/metrics").status_code == 404


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--monitor-settings", "spooler_type=KAFKA"],
            {},
            "KAFKA is not supported yet; supported: FILESYSTEM",
        ),
        (
            ["--monitor-settings", "spooler_type=FILESYSTEM;directory=/tmp/x;colour=blue"],
            {},
            "unknown key 'colour'",
        ),
        ([], {"MLOPS_SPOOLER_TYPE": "FILESYSTEM"}, "the FILESYSTEM spooler needs a directory"),
        (
            [],
            {"PREDICTION_API_MONITORING_SETTINGS": "spooler_type=FILESYSTEM;max_files=x;directory=/d"},
            "max_files",
        ),
    ],
)
def test_wrong_monitoring_settings_stop_start_up(
    iris_package: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "PREDICTION_API_", "MONITOR"))
    }
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from shipmate.cli.main import main; main()",
            "serve",
            "--model",
            str(iris_package),
            *args,
        ],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_two_workers_each_spool_their_own_files_and_share_metrics(  # with fan-out of large batches
    tmp_path: Path, iris_package: Path, clean_env: None
) -> None:
    import socket
    import tempfile

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spool = tmp_path / "spool"
    temp = Path(tempfile.mkdtemp(dir="/tmp"))  # the server's own directories (short: socket paths)
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "PROMETHEUS"))}
    proc = subprocess.Popen(
        [
            sys.executable, "-c", "from shipmate.cli.main import main; main()", "serve",
            "--model", str(iris_package), "--workers", "2", "--port", str(port),
            "--work-dir", str(tmp_path / "work"),
            "--monitor-settings", f"spooler_type=FILESYSTEM;directory={spool};flush_seconds=0.2",
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**env, "TMPDIR": str(temp)},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    small = 0
    try:

        def up() -> bool:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                return httpx.get(url + "/ping", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=90, interval=0.2)
        (peers,) = temp.glob("shipmate-w-*")  # the second worker may still be loading: wait for it
        wait_for(lambda: up() and len(list(peers.glob("*.sock"))) == 2, timeout=90, interval=0.2)

        def both_spooled() -> bool:
            """Each worker spools to a file of its own from its first request on; a new connection
            each time goes to whichever worker accepts it first, so both get some sooner or later."""
            nonlocal small
            assert httpx.post(url + "/predictions", json=IRIS_ROWS[:2], timeout=30).status_code == 200
            small += 1
            return small >= 20 and len(spool_files(spool)) == 2

        wait_for(both_spooled, timeout=120, interval=0)
        big = IRIS_ROWS[:2] * 1500  # about 300 KB: cut into chunks scored by both workers
        for _ in range(3):
            reply = httpx.post(url + "/predictions", json=big, timeout=30)
            assert reply.status_code == 200 and len(reply.json()["data"]) == 3000

        def total() -> float:
            metrics = httpx.get(url + "/metrics", timeout=10).text
            found = re.search(r'shipmate_requests_total\{deployment="iris"\} (\S+)', metrics)
            return float(found.group(1)) if found else 0.0

        wait_for(lambda: total() == small + 3)  # whichever worker answers, all are counted
    finally:
        stop_server(proc)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)
    assert len(spool_files(spool)) == 2  # one file per worker
    records = _records(spool)
    assert sum(r.requests for r in records) == small + 3 and sum(r.rows for r in records) == 2 * small + 9000
    assert sum(r.features["sepal width (cm)"].count for r in records) == 2 * small + 9000  # each row once
    assert sum(sum(r.predictions["label"].counts) for r in records) == 2 * small + 9000


def test_predictions_served_reach_the_service_through_the_spool_and_shipmate_monitor(
    tmp_path: Path, iris_package: Path, clean_env: None, world: Any, mon: Any
) -> None:
    """End to end, all real processes but the service: ``shipmate serve`` spools, ``shipmate monitor``
    reads that spool and posts, and the service's health counts each prediction once."""
    spool = tmp_path / "spool"
    port = mon.free_port()
    url = f"http://127.0.0.1:{port}"
    serve_log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    serve = subprocess.Popen(
        [
            sys.executable, "-c", "from shipmate.cli.main import main; main()", "serve",
            "--model", str(iris_package), "--port", str(port), "--work-dir", str(tmp_path / "work"),
            "--monitor-settings", f"spooler_type=FILESYSTEM;directory={spool};flush_seconds=0.2",
        ],
        stdout=serve_log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLOPS_DEPLOYMENT_ID": world.deployment_id, "MLOPS_MODEL_ID": "iris-1"},
    )  # fmt: skip
    config = mon.write_config(tmp_path / "agent.yaml", world.url, [mon.fs_channel(spool)])
    monitor = mon.MonitorProcess(config, world.agent_token, tmp_path / "monitor.log")

    def health() -> tuple[int, int]:
        reply = httpx.get(
            f"{world.url}/api/v1/deployments/{world.deployment_id}/service-health",
            params={"resolution": "day"}, headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}, timeout=10,
        )  # fmt: skip
        assert reply.status_code == 200, reply.text
        summary = reply.json()["summary"]
        return summary["totalRequests"], summary["totalPredictions"]

    try:

        def up() -> bool:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                return httpx.get(url + "/ping", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=90, interval=0.2)
        monitor.start()
        for _ in range(5):
            assert httpx.post(url + "/predictions", json=IRIS_ROWS[:2], timeout=10).status_code == 200
        reply = httpx.post(url + "/predictions", json=IRIS_ROWS * 10, timeout=10)
        assert reply.status_code == 200 and len(reply.json()["data"]) == 30
        wait_for(lambda: health() == (6, 40), timeout=60, interval=0.25)
        serve.send_signal(signal.SIGTERM)  # its last flush adds nothing: everything was spooled already
        assert serve.wait(30) == 0
        assert monitor.terminate() == 0
    finally:
        with_suppress_kill(serve)
        serve_log.close()
        monitor.kill()
    assert health() == (6, 40)  # counted once
    models = httpx.get(
        f"{world.url}/api/v1/deployments/{world.deployment_id}/service-health",
        headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}, timeout=10,
    ).json()["models"]  # fmt: skip
    assert models == ["iris-1"]
    with FilesystemSpoolReader(spool) as reader:  # the agent acknowledged everything it posted
        assert reader.read(10, 0).records == [] and reader.backlog_bytes() == 0


def test_samples_carry_the_association_ids_sent(tmp_path: Path, churn_package: Path, clean_env: None) -> None:
    spool = tmp_path / "spool"
    settings = ServeSettings(
        model=churn_package,
        work_dir=tmp_path / "work",
        monitor_settings=f"spooler_type=FILESYSTEM;directory={spool};"
        "association_id_column_name=rid;auto_sampling_percentage=100",
    )
    rows = [{"rid": "a-1", "plan": "pro", "tenure": 3}, {"rid": "a-2", "plan": "basic", "tenure": 40}]
    for client in _client(settings):
        assert client.post("/predictions", json=rows).status_code == 200
    with FilesystemSpoolReader(spool) as reader:
        batch = reader.read(100)
    samples = [r.doc for r in batch.records if r.kind == "sample"]
    assert len(samples) == 1 and samples[0]["associationIds"] == ["a-1", "a-2"]
    assert samples[0]["rows"] == [["pro", 3], ["basic", 40]]
    assert [r.kind for r in batch.records] == ["aggregate", "predictions", "sample"]


def test_an_all_numeric_models_json_requests_keep_their_association_ids(
    tmp_path: Path, iris_package: Path, clean_env: None
) -> None:
    """The JSON fast path decodes the feature columns only; the association id column survives it
    (samples and prediction records both carry the ids; today's code lost them)."""
    spool = tmp_path / "spool"
    settings = ServeSettings(
        model=iris_package,
        work_dir=tmp_path / "work",
        monitor_settings=f"spooler_type=FILESYSTEM;directory={spool};"
        "association_id_column_name=rid;auto_sampling_percentage=100",
    )
    rows = [{"rid": f"r-{i}", **row} for i, row in enumerate(IRIS_ROWS)]
    rows[2]["rid"] = 7  # a number is an id too
    csv_body = "rid," + ",".join(IRIS_ROWS[0]) + "\n11,5.1,3.5,1.4,0.2\n"
    for client in _client(settings):
        assert client.post("/predictions", json=rows).status_code == 200
        answer = client.post("/predictions", content=csv_body, headers={"Content-Type": "text/csv"})
        assert answer.status_code == 200
    with FilesystemSpoolReader(spool) as reader:
        batch = reader.read(100)
    samples = [r.doc for r in batch.records if r.kind == "sample"]
    assert [i for s in samples for i in s["associationIds"]] == ["r-0", "r-1", "7", "11"]
    predictions = [r.doc for r in batch.records if r.kind == "predictions"]
    assert [i for p in predictions for i in p["associationIds"]] == ["r-0", "r-1", "7", "11"]
    first = predictions[0]
    assert first["classLabels"] == ["0", "1", "2"] and first["labels"][0] == "0"
    assert len(first["probabilities"][0]) == 3 and abs(sum(first["probabilities"][0]) - 1) < 1e-9
