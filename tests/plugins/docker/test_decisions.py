"""Pure decisions of the Docker plugin: names, labels, routes and what a container's state means."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipmate.plugin.errors import ConfigError
from shipmate.plugin.info import DeploymentInfo
from shipmate.plugin.status import ActionStatus, DeploymentState
from shipmate.plugins.docker import naming
from shipmate.plugins.docker.decisions import (
    ContainerView,
    StartDecision,
    active_routes,
    container_status,
    plan_start,
    serving_container,
    unique_name,
)
from shipmate.plugins.docker.proxy import parse_nginx_routes, render_routes_file
from shipmate.plugins.docker.routes import render_nginx_routes, route_table, traefik_labels


def view(
    name: str,
    status: str = "running",
    *,
    dep: str = "d1",
    model: str = "m1",
    sha: str = "s1",
    created: str = "2026-01-01T00:00:01",
    **extra: object,
) -> ContainerView:
    labels = {naming.DEPLOYMENT_ID: dep, naming.MODEL_ID: model, naming.PACKAGE_DIGEST: sha}
    return ContainerView(name=name, id=f"id-{name}", status=status, labels=labels, created=created, **extra)  # type: ignore[arg-type]


def test_container_name_follows_the_contract_convention() -> None:
    assert naming.container_name("mlops_", "5f1a", "m-2") == "mlops_5f1a_m-2"
    assert naming.container_name("", "dep", "model") == "dep_model"


@pytest.mark.parametrize("bad", ["", "a b", "../x", "x;y", "-leading", "a" * 200, "dep/1", "{x}"])
def test_unsafe_ids_are_refused_before_they_reach_names_urls_or_proxy_config(bad: str) -> None:
    with pytest.raises(ConfigError, match="deployment id"):
        naming.container_name("p_", bad, "m")


def test_labels_recover_the_deployment_without_the_agent() -> None:
    info = DeploymentInfo(
        id="d1", model_id="m1", new_model_id="m2", name="churn", model_execution_type="dedicated"
    )
    labels = naming.deployment_labels(
        "pe-1", info, package_sha256="abc", prediction_url="http://x/d1/predict", model_file="m.mlpkg"
    )
    assert labels[naming.ENVIRONMENT] == "pe-1"
    assert labels[naming.DEPLOYMENT_ID] == "d1"
    assert labels[naming.MODEL_ID] == "m2"  # newModelId wins during a replacement
    assert labels[naming.DEPLOYMENT_NAME] == "churn"
    assert labels["mlops.deployment_id"] == "d1"
    assert all(isinstance(v, str) for v in labels.values())


def test_model_image_is_named_by_content(tmp_path: Path) -> None:
    package = tmp_path / "model.mlpkg"
    package.write_bytes(b"same bytes")
    first = naming.package_digest(package, "sha256:base1")
    again = naming.package_digest(package, "sha256:base1")
    other_base = naming.package_digest(package, "sha256:base2")
    assert first == again
    assert first.image_digest != other_base.image_digest
    assert first.package_sha256 == other_base.package_sha256
    assert naming.model_image("mlops_", first.image_digest) == f"mlops_model:{first.image_digest[:20]}"


def test_start_plans() -> None:
    assert plan_start([], "m1", "s1").decision is StartDecision.START
    same = view("c1")
    reuse = plan_start([same], "m1", "s1")
    assert reuse.decision is StartDecision.REUSE and reuse.keep == same
    assert plan_start([same], "m1", "s2").decision is StartDecision.ROLL  # same model id, new package
    assert plan_start([same], "m2", "s9").decision is StartDecision.ROLL
    relaunch = plan_start([same], "m1", "s1", force_new=True)
    assert relaunch.decision is StartDecision.ROLL and relaunch.retire == (same,)
    dead = view("c1", "exited", exit_code=1)
    fresh = plan_start([dead], "m1", "s1")
    assert fresh.decision is StartDecision.START and fresh.retire == (dead,)


def test_reuse_retires_stale_extras() -> None:
    old = view("c-old", "exited", created="2026-01-01T00:00:00")
    good = view("c-new", created="2026-01-01T00:00:05")
    plan = plan_start([old, good], "m1", "s1")
    assert plan.decision is StartDecision.REUSE
    assert plan.keep == good and plan.retire == (old,)


def test_the_newest_running_container_serves() -> None:
    older = view("a", created="2026-01-01T00:00:00")
    newer = view("b", created="2026-01-01T00:00:09")
    crashed = view("c", "exited", created="2026-01-01T00:00:10")
    assert serving_container([older, newer, crashed]) == newer
    assert serving_container([crashed]) == crashed
    assert serving_container([]) is None
    assert active_routes([older, newer, crashed, view("z", dep="d2", created="1")]) == {"d1": "b", "d2": "z"}


def test_unique_name_only_deviates_when_the_name_is_taken() -> None:
    assert unique_name("p_d_m", [], "abcdef0123456789") == "p_d_m"
    assert unique_name("p_d_m", ["p_d_m"], "abcdef0123456789") == "p_d_m.abcdef01"
    assert unique_name("p_d_m", ["p_d_m", "p_d_m.abcdef01"], "abcdef0123456789") == "p_d_m.abcdef012345"


def test_status_tells_running_restarting_and_exited_apart() -> None:
    running = container_status(view("c"), "d1", answers_ping=True)
    assert (running.status, running.state) == (ActionStatus.OK, DeploymentState.READY)
    assert running.data and running.data["currentModelId"] == "m1"
    starting = container_status(view("c"), "d1", answers_ping=False)
    assert (starting.status, starting.state) == (ActionStatus.WARN, DeploymentState.LAUNCHING)
    restarting = container_status(
        view("c", "restarting", exit_code=3, restart_count=4), "d1", answers_ping=None
    )
    assert (
        restarting.status is ActionStatus.ERROR
        and "restarting (restart count 4, last exit code 3)" in str(restarting.msg)
    )
    exited = container_status(
        view("c", "exited", exit_code=137), "d1", answers_ping=None, log_tail="line 1\nboom\n"
    )
    assert exited.status is ActionStatus.ERROR and exited.state is DeploymentState.ERRORED
    assert "exited with code 137" in str(exited.msg) and str(exited.msg).endswith("line 1\nboom")
    assert exited.data and exited.data["exitCode"] == 137
    oom = container_status(view("c", "exited", exit_code=137, oom_killed=True), "d1", answers_ping=None)
    assert "out of memory" in str(oom.msg)
    missing = container_status(None, "d9", answers_ping=None)
    assert missing.status is ActionStatus.ERROR and "No container for deployment d9" in str(missing.msg)


def test_nginx_routes_round_trip_and_rewrite_the_documented_paths() -> None:
    text = render_routes_file({"dep-2": "p_dep-2_m", "dep.1": "p_dep.1_m"})
    assert parse_nginx_routes(text) == {"dep-2": "p_dep-2_m", "dep.1": "p_dep.1_m"}
    assert "location = /dep-2/predict {" in text
    assert "rewrite ^ /predictions break;" in text
    assert r"location ~ ^/(?:deployments/)?dep\.1(?<shipmate_path>/.*)$" in text
    assert 'add_header X-Shipmate-Upstream "p_dep.1_m:8080" always;' in text
    assert render_nginx_routes(route_table({})).count("location") == 0


def test_traefik_labels_route_the_same_paths() -> None:
    labels = traefik_labels("pe-1", "dep1", "bosun")
    router = "shipmate-pe-1-dep1"
    assert labels["traefik.enable"] == "true"
    assert (
        labels[f"traefik.http.routers.{router}.rule"]
        == "PathPrefix(`/dep1/`) || PathPrefix(`/deployments/dep1/`)"
    )
    assert labels[f"traefik.http.middlewares.{router}-predict.replacepathregex.replacement"] == "/predictions"
    assert labels[f"traefik.http.services.{router}.loadbalancer.server.port"] == "8080"


def test_nginx_upstreams_keep_connections_alive_per_deployment() -> None:
    from shipmate.plugins.docker.proxy import render_route_files
    from shipmate.plugins.docker.routes import ROUTES_FILE, UPSTREAMS_FILE, upstream_name

    files = render_route_files({"dep.1": "p_dep.1_m"})
    upstream = upstream_name("dep.1")
    assert "." not in upstream and upstream != upstream_name("dep_1")
    assert (
        f"upstream {upstream} {{\n    server p_dep.1_m:8080 max_fails=0;\n    keepalive 32;"
        in files[UPSTREAMS_FILE]
    )
    assert f"proxy_pass http://{upstream};" in files[ROUTES_FILE]


def test_routes_are_stale_when_a_routed_container_restarted_after_the_load() -> None:
    from shipmate.plugins.docker.proxy import routes_are_stale

    table = {"d1": "c1"}
    before = [view("c1", started_at="2026-01-01T10:00:00.5Z")]
    after = [view("c1", started_at="2026-01-01T10:00:09.1Z")]
    assert not routes_are_stale(table, before, "2026-01-01T10:00:05.000000000")
    assert routes_are_stale(table, after, "2026-01-01T10:00:05.000000000")
    assert not routes_are_stale({}, after, "2026-01-01T10:00:05.000000000")
