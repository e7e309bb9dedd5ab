#!/usr/bin/env python3
"""Monitoring agent benchmarks: forwarding throughput, CPU at a steady prediction rate, and the delay
from a record being spooled to it showing in the service's health figures.

All against one real service (``shipmate server``, SQLite, its own process) and the real agent
(``shipmate monitor``, its own process), loopback only, every wait bounded:

* ``throughput``  a spool of records written beforehand (1,000 rows x 20 features each, the size of a
                  prediction server's flush at 1,000 rows, four deployments, 360 records per
                  deployment-minute as at 6,000 predictions/s) forwarded with ``runOnce`` and the
                  default settings: rows/s over the agent's wall time, and its CPU seconds. The same
                  with every record in a deployment-minute of its own (nothing merges, the service
                  writes one bucket per record). Peer in the same run: the same agent posting each
                  record alone (``agentMaxAggregatedRecords: 1``), i.e. forwarding without batching.
* ``steady``      a writer appends what a prediction server at 6,000 predictions/s flushes (six
                  1,000-row records a second) while the agent runs with its defaults; the agent's
                  CPU (utime + stime from /proc) over the window as a share of one core, and per
                  record the delay from its append to the service's health counting it (p50, p95).

    python3 bench/monitoring_agent_bench.py                   # about a minute
    python3 bench/monitoring_agent_bench.py --records 4000 --steady-seconds 30 --json /tmp/mon.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHIPMATE = [sys.executable, "-c", "from shipmate.cli.main import main; main()"]
ADMIN_TOKEN = "smt_bench-admin-token-0123456789abcdef"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class Service:
    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = work / "service.log"
        env = {**os.environ, "SHIPMATE_ADMIN_TOKEN": ADMIN_TOKEN}
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [*SHIPMATE, "server", "--data-dir", str(work / "service"), "--port", str(self.port),
                 "--log-level", "warning"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"the service did not start: {self.log.read_text()[-1000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def make_world(service: Service, work: Path, deployments: int) -> tuple[Any, list[str], str]:
    from shipmate.client import ShipmateClient
    from shipmate.server.testing import write_test_package

    admin = ShipmateClient(service.url, ADMIN_TOKEN, timeout=60)
    env = admin.create_environment(f"bench-{time.monotonic_ns()}", "filesystem")
    version = str(time.monotonic_ns())
    package = admin.upload_model_package(write_test_package(work / f"bench-{version}.mlpkg", version=version))
    ids = [admin.create_deployment(env.id, package.id, name=f"bench-{i}").id for i in range(deployments)]
    _, token = admin.create_token(kind="agent", environment_id=env.id)
    return admin, ids, token


def realistic_record(deployment_id: str, minute: int, rows: int, rng: random.Random) -> Any:
    """A flush of ``rows`` single-row requests with 20 features in 12 bins each and one output."""
    from shipmate.monitoring.records import BinCounts, MinuteAggregate

    record = MinuteAggregate(deployment_id=deployment_id, minute=minute, model_id="m-1")
    record.requests = rows
    record.rows = rows
    for _ in range(50):  # a sample of latencies is enough to fill realistic histogram buckets
        ms = rng.lognormvariate(2.0, 0.5)
        record.response_ms.observe(ms)
        record.execution_ms.observe(ms * 0.6)
    for i in range(8):
        record.add_consumer(f"consumer-{i}", rows // 8)
    for f in range(20):
        counts = [rng.randint(0, rows // 6) for _ in range(12)]
        values = [rng.gauss(0.0, 1.0) for _ in range(4)]  # full-precision floats, as real moments are
        record.features[f"feature_{f}"] = BinCounts(
            counts=counts, count=sum(counts), missing=counts[-1], minimum=min(values), maximum=max(values),
            total=values[2] * sum(counts), total_sq=abs(values[3]) * sum(counts),
        )  # fmt: skip
    record.predictions["score"] = BinCounts(counts=[rows // 10] * 10 + [0], count=rows)
    record.flushed_at = time.time()
    return record


def write_spool(directory: Path, records: list[Any]) -> None:
    """The records appended as a prediction server's flusher appends them (framed, compressed)."""
    import orjson

    from shipmate.monitoring.fs_spool import FilesystemSpool

    spool = FilesystemSpool(directory, max_files=100_000, file_max_size=10 << 20)
    for record in records:
        if not spool.write(orjson.dumps(record.to_json())):
            raise RuntimeError(f"the spool dropped a record: {spool.dropped}")
    spool.close()


