"""The agent's loop end to end against the in-memory service and plugin (no HTTP, no processes)."""

from __future__ import annotations


def ready(service, deployment_id, generation=None):
    def check(s):
        obs = s.deployments.get(deployment_id)
        if obs is None:
            return False
        o = obs.observed
        return o.get("state") == "ready" and (generation is None or o.get("generation") == generation)

    return check


def test_create_replace_stop_delete(harness, service, environment):
    h = harness().start()
    service.create("d-1", "m-1")
    assert service.wait_for(ready(service, "d-1", 1))
    assert environment.running == {"d-1": "m-1"}
    started = service.reports_for("d-1", "started")
    finished = service.reports_for("d-1", "finished")
    assert started[0].action == "deployment_start" and "new deployment" in started[0].message
    assert finished[0].data["predictionUrl"] == "http://x/d-1/predict"
    assert finished[0].generation == 1 and finished[0].duration is not None

    service.change("d-1", package_id="m-2")
    assert service.wait_for(ready(service, "d-1", 2))
    assert environment.running == {"d-1": "m-2"}
    replace_started = [
        r for r in service.reports_for("d-1", "started") if r.action == "deployment_replace_model"
    ]
    assert replace_started and "from m-1 to m-2" in replace_started[0].message

    service.change("d-1", state="stopped")
    assert service.wait_for(lambda s: s.deployments["d-1"].observed.get("state") == "stopped")
    assert environment.running == {}

    service.delete("d-1")
    assert service.wait_for(lambda s: "d-1" not in s.deployments)
    assert h.agent.wait_idle(10)
    assert h.agent.store.get("d-1") is None  # forgotten once removed everywhere
    assert environment.count("deployment_start") == 1
    assert h.stop() == 0
    assert environment.count("plugin_stop") == 1


def test_artifact_is_verified_before_the_plugin_sees_it(harness, service, environment):
    harness().start()
    service.add_package("m-bad", b"the real bytes")
    service.tamper.add("m-bad")
    service.create("d-1", "m-bad")
    assert service.wait_for(lambda s: s.reports_for("d-1", "finished"))
    assert environment.count("deployment_start") == 0
    finished = service.reports_for("d-1", "finished")
    assert "SHA-256" in finished[-1].message or "altered" in finished[-1].message


def test_failing_action_is_retried_with_backoff_and_visible(harness, service, environment):
    environment.fail["deployment_start"] = 2
    harness().start()
    service.create("d-1", "m-1")
    assert service.wait_for(ready(service, "d-1"))
    retrying = service.reports_for("d-1", "retrying")
    assert [r.attempt for r in retrying] == [1, 2]
    assert "retrying in" in retrying[0].message and "broke on purpose" in retrying[0].message
    assert environment.count("deployment_start") == 3


def test_a_plugin_that_asks_for_no_retry_is_not_retried(harness, service, environment):
    environment.fail["deployment_start"] = 100
    environment.retry_after["deployment_start"] = False
    h = harness().start()
    service.create("d-1", "m-1")
    assert service.wait_for(lambda s: s.deployments["d-1"].observed.get("status") == "failing")
    assert h.agent.wait_idle(10)
    assert environment.count("deployment_start") == 1
    assert service.reports_for("d-1", "retrying") == []


def test_a_plugins_retry_delay_replaces_the_backoff(harness, service, environment):
    environment.fail["deployment_start"] = 1
    environment.retry_after["deployment_start"] = 0.3
    harness().start()
    service.create("d-1", "m-1")
    assert service.wait_for(ready(service, "d-1"))
    [retrying] = service.reports_for("d-1", "retrying")
    assert retrying.message.endswith("the plugin asked to retry in 0.3s")
    assert environment.count("deployment_start") == 2


def test_exhausted_retries_report_failing_and_stop_trying(harness, service, environment):
    environment.fail["deployment_start"] = 100
    h = harness().start()
    service.create("d-1", "m-1")
    assert service.wait_for(lambda s: s.deployments["d-1"].observed.get("status") == "failing")
    assert h.agent.wait_idle(10)
    h.agent.resync()  # a periodic resync must not start a hot loop on a failed generation
    assert h.agent.wait_idle(10)
    assert environment.count("deployment_start") == 3  # max_attempts, and no more
    # a new generation tries again
    environment.fail["deployment_start"] = 0
    service.change("d-1", package_id="m-2")
    assert service.wait_for(ready(service, "d-1", 2))


def test_restart_adopts_what_runs_and_never_starts_twice(harness, service, environment, tmp_path):
    h = harness().start()
    for i in range(5):
        service.create(f"d-{i}", "m-1")
    assert service.wait_for(lambda s: all(ready(s, f"d-{i}")(s) for i in range(5)))
    h.stop()
    # the applied record is lost too (a fresh work dir): only deployment_list tells the truth
    second = harness(work_dir=tmp_path / "other-work").start()
    assert second.agent.wait_idle(10)
    assert environment.count("deployment_start") == 5
    assert sorted(environment.running) == [f"d-{i}" for i in range(5)]


def test_unknown_deployment_reported_and_left_alone(harness, service, environment):
    environment.running["stray"] = "m-9"
    h = harness().start()
    assert service.wait_for(lambda s: any(p["deploymentId"] == "stray" for p in s.posted))
    assert h.agent.wait_idle(10)
    assert environment.running == {"stray": "m-9"}
    assert [p["type"] for p in service.posted] == ["agent.unknown_deployment"]


def test_unknown_deployment_stopped_when_configured(harness, service, environment):
    environment.running["stray"] = "m-9"
    h = harness(stop_unknown_deployments=True).start()
    assert h.agent.wait_idle(10)
    assert service.wait_for(lambda s: "stray" not in environment.running)
    assert environment.count("deployment_stop", "stray") == 1


