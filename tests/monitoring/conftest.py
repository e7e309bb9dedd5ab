"""Fixtures for the monitoring tests.

The producer side: a manifest with monitoring bins (no model needed) and a stand-in
deployment. The monitoring agent's side: a real service (in a thread or a process), a
deployment and an agent token on it, spools written as the prediction server would, and
real processes to kill."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import SecretStr

from shipmate.monitoring.fs_spool import FilesystemSpool
from shipmate.monitoring.records import MinuteAggregate
from shipmate.packages import Feature, FeatureType, Manifest
from shipmate.packages.baseline import feature_bins, output_bins
from shipmate.server.settings import ServerSettings
from shipmate.server.testing import TEST_ADMIN_TOKEN, LiveServer, live_server, write_test_package

SHIPMATE = [sys.executable, "-c", "from shipmate.cli.main import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def make_record(
    deployment_id: str, minute: int | None = None, requests: int = 2, rows: int = 10
) -> MinuteAggregate:
    record = MinuteAggregate(
        deployment_id=deployment_id, minute=minute or int(time.time() // 60), model_id="m-1"
    )
    for i in range(requests):
        record.response_ms.observe(5.0 + i)
        record.execution_ms.observe(2.0 + i)
    record.requests = requests
    record.rows = rows
    record.flushed_at = time.time()
    return record


def spool_writer(directory: Path, file_max_size: int = 10 << 20) -> FilesystemSpool:
    """The prediction server's spool writer, as one producer process holds it (never full in a test)."""
    return FilesystemSpool(directory, max_files=100_000, file_max_size=file_max_size)


def append_records(spool: FilesystemSpool, records: list[MinuteAggregate]) -> None:
    """Write records as the prediction server's flusher does; a dropped record fails the test."""
    import orjson

    for record in records:
        assert spool.write(orjson.dumps(record.to_json())), f"the spool dropped a record: {spool.dropped}"


def damage_last_record(spool: FilesystemSpool) -> None:
    """Flip a byte inside the last frame's payload (a disk that lost a bit): its CRC no longer matches."""
    assert spool._path is not None
    with open(spool._path, "r+b") as f:
        f.seek(-2, os.SEEK_END)
        byte = f.read(1)
        f.seek(-2, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0xFF]))


