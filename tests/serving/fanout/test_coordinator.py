"""Scoring one batch on two workers: the answer is the one a single worker gives, byte for byte.

Two in-process servers stand in for two worker processes: each runs its own event
loop (in the test client's thread) and listens on its own Unix socket in a shared
directory, exactly as `shipmate serve --workers 2` sets them up. The reference is a
server with fan-out off.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from shipmate.packages import build_sklearn_package
from shipmate.serving.app import create_app
from shipmate.serving.deployments import Deployment
from shipmate.serving.fanout import FanOutDeclined
from shipmate.serving.fanout.frames import ChunkHeader
from shipmate.serving.fanout.load import QUIET_S, is_quiet
from shipmate.serving.fanout.scorer import ChunkScorer, identity
from shipmate.serving.protocol import InferenceRequest
from shipmate.serving.settings import ServeSettings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@pytest.fixture(scope="module")
def iris_batch() -> pd.DataFrame:
    X, _ = load_iris(return_X_y=True, as_frame=True)
    rng = np.random.default_rng(7)
    big = pd.concat([X] * 4, ignore_index=True)
    return big + rng.normal(0, 0.05, big.shape)  # 600 rows


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Start an in-process server; ``shared=True`` makes it a worker of the one shared server."""
    clients: list[TestClient] = []
    peers = tmp_path / "workers"
    peers.mkdir(mode=0o700)

    def make(package: Path, *, shared: bool = True, hooks: list[Any] | None = None) -> TestClient:
        settings = ServeSettings(
            model=package,
            work_dir=tmp_path / "work",
            peer_dir=peers if shared else None,
            fanout_min_bytes=1,
        )
        client = TestClient(create_app(settings, hooks=hooks or []))
        client.__enter__()
        clients.append(client)
        assert client.get("/ping").status_code == 200
        fanout = client.app.state.worker.membership.fanout  # type: ignore[attr-defined]
        if fanout is not None:  # wait for every sibling's answer, however busy the machine: a sibling
            fanout.PATIENCE_S = 600.0  # that misses its patience is rested, and takes no chunks for a while
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def iris_workers(
    start: Callable[..., TestClient], packages: dict[str, Path]
) -> tuple[TestClient, TestClient, TestClient]:
    """A worker on its own (the reference), and a receiving worker with one sibling."""
    return start(packages["iris"], shared=False), start(packages["iris"]), start(packages["iris"])


def chunks_scored(client: TestClient) -> int:
    scorer: ChunkScorer | None = client.app.state.worker.membership.scorer  # type: ignore[attr-defined]
    assert scorer is not None
    return scorer.scored


def post(client: TestClient, body: bytes, ctype: str = "application/json", accept: str = "") -> Any:
    headers = {"Content-Type": ctype} | ({"Accept": accept} if accept else {})
    return client.post("/predictions", content=body, headers=headers)


@pytest.mark.parametrize(("fmt", "accept"), [("json", ""), ("csv", ""), ("json", "text/csv")])
def test_a_batch_scored_by_two_workers_gets_the_single_workers_answer(
    iris_batch: pd.DataFrame,
    fmt: str,
    accept: str,
    iris_workers: tuple[TestClient, TestClient, TestClient],
) -> None:
    reference, receiver, sibling = iris_workers
    if fmt == "json":
        body, ctype = orjson.dumps(iris_batch.to_dict("records")), "application/json"
    else:
        body, ctype = iris_batch.to_csv(index=False).encode(), "text/csv"
    expected = post(reference, body, ctype, accept)
    assert expected.status_code == 200
    for _ in range(3):
        got = post(receiver, body, ctype, accept)
        assert got.status_code == 200
        assert got.content == expected.content
    assert chunks_scored(sibling) == 3
    assert chunks_scored(receiver) == 0


def test_row_numbers_stay_right_when_records_hold_objects_the_model_ignores(
    start: Callable[..., TestClient],
    iris_batch: pd.DataFrame,
    iris_workers: tuple[TestClient, TestClient, TestClient],
) -> None:
    """Nested objects make the receiver's guess of where the sibling's rows start wrong:
    the sibling's rows are numbered again, so the answer is still the single worker's."""
    reference, receiver, sibling = iris_workers
    rows = [{**row, "meta": {"source": i}} for i, row in enumerate(iris_batch.to_dict("records"))]
    body = orjson.dumps(rows)
    expected, got = post(reference, body), post(receiver, body)
    assert got.status_code == expected.status_code == 200
    assert chunks_scored(sibling) == 1
    assert got.content == expected.content
    assert [row["rowId"] for row in got.json()["data"]] == list(range(len(rows)))