def test_self_healing_relaunches_a_missing_deployment_bounded(harness, service, environment):
    h = harness(max_self_heal_attempts=2).start()
    service.create("d-1", "m-1")
    assert service.wait_for(ready(service, "d-1"))
    with environment.lock:
        environment.running.clear()  # someone removed it behind the agent's back
    h.agent.schedule_status_checks()
    assert service.wait_for(lambda s: environment.running.get("d-1") == "m-1")
    relaunches = [r for r in service.reports_for("d-1", "started") if r.action == "deployment_relaunch"]
    assert len(relaunches) == 1 and "reports it" in relaunches[0].message
    # it keeps disappearing and relaunches keep failing: bounded, then a notice
    environment.fail["deployment_relaunch"] = 0
    environment.fail["deployment_start"] = 100
    for _ in range(4):
        with environment.lock:
            environment.running.clear()
        h.agent.schedule_status_checks()
        assert h.agent.wait_idle(20)
    assert any("not relaunching again" in (r.message or "") for r in service.reports_for("d-1", "observed"))


def test_relaunch_request(harness, service, environment):
    harness().start()
    service.create("d-1", "m-1")
    assert service.wait_for(ready(service, "d-1", 1))
    service.relaunch("d-1")
    assert service.wait_for(ready(service, "d-1", 2))
    assert [r.action for r in service.reports_for("d-1", "started")] == [
        "deployment_start",
        "deployment_relaunch",
    ]


def test_force_delete_removes_even_when_stop_fails(harness, service, environment):
    h = harness().start()
    service.create("d-1", "m-1")
    assert service.wait_for(ready(service, "d-1"))
    environment.fail["deployment_stop"] = 100
    service.delete("d-1", force=True)
    assert service.wait_for(lambda s: "d-1" not in s.deployments)
    assert h.agent.wait_idle(10)
    assert environment.count("deployment_stop", "d-1") == 1  # one attempt, no retries


def test_service_outage_then_resume(harness, service, environment):
    h = harness().start()
    service.create("d-1", "m-1")
    assert service.wait_for(ready(service, "d-1"))
    service.down = True
    assert service.wait_for(lambda s: not h.agent.connected, timeout=10)
    service.down = False
    service.create("d-2", "m-1")
    assert service.wait_for(ready(service, "d-2"), timeout=20)
    assert h.agent.connected


def test_hung_action_times_out_and_the_agent_goes_on(harness, service, environment):
    environment.hang.add("deployment_start")
    h = harness(timeouts={"deployment_start": 0.5}, retry={"max_attempts": 1, "initial_delay": 0.05}).start()
    service.create("d-1", "m-1")
    assert service.wait_for(lambda s: s.deployments["d-1"].observed.get("status") == "failing", timeout=20)
    message = service.reports_for("d-1", "finished")[-1].message
    assert "timed out after 0.5s" in message
    environment.hang.clear()
    service.create("d-2", "m-1")
    assert service.wait_for(ready(service, "d-2"))
    assert h.agent.health()[0]


def test_one_deployment_in_order_many_in_parallel(harness, service, environment):
    harness(concurrency=4).start()
    for i in range(30):
        service.create(f"d-{i}", "m-1")
    for i in range(30):
        service.change(f"d-{i}", package_id="m-2")
    assert service.wait_for(lambda s: all(ready(s, f"d-{i}", 2)(s) for i in range(30)), timeout=30)
    assert all(m == "m-2" for m in environment.running.values())
    assert service.downloads <= 2  # one download per package, shared by every deployment
    # level-triggered: a change that arrives before its deployment's turn is coalesced, never replayed
    assert environment.count("deployment_start") == 30
    assert environment.count("deployment_start") + environment.count("deployment_replace_model") <= 60


def test_health_and_metrics(harness, service, environment):
    h = harness(
        intervals={"pe_status": 0.2, "feed_wait": 0.5, "deployment_status": 300, "resync": 300}
    ).start()
    service.create("d-1", "m-1")
    assert service.wait_for(ready(service, "d-1"))
    assert service.wait_for(lambda s: ("passing", "PE healthy") in s.health)
    text = h.agent.metrics.render().decode()
    assert 'shipmate_agent_actions_total{action="deployment_start",result="passing"} 1.0' in text
    assert "shipmate_agent_change_to_action_seconds_count 1.0" in text
    ok, detail = h.agent.health()
    assert ok and detail["serviceConnected"] is True


def test_download_failure_is_a_retried_failing_action(harness, service, environment):
    harness().start()
    service.add_package("m-1")
    real = service.download_model_package
    calls = []

    def flaky(package_id, dest):
        calls.append(package_id)
        if len(calls) == 1:
            from shipmate.agent.ports import ControlPlaneUnavailable

            raise ControlPlaneUnavailable("connection reset during download")
        return real(package_id, dest)

    service.download_model_package = flaky
    service.create("d-1", "m-1")
    assert service.wait_for(ready(service, "d-1"))
    retrying = service.reports_for("d-1", "retrying")
    assert retrying and "cannot fetch the model package" in retrying[0].message


def test_sigterm_while_waiting_for_the_service_exits_cleanly(harness, service):
    import threading

    service.down = True
    h = harness()
    h.thread.start()
    assert service.wait_for(lambda s: True, timeout=0.5)
    stopper = threading.Timer(0.5, h.agent.stop)
    stopper.start()
    h.thread.join(20)
    assert not h.thread.is_alive()
    assert h.exit_code == 0