def tear_a_record(spool: FilesystemSpool) -> Path:
    """Append half a frame to the spool's current file, as a producer killed mid-write leaves it."""
    from shipmate.monitoring.fs_spool import encode_frame

    assert spool._path is not None
    frame = encode_frame(b'{"v": 1, "kind": "aggregate", "id": "torn"}')
    with open(spool._path, "ab") as f:
        f.write(frame[: len(frame) // 2])
    return spool._path


def write_config(
    path: Path, url: str, channels: list[dict[str, Any]], token: str | None = None, **extra: Any
) -> Path:
    doc: dict[str, Any] = {
        "mlopsUrl": url,
        "channelConfigs": channels,
        "agentPendingRecordsTimeoutMs": 200,
        "httpRetryMaxDelay": 500,
        **extra,
    }
    if token is not None:
        doc["apiToken"] = token
    path.write_text(yaml.safe_dump(doc))
    return path


def fs_channel(directory: Path, name: str = "fs") -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    return {"type": "FS_SPOOL", "details": {"name": name, "spoolDirectoryPath": str(directory)}}


@dataclass
class World:
    url: str
    environment_id: str
    deployment_id: str
    agent_token: str
    admin: Any


def make_world(url: str, admin_token: str, tmp_path: Path) -> World:
    from shipmate.client import ShipmateClient

    admin = ShipmateClient(url, admin_token)
    env = admin.create_environment(f"mon-{time.monotonic_ns()}", "filesystem")
    package = admin.upload_model_package(write_test_package(tmp_path / f"p{time.monotonic_ns()}.mlpkg"))
    deployment = admin.create_deployment(env.id, package.id, name="monitored")
    _, secret = admin.create_token(kind="agent", environment_id=env.id)
    return World(url, env.id, deployment.id, secret, admin)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """The service's store for a test run on both: SQLite (None) or a fresh PostgreSQL database
    (tests/conftest.py's `pg_url`)."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LiveServer]:
    settings = ServerSettings(data_dir=tmp_path / "service", admin_token=SecretStr(TEST_ADMIN_TOKEN))
    with live_server(settings) as running:
        yield running


@pytest.fixture
def world(service: LiveServer, tmp_path: Path) -> Iterator[World]:
    made = make_world(service.base_url, service.admin_token, tmp_path)
    yield made
    made.admin.close()


# ---- real processes ----------------------------------------------------------------------------


def _kill_group(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)


class ServiceProcess:
    """``shipmate server`` in its own process group on a fixed port (so it can come back on it)."""

    def __init__(self, data_dir: Path, log: Path, database_url: str | None = None) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        import httpx

        env = {**os.environ, "SHIPMATE_ADMIN_TOKEN": TEST_ADMIN_TOKEN}
        if self.database_url:
            env["SHIPMATE_DATABASE_URL"] = self.database_url
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*SHIPMATE, "server", "--data-dir", str(self.data_dir), "--port", str(self.port),
                 "--log-level", "warning"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

        def up() -> bool:
            try:
                return httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(up, 60), f"service did not start: {self.log.read_text()[-2000:]}"
        return self

    def kill(self) -> None:
        if self.process is not None:
            _kill_group(self.process)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            _kill_group(self.process, signal.SIGTERM)
            self.process = None


class MonitorProcess:
    """``shipmate monitor --config F`` in its own process group, the token in ``MLOPS_API_TOKEN``."""

    def __init__(self, config: Path, token: str, log: Path) -> None:
        self.config = config
        self.token = token
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> MonitorProcess:
        env = {**os.environ, "MLOPS_API_TOKEN": self.token}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*SHIPMATE, "monitor", "--config", str(self.config)],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return self

    def kill(self) -> None:
        if self.process is not None:
            _kill_group(self.process)
            self.process = None

    def terminate(self) -> int | None:
        if self.process is None:
            return None
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            _kill_group(self.process)
            code = None
        self.process = None
        return code


class PrivateBroker:
    """A RabbitMQ node of its own (port, data directory), so a test may SIGKILL it without touching
    the machine's shared broker."""

    def __init__(self) -> None:
        import tempfile

        # the node runs as the rabbitmq user, which cannot enter pytest's private tmp_path
        self.base = Path(tempfile.mkdtemp(prefix="shipmate-broker-"))
        self.base.chmod(0o755)
        self.port = free_port()
        self.dist_port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        self.process: subprocess.Popen[bytes] | None = None
        self.name = f"shipmate{self.port}@localhost"

    def start(self) -> PrivateBroker:
        import shutil

        if shutil.which("rabbitmq-server") is None:
            pytest.skip("rabbitmq-server is not installed")
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("[].\n")
        if os.geteuid() == 0:
            shutil.chown(self.base, "rabbitmq", "rabbitmq")
            for path in self.base.rglob("*"):
                shutil.chown(path, "rabbitmq", "rabbitmq")
        b = self.base
        env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.name, "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port), "RABBITMQ_MNESIA_BASE": str(b / "mnesia"),
            "RABBITMQ_LOG_BASE": str(b / "log"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(b / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(b / "pid"), "RABBITMQ_FEATURE_FLAGS_FILE": str(b / "feature_flags"),
            "RABBITMQ_QUORUM_DIR": str(b / "quorum"), "RABBITMQ_STREAM_DIR": str(b / "stream"),
            "RABBITMQ_CONFIG_FILE": str(b / "none"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(b / "none-advanced"),
        }  # fmt: skip
        with open(b / "launcher.log", "ab") as log:
            self.process = subprocess.Popen(
                ["rabbitmq-server"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=b,
            )  # fmt: skip

        def up() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return self.process is None or self.process.poll() is not None

        if not wait_until(up, 90, 0.25) or self.process.poll() is not None:
            self.kill()
            pytest.skip(f"a private RabbitMQ node did not start: {(b / 'launcher.log').read_text()[-500:]}")
        return self

    def _beam_pids(self) -> list[int]:
        """The node's Erlang VM: it runs under ``su`` in a session of its own, so it is found by the
        node name in its environment."""
        marker = f"RABBITMQ_NODENAME={self.name}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if not (entry / "cmdline").read_bytes().split(b"\0")[0].endswith(b"beam.smp"):
                    continue
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
        return pids

    def kill(self) -> None:
        pids = self._beam_pids()
        assert pids or self.process is None or self.process.poll() is not None, "the node's VM is not found"
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(20)
            self.process = None

    def remove(self) -> None:
        import shutil

        self.kill()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def processes() -> Iterator[list[Any]]:
    """Everything a test starts, killed at the end whatever happened."""
    started: list[Any] = []
    yield started
    for process in reversed(started):
        getattr(process, "remove", process.kill)()


@pytest.fixture
def mon() -> Any:
    """The helpers above, for test modules (which cannot import this file)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        append_records=append_records, spool_writer=spool_writer, damage_last_record=damage_last_record,
        tear_a_record=tear_a_record, free_port=free_port, fs_channel=fs_channel, make_record=make_record,
        wait_until=wait_until, write_config=write_config, make_world=make_world,
        ServiceProcess=ServiceProcess, MonitorProcess=MonitorProcess, PrivateBroker=PrivateBroker,
    )  # fmt: skip


@dataclass(frozen=True)
class FakeDeployment:
    """The attributes of `shipmate.serving.deployments.Deployment` the recorder reads."""

    id: str
    manifest: Manifest
    model_id: str | None = "m-1"
    package_sha256: str = "0" * 64
    features: tuple[str, ...] = field(default=())


def make_manifest(
    target: str = "binary", features: int = 3, seed: int = 0, with_bins: bool = True, categorical: bool = True
) -> Manifest:
    rng = np.random.default_rng(seed)
    n = 500
    columns: dict[str, Any] = {f"x{i}": rng.normal(i, 1 + i, size=n) for i in range(features)}
    columns["colour"] = rng.choice(["red", "green", "blue", "grey"], size=n, p=[0.5, 0.3, 0.15, 0.05])
    frame = pd.DataFrame(columns)
    feats = [Feature(name=f"x{i}", type=FeatureType.NUMERIC) for i in range(features)]
    if categorical:
        feats.append(Feature(name="colour", type=FeatureType.CATEGORICAL))
    baseline: dict[str, dict[str, Any]] = {}
    for f in feats:
        values = frame[f.name]
        summary: dict[str, Any] = {"count": n, "missing": 0}
        if f.type is FeatureType.NUMERIC:
            qs = np.quantile(values, [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1])
            summary.update(
                min=float(qs[0]),
                max=float(qs[-1]),
                quantiles=dict(zip(("p5", "p25", "p50", "p75", "p95"), map(float, qs[1:-1]), strict=True)),
            )
        else:
            summary.update(top={k: int(v) for k, v in values.value_counts().items()}, other=0)
        if with_bins:
            summary["bins"] = feature_bins(values, f.type)
        baseline[f.name] = summary
    labels: list[Any] | None = ["no", "yes"] if target == "binary" else None
    manifest = Manifest(
        name="fake",
        framework="sklearn",
        target_type=target,
        class_labels=labels,
        features=feats,
        baseline=baseline,
        created_at=datetime.now(UTC),
        model_path="model.joblib",
        files={"model.joblib": "0" * 64},
    )
    if not with_bins:
        return manifest
    if target == "binary":
        p = rng.uniform(size=n)
        outputs = output_bins(manifest, np.column_stack([1 - p, p]), None)
    else:
        outputs = output_bins(manifest, None, rng.normal(size=n))
    return manifest.model_copy(update={"prediction_baseline": outputs})


@pytest.fixture
def manifest() -> Manifest:
    return make_manifest()


@pytest.fixture
def deployment(manifest: Manifest) -> FakeDeployment:
    return FakeDeployment(id="d-1", manifest=manifest, features=tuple(manifest.feature_names))


@pytest.fixture
def numeric() -> FakeDeployment:
    """A deployment of an all-numeric model (the server then hands rows over as a float matrix)."""
    manifest = make_manifest(categorical=False)
    return FakeDeployment(id="d-1", manifest=manifest, features=tuple(manifest.feature_names))