def agent_config(path: Path, url: str, spool: Path, **extra: Any) -> Path:
    import yaml

    doc = {
        "mlopsUrl": url,
        "channelConfigs": [{"type": "FS_SPOOL", "details": {"name": "fs", "spoolDirectoryPath": str(spool)}}],
        **extra,
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def run_once(config: Path, token: str, logfile: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``runOnce`` agent process."""
    env = {**os.environ, "MLOPS_API_TOKEN": token}
    started = time.perf_counter()
    with open(logfile, "ab") as out:
        process = subprocess.Popen(
            [*SHIPMATE, "monitor", "--config", str(config)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"the agent failed: {logfile.read_text()[-1000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def throughput(args: argparse.Namespace, work: Path, service: Service) -> dict[str, Any]:
    rng = random.Random(1)
    admin, deployments, token = make_world(service, work, 4)
    base = int(time.time() // 60) - args.records // (360 * 4) - 2
    records = [
        realistic_record(deployments[i % 4], base + i // (360 * 4), args.rows, rng)
        for i in range(args.records)
    ]
    import orjson

    size = len(orjson.dumps(records[0].to_json()))
    results: dict[str, Any] = {"recordBytes": size, "rowsPerRecord": args.rows}
    # the start-up of an agent process alone, to tell it apart from forwarding
    empty = work / "empty-spool"
    empty.mkdir()
    startup, startup_cpu = run_once(agent_config(work / "empty.yaml", service.url, empty, runOnce=True),
                                    token, work / "agent-empty.log")  # fmt: skip
    results["startupSeconds"] = round(startup, 2)
    # the worst case for merging: every record in a deployment-minute of its own (one bucket each)
    scattered = [
        realistic_record(deployments[i % 4], base - 1 - i // 4, args.rows, rng)
        for i in range(args.scattered_records)
    ]
    for name, chosen, extra in (
        ("merged (defaults)", records, {}),
        ("nothing to merge (defaults)", scattered, {}),
        ("one record per post (peer)", records[: args.peer_records], {"agentMaxAggregatedRecords": 1}),
    ):
        count = len(chosen)
        spool = work / f"spool-{len(results)}"
        write_spool(spool, chosen)
        for r in chosen:
            r.record_id = f"{r.record_id[:24]}{len(results):08d}"  # fresh ids for the next scenario
        config = agent_config(work / f"agent-{len(results)}.yaml", service.url, spool, runOnce=True, **extra)
        wall, cpu = run_once(config, token, work / f"agent-{len(results)}.log")
        forwarding = max(wall - startup, 1e-9)
        rows = count * args.rows
        results[name] = {
            "records": count, "rows": rows, "wallSeconds": round(wall, 2),
            "rowsPerSecond": round(rows / wall), "rowsPerSecondAfterStartup": round(rows / forwarding),
            "agentCpuSeconds": round(cpu - startup_cpu, 2),
        }  # fmt: skip
        log(f"throughput {name}: {results[name]}")
    admin.close()
    return results


def steady(args: argparse.Namespace, work: Path, service: Service) -> dict[str, Any]:
    rng = random.Random(2)
    admin, deployments, token = make_world(service, work, 1)
    deployment = deployments[0]
    spool = work / "steady-spool"
    spool.mkdir()
    config = agent_config(work / "steady.yaml", service.url, spool)  # the agent's defaults
    env = {**os.environ, "MLOPS_API_TOKEN": token}
    with open(work / "agent-steady.log", "ab") as out:
        agent = subprocess.Popen([*SHIPMATE, "monitor", "--config", str(config)], env=env, stdout=out,
                                 stderr=subprocess.STDOUT)  # fmt: skip
    time.sleep(3)  # start-up
    per_second = args.rate // args.rows
    written: list[tuple[int, float]] = []  # (cumulative requests, when appended)
    stop = threading.Event()
    stop_writing = threading.Event()

    def writer() -> None:
        import orjson

        from shipmate.monitoring.fs_spool import FilesystemSpool

        producer = FilesystemSpool(spool, max_files=100_000, file_max_size=10 << 20)  # as serve writes
        total = 0
        next_at = time.monotonic()
        while not stop_writing.is_set():
            next_at += 1.0 / per_second
            record = realistic_record(deployment, int(time.time() // 60), args.rows, rng)
            if not producer.write(orjson.dumps(record.to_json())):
                raise RuntimeError(f"the spool dropped a record: {producer.dropped}")
            total += record.requests
            written.append((total, time.monotonic()))
            time.sleep(max(0.0, next_at - time.monotonic()))
        producer.close()

    seen: list[tuple[int, float]] = []

    def poller() -> None:
        while not stop.is_set():
            summary = admin.service_health(deployment, resolution="day").summary
            seen.append((summary.total_requests, time.monotonic()))
            time.sleep(0.1)

    cpu_before, agent_before = cpu_seconds(agent.pid), time.monotonic()
    threads = [threading.Thread(target=writer), threading.Thread(target=poller)]
    for t in threads:
        t.start()
    time.sleep(args.steady_seconds)
    cpu_after, agent_after = cpu_seconds(agent.pid), time.monotonic()
    stop_writing.set()
    time.sleep(10)  # let the last records arrive before measuring their delay
    stop.set()
    for t in threads:
        t.join()
    agent.terminate()
    agent.wait(30)
    delays = []
    for total, at in written:
        arrival = next((when for count, when in seen if count >= total), None)
        if arrival is not None:
            delays.append(arrival - at)
    admin.close()
    result = {
        "predictionsPerSecond": per_second * args.rows, "recordsPerSecond": per_second,
        "seconds": args.steady_seconds, "agentCpuShareOfOneCore": round((cpu_after - cpu_before)
                                                                      / (agent_after - agent_before), 4),
        "records": len(written), "arrived": len(delays),
        "delayP50Seconds": round(statistics.median(delays), 2) if delays else None,
        "delayP95Seconds": round(pct(delays, 95), 2),
        "delayMaxSeconds": round(max(delays, default=float("nan")), 2),
    }  # fmt: skip
    log(f"steady: {result}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=3000, help="spool records in the throughput run")
    parser.add_argument("--peer-records", type=int, default=600, help="records for the one-per-post peer")
    parser.add_argument(
        "--scattered-records", type=int, default=2000, help="records in the nothing-to-merge run (<= 11,000)"
    )
    parser.add_argument("--rows", type=int, default=1000, help="rows per record (the producer's flush size)")
    parser.add_argument("--rate", type=int, default=6000, help="predictions per second in the steady run")
    parser.add_argument("--steady-seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shipmate-monbench-"))
    service = Service(work)
    try:
        figures = {
            "cpuCount": os.cpu_count(),
            "loadAverage": os.getloadavg(),
            "throughput": throughput(args, work, service),
            "steady": steady(args, work, service),
        }
    finally:
        service.stop()
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
