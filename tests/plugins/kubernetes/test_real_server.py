"""The Kubernetes plugin against a real API server (kube-apiserver v1.20.2 with etcd; see kube_server.py).

Server-side apply, defaulting, validation, status subresources and RBAC are the real
server's; there are no nodes, so the ``kubelet`` fixture completes build Jobs and makes
Deployments available (or fails the rollout of chosen images). These tests run last in a
session: the build of the server (cached) starts when they are collected.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipmate.plugin.info import DeploymentInfo
from shipmate.plugin.status import ActionStatus, DataKey, DeploymentState
from shipmate.plugins.kubernetes.naming import ANNOTATION_MODEL_ID

pytestmark = pytest.mark.kube_server

kube = sys.modules["shipmate_tests_kube_server"]
REPO = "registry.example.com/mlops/frozen-models"


@pytest.fixture
def real_plugin(tmp_path: Path, real_config: dict[str, Any]) -> Callable[..., Any]:
    from shipmate.plugins.kubernetes.plugin import KubernetesPlugin

    counter = iter(range(1000))

    def factory(*, pe_info: dict[str, Any] | None = None, **overrides: Any) -> Any:
        path = tmp_path / f"plugin.k8s.conf.real.{next(counter)}.yaml"
        path.write_text(
            yaml.safe_dump({k: v for k, v in {**real_config, **overrides}.items() if v is not None})
        )
        plugin_config = {"MLOPS_BOSUN_PRED_ENV_ID": "env-1", "MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING": False}
        return KubernetesPlugin(plugin_config, str(path), pe_info, False)

    return factory


def _get(server: Any, namespace: str, path: str) -> Any:
    return server.request("GET", f"/apis/{path.format(ns=namespace)}")


def _names(server: Any, namespace: str, api: str, plural: str) -> list[str]:
    prefix = "/api/v1" if api == "v1" else f"/apis/{api}"
    items = server.request("GET", f"{prefix}/namespaces/{namespace}/{plural}")["items"]
    return sorted(i["metadata"]["name"] for i in items)


def test_the_whole_lifecycle_on_a_real_server(
    real_plugin: Any,
    make_info: Callable[..., DeploymentInfo],
    kube_server: Any,
    kube_namespace: str,
    kubelet: Any,
) -> None:
    plugin = real_plugin()
    started = plugin.plugin_start()
    assert started.status is ActionStatus.OK and "v1.20.2" in started.msg, started.msg
    health = plugin.pe_status()
    assert health.status is ActionStatus.OK, health.msg

    kv = {"replicas": 2}
    result = plugin.deployment_start(make_info("dep-1", "model-a", keyValueConfig=kv))
    assert result.status is ActionStatus.OK and result.state is DeploymentState.READY, result.msg
    ns = kube_namespace
    deployment = _get(kube_server, ns, "apps/v1/namespaces/{ns}/deployments/mlops-dep-1")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == f"{REPO}:m-model-a"
    service = kube_server.request("GET", f"/api/v1/namespaces/{ns}/services/mlops-dep-1")
    assert service["spec"]["ports"][0]["protocol"] == "TCP"
    pdb = _get(kube_server, ns, "policy/v1beta1/namespaces/{ns}/poddisruptionbudgets/mlops-dep-1")
    assert pdb["metadata"]["ownerReferences"][0]["name"] == "mlops-dep-1"
    assert _names(kube_server, ns, "batch/v1", "jobs") == ["mlops-build-m-model-a"]
    assert _names(kube_server, ns, "v1", "configmaps") == []  # the build context went with the build

    status = plugin.deployment_status(make_info("dep-1", "model-a"))
    assert status.status is ActionStatus.OK and status.msg == "2/2 pods ready", status.msg
    listing = plugin.deployment_list()
    assert list(listing.data) == ["dep-1"]

    replaced = plugin.deployment_replace_model(make_info("dep-1", "model-b", keyValueConfig=kv))
    assert replaced.status is ActionStatus.OK, replaced.msg
    assert replaced.data[DataKey.CURRENT_MODEL_ID] == "model-b"

    # A model whose pods never become ready: rolled back, every object back to the old model.
    kubelet.failing_images.add(f"{REPO}:m-model-c")
    failed = plugin.deployment_replace_model(make_info("dep-1", "model-c", keyValueConfig=kv))
    assert failed.status is ActionStatus.ERROR and failed.data[DataKey.OLD_MODEL_IN_USE] is True, failed.msg
    assert "rolled back to model model-b" in failed.msg
    for api, plural in (
        ("apps/v1", "deployments"),
        ("v1", "services"),
        ("networking.k8s.io/v1", "ingresses"),
    ):
        prefix = "/api/v1" if api == "v1" else f"/apis/{api}"
        obj = kube_server.request("GET", f"{prefix}/namespaces/{ns}/{plural}/mlops-dep-1")
        assert obj["metadata"]["annotations"][ANNOTATION_MODEL_ID] == "model-b", plural
    pdb = _get(kube_server, ns, "policy/v1beta1/namespaces/{ns}/poddisruptionbudgets/mlops-dep-1")
    assert pdb["metadata"]["annotations"][ANNOTATION_MODEL_ID] == "model-b"

    stopped = plugin.deployment_stop(make_info("dep-1", "model-b"))
    assert stopped.status is ActionStatus.OK and stopped.state is DeploymentState.STOPPED, stopped.msg
    for api, plural in (
        ("apps/v1", "deployments"),
        ("v1", "services"),
        ("networking.k8s.io/v1", "ingresses"),
        ("policy/v1beta1", "poddisruptionbudgets"),
    ):
        assert _names(kube_server, ns, api, plural) == [], plural
    assert plugin.plugin_stop().status is ActionStatus.OK


def test_switching_to_autoscaling_keeps_the_running_replicas(
    real_plugin: Any,
    make_info: Callable[..., DeploymentInfo],
    kube_server: Any,
    kube_namespace: str,
    kubelet: Any,
) -> None:
    """Server-side apply resets a field its manager stops setting (replicas 3 -> 1): not here."""
    plugin = real_plugin()
    assert (
        plugin.deployment_start(make_info("dep-1", keyValueConfig={"replicas": 3})).status is ActionStatus.OK
    )
    kv = {"minReplicas": 2, "maxReplicas": 5, "cpuRequest": "250m"}
    result = plugin.deployment_start(make_info("dep-1", keyValueConfig=kv))
    assert result.status is ActionStatus.OK, result.msg
    ns = kube_namespace
    assert _get(kube_server, ns, "apps/v1/namespaces/{ns}/deployments/mlops-dep-1")["spec"]["replicas"] == 3
    hpa = _get(kube_server, ns, "autoscaling/v2beta2/namespaces/{ns}/horizontalpodautoscalers/mlops-dep-1")
    assert hpa["spec"]["minReplicas"] == 2
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 80
    # Re-applying (idempotent start) keeps it too, and a fresh autoscaled deployment starts at the minimum.
    assert plugin.deployment_start(make_info("dep-1", keyValueConfig=kv)).status is ActionStatus.OK
    assert _get(kube_server, ns, "apps/v1/namespaces/{ns}/deployments/mlops-dep-1")["spec"]["replicas"] == 3
    assert plugin.deployment_start(make_info("dep-2", keyValueConfig=kv)).status is ActionStatus.OK
    assert _get(kube_server, ns, "apps/v1/namespaces/{ns}/deployments/mlops-dep-2")["spec"]["replicas"] == 2


def test_a_wrong_field_in_a_setting_is_named_before_any_build(
    real_plugin: Any, make_info: Callable[..., DeploymentInfo], kube_server: Any, kube_namespace: str
) -> None:
    plugin = real_plugin(ppsTolerations=[{"key": "gpu", "operator": "Exists", "efect": "NoSchedule"}])
    result = plugin.deployment_start(make_info("dep-1"))
    assert result.status is ActionStatus.ERROR
    assert "check the setting ppsTolerations" in result.msg and "efect" in result.msg, result.msg
    assert "422" in result.msg  # not a retryable server failure
    assert _names(kube_server, kube_namespace, "batch/v1", "jobs") == []
    assert _names(kube_server, kube_namespace, "apps/v1", "deployments") == []

    plugin = real_plugin(kanikoExtraVolumeMounts=[{"name": "cache", "mountPth": "/cache"}])
    result = plugin.deployment_start(make_info("dep-1"))
    assert result.status is ActionStatus.ERROR
    assert "check the setting kanikoExtraVolumeMounts" in result.msg, result.msg
    assert _names(kube_server, kube_namespace, "batch/v1", "jobs") == []


def test_pe_status_as_a_user_without_rights_lists_every_missing_permission(
    real_plugin: Any, kube_server: Any, kube_namespace: str, tmp_path: Path
) -> None:
    kubeconfig = kube_server.kubeconfig(tmp_path / "nobody.yaml", kube.NOBODY_TOKEN, kube_namespace)
    plugin = real_plugin(kubeConfigFile=str(kubeconfig), pe_info={"id": "env-1", "deployments": ["dep-1"]})
    result = plugin.pe_status()
    assert result.status is ActionStatus.ERROR
    assert "missing permissions in namespace" in result.msg and "create jobs.batch" in result.msg, result.msg
    assert "list pods" in result.msg and "deployments not checked" in result.msg


# -- the chart: its RBAC as the plugin's only rights, and a real Helm install ----------------------

CHART = Path(__file__).parents[3] / "charts" / "shipmate"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
MINIMUM = {
    "shipmate": {"serviceUrl": "https://shipmate.example.com"},
    "predictionServer": {
        "ingressClassName": "mlops",
        "outfacingUrlRoot": "http://your-company.com/deployments/",
    },
    "datarobot": {"apiSecretName": "mlops-api-key", "predictionEnvId": "env-123"},
    "managementAgent": {"repository": "registry.your-company.com/shipmate/agent"},
    "trackingAgent": {"image": "registry.your-company.com/shipmate/tracking-agent:0.1.0"},
    "imageBuilder": {
        "ppsImage": "registry.your-company.com/shipmate/prediction-server:0.1.0",
        "generatedImageRepository": "registry.your-company.com/mlops/frozen-models",
    },
}


def _helm(kube_server: Any, binary: str, *args: str, kubeconfig: Path | None = None) -> str:
    import subprocess

    argv = [str(kube_server.bin_dir / binary), *args]
    if kubeconfig is not None:
        argv += ["--kubeconfig", str(kubeconfig)]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(kubeconfig.parent if kubeconfig else Path.cwd())}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, (argv, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout


def _rbac(kube_server: Any, namespace: str, tmp_path: Path) -> list[dict[str, Any]]:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(MINIMUM))
    rendered = _helm(
        kube_server, "helm", "template", "shipmate", str(CHART), "-n", namespace, "-f", str(values)
    )
    kinds = ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
    return [o for o in yaml.safe_load_all(rendered) if o and o["kind"] in kinds]


def _put_rbac(kube_server: Any, namespace: str, obj: dict[str, Any]) -> None:
    plural = {"Role": "roles", "RoleBinding": "rolebindings"}.get(obj["kind"])
    base = "/apis/rbac.authorization.k8s.io/v1"
    if plural is None:
        path = f"{base}/{obj['kind'].lower()}s/{obj['metadata']['name']}"
    else:
        path = f"{base}/namespaces/{namespace}/{plural}/{obj['metadata']['name']}"
    body = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
    kube_server.request(
        "PATCH", f"{path}?fieldManager=test&force=true", body, content_type="application/apply-patch+yaml"
    )


def test_the_chart_rbac_is_sufficient_and_every_rule_is_needed(
    real_plugin: Any,
    make_info: Callable[..., DeploymentInfo],
    kube_server: Any,
    kube_namespace: str,
    kubelet: Any,
    tmp_path: Path,
) -> None:
    """The whole lifecycle as the chart's service account (its token); without any one rule, pe_status
    names what is missing."""
    rbac = _rbac(kube_server, kube_namespace, tmp_path)
    for obj in rbac:
        _put_rbac(kube_server, kube_namespace, obj)
    account = next(o for o in rbac if o["kind"] == "RoleBinding")["subjects"][0]["name"]
    token = kube_server.service_account_token(kube_namespace, account)
    kubeconfig = kube_server.kubeconfig(tmp_path / "agent.yaml", token, kube_namespace)
    plugin = real_plugin(kubeConfigFile=str(kubeconfig), kubeNamespace=kube_namespace)
    assert plugin.plugin_start().status is ActionStatus.OK
    health = plugin.pe_status()
    assert health.status is ActionStatus.OK, health.msg
    kv = {"minReplicas": 2, "maxReplicas": 3, "cpuRequest": "100m"}
    for step, result in (
        ("start", lambda: plugin.deployment_start(make_info("dep-1", "model-a", keyValueConfig=kv))),
        ("status", lambda: plugin.deployment_status(make_info("dep-1", "model-a"))),
        ("list", plugin.deployment_list),
        (
            "replace",
            lambda: plugin.deployment_replace_model(make_info("dep-1", "model-b", keyValueConfig=kv)),
        ),
        ("stop", lambda: plugin.deployment_stop(make_info("dep-1", "model-b"))),
    ):
        outcome = result()
        assert outcome.status is ActionStatus.OK, (step, outcome.msg)

    role = next(o for o in rbac if o["kind"] == "Role" and o["metadata"]["name"].endswith("-agent"))
    for index, rule in enumerate(role["rules"]):
        reduced = {**role, "rules": [r for i, r in enumerate(role["rules"]) if i != index]}
        _put_rbac(kube_server, kube_namespace, reduced)
        result = plugin.pe_status()
        resource = rule["resources"][0]
        assert result.status is ActionStatus.ERROR and f"{rule['verbs'][0]} {resource}" in result.msg, (
            rule,
            result.msg,
        )
    _put_rbac(kube_server, kube_namespace, role)


@pytest.mark.parametrize("helm_binary", ["helm", "helm3"])
def test_the_chart_installs_upgrades_and_uninstalls_with_a_real_helm(
    helm_binary: str, kube_server: Any, kube_namespace: str, tmp_path: Path
) -> None:
    kubeconfig = kube_server.kubeconfig(tmp_path / "admin.yaml", kube.ADMIN_TOKEN, kube_namespace)
    minimum = tmp_path / "minimum.yaml"
    minimum.write_text(yaml.safe_dump(MINIMUM))
    helm = lambda *args: _helm(kube_server, helm_binary, *args, kubeconfig=kubeconfig)  # noqa: E731
    helm("lint", "--strict", str(CHART), "-f", str(minimum))
    for values in [minimum, *EXAMPLES]:
        release = f"r-{values.stem.lower().replace('_', '-')}"[:30]
        helm("install", release, str(CHART), "-n", kube_namespace, "-f", str(values))
        helm(
            "upgrade",
            release,
            str(CHART),
            "-n",
            kube_namespace,
            "-f",
            str(values),
            "--set",
            "shipmate.serviceUrl=https://upgraded.example.com",
        )
        helm("uninstall", release, "-n", kube_namespace, "--wait")
    for api, plural in (
        ("apps/v1", "deployments"),
        ("v1", "configmaps"),
        ("v1", "serviceaccounts"),
        ("rbac.authorization.k8s.io/v1", "roles"),
        ("rbac.authorization.k8s.io/v1", "rolebindings"),
    ):
        names = [n for n in _names(kube_server, kube_namespace, api, plural) if n != "default"]
        assert names == [], (plural, names)
    left = kube_server.request(
        "GET",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles?labelSelector=app.kubernetes.io/managed-by=Helm",
    )["items"]
    assert [c["metadata"]["name"] for c in left if kube_namespace in c["metadata"]["name"]] == []


def test_shipmate_plugin_check_and_the_runner_pass_on_the_real_server(
    real_config: dict[str, Any],
    make_info: Callable[..., DeploymentInfo],
    kube_server: Any,
    kube_namespace: str,
    kubelet: Any,
    tmp_path: Path,
) -> None:
    """The conformance kit as ``shipmate plugin check`` runs it, then start and stop each in a
    ``bosun-plugin-runner`` process of its own (the kit's --via-runner costs a minute: not in CI)."""
    import subprocess

    private = tmp_path / "plugin.k8s.conf.yaml"
    private.write_text(yaml.safe_dump(real_config))
    bin_dir = Path(sys.executable).parent
    (tmp_path / "work").mkdir()
    argv = [
        str(bin_dir / "shipmate"),
        "plugin",
        "check",
        "--plugin",
        "kubernetes",
        "--private-config",
        str(private),
    ]
    done = subprocess.run(
        [*argv, "--work-dir", str(tmp_path / "work")], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert _names(kube_server, kube_namespace, "apps/v1", "deployments") == [], (
        "the kit stops what it started"
    )

    config = tmp_path / "action.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "pluginConfig": {
                    "MLOPS_BOSUN_PRED_ENV_ID": "env-1",
                    "MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING": False,
                },
                "peInfo": {"id": "env-1", "name": "k8s"},
                "deploymentInfo": make_info("dep-7", "model-x", size=1000).to_dict(),
            }
        )
    )
    status_file = tmp_path / "status.yaml"
    for action, state in (("deployment_start", "ready"), ("deployment_stop", "stopped")):
        runner = [str(bin_dir / "bosun-plugin-runner"), "--plugin", "kubernetes", "--config", str(config)]
        runner += ["--private-config", str(private), "--action", action, "--status-file", str(status_file)]
        done = subprocess.run(runner, capture_output=True, text=True, timeout=120)
        status = yaml.safe_load(status_file.read_text())
        assert done.returncode == 0 and status["status"] == "passing", (done.stderr[-2000:], status)
        assert status["state"] == state
    assert _names(kube_server, kube_namespace, "apps/v1", "deployments") == []