def test_hooks_hear_of_the_whole_batch_once(
    start: Callable[..., TestClient], packages: dict[str, Path], iris_batch: pd.DataFrame
) -> None:
    heard: list[tuple[str, InferenceRequest, Any]] = []
    sibling_heard: list[Any] = []

    def hook(deployment: Deployment, request: InferenceRequest, scores: Any) -> None:
        heard.append((deployment.id, request, scores))

    receiver = start(packages["iris"], hooks=[hook])
    sibling = start(packages["iris"], hooks=[lambda *args: sibling_heard.append(args)])
    body = orjson.dumps(iris_batch.to_dict("records"))
    response = post(receiver, body)
    assert response.status_code == 200
    assert chunks_scored(sibling) == 1
    assert len(heard) == 1 and not sibling_heard
    _, request, scores = heard[0]
    np.testing.assert_allclose(np.asarray(request.rows), iris_batch.to_numpy())
    sent = [[v["value"] for v in row["predictionValues"]] for row in response.json()["data"]]
    np.testing.assert_allclose(scores.probabilities, sent)


@pytest.mark.parametrize("bad_row", [10, 590])  # in the receiver's chunk, in the sibling's
def test_a_bad_row_is_named_as_without_fanout(
    iris_batch: pd.DataFrame,
    bad_row: int,
    iris_workers: tuple[TestClient, TestClient, TestClient],
) -> None:
    reference, receiver, _ = iris_workers
    rows = iris_batch.to_dict("records")
    rows[bad_row]["petal width (cm)"] = "wide"
    body = orjson.dumps(rows)
    expected, got = post(reference, body), post(receiver, body)
    assert got.status_code == expected.status_code == 422
    assert got.json() == expected.json()
    assert got.json()["row"] == bad_row


