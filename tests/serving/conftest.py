"""Fixtures: tiny packages built from scikit-learn's bundled data, servers in-process and as processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

with warnings.catch_warnings():  # starlette 1.x prefers httpx2 for its TestClient; httpx works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from shipmate.packages import BuildOptions, build_custom_package, build_sklearn_package
from shipmate.serving.app import create_app
from shipmate.serving.settings import ServeSettings

API_KEY = "test-key-0123456789abcdef"


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """iris (multiclass), cancer (binary, string labels), diabetes (regression), flaky (custom, raises)."""
    root = tmp_path_factory.mktemp("packages")
    X, y = load_iris(return_X_y=True, as_frame=True)
    iris = root / "iris.mlpkg"
    build_sklearn_package(LogisticRegression(max_iter=1000).fit(X, y), X, iris, name="iris")
    Xc, yc = load_breast_cancer(return_X_y=True, as_frame=True)
    Xc = Xc.iloc[:, :4]
    cancer = root / "cancer.mlpkg"
    build_sklearn_package(
        LogisticRegression(max_iter=5000).fit(Xc, yc.map({0: "malignant", 1: "benign"})),
        Xc,
        cancer,
        name="cancer",
    )
    Xd, yd = load_diabetes(return_X_y=True, as_frame=True)
    diabetes = root / "diabetes.mlpkg"
    build_sklearn_package(
        LinearRegression().fit(Xd, yd),
        Xd,
        diabetes,
        name="diabetes",
        options=BuildOptions(target_name="progression"),
    )
    src = root / "flaky_src"
    src.mkdir()
    (src / "custom.py").write_text(
        "def score(model, data):\n"
        "    if (data['x'] < 0).any():\n"
        "        raise ValueError('negative x is not supported')\n"
        "    return data['x'] * 2.0\n"
    )
    flaky = root / "flaky.mlpkg"
    build_custom_package(src, pd.DataFrame({"x": [1.0, 2.0]}), flaky, name="flaky", target_type="regression")
    rng = np.random.default_rng(0)
    Xp = pd.DataFrame(
        {
            "plan": rng.choice(["basic", "pro", "team"], 300),
            "tenure": rng.integers(0, 72, 300),
            "promo": rng.choice([True, False], 300),
        }
    )
    yp = np.where((Xp["plan"] == "basic") & (Xp["tenure"] < 20), "yes", "no")
    pipe = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"])], remainder="passthrough"
                ),
            ),
            ("clf", LogisticRegression(max_iter=1000)),
        ]
    ).fit(Xp, yp)
    churn = root / "churn.mlpkg"
    build_sklearn_package(pipe, Xp, churn, name="churn")
    return {"iris": iris, "cancer": cancer, "diabetes": diabetes, "flaky": flaky, "churn": churn}


@pytest.fixture(scope="session")
def iris_rows() -> list[dict[str, float]]:
    X, _ = load_iris(return_X_y=True, as_frame=True)
    return X.iloc[[0, 60, 120]].to_dict("records")


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Poll until ``predicate`` returns something truthy (generous deadline for a busy 2-core box)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """An in-process server (lifespan run), waited on until /ping says ready."""
    clients: list[TestClient] = []

    def make(ready: bool = True, **settings: Any) -> TestClient:
        settings.setdefault("work_dir", tmp_path / "work")
        settings.setdefault("poll_interval_s", 0.05)
        client = TestClient(create_app(ServeSettings(**settings)))
        client.__enter__()
        clients.append(client)
        if ready:
            wait_for(lambda: client.get("/ping").status_code == 200)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def deploy_dir(
    root: Path, deployment_id: str, package: Path, *, prefix: str = "deployment_", model_id: str = "m1"
) -> Path:
    """Write a deployment the way the filesystem plugin does: prepared in a dot-directory, renamed in."""
    staging = root / f".{prefix}{deployment_id}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copy(package, staging / package.name)
    (staging / "config.yml").write_text(
        yaml.safe_dump({"deployment_id": deployment_id, "model_id": model_id})
    )
    final = root / f"{prefix}{deployment_id}"
    if final.exists():
        trash = root / f".{prefix}{deployment_id}.old"
        os.rename(final, trash)
        os.rename(staging, final)
        shutil.rmtree(trash)
    else:
        os.rename(staging, final)
    return final


@pytest.fixture
def deploy() -> Callable[..., Path]:
    return deploy_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """`shipmate serve` as a real process (own process group, killed at teardown); returns its base URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> str:
        port = _free_port()
        log = open(tmp_path / f"serve-{port}.log", "wb")  # noqa: SIM115 - closed with the process
        cmd = [
            sys.executable,
            "-c",
            "from shipmate.cli.main import main; main()",
            "serve",
            *args,
            "--port",
            str(port),
            "--work-dir",
            str(tmp_path / "work"),
        ]
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError((tmp_path / f"serve-{port}.log").read_text())
            try:
                return httpx.get(url + "/ping", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=90, interval=0.2)
        return url

    yield start
    for proc in procs:
        with_suppress_kill(proc)


def with_suppress_kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    """Stop ``shipmate serve`` as a process supervisor does: SIGTERM to the parent alone, which
    stops its workers, waits for them and then removes the directories it made.

    Not SIGTERM to the whole process group: uvicorn's parent replaces a worker it finds dead
    before it has handled its own signal, so a signal to every process at once can leave a new
    worker starting up (seconds on a busy machine) that the parent then has to wait for.
    Whatever is left once the parent has gone (or after the deadline) is killed.
    """
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture
def wait() -> Callable[..., Any]:
    return wait_for


@pytest.fixture(scope="session")
def onnx_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An iris classifier converted with skl2onnx (single float input, no ZipMap)."""
    from skl2onnx import to_onnx

    from shipmate.packages import BuildOptions, build_onnx_package

    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=1000).fit(X.to_numpy(), y)
    onnx_model = to_onnx(model, X.to_numpy()[:1].astype("float32"), options={"zipmap": False})
    path = tmp_path_factory.mktemp("onnx") / "iris-onnx.mlpkg"
    build_onnx_package(
        onnx_model,
        X,
        path,
        name="iris-onnx",
        target_type="multiclass",
        options=BuildOptions(class_labels=[0, 1, 2]),
    )
    return path