def test_a_real_agent_driven_by_a_real_service_deploys_on_the_real_server(
    real_config: dict[str, Any],
    make_package: Any,
    kube_server: Any,
    kube_namespace: str,
    kubelet: Any,
    tmp_path: Path,
) -> None:
    """``shipmate server`` and ``shipmate agent`` (kubernetes plugin) as processes."""
    import os
    import signal
    import subprocess
    import time

    from shipmate.client.client import ShipmateClient

    def wait_until(predicate: Callable[[], Any], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return True
            except Exception:  # the service may not answer yet
                pass
            time.sleep(0.3)
        return False

    shipmate = [sys.executable, "-c", "from shipmate.cli.main import main; main()"]
    admin_token = "admin-token-for-kubernetes-tests-0123456789"
    port = kube._free_port()
    url = f"http://127.0.0.1:{port}"
    started: list[subprocess.Popen[bytes]] = []

    def start(command: list[str], log: Path, env: dict[str, str]) -> None:
        with open(log, "ab") as out:
            started.append(
                subprocess.Popen(
                    command,
                    env={**os.environ, **env},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    try:
        start(
            [*shipmate, "server", "--data-dir", str(tmp_path / "service"), "--port", str(port)],
            tmp_path / "server.log",
            {"SHIPMATE_ADMIN_TOKEN": admin_token},
        )
        admin = ShipmateClient(url, admin_token)
        assert wait_until(lambda: admin.list_environments() is not None, 60), (
            tmp_path / "server.log"
        ).read_text()
        env = admin.create_environment("k8s-real", "kubernetes")
        _, secret = admin.create_token(kind="agent", environment_id=env.id)
        first = admin.upload_model_package(make_package(name="churn", version="1"))
        second = admin.upload_model_package(make_package(name="churn", version="2"))
        private = tmp_path / "plugin.k8s.conf.yaml"
        private.write_text(yaml.safe_dump(real_config))
        agent_config = tmp_path / "agent.yaml"
        agent_config.write_text(
            yaml.safe_dump(
                {
                    "serviceUrl": url,
                    "environmentId": env.id,
                    "plugin": {"name": "kubernetes", "privateConfig": str(private)},
                    "workDir": str(tmp_path / "work"),
                    "metrics": {"port": 0},
                    "retry": {"maxAttempts": 3, "initialDelay": 0.2, "maxDelay": 1},
                    "intervals": {"feedWait": 2, "reconnectMax": 0.5, "peStatus": 2, "deploymentStatus": 2},
                }
            )
        )
        log = tmp_path / "agent.log"
        start([*shipmate, "agent", "--config", str(agent_config)], log, {"MLOPS_API_TOKEN": secret})

        deployment = admin.create_deployment(env.id, first.id, name="churn")
        ready = wait_until(lambda: admin.get_deployment(deployment.id).observed.state == "ready", 120)
        assert ready, log.read_text()[-3000:]
        observed = admin.get_deployment(deployment.id).observed
        assert (
            observed.prediction_url == f"https://models.example.com/deployments/{deployment.id}/predictions"
        )
        admin.replace_model(deployment.id, second.id)
        replaced = wait_until(
            lambda: admin.get_deployment(deployment.id).observed.model_package_id == second.id, 120
        )
        assert replaced, log.read_text()[-3000:]
        admin.delete(deployment.id)
        gone = wait_until(lambda: _names(kube_server, kube_namespace, "apps/v1", "deployments") == [], 120)
        assert gone, log.read_text()[-3000:]
    finally:
        for process in started:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
