"""Crash safety with real processes: SIGKILL the monitoring agent, the service and the broker at random
moments while records flow, restart them, and check that the service's health counts every record
exactly once."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from shipmate.monitoring.fs_spool import FilesystemSpoolReader, spool_files
from shipmate.server.testing import TEST_ADMIN_TOKEN

pytestmark = pytest.mark.slow


def _totals(world: Any) -> tuple[int, int] | None:
    from shipmate.client import ShipmateError

    try:
        summary = world.admin.service_health(world.deployment_id, resolution="day").summary
    except ShipmateError:
        return None
    return summary.total_requests, summary.total_predictions


def _all_counted(world: Any, want: tuple[int, int], stalled_s: float = 120.0) -> bool:
    """Whether the service counts ``want``, waiting as long as the count keeps moving: a busy machine
    drains a backlog slowly, but a lost record stops it short for good (no change in ``stalled_s``)."""
    last, moved = _totals(world), time.monotonic()
    while last != want:
        if time.monotonic() - moved > stalled_s:
            return False
        time.sleep(0.5)
        now = _totals(world)
        if now != last:
            last, moved = now, time.monotonic()
    return True


def test_sigkill_of_the_agent_and_the_service_loses_nothing_and_counts_nothing_twice(
    tmp_path: Path, mon: Any, processes: list[Any], store_url: str | None
):
    rng = random.Random(20261207)
    service = mon.ServiceProcess(tmp_path / "service-data", tmp_path / "service.log", store_url).start()
    processes.append(service)
    world = mon.make_world(service.url, TEST_ADMIN_TOKEN, tmp_path)
    spool = tmp_path / "spool"
    config = mon.write_config(
        tmp_path / "agent.yaml", service.url, [mon.fs_channel(spool)],
        agentMaxAggregatedRecords=40, agentPendingRecordsTimeoutMs=100, httpTimeout=3000,
    )  # fmt: skip
    log = tmp_path / "agent.log"
    agent = mon.MonitorProcess(config, world.agent_token, log).start()
    processes.append(agent)

    expected = [0, 0]
    writing = threading.Event()
    writing.set()

    def writer() -> None:  # producer processes one after the other, each rotating through small files
        producer = mon.spool_writer(spool, file_max_size=16 << 10)
        written = 0
        while writing.is_set():
            batch = []
            for _ in range(rng.randint(1, 6)):
                record = mon.make_record(
                    world.deployment_id, int(time.time() // 60) - rng.randint(0, 2),
                    requests=rng.randint(1, 9), rows=rng.randint(1, 50),
                )  # fmt: skip
                batch.append(record)
                expected[0] += record.requests
                expected[1] += record.rows
            mon.append_records(producer, batch)
            written += len(batch)
            if written >= 150:
                producer.close()
                producer, written = mon.spool_writer(spool, file_max_size=16 << 10), 0
            time.sleep(rng.uniform(0.005, 0.04))
        producer.close()

    kills = {"agent": 0, "service": 0}

    def chaos(until: float) -> None:
        nonlocal agent
        while time.monotonic() < until:
            time.sleep(rng.uniform(0.3, 1.2))
            if rng.random() < 0.7:
                agent.kill()
                kills["agent"] += 1
                agent = mon.MonitorProcess(config, world.agent_token, log).start()
                processes.append(agent)
            else:
                service.kill()
                kills["service"] += 1
                time.sleep(rng.uniform(0.2, 1.5))
                service.start()

    feeder = threading.Thread(target=writer, daemon=True)
    feeder.start()
    chaos(time.monotonic() + 25)
    writing.clear()
    feeder.join(10)

    assert kills["agent"] >= 5 and kills["service"] >= 2, kills
    want = (expected[0], expected[1])
    assert _all_counted(world, want), (_totals(world), want)
    time.sleep(2)  # nothing arrives late and counts again
    assert _totals(world) == want
    assert mon.wait_until(lambda: not spool_files(spool), 30)  # every file consumed and deleted
    agent.kill()
    with FilesystemSpoolReader(spool) as reader:
        assert reader.read(10, 0).records == []
    text = log.read_text()
    assert world.agent_token not in text
    assert world.agent_token[:12] + "*******" in text
    world.admin.close()


def test_sigkill_of_the_broker_loses_nothing_and_counts_nothing_twice(
    tmp_path: Path, mon: Any, processes: list[Any], service: Any
):
    pytest.importorskip("pika")
    broker = mon.PrivateBroker()
    processes.append(broker)
    broker.start()
    world = mon.make_world(service.base_url, service.admin_token, tmp_path)
    queue = "shipmate-monitoring"
    records = [mon.make_record(world.deployment_id, requests=1 + i % 5, rows=3) for i in range(3000)]

    import orjson

    from shipmate.monitoring.rabbit_spool import RabbitSpool

    producer = RabbitSpool(broker.url, queue, max_buffered=len(records))  # the prediction server's writer
    for record in records:
        assert producer.write(orjson.dumps(record.to_json()))
    producer.close()
    assert producer.published == len(records) and not producer.dropped

    config = mon.write_config(
        tmp_path / "agent.yaml", service.base_url,
        [{"type": "RABBITMQ_SPOOL", "details": {"name": "mq", "queueUrl": broker.url, "queueName": queue}}],
        agentMaxAggregatedRecords=2, agentPendingRecordsTimeoutMs=20,
    )  # fmt: skip
    log = tmp_path / "agent.log"
    agent = mon.MonitorProcess(config, world.agent_token, log).start()
    processes.append(agent)
    want = (sum(r.requests for r in records), 3 * len(records))
    for _ in range(2):
        before = (_totals(world) or (0, 0))[0]
        assert mon.wait_until(lambda b=before: (_totals(world) or (0, 0))[0] > b, 60)
        time.sleep(random.uniform(0.05, 0.5))
        broker.kill()
        got = _totals(world)
        assert got is not None and got[0] < want[0], "the queue drained before the broker was killed"
        time.sleep(1)
        broker.start()
    assert _all_counted(world, want), (_totals(world), want)
    time.sleep(2)
    assert _totals(world) == want
    assert "lost the broker" in log.read_text()
    world.admin.close()
    broker.remove()


def test_a_service_outage_holds_one_batch_and_everything_arrives_after_it(
    tmp_path: Path, mon: Any, processes: list[Any]
):
    import httpx

    service = mon.ServiceProcess(tmp_path / "service-data", tmp_path / "service.log").start()
    processes.append(service)
    world = mon.make_world(service.url, TEST_ADMIN_TOKEN, tmp_path)
    spool = tmp_path / "spool"
    port = mon.free_port()
    config = mon.write_config(
        tmp_path / "agent.yaml", service.url, [mon.fs_channel(spool)], agentMaxAggregatedRecords=20,
        serverMode=True, serverPort=port,
    )  # fmt: skip
    agent = mon.MonitorProcess(config, world.agent_token, tmp_path / "agent.log").start()
    processes.append(agent)
    written = [0]
    producer = mon.spool_writer(spool)

    def write(count: int) -> None:
        records = [mon.make_record(world.deployment_id, requests=2) for _ in range(count)]
        mon.append_records(producer, records)
        written[0] += 2 * count

    write(10)
    assert mon.wait_until(lambda: _totals(world) == (written[0], 5 * written[0]), 60)
    service.stop()
    deadline = time.monotonic() + 15
    pending = []
    while time.monotonic() < deadline:  # the outage: records keep coming, the agent holds one batch
        write(5)
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            continue
        for line in text.splitlines():
            if line.startswith('shipmate_monitor_pending_records{channel="fs"}'):
                pending.append(float(line.split()[-1]))
        time.sleep(0.5)
    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
    assert health["status"] == "degraded" and health["serviceFailures"] > 0
    assert pending and max(pending) <= 20  # memory: one batch, whatever the backlog
    service.start()
    want = (written[0], 5 * written[0])
    assert _all_counted(world, want), (_totals(world), want)
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()["status"] == "ok"
    producer.close()
    world.admin.close()