@pytest.fixture(scope="module")
def iris_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another version of the iris model: same features, different scores."""
    X, y = load_iris(return_X_y=True, as_frame=True)
    path = tmp_path_factory.mktemp("v2") / "iris.mlpkg"
    build_sklearn_package(LogisticRegression(C=0.01, max_iter=1000).fit(X, y), X, path, name="iris")
    return path


def test_a_sibling_serving_another_version_leaves_its_chunk_here(
    start: Callable[..., TestClient], packages: dict[str, Path], iris_v2: Path, iris_batch: pd.DataFrame
) -> None:
    reference = start(packages["iris"], shared=False)
    receiver, other = start(packages["iris"]), start(iris_v2)
    assert (
        post(other, orjson.dumps(iris_batch.head(3).to_dict("records"))).content
        != post(reference, orjson.dumps(iris_batch.head(3).to_dict("records"))).content
    )
    body = orjson.dumps(iris_batch.to_dict("records"))
    assert post(receiver, body).content == post(reference, body).content
    assert chunks_scored(other) == 0


def test_a_sibling_that_stopped_is_not_missed(
    iris_batch: pd.DataFrame,
    iris_workers: tuple[TestClient, TestClient, TestClient],
) -> None:
    reference, receiver, sibling = iris_workers
    body = orjson.dumps(iris_batch.to_dict("records"))
    expected = post(reference, body).content
    assert post(receiver, body).content == expected
    sibling.__exit__(None, None, None)  # the worker stops: its socket goes away
    for _ in range(2):
        assert post(receiver, body).content == expected


def test_a_sibling_that_stops_while_the_body_arrives_leaves_its_chunk_here(
    iris_batch: pd.DataFrame,
    iris_workers: tuple[TestClient, TestClient, TestClient],
) -> None:
    reference, receiver, sibling = iris_workers
    body = orjson.dumps(iris_batch.to_dict("records"))
    expected = post(reference, body).content
    server = receiver.app.state.worker  # type: ignore[attr-defined]
    deployment = server.registry.get_key("default")

    async def pieces() -> AsyncIterator[bytes]:
        yield body[: len(body) // 10]  # the sibling is found, but its chunk is not in yet
        sibling.__exit__(None, None, None)
        await asyncio.sleep(0.2)  # the receiver sees the sibling's socket close
        yield body[len(body) // 10 :]

    async def infer() -> bytes:
        return await server.membership.fanout.infer(deployment, pieces(), len(body), "json", "json")  # type: ignore[no-any-return]

    encoded = receiver.portal.call(infer)  # type: ignore[union-attr]
    assert orjson.loads(encoded) == orjson.loads(expected)
    assert encoded == expected


def test_small_batches_are_not_shared(
    start: Callable[..., TestClient], packages: dict[str, Path], tmp_path: Path, iris_batch: pd.DataFrame
) -> None:
    receiver, sibling = start(packages["iris"]), start(packages["iris"])
    receiver.app.state.worker.settings.fanout_min_bytes = 10_000  # type: ignore[attr-defined]
    small = orjson.dumps(iris_batch.head(20).to_dict("records"))
    assert post(receiver, small).status_code == 200
    assert chunks_scored(sibling) == 0


@pytest.mark.parametrize(
    ("shape", "ctype"),
    [("split", "application/json"), ("columns", "application/json"), ("quoted", "text/csv"), ("records", "")],
)
def test_bodies_that_cannot_be_cut_are_scored_whole(
    iris_batch: pd.DataFrame,
    shape: str,
    ctype: str,
    iris_workers: tuple[TestClient, TestClient, TestClient],
) -> None:
    """Other JSON shapes, CSV with quotes and bodies of no declared type: one worker scores them."""
    reference, receiver, sibling = iris_workers
    body = {
        "split": lambda: orjson.dumps({"dataframe_split": iris_batch.to_dict("split")}),
        "columns": lambda: orjson.dumps(iris_batch.to_dict("list")),
        "quoted": lambda: iris_batch.to_csv(index=False, quoting=1).encode(),  # every cell quoted
        "records": lambda: orjson.dumps(iris_batch.to_dict("records")),
    }[shape]()
    headers = {"Content-Type": ctype} if ctype else {}
    expected = reference.post("/predictions", content=body, headers=headers)
    got = receiver.post("/predictions", content=body, headers=headers)
    assert got.status_code == expected.status_code == 200
    assert got.content == expected.content
    assert chunks_scored(sibling) == 0


def test_a_busy_sibling_is_not_handed_a_chunk(
    start: Callable[..., TestClient], packages: dict[str, Path], iris_batch: pd.DataFrame
) -> None:
    receiver, sibling = start(packages["iris"]), start(packages["iris"])
    body = orjson.dumps(iris_batch.to_dict("records"))
    busy = sibling.app.state.worker.inflight  # type: ignore[attr-defined]
    with busy:  # the sibling is scoring a request of its own, as its siblings read in its load file
        assert post(receiver, body).status_code == 200
    assert chunks_scored(sibling) == 0
    time.sleep(QUIET_S)  # quiet long enough not to be between two requests of its own clients
    assert post(receiver, body).status_code == 200
    assert chunks_scored(sibling) == 1


def test_a_busy_receiver_still_shares_with_a_quiet_sibling(
    start: Callable[..., TestClient], packages: dict[str, Path], iris_batch: pd.DataFrame
) -> None:
    """Two clients on one worker's connections: the second batch goes to the idle sibling too."""
    receiver, sibling = start(packages["iris"]), start(packages["iris"])
    body = orjson.dumps(iris_batch.to_dict("records"))
    with receiver.app.state.worker.inflight:  # type: ignore[attr-defined]
        assert post(receiver, body).content == post(sibling, body).content
    assert chunks_scored(sibling) == 1


def test_a_worker_is_quiet_only_a_while_after_its_last_request() -> None:
    assert is_quiet(0, idle_since=100.0, now=100.0 + 2 * QUIET_S)
    assert not is_quiet(0, idle_since=100.0, now=100.0 + QUIET_S / 2)  # between two of its requests
    assert not is_quiet(1, idle_since=0.0, now=100.0)


