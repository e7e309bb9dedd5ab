#!/usr/bin/env python3
"""How long a prediction takes to show in the service's health figures, with default settings.

Real processes, loopback only: the service (``shipmate server``, SQLite), the prediction
server (``shipmate serve`` of the shared benchmark GBC, monitoring into a FILESYSTEM spool
with the default flush settings, ``MLOPS_DEPLOYMENT_ID`` set to a deployment made on the
service) and the monitoring agent (``shipmate monitor`` on that spool, default settings).
A client posts single-row predictions at a steady rate; a poller asks the service for the
deployment's health every 0.1 s. A prediction's lag is from the moment its request was sent
to the first poll whose ``totalPredictions`` counts it; p50, p95 and max over all of them.

Peer in the same run: the same chain with the fastest settings (the prediction server
flushing every 0.2 s, the agent posting after 0.1 s), which shows what the defaults cost.

    python3 bench/monitoring_latency.py                       # 2 x 30 s at 20 predictions/s
    python3 bench/monitoring_latency.py --seconds 60 --rate 50

Needs the model package `serve_bench.py` prepares (built here if missing).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from monitoring_agent_bench import SHIPMATE, Service, agent_config, cpu_seconds, pct
from serve_bench import CACHE, free_port, prepare, serve_command, stop, wait_ready

DEFAULTS: dict[str, Any] = {"serve": "", "agent": {}}
FASTEST: dict[str, Any] = {"serve": ";flush_seconds=0.2", "agent": {"agentPendingRecordsTimeoutMs": 100}}


@contextlib.contextmanager
def chain(
    work: Path, service: Service, package: Path, deployment: str, token: str, settings: dict[str, Any]
) -> Iterator[tuple[str, list[int]]]:
    """The prediction server and the monitoring agent, running; yields the prediction URL and pids."""
    spool = work / f"spool-{time.monotonic_ns()}"
    spool.mkdir()
    port = free_port()
    cmd = [*serve_command(package, port, 1), "--monitor-settings",
           f"spooler_type=FILESYSTEM;directory={spool}{settings['serve']}"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "PREDICTION_API_", "MONITOR"))}
    env["MLOPS_DEPLOYMENT_ID"] = deployment
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # this checkout's
    with open(work / "serve.log", "ab") as out:
        serve = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    config = agent_config(work / "agent.yaml", service.url, spool, **settings["agent"])
    with open(work / "agent.log", "ab") as out:
        agent = subprocess.Popen(
            [*SHIPMATE, "monitor", "--config", str(config)],
            env={**os.environ, "MLOPS_API_TOKEN": token},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping", serve)
        yield f"http://127.0.0.1:{port}/predictions", [serve.pid, agent.pid]
    finally:
        stop(serve)
        agent.terminate()
        try:
            agent.wait(20)
        except subprocess.TimeoutExpired:
            agent.kill()


def measure(
    args: argparse.Namespace, url: str, admin: Any, deployment: str, pids: list[int]
) -> dict[str, Any]:
    import httpx

    body = (args.models / "records_1.json").read_bytes()
    headers = {"content-type": "application/json"}
    start_total = admin.service_health(deployment, resolution="day").summary.total_predictions
    sent: list[tuple[int, float]] = []  # (predictions counted once this one is, when it was sent)
    seen: list[tuple[int, float]] = []
    stop_polling = threading.Event()

    def poller() -> None:
        while not stop_polling.is_set():
            total = admin.service_health(deployment, resolution="day").summary.total_predictions
            seen.append((total - start_total, time.monotonic()))
            time.sleep(0.1)

    polling = threading.Thread(target=poller)
    polling.start()
    cpu_before = [cpu_seconds(pid) for pid in pids]
    with httpx.Client(timeout=30) as client:
        began = next_at = time.monotonic()
        while time.monotonic() - began < args.seconds:
            at = time.monotonic()
            client.post(url, content=body, headers=headers).raise_for_status()
            sent.append((len(sent) + 1, at))
            next_at += 1.0 / args.rate
            time.sleep(max(0.0, next_at - time.monotonic()))
    cpu = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
    deadline = time.monotonic() + 60  # the last predictions arrive, or count as lost
    while time.monotonic() < deadline and (not seen or seen[-1][0] < len(sent)):
        time.sleep(0.2)
    stop_polling.set()
    polling.join()
    lags = []
    for count, at in sent:
        arrival = next((when for total, when in seen if total >= count), None)
        if arrival is not None:
            lags.append(arrival - at)
    return {
        "predictions": len(sent),
        "arrived": len(lags),
        "lagP50S": round(statistics.median(lags), 2) if lags else None,
        "lagP95S": round(pct(lags, 95), 2),
        "lagMaxS": round(max(lags, default=float("nan")), 2),
        "serveCpuS": round(cpu[0], 2),
        "agentCpuS": round(cpu[1], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="traffic per chain")
    ap.add_argument("--rate", type=float, default=20.0, help="single-row predictions per second")
    ap.add_argument("--models", type=Path, default=CACHE / "models")
    args = ap.parse_args()
    package = args.models / "gbc.mlpkg"
    if not package.exists():
        args.models.mkdir(parents=True, exist_ok=True)
        package = prepare(args.models, Path(sys.executable))
    from monitoring_agent_bench import ADMIN_TOKEN

    from shipmate.client import ShipmateClient

    work = Path(tempfile.mkdtemp(prefix="shipmate-monlatency-"))
    service = Service(work)
    try:
        admin = ShipmateClient(service.url, ADMIN_TOKEN, timeout=60)
        env = admin.create_environment(f"bench-{time.monotonic_ns()}", "filesystem")
        uploaded = admin.upload_model_package(package)
        _, token = admin.create_token(kind="agent", environment_id=env.id)
        for name, settings in (("defaults", DEFAULTS), ("fastest (peer)", FASTEST)):
            deployment = admin.create_deployment(env.id, uploaded.id, name=f"latency-{len(name)}").id
            with chain(work, service, package, deployment, token, settings) as (url, pids):
                result = measure(args, url, admin, deployment, pids)
            print(f"{name}: {args.rate:g} single-row predictions/s, {args.seconds:g} s: {result}", flush=True)
        admin.close()
    finally:
        service.stop()
    subprocess.run(["uptime"], check=False)


if __name__ == "__main__":
    main()
