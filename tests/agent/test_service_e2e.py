"""The real service and ``shipmate agent`` as separate processes, with the filesystem plugin."""

from __future__ import annotations

import httpx
import pytest
import yaml

pytestmark = pytest.mark.slow


def setup_environment(admin, packages):
    env = admin.create_environment("fs-test", "filesystem")
    _, secret = admin.create_token(kind="agent", environment_id=env.id)
    p1 = admin.upload_model_package(packages[0])
    p2 = admin.upload_model_package(packages[1])
    return env, secret, p1, p2


def observed(admin, deployment_id):
    return admin.get_deployment(deployment_id).observed


def test_full_lifecycle_through_the_cli(tmp_path, live_service, iris_packages, agent_processes, e2e):
    admin = live_service.admin()
    env, secret, p1, p2 = setup_environment(admin, iris_packages)
    base = tmp_path / "deployments"
    config = e2e.write_agent_config(
        tmp_path / "agent.yaml",
        live_service.url,
        env.id,
        tmp_path / "work",
        {
            "name": "filesystem",
            "privateConfig": str(e2e.filesystem_private_config(tmp_path / "fs.yaml", base)),
        },
    )
    agent = agent_processes(config, secret, tmp_path / "agent.log").start()
    dep = admin.create_deployment(env.id, p1.id, name="iris")
    assert e2e.wait_until(lambda: observed(admin, dep.id).state == "ready", 60), (
        tmp_path / "agent.log"
    ).read_text()
    info = yaml.safe_load((base / f"deployment_{dep.id}" / "config.yml").read_text())
    assert info["deployment_id"] == dep.id and info["model_id"] == p1.id
    assert observed(admin, dep.id).prediction_url == f"http://127.0.0.1:8080/{dep.id}/predict"

    admin.replace_model(dep.id, p2.id)
    assert e2e.wait_until(lambda: observed(admin, dep.id).model_package_id == p2.id, 30)
    info = yaml.safe_load((base / f"deployment_{dep.id}" / "config.yml").read_text())
    assert info["model_id"] == p2.id

    admin.delete(dep.id)
    assert e2e.wait_until(lambda: not (base / f"deployment_{dep.id}").exists(), 30)
    assert e2e.wait_until(
        lambda: not admin.list_deployments(environment_id=env.id, desired_state="deleted").items, 30
    )

    # the agent's own endpoint: metrics and health
    log = (tmp_path / "agent.log").read_text()
    port = int(log.split("metrics and health on http://127.0.0.1:")[1].split("/")[0])
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert 'shipmate_agent_actions_total{action="deployment_start",result="passing"} 1.0' in metrics
    assert "shipmate_agent_change_to_action_seconds_bucket" in metrics

    events = [e.type for e in admin.events(deployment_id=dep.id, limit=100).events]
    assert events.count("action.started") == 3 and events[-1] == "deployment.removed"
    assert agent.terminate() == 0
    assert "plugin_stop: passing" in (tmp_path / "agent.log").read_text()


def test_invalid_config_stops_start_up_naming_the_key(tmp_path, agent_processes):
    config = tmp_path / "agent.yaml"
    config.write_text("environmentId: e-1\nplugin: {name: filesystem}\nconcurrency: many\n")
    agent = agent_processes(config, "some-token-123456789", tmp_path / "agent.log").start()
    assert agent.process is not None
    assert agent.process.wait(60) == 2
    assert "key 'concurrency'" in (tmp_path / "agent.log").read_text()


def test_agent_survives_a_service_restart(tmp_path, live_service, iris_packages, agent_processes, e2e):
    admin = live_service.admin()
    env, secret, p1, _ = setup_environment(admin, iris_packages)
    base = tmp_path / "deployments"
    private = e2e.filesystem_private_config(tmp_path / "fs.yaml", base)
    plugin = {"name": "filesystem", "privateConfig": str(private)}
    config = e2e.write_agent_config(
        tmp_path / "agent.yaml", live_service.url, env.id, tmp_path / "work", plugin
    )
    agent_processes(config, secret, tmp_path / "agent.log").start()
    first = admin.create_deployment(env.id, p1.id, name="one")
    assert e2e.wait_until(lambda: observed(admin, first.id).state == "ready", 120), (
        tmp_path / "agent.log"
    ).read_text()[-3000:]
    live_service.stop()
    assert e2e.wait_until(lambda: "lost the service" in (tmp_path / "agent.log").read_text(), 30)
    live_service.start()
    admin = live_service.admin()
    second = admin.create_deployment(env.id, p1.id, name="two")
    assert e2e.wait_until(lambda: observed(admin, second.id).state == "ready", 60), (
        tmp_path / "agent.log"
    ).read_text()
    assert "reconnected to the service; resumed from cursor" in (tmp_path / "agent.log").read_text()
    assert (base / f"deployment_{second.id}").is_dir()
