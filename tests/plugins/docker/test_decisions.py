"""Pure decisions of the Docker plugin: names, labels, routes and what a container's state means."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

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
from shipmate.plugins.docker.proxy import initial_tree
from shipmate.plugins.docker.routes import (
    ROUTES_FILE,
    parse_routes,
    render_routes_file,
    route_table,
    traefik_command,
    traefik_dynamic_config,
    traefik_name,
)


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


def test_a_container_running_again_after_a_stop_says_when_it_stopped_and_started() -> None:
    never = container_status(view("c", finished_at="0001-01-01T00:00:00Z"), "d1", answers_ping=True)
    assert str(never.msg) == "Deployment d1 is running in container c"
    again = view("c", finished_at="2026-01-01T10:00:00Z", started_at="2026-01-01T10:00:09Z")
    status = container_status(again, "d1", answers_ping=True)
    assert status.status is ActionStatus.OK
    assert "(it stopped at 2026-01-01T10:00:00Z and started again at 2026-01-01T10:00:09Z)" in str(status.msg)
    assert status.data and status.data["stoppedAt"] == "2026-01-01T10:00:00Z"


def test_routes_round_trip_through_the_file_traefik_reads() -> None:
    text = render_routes_file({"dep-2": "p_dep-2_m", "dep.1": "p_dep.1_m"})
    assert parse_routes(text) == {"dep-2": "p_dep-2_m", "dep.1": "p_dep.1_m"}
    http = yaml.safe_load(text)["http"]
    name = traefik_name("dep.1")
    assert http["routers"][name] == {
        "entryPoints": ["web"],
        "rule": "PathPrefix(`/dep.1/`) || PathPrefix(`/deployments/dep.1/`)",
        "service": name,
        "middlewares": [f"{name}-predict", f"{name}-strip", f"{name}-upstream"],
    }
    assert http["services"][name] == {
        "loadBalancer": {"servers": [{"url": "http://p_dep.1_m:8080"}], "passHostHeader": True}
    }
    headers = http["middlewares"][f"{name}-upstream"]["headers"]["customResponseHeaders"]
    assert headers == {"X-Shipmate-Upstream": "p_dep.1_m:8080"}
    assert parse_routes(render_routes_file({})) == {} and traefik_dynamic_config([]) == {}
    assert yaml.safe_load(render_routes_file({})) is None  # comments only: Traefik reads no routes


@pytest.mark.parametrize(
    ("path", "rewritten"),
    [
        ("/dep.1/predict", "/predictions"),
        ("/dep.1/predictions", "/predictions"),
        ("/deployments/dep.1/predictions", "/predictions"),
        ("/deployments/dep.1/predict", "/predictions"),
        ("/dep.1/ping", "/ping"),
        ("/dep.1/predict/x", "/predict/x"),
        ("/depX1/ping", "/depX1/ping"),  # the dot is literal
    ],
)
def test_the_middlewares_rewrite_the_documented_paths(path: str, rewritten: str) -> None:
    import re

    middlewares = traefik_dynamic_config(route_table({"dep.1": "c"}))["http"]["middlewares"]
    name = traefik_name("dep.1")
    for step in ("predict", "strip"):  # in the router's order; Go's regexp syntax is Python's here
        rule = middlewares[f"{name}-{step}"]["replacePathRegex"]
        replacement = rule["replacement"].replace("$1", r"\1")
        path = re.sub(rule["regex"], replacement, path)
    assert path == rewritten


def test_traefik_names_are_unique_where_ids_differ_only_in_punctuation() -> None:
    assert traefik_name("a.b") != traefik_name("a-b") != traefik_name("a_b")
    assert all(c.isalnum() or c == "-" for c in traefik_name("dep_1.x"))


def test_the_proxy_gets_its_directories_and_first_table_before_it_starts() -> None:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(initial_tree({"d1": "c1"}))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        table = tar.extractfile(members[ROUTES_FILE.lstrip("/")])
        assert table is not None and parse_routes(table.read().decode()) == {"d1": "c1"}
    assert members["etc/traefik/staging"].isdir() and members["etc/traefik/dynamic"].isdir()
    command = traefik_command()
    assert "--providers.file.directory=/etc/traefik/dynamic" in command
    assert "--global.checkNewVersion=false" in command  # never calls out
    assert not any("docker" in arg for arg in command)  # no engine socket in the proxy
