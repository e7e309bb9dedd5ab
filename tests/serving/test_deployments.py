"""Hot replacement under load, against a real `shipmate serve` process with two workers."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn.datasets import load_iris

from shipmate.packages import BuildOptions, build_custom_package

ROW = {"sepal length (cm)": 6.9, "sepal width (cm)": 3.2, "petal length (cm)": 5.7, "petal width (cm)": 2.3}


@pytest.fixture(scope="module")
def always_setosa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A custom iris model that is easy to tell apart: it always answers class 0 with certainty."""
    src = tmp_path_factory.mktemp("setosa")
    (src / "custom.py").write_text(
        "import pandas as pd\n"
        "def score(model, data):\n"
        "    return pd.DataFrame({0: [1.0] * len(data), 1: [0.0] * len(data), 2: [0.0] * len(data)})\n"
    )
    X, _ = load_iris(return_X_y=True, as_frame=True)
    path = tmp_path_factory.mktemp("pkg") / "setosa.mlpkg"
    build_custom_package(
        src, X, path, name="setosa", target_type="multiclass", options=BuildOptions(class_labels=[0, 1, 2])
    )
    return path


@pytest.mark.slow
def test_replacing_a_deployment_under_a_stream_of_requests_fails_no_request(
    serve_process: Callable[..., str],
    deploy: Callable[..., Path],
    packages: dict[str, Path],
    always_setosa: Path,
    tmp_path: Path,
    wait: Any,
) -> None:
    root = tmp_path / "deployments"
    root.mkdir()
    deploy(root, "live", packages["iris"])
    url = serve_process("--deployments-dir", str(root), "--workers", "2", "--poll-interval", "0.1")
    target = f"{url}/deployments/live/predictions"
    stop = threading.Event()
    outcomes: Counter[Any] = Counter()
    errors: list[str] = []

    def stream() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                try:
                    reply = client.post(target, json=[ROW])
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    continue
                if reply.status_code != 200:
                    errors.append(f"{reply.status_code} {reply.text[:200]}")
                    continue
                outcomes[reply.json()["data"][0]["prediction"]] += 1

    threads = [threading.Thread(target=stream) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait(lambda: outcomes[2] > 20)
        for i in range(6):
            package = always_setosa if i % 2 == 0 else packages["iris"]
            expected = 0 if i % 2 == 0 else 2
            before = outcomes[expected]
            deploy(root, "live", package)
            wait(lambda e=expected, b=before: outcomes[e] > b + 20)  # both workers switched
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert errors == []
    assert outcomes[0] > 20 and outcomes[2] > 20
    assert set(outcomes) <= {0, 2}
    info = httpx.get(f"{url}/deployments/live/info").json()
    assert info["name"] == "iris"