def test_a_sibling_refuses_a_chunk_of_another_version(
    start: Callable[..., TestClient], packages: dict[str, Path]
) -> None:
    sibling = start(packages["iris"])
    scorer: ChunkScorer = sibling.app.state.worker.membership.scorer  # type: ignore[attr-defined]
    deployment = sibling.app.state.worker.registry.get_key("default")  # type: ignore[attr-defined]
    header = ChunkHeader(
        id=1, route="default", identity=identity(deployment), format="json", out="json", first_row=7
    )
    body = (
        b'[{"sepal length (cm)": 5, "sepal width (cm)": 3, "petal length (cm)": 1, "petal width (cm)": 0.2}]'
    )
    reply, payload = scorer.score(msgspec.structs.replace(header, identity="another:version"), body)
    assert (reply.ok, reply.reason, payload) == (False, "version", [])
    reply, payload = scorer.score(msgspec.structs.replace(header, want_rows=True), body)
    assert reply.ok and reply.shape == (1, 3) and reply.rows_shape == (1, 4)
    assert len(payload[0]) == 3 * 8 and np.frombuffer(payload[1]).tolist() == [5, 3, 1, 0.2]
    assert payload[2][:1] == b","  # its rows come encoded, each after a comma, numbered as asked
    assert orjson.loads(payload[2][1:])["rowId"] == 7


def test_a_body_that_cannot_be_cut_is_handed_back_whole(
    iris_batch: pd.DataFrame, iris_workers: tuple[TestClient, TestClient, TestClient]
) -> None:
    """Fan-out declines by raising, with every byte it read, for the ordinary path to score."""
    _, receiver, _ = iris_workers
    body = orjson.dumps({"dataframe_split": iris_batch.to_dict("split")})
    worker = receiver.app.state.worker  # type: ignore[attr-defined]
    deployment = worker.registry.get_key("default")

    async def pieces() -> AsyncIterator[bytes]:
        yield body[:100]
        yield body[100:]

    async def infer() -> bytes:
        with pytest.raises(FanOutDeclined) as declined:
            await worker.membership.fanout.infer(deployment, pieces(), len(body), "json", "json")
        return declined.value.body

    assert receiver.portal.call(infer) == body  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A pipeline over numeric and categorical columns with gaps (it takes a frame, not a float matrix)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(3)
    n = 600
    X = pd.DataFrame({"a": rng.normal(size=n).round(3), "b": rng.normal(size=n).round(3)})
    X["plan"] = rng.choice(["basic", "pro", "team"], n).astype(object)
    X.loc[::17, "a"] = np.nan
    X.loc[::23, "plan"] = None
    y = (X["b"] + (X["plan"] == "pro") > 0.3).astype(int)
    model = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", SimpleImputer(strategy="median"), ["a", "b"]),
                        (
                            "cat",
                            make_pipeline(
                                SimpleImputer(strategy="most_frequent"),
                                OneHotEncoder(handle_unknown="ignore"),
                            ),
                            ["plan"],
                        ),
                    ]
                ),
            ),
            ("forest", RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0)),
        ]
    ).fit(X, y)
    path = tmp_path_factory.mktemp("mixed") / "mixed.mlpkg"
    build_sklearn_package(model, X, path, name="mixed")
    return path, X


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_a_frame_input_model_shares_a_batch_too(
    start: Callable[..., TestClient], mixed: tuple[Path, pd.DataFrame], fmt: str
) -> None:
    """Numeric and text columns: the sibling decodes its chunk as the receiver would the body."""
    package, X = mixed
    reference, receiver, sibling = start(package, shared=False), start(package), start(package)
    if fmt == "json":
        body, ctype = orjson.dumps(X.to_dict("records")), "application/json"
    else:
        body, ctype = X.to_csv(index=False).encode(), "text/csv"
    expected = post(reference, body, ctype)
    assert expected.status_code == 200
    got = post(receiver, body, ctype)
    assert got.status_code == 200
    assert got.content == expected.content
    assert chunks_scored(sibling) == 1


def test_a_frame_input_model_with_hooks_is_scored_whole(
    start: Callable[..., TestClient], mixed: tuple[Path, pd.DataFrame]
) -> None:
    """The hooks need every row as the model saw it; a sibling sends rows back only as floats."""
    package, X = mixed
    heard: list[Any] = []
    receiver = start(package, hooks=[lambda *args: heard.append(args)])
    sibling = start(package)
    response = post(receiver, orjson.dumps(X.to_dict("records")))
    assert response.status_code == 200
    assert chunks_scored(sibling) == 0
    assert len(heard) == 1 and len(heard[0][2]) == len(X)
