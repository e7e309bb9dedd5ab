"""``shipmate serve --deployments-dir`` (two worker processes) under 200 concurrent clients while
its model is replaced over and over by the filesystem plugin itself (atomic directory swaps).

Pass: not one request fails (every answer a 200 with a prediction from one of the two models,
no connection error), both models were served, and memory is flat. "Flat" means: the peak RSS
of the worker processes (summed, read from /proc every 0.5 s) in the last third of the run is
within 20 % of the peak in the first third — a leak of a model copy per swap would break it.

The run lasts SHIPMATE_FAULTS_LOAD_SECONDS (default 60; set 10 while developing).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn.datasets import load_iris

from shipmate.packages import BuildOptions, build_custom_package
from shipmate.plugin.info import DeploymentInfo
from shipmate.plugins.filesystem import FilesystemPlugin

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(600)]

CLIENTS = 200
SECONDS = float(os.environ.get("SHIPMATE_FAULTS_LOAD_SECONDS", "60"))
SWAP_EVERY = float(os.environ.get("SHIPMATE_FAULTS_SWAP_SECONDS", "1"))
"""Seconds between model replacements."""
FLAT = 1.20
"""Last third's peak RSS may be at most this times the first third's."""
ROW = {"sepal length (cm)": 6.9, "sepal width (cm)": 3.2, "petal length (cm)": 5.7, "petal width (cm)": 2.3}


def constant_model(folder: Path, label: int) -> Path:
    """A custom iris model that always answers ``label``: which model served a request is visible."""
    src = folder / f"src-{label}"
    src.mkdir()
    probabilities = ", ".join(f"{k}: [{1.0 if k == label else 0.0}] * len(data)" for k in range(3))
    (src / "custom.py").write_text(
        f"import pandas as pd\ndef score(model, data):\n    return pd.DataFrame({{{probabilities}}})\n"
    )
    X, _ = load_iris(return_X_y=True, as_frame=True)
    path = folder / f"always-{label}.mlpkg"
    build_custom_package(
        src,
        X,
        path,
        name=f"always-{label}",
        target_type="multiclass",
        options=BuildOptions(class_labels=[0, 1, 2]),
    )
    return path


def worker_pids(parent: int) -> list[int]:
    """The uvicorn worker processes: children of the server started by multiprocessing's spawn."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            found.append(int(entry))
    return sorted(found)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    def __init__(self, parent: int) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.parent = parent
        self.samples: list[tuple[float, int]] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop_event.is_set():
            try:
                total = sum(rss_kib(pid) for pid in worker_pids(self.parent))
            except OSError:
                total = 0
            if total:
                self.samples.append((time.monotonic() - started, total))
            self.stop_event.wait(0.5)


class Replacer(threading.Thread):
    """Replaces the deployment's model every SWAP_EVERY seconds with the filesystem plugin."""

    def __init__(self, plugin: FilesystemPlugin, packages: list[Path]) -> None:
        super().__init__(name="replacer", daemon=True)
        self.plugin = plugin
        self.packages = packages
        self.swaps = 0
        self.problems: list[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(SWAP_EVERY):
            old, new = self.swaps % 2, (self.swaps + 1) % 2
            info = DeploymentInfo.from_dict(
                {
                    "id": "live",
                    "modelId": f"m{old}",
                    "newModelId": f"m{new}",
                    "modelArtifact": str(self.packages[new]),
                }
            )
            result = self.plugin.deployment_replace_model(info)
            if not result.ok:
                self.problems.append(str(result.msg))
            self.swaps += 1


async def load(url: str, until: float) -> tuple[Counter[Any], list[str], int, list[float]]:
    """CLIENTS clients, each sending one request after another until ``until``."""
    served: Counter[Any] = Counter()
    failures: list[str] = []
    latencies: list[float] = []
    sent = 0
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one_client() -> None:
            nonlocal sent
            while time.monotonic() < until:
                sent += 1
                began = time.monotonic()
                try:
                    reply = await client.post("/deployments/live/predictions", json=[ROW])
                except httpx.HTTPError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                finally:
                    latencies.append(time.monotonic() - began)
                if reply.status_code != 200:
                    failures.append(f"{reply.status_code} {reply.text[:200]}")
                    continue
                served[reply.json()["data"][0]["prediction"]] += 1

        await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
    return served, failures, sent, latencies


def test_200_clients_while_the_model_is_replaced_fail_nothing_and_memory_stays_flat(
    tmp_path: Path, processes: Any, faults: Any
) -> None:
    models = [constant_model(tmp_path, 0), constant_model(tmp_path, 2)]
    base = tmp_path / "deployments"
    base.mkdir()
    plugin = FilesystemPlugin({"baseDir": str(base), "deploymentInfoFile": "config.yml"})
    started = plugin.deployment_start(
        DeploymentInfo.from_dict({"id": "live", "modelId": "m0", "modelArtifact": str(models[0])})
    )
    assert started.ok, started.msg

    port = faults.free_port()
    server = processes.start(
        [*faults.shipmate, "serve", "--deployments-dir", str(base), "--workers", "2",
         "--poll-interval", "0.1", "--port", str(port), "--work-dir", str(tmp_path / "work")],
        "serve",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    up = faults.wait_until(lambda: not server.alive() or faults.http_ready(f"{url}/ping"), 90, 0.2)
    assert up and server.alive(), server.tail()
    assert faults.wait_until(lambda: len(worker_pids(server.pid)) == 2, 30), "two workers expected"

    sampler = Sampler(server.pid)
    replacer = Replacer(plugin, models)
    sampler.start()
    replacer.start()
    began = time.monotonic()
    served, failures, sent, latencies = asyncio.run(load(url, began + SECONDS))
    elapsed = time.monotonic() - began
    replacer.stop_event.set()
    sampler.stop_event.set()
    replacer.join(30)
    sampler.join(30)

    assert not failures, f"{len(failures)} of {sent} requests failed, e.g. {failures[:5]}"
    assert not replacer.problems, replacer.problems[:5]
    assert set(served) <= {0, 2} and served[0] > 0 and served[2] > 0, served
    assert replacer.swaps >= SECONDS / SWAP_EVERY / 2, f"only {replacer.swaps} swaps"
    assert server.alive(), server.tail()

    third = SECONDS / 3
    first = [kib for t, kib in sampler.samples if t < third]
    last = [kib for t, kib in sampler.samples if t >= SECONDS - third]
    assert first and last, sampler.samples
    assert max(last) <= FLAT * max(first), (
        f"worker RSS grew: peak {max(first)} KiB in the first third, {max(last)} KiB in the last"
    )
    faults.figures(
        "serving_under_load",
        clients=CLIENTS,
        seconds=round(elapsed, 1),
        requests=sent,
        served=sum(served.values()),
        failed=len(failures),
        per_second=round(sum(served.values()) / elapsed),
        latency_p50_s=round(statistics.median(latencies), 2),
        latency_p99_s=round(statistics.quantiles(latencies, n=100)[98], 2),
        latency_max_s=round(max(latencies), 2),
        swaps=replacer.swaps,
        by_model=dict(served),
        rss_first_third_peak_mib=round(max(first) / 1024, 1),
        rss_last_third_peak_mib=round(max(last) / 1024, 1),
        rss_ratio=round(max(last) / max(first), 3),
    )
