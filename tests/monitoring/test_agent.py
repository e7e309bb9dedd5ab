"""The monitoring agent against a real service: configuration, forwarding from a spool directory and
from RabbitMQ, merged records found partly stored, refusals, a service that is down, /metrics and /healthz."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from shipmate.common.backoff import Backoff
from shipmate.monitoring.agent.config import ConfigError, load
from shipmate.monitoring.agent.forwarder import Forwarder
from shipmate.monitoring.agent.main import HttpSink, run
from shipmate.monitoring.agent.metrics import AgentMetrics
from shipmate.monitoring.fs_spool import OFFSETS_FILE, FilesystemSpoolReader
from shipmate.monitoring.rabbit_spool import RabbitSpoolReader

BROKER = "amqp://guest:guest@127.0.0.1:5672/%2F"


def totals(world: Any) -> tuple[int, int]:
    summary = world.admin.service_health(world.deployment_id, resolution="day").summary
    return summary.total_requests, summary.total_predictions


# ---- configuration -------------------------------------------------------------------------------


def fs(**details: Any) -> dict[str, Any]:
    return {"channelConfigs": [{"type": "FS_SPOOL", "details": details}]}


BAD_CONFIGS = [
    (fs(spoolDirectoryPath="/tmp/ta"), "mlopsUrl is required"),
    ({"mlopsUrl": "ftp://x"}, "mlopsUrl must be an http(s) URL"),
    ({"mlopsUrl": "http://127.0.0.1:1", "channelConfigs": []}, "channelConfigs must list at least one"),
    (fs(), "channelConfigs[0].details.spoolDirectoryPath"),
    (fs(spoolDirectoryPath="rel"), "must be an absolute"),
    ({"channelConfigs": [{"type": "KAFKA_SPOOL", "details": {}}]}, "KAFKA_SPOOL is not supported yet"),
    ({"channelConfigs": [{"type": "RABBITMQ_SPOOL", "details": {"queueName": "q"}}]}, "queueUrl"),
    ({"httpTimeout": "soon"}, "httpTimeout must be a number"),
    ({"agentMaxAggregatedRecords": 0}, "agentMaxAggregatedRecords must be between 1 and 10000"),
    ({"serverMode": "yes"}, "serverMode must be true or false"),
    ({"mlopsURL": "http://x"}, "unknown key 'mlopsURL'"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "message"), BAD_CONFIGS, ids=[m for _, m in BAD_CONFIGS])
def test_config_errors_name_the_key_and_the_file(tmp_path: Path, change: dict[str, Any], message: str):
    doc: dict[str, Any] = {
        "mlopsUrl": "http://127.0.0.1:8000",
        "apiToken": "smt_secret-token-value",
        "channelConfigs": [{"type": "FS_SPOOL", "details": {"name": "fs", "spoolDirectoryPath": "/tmp/ta"}}],
    }
    doc.update(change)
    if "mlopsUrl is required" in message:
        del doc["mlopsUrl"]
    path = tmp_path / "agent.yaml"
    import yaml

    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as raised:
        load(path, environ={})
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


def test_config_takes_both_rabbitmq_spellings_datarobot_keys_and_the_token_from_the_environment(
    tmp_path: Path, mon: Any
):
    path = mon.write_config(
        tmp_path / "agent.yaml",
        "http://127.0.0.1:8000/",
        [
            {"type": "RABBITMQ_SPOOL", "details": {"name": "a", "queueUrl": BROKER, "queueName": "q1"}},
            {
                "type": "RABBITMQ_SPOOL",
                "details": {"name": "b", "rabbitmq_queue_url": BROKER, "rabbitmq_queue_name": "q2"},
            },
        ],
        token="smt_from-the-file-0000",
        httpTimeout=5000,
        httpRetry=2,
        agentMaxAggregatedRecords=100,
        statsPath="/tmp/x.json",
        serverMode=True,
    )
    config = load(path, environ={"MLOPS_API_TOKEN": "smt_from-the-environment"})
    assert config.api_token == "smt_from-the-environment"
    assert config.mlops_url == "http://127.0.0.1:8000"
    assert [(c.name, c.queue_name) for c in config.channels] == [("a", "q1"), ("b", "q2")]  # type: ignore[union-attr]
    assert (config.http_timeout_s, config.http_retry, config.max_aggregated_records) == (5.0, 2, 100)
    assert config.pending_timeout_s == 0.2 and config.server_mode is True
    assert "smt_from" not in repr(config)
    assert load(path, environ={}).api_token == "smt_from-the-file-0000"


# ---- forwarding ----------------------------------------------------------------------------------


def test_a_spool_is_forwarded_merged_and_acknowledged(tmp_path: Path, world: Any, mon: Any):
    spool = tmp_path / "spool"
    minute = int(time.time() // 60)
    records = [
        mon.make_record(world.deployment_id, minute - i % 3, requests=1 + i % 4, rows=7) for i in range(300)
    ]
    channel = mon.fs_channel(spool)
    exited = mon.spool_writer(spool)  # a producer process that wrote its file and exited
    mon.append_records(exited, records[:150])
    exited.close()
    running = mon.spool_writer(spool)  # one still running, in the middle of writing a record
    mon.append_records(running, records[150:])
    mon.tear_a_record(running)
    config = mon.write_config(
        tmp_path / "agent.yaml", world.url, [channel], token=world.agent_token,
        runOnce=True, agentMaxAggregatedRecords=64,
    )  # fmt: skip
    assert run(config, stop=threading.Event()) == 0
    assert totals(world) == (sum(r.requests for r in records), 300 * 7)
    # everything complete is acknowledged; the exited producer's file is consumed and gone
    assert not (spool / "fs_spool.1").exists() and (spool / "fs_spool.2").exists()
    with FilesystemSpoolReader(spool) as reader:
        assert reader.read(10, 0).records == []
    # a second run finds nothing new and changes nothing
    assert run(config, stop=threading.Event()) == 0
    assert totals(world) == (sum(r.requests for r in records), 300 * 7)
    running.close()  # the producer stops for good: its torn frame is counted and skipped, its file deleted
    assert run(config, stop=threading.Event()) == 0
    assert totals(world) == (sum(r.requests for r in records), 300 * 7)
    assert not (spool / "fs_spool.2").exists()


def test_records_spooled_by_earlier_releases_are_forwarded_after_an_upgrade(
    tmp_path: Path, world: Any, mon: Any
):
    """A spool holding version 1 and version 2 records (written before the upgrade) beside
    version 3 ones: the agent forwards them all, merged, and the service counts each once."""
    import orjson

    spool = tmp_path / "spool"
    minute = int(time.time() // 60)
    common = {"kind": "aggregate", "deploymentId": world.deployment_id, "modelId": "m-1", "minute": minute}
    version_1 = {
        "v": 1, "id": "a" * 32, **common, "requests": 2, "rows": 5, "userErrors": 0, "serverErrors": 0,
        "responseMs": {"scale": 3, "buckets": {"20": 2}, "totalMs": 11.0, "maxMs": 6.0},
        "executionMs": {"scale": 3, "buckets": {}, "totalMs": 0.0, "maxMs": 0.0},
        "consumers": {}, "consumersOverflow": 0, "features": {}, "predictions": {}, "dropped": 0,
        "flushedAt": time.time(),
    }  # fmt: skip
    version_2 = {
        "v": 2, "id": "b" * 32, **common, "requests": 3, "rows": 9,
        "responseMs": {"scale": 3, "totalMs": 20.0, "maxMs": 9.0, "first": 19, "counts": [1, 0, 2]},
        "features": {}, "predictions": {}, "flushedAt": time.time(),
    }  # fmt: skip
    current = mon.make_record(world.deployment_id, minute, requests=4, rows=11)
    writer = mon.spool_writer(spool)
    for doc in (version_1, version_2, current.to_json()):
        assert writer.write(orjson.dumps(doc))
    writer.close()
    config = mon.write_config(
        tmp_path / "agent.yaml", world.url, [mon.fs_channel(spool)], token=world.agent_token, runOnce=True
    )
    before = totals(world)
    assert run(config, stop=threading.Event()) == 0
    assert totals(world) == (before[0] + 2 + 3 + 4, before[1] + 5 + 9 + 11)
    assert run(config, stop=threading.Event()) == 0  # acknowledged: nothing comes again
    assert totals(world) == (before[0] + 9, before[1] + 25)


def test_records_read_again_after_a_crash_count_once(tmp_path: Path, world: Any, mon: Any):
    """A first agent posts and dies before acknowledging; the next one reads the same records, merges
    them with new ones and finds its merged record partly stored: it re-sends only the originals."""
    spool = tmp_path / "spool"
    minute = int(time.time() // 60)
    first = [mon.make_record(world.deployment_id, minute, requests=3) for _ in range(5)]
    channel = mon.fs_channel(spool)
    writer = mon.spool_writer(spool)
    mon.append_records(writer, first)
    world.admin.post_monitoring_aggregates([r.to_json() for r in first[:3]])  # the dead agent's post
    later = [mon.make_record(world.deployment_id, minute, requests=5) for _ in range(4)]
    mon.append_records(writer, later)
    writer.close()
    config = mon.write_config(
        tmp_path / "agent.yaml", world.url, [channel], token=world.agent_token, runOnce=True
    )
    assert run(config, stop=threading.Event()) == 0
    assert totals(world)[0] == 5 * 3 + 4 * 5


def test_malformed_foreign_and_sample_records_are_counted_without_holding_the_rest(
    tmp_path: Path, world: Any, mon: Any
):
    spool = tmp_path / "spool"
    channel = mon.fs_channel(spool)
    good = [mon.make_record(world.deployment_id, requests=2) for _ in range(3)]
    died = mon.spool_writer(spool)  # a producer whose file was damaged and which died mid-write
    mon.append_records(died, [*good[:1], mon.make_record("d-elsewhere"), mon.make_record("d-lost")])
    mon.damage_last_record(died)  # its checksum no longer matches
    assert died.write(b'{"v": 1, "id": "x", "deploymentId": "d", "minute": -5}')
    assert died.write(b'{"v": 1, "kind": "sample", "deploymentId": "d", "rows": [[1, 2]]}', "sample")
    mon.tear_a_record(died)
    died.close()
    later = mon.spool_writer(spool)  # the next producer
    mon.append_records(later, good[1:])
    config = load(
        mon.write_config(tmp_path / "agent.yaml", world.url, [channel], token=world.agent_token), environ={}
    )
    metrics = AgentMetrics()
    sink = HttpSink(config)
    with FilesystemSpoolReader(spool) as reader:
        forwarder = Forwarder(
            "fs", reader, sink, metrics, max_records=100, pending_timeout=0.1,
            http_retry=3, backoff=Backoff(0.1, 0.5), stop=threading.Event(), run_once=True,
        )  # fmt: skip
        forwarder.run()
    sink.close()
    later.close()
    assert totals(world)[0] == 6
    with FilesystemSpoolReader(spool) as reader:
        rest = reader.read(10, 0)
    assert rest.records == [] and rest.damaged == 0  # everything read, the damage counted once
    exposed = generate_latest(metrics.registry).decode()
    # malformed: the damaged checksum, the torn frame and the record with a wrong minute
    for outcome, count in (("stored", 3), ("rejected", 1), ("malformed", 3), ("skipped", 1)):
        assert f'shipmate_monitor_records_total{{channel="fs",outcome="{outcome}"}} {count}.0' in exposed
    assert 'shipmate_monitor_records_read_total{channel="fs"} 8.0' in exposed
    assert 'shipmate_monitor_rows_forwarded_total{channel="fs"} 40.0' in exposed


def test_a_service_that_is_down_holds_the_batch_and_health_says_degraded(
    tmp_path: Path, world: Any, mon: Any
):
    spool = tmp_path / "spool"
    channel = mon.fs_channel(spool)
    writer = mon.spool_writer(spool)
    mon.append_records(writer, [mon.make_record(world.deployment_id) for _ in range(10)])
    writer.close()
    port = mon.free_port()
    config = mon.write_config(
        tmp_path / "agent.yaml", f"http://127.0.0.1:{mon.free_port()}", [channel], token=world.agent_token,
        serverMode=True, serverPort=port,
    )  # fmt: skip
    stop = threading.Event()
    agent = threading.Thread(target=run, args=(config,), kwargs={"stop": stop})
    agent.start()
    try:

        def degraded() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()["status"] == "degraded"
            except httpx.HTTPError:
                return False

        assert mon.wait_until(degraded, 20)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'shipmate_monitor_posts_total{result="unavailable"}' in metrics
        assert 'shipmate_monitor_pending_records{channel="fs"} 10.0' in metrics
        assert not (spool / OFFSETS_FILE).exists()  # nothing acknowledged
    finally:
        stop.set()
        agent.join(30)
    assert not agent.is_alive()
    with FilesystemSpoolReader(spool) as reader:
        assert len(reader.read(100, 0).records) == 10


def test_a_rabbitmq_queue_is_forwarded_and_acknowledged_only_after_storing(
    tmp_path: Path, world: Any, mon: Any
):
    pika = pytest.importorskip("pika")
    queue = f"shipmate-test-{time.monotonic_ns()}"
    try:
        connection = pika.BlockingConnection(pika.URLParameters(BROKER))
    except pika.exceptions.AMQPError as exc:
        pytest.skip(f"RabbitMQ at 127.0.0.1:5672 is unreachable: {exc}")
    channel = connection.channel()
    channel.queue_declare(queue=queue, durable=True)
    records = [mon.make_record(world.deployment_id, requests=3) for _ in range(40)]
    for record in records:
        channel.basic_publish(
            "", queue, record_bytes(record), pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
        )
    try:
        # a reader that reads without acknowledging gives everything back when it goes away
        reader = RabbitSpoolReader(BROKER, queue)
        first = reader.read(30, 2)
        assert len(first.records) == 30 and first.records[0].kind == "aggregate"
        reader.rewind()  # every unacknowledged message goes back to the queue
        assert len(reader.read(100, 2).records) == 40
        reader.close()
        config = mon.write_config(
            tmp_path / "agent.yaml", world.url,
            [{"type": "RABBITMQ_SPOOL",
              "details": {"name": "mq", "rabbitmq_queue_url": BROKER, "rabbitmq_queue_name": queue}}],
            token=world.agent_token, runOnce=True,
        )  # fmt: skip
        assert run(config, stop=threading.Event()) == 0
        assert totals(world)[0] == 120
        assert channel.queue_declare(queue=queue, durable=True, passive=True).method.message_count == 0
    finally:
        channel.queue_delete(queue)
        connection.close()


def record_bytes(record: Any) -> bytes:
    import orjson

    return orjson.dumps(record.to_json())


def test_shipmate_monitor_says_what_is_wrong_in_one_line_and_exits_2(tmp_path: Path, mon: Any):
    import subprocess
    import sys

    config = mon.write_config(
        tmp_path / "agent.yaml", "http://127.0.0.1:1", [], token="smt_secret-0123456789"
    )
    command = [sys.executable, "-c", "from shipmate.cli.main import main; main()", "monitor", "--config"]
    done = subprocess.run([*command, str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{config}: channelConfigs must list at least one channel" in done.stderr
    assert "Traceback" not in done.stderr and "smt_secret" not in done.stderr
    missing = subprocess.run(command[:-1], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no configuration: pass --config" in missing.stderr


def test_a_refused_token_holds_the_records_until_it_is_fixed(tmp_path: Path, world: Any, mon: Any):
    spool = tmp_path / "spool"
    channel = mon.fs_channel(spool)
    writer = mon.spool_writer(spool)
    mon.append_records(writer, [mon.make_record(world.deployment_id) for _ in range(4)])
    writer.close()
    config = load(mon.write_config(tmp_path / "a.yaml", world.url, [channel], token="smt_revoked-0000"), {})
    metrics = AgentMetrics()
    stop = threading.Event()
    sink = HttpSink(config)
    reader = FilesystemSpoolReader(spool)
    forwarder = Forwarder(
        "fs", reader, sink, metrics, max_records=100, pending_timeout=0.05,
        http_retry=1, backoff=Backoff(0.05, 0.2), stop=stop,
    )  # fmt: skip
    thread = threading.Thread(target=forwarder.run)
    thread.start()
    try:

        def refused() -> float:
            return (
                metrics.registry.get_sample_value("shipmate_monitor_posts_total", {"result": "refused"}) or 0
            )

        assert mon.wait_until(lambda: refused() >= 3, 20)
    finally:
        stop.set()
        thread.join(20)
        sink.close()
        reader.close()
    assert totals(world) == (0, 0)
    assert not (spool / OFFSETS_FILE).exists()  # nothing acknowledged: the next agent, with a good token,
    fixed = load(mon.write_config(tmp_path / "b.yaml", world.url, [channel], token=world.agent_token), {})
    good = HttpSink(fixed)
    with FilesystemSpoolReader(spool) as reader:
        Forwarder(
            "fs", reader, good, AgentMetrics(), max_records=100, pending_timeout=0.05, http_retry=1,
            backoff=Backoff(0.05, 0.2), stop=threading.Event(), run_once=True,
        ).run()  # fmt: skip
    good.close()
    assert totals(world) == (8, 40)  # forwards them all


def test_prediction_records_reach_the_service_once_and_join_the_actuals(tmp_path: Path, world: Any, mon: Any):
    import orjson

    spool = tmp_path / "spool"
    writer = mon.spool_writer(spool)
    minute = int(time.time() // 60) - 1
    doc = {
        "v": 1, "kind": "predictions", "id": "p-1", "deploymentId": world.deployment_id, "modelId": "m-1",
        "minute": minute, "flushedAt": time.time(), "associationIds": ["a", "b"], "classLabels": None,
        "labels": None, "probabilities": None, "values": [1.0, 2.0],
    }  # fmt: skip
    assert writer.write(orjson.dumps(doc), "predictions")
    assert writer.write(orjson.dumps(doc), "predictions")  # delivered twice: stored once
    mon.append_records(writer, [mon.make_record(world.deployment_id, requests=2)])
    writer.close()
    config = mon.write_config(
        tmp_path / "agent.yaml", world.url, [mon.fs_channel(spool)], token=world.agent_token, runOnce=True
    )
    assert run(config, stop=threading.Event()) == 0
    assert totals(world)[0] == 2
    rows = [{"associationId": "a", "actualValue": 1.5}, {"associationId": "b", "actualValue": 2.0}]
    assert world.admin.post_actuals(world.deployment_id, rows).stored == 2
    accuracy = world.admin.accuracy(world.deployment_id)
    assert accuracy.rows == 2 and accuracy.metrics["mae"] == 0.25
