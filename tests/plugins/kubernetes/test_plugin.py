"""The Kubernetes plugin against the HTTP-level fake of the API server.

Each test runs the plugin's real code, the official client, its serialisation
and error handling; only the API server is fake (see fake_kube_api.py).
"""

from __future__ import annotations

import base64
import hashlib
import sys
from pathlib import Path
from typing import Any

import pytest

from shipmate.plugin.actions import invoke
from shipmate.plugin.errors import ConfigError
from shipmate.plugin.status import ActionStatus, DataKey, DeploymentState
from shipmate.plugins.kubernetes.cluster import REQUIRED_PERMISSIONS
from shipmate.plugins.kubernetes.naming import (
    ANNOTATION_DEPLOYMENT_ID,
    ANNOTATION_MODEL_ID,
    LABEL_MANAGED_BY,
    LABEL_MODEL,
)

REPO = "registry.example.com/mlops/frozen-models"
fake_kube_api = sys.modules["shipmate_tests_fake_kube_api"]


def _image(state: Any, name: str = "mlops-dep-1") -> str:
    return str(state.get("deployments", name)["spec"]["template"]["spec"]["containers"][0]["image"])


# -- plugin_start / pe_status -------------------------------------------------------------------


def test_plugin_start_reports_the_cluster(make_plugin: Any, fake_api: Any) -> None:
    result = make_plugin().plugin_start()
    assert result.status is ActionStatus.OK, result.msg
    assert "v1.30.2" in result.msg and fake_api.url in result.msg and "namespace default" in result.msg


def test_plugin_start_refuses_a_cluster_older_than_1_20(make_plugin: Any, fake_api: Any) -> None:
    fake_api.state.version = {"major": "1", "minor": "19+", "gitVersion": "v1.19.16-eks"}
    result = make_plugin().plugin_start()
    assert result.status is ActionStatus.ERROR
    assert "v1.19.16-eks is not supported: Shipmate needs 1.20 or later" in result.msg


def test_a_cluster_missing_a_kind_is_told_so_before_anything_is_applied(
    make_plugin: Any, make_info: Any, fake_api: Any
) -> None:
    fake_api.state.served = fake_api.state.served - {"policy/v1"}
    plugin = make_plugin()
    for result in (plugin.plugin_start(), plugin.pe_status()):
        assert result.status is ActionStatus.ERROR
        assert (
            "does not serve what the plugin needs: PodDisruptionBudget (none of policy/v1, policy/v1beta1)"
            in (result.msg)
        )
    result = plugin.deployment_start(make_info("dep-1", keyValueConfig={"replicas": 2}))
    assert result.status is ActionStatus.ERROR and "PodDisruptionBudget" in result.msg
    assert fake_api.state.calls("POST", "jobs") == [] and fake_api.state.calls("PATCH") == []
    assert plugin.deployment_stop(make_info("dep-1")).status is ActionStatus.OK


def test_a_1_20_cluster_gets_the_beta_hpa_and_pdb(make_plugin: Any, make_info: Any, fake_api: Any) -> None:
    fake_api.state.served = fake_kube_api.SERVED_BY_1_20
    plugin = make_plugin()
    kv = {"minReplicas": 2, "maxReplicas": 4, "cpuRequest": "500m"}
    result = plugin.deployment_start(make_info("dep-1", keyValueConfig=kv))
    assert result.status is ActionStatus.OK, result.msg
    assert (
        fake_api.state.get("horizontalpodautoscalers", "mlops-dep-1")["apiVersion"] == "autoscaling/v2beta2"
    )
    assert fake_api.state.get("poddisruptionbudgets", "mlops-dep-1")["apiVersion"] == "policy/v1beta1"
    assert plugin.deployment_stop(make_info("dep-1")).status is ActionStatus.OK
    assert fake_api.state.names("poddisruptionbudgets") == []


def test_rejected_credentials_are_explained(make_plugin: Any, fake_api: Any) -> None:
    fake_api.state.token = "another-token"
    result = make_plugin().plugin_start()
    assert result.status is ActionStatus.ERROR
    assert "401" in result.msg and "credentials were rejected" in result.msg


def test_an_unreachable_api_server_is_explained(make_plugin: Any, fake_api: Any) -> None:
    plugin = make_plugin()
    fake_api.stop()
    fake_api.stop = lambda: None  # already stopped
    result = plugin.plugin_start()
    assert result.status is ActionStatus.ERROR
    assert "unreachable" in result.msg and fake_api.url in result.msg


def test_pe_status_healthy(make_plugin: Any, fake_api: Any) -> None:
    result = make_plugin().pe_status()
    assert result.status is ActionStatus.OK, result.msg
    reviews = fake_api.state.calls("POST", "selfsubjectaccessreviews")
    asked = {
        (r.body["spec"]["resourceAttributes"]["verb"], r.body["spec"]["resourceAttributes"]["resource"])
        for r in reviews
    }
    assert asked == {(p.verb, p.resource) for p in REQUIRED_PERMISSIONS}
    assert all(r.body["spec"]["resourceAttributes"]["namespace"] == "default" for r in reviews)


def test_pe_status_names_a_missing_namespace(make_plugin: Any, fake_api: Any) -> None:
    result = make_plugin(kubeNamespace="models").pe_status()
    assert result.status is ActionStatus.ERROR
    assert "namespace models does not exist" in result.msg


def test_pe_status_lists_missing_permissions(make_plugin: Any, fake_api: Any) -> None:
    fake_api.state.denied |= {("create", "batch", "jobs"), ("delete", "", "configmaps")}
    result = make_plugin().pe_status()
    assert result.status is ActionStatus.ERROR
    assert "missing permissions in namespace default: create jobs.batch, delete configmaps" in result.msg


def test_pe_status_without_permission_to_read_namespaces_still_passes(
    make_plugin: Any, fake_api: Any
) -> None:
    fake_api.state.denied.add(("get", "", "namespaces"))
    result = make_plugin().pe_status()
    assert result.status is ActionStatus.OK
    assert "not checked" in result.msg


def test_pe_status_reports_listed_deployments_and_orphans(
    make_plugin: Any, make_info: Any, fake_api: Any
) -> None:
    make_plugin().deployment_start(make_info("dep-1"))
    make_plugin().deployment_start(make_info("dep-2"))
    plugin = make_plugin(pe_info={"id": "env-1", "deployments": ["dep-1", "dep-3"]})
    result = plugin.pe_status()
    statuses = result.data[DataKey.DEPLOYMENTS_STATUS]
    assert statuses["dep-1"]["status"] == "passing" and statuses["dep-1"]["state"] == "ready"
    assert statuses["dep-3"]["status"] == "unknown" and statuses["dep-3"]["state"] == "stopped"
    assert result.status is ActionStatus.WARN
    assert "dep-2" in result.msg


# -- deployment_start -----------------------------------------------------------------------------


def test_start_builds_the_image_and_serves(make_plugin: Any, make_info: Any, fake_api: Any) -> None:
    info = make_info("dep-1", "model-a", size=2_000_000)
    result = make_plugin().deployment_start(info)
    assert result.status is ActionStatus.OK, result.msg
    assert result.state is DeploymentState.READY
    assert result.data[DataKey.PREDICTION_URL] == "https://models.example.com/deployments/dep-1/predictions"
    state = fake_api.state
    # the build: one Job, destination is the documented tag, context arrived intact and was cleaned up
    (job_create,) = state.calls("POST", "jobs")
    kaniko = job_create.body["spec"]["template"]["spec"]["containers"][0]
    assert f"--destination={REPO}:m-model-a" in kaniko["args"]
    parts = sorted(
        (r.body for r in state.calls("POST", "configmaps") if "binaryData" in r.body),
        key=lambda cm: cm["metadata"]["name"],
    )
    assert len(parts) == 3  # 2 MB in 900 KiB chunks
    joined = b"".join(base64.b64decode(cm["binaryData"]["part"]) for cm in parts)
    assert joined == Path(info.model_artifact).read_bytes()
    assert (
        job_create.body["metadata"]["annotations"]["shipmate.io/package-sha256"]
        == hashlib.sha256(joined).hexdigest()
    )
    assert state.names("configmaps") == []
    # the workload: everything labelled, dependents owned by the Deployment
    deployment = state.get("deployments", "mlops-dep-1")
    assert _image(state) == f"{REPO}:m-model-a"
    assert deployment["metadata"]["labels"][LABEL_MANAGED_BY] == "shipmate"
    for plural in ("services", "ingresses"):
        obj = state.get(plural, "mlops-dep-1")
        assert obj["metadata"]["ownerReferences"][0]["uid"] == deployment["metadata"]["uid"]
    ingress = state.get("ingresses", "mlops-dep-1")
    assert ingress["spec"]["ingressClassName"] == "mlops"
    assert ingress["spec"]["rules"][0]["host"] == "models.example.com"
    assert state.names("horizontalpodautoscalers") == [] and state.names("poddisruptionbudgets") == []
    # every write was a server-side apply by our field manager, or a create
    for request in state.calls("PATCH"):
        assert request.content_type == "application/apply-patch+yaml"
        assert request.query["fieldManager"] == ["shipmate"] and request.query["force"] == ["true"]


def test_start_is_idempotent_and_reuses_the_built_image(
    make_plugin: Any, make_info: Any, fake_api: Any
) -> None:
    info = make_info()
    assert make_plugin().deployment_start(info).ok
    generation = fake_api.state.get("deployments", "mlops-dep-1")["metadata"]["generation"]
    again = make_plugin().deployment_start(info)
    assert again.ok, again.msg
    assert len(fake_api.state.calls("POST", "jobs")) == 1, "the image was already built"
    assert fake_api.state.get("deployments", "mlops-dep-1")["metadata"]["generation"] == generation
    assert fake_api.state.names("deployments") == ["mlops-dep-1"]


def test_a_new_base_image_triggers_a_rebuild(make_plugin: Any, make_info: Any, fake_api: Any) -> None:
    info = make_info()
    assert make_plugin().deployment_start(info).ok
    rebuilt = make_plugin(
        ppsBaseImage="registry.example.com/shipmate/prediction-server:0.2.0"
    ).deployment_start(info)
    assert rebuilt.ok, rebuilt.msg
    jobs = fake_api.state.calls("POST", "jobs")
    assert len(jobs) == 2
    assert jobs[1].body["metadata"]["annotations"]["shipmate.io/base-image"].endswith(":0.2.0")
    assert len(fake_api.state.calls("DELETE", "jobs")) == 1


def test_two_deployments_of_one_model_share_one_build(
    make_plugin: Any, make_info: Any, fake_api: Any
) -> None:
    import threading

    fake_api.state.build_outcome = "slow:10"  # finishes after 10 reads of the Job, by either action
    results: dict[str, Any] = {}
    plugins = {d: make_plugin(buildTimeoutSeconds=120, rolloutTimeoutSeconds=120) for d in ("dep-1", "dep-2")}
    infos = {d: make_info(d, "model-a") for d in ("dep-1", "dep-2")}

    def start(deployment_id: str) -> None:
        results[deployment_id] = plugins[deployment_id].deployment_start(infos[deployment_id])

    threads = [threading.Thread(target=start, args=(d,)) for d in ("dep-1", "dep-2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert sorted(results) == ["dep-1", "dep-2"] and all(r.ok for r in results.values()), results
    created = [r for r in fake_api.state.calls("POST", "jobs")]
    assert len(created) in (1, 2) and fake_api.state.names("jobs") == ["mlops-build-m-model-a"]
    assert fake_api.state.calls("DELETE", "jobs") == [], "neither action cancelled the other's build"
    assert sorted(fake_api.state.names("deployments")) == ["mlops-dep-1", "mlops-dep-2"]


def test_start_waits_for_a_slow_build_and_rollout(make_plugin: Any, make_info: Any, fake_api: Any) -> None:
    fake_api.state.build_outcome = "slow:3"
    fake_api.state.image_outcomes[f"{REPO}:m-model-a"] = "slow:4"
    result = make_plugin().deployment_start(make_info())
    assert result.ok, result.msg
    assert len([r for r in fake_api.state.calls("GET", "jobs")]) >= 3
    assert len([r for r in fake_api.state.calls("GET", "deployments")]) >= 4


def test_start_applies_autoscaling_and_a_disruption_budget(
    make_plugin: Any, make_info: Any, fake_api: Any
) -> None:
    kv = {"minReplicas": 2, "maxReplicas": 5, "cpuRequest": "500m", "memoryLimit": "1Gi"}
    result = make_plugin().deployment_start(make_info(keyValueConfig=kv))
    assert result.ok, result.msg
    state = fake_api.state
    hpa = state.get("horizontalpodautoscalers", "mlops-dep-1")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert state.get("poddisruptionbudgets", "mlops-dep-1")["spec"]["minAvailable"] == 1
    applied = next(r.body for r in state.calls("PATCH", "deployments"))
    assert "replicas" not in applied["spec"], "the HPA owns the replica count"
    container = applied["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}}
    # dropping autoscaling removes the HPA and (with one replica) the PDB
    assert make_plugin().deployment_start(make_info(keyValueConfig={"replicas": 1})).ok
    assert state.names("horizontalpodautoscalers") == [] and state.names("poddisruptionbudgets") == []


def test_bad_key_value_config_fails_before_any_change(
    make_plugin: Any, make_info: Any, fake_api: Any
) -> None:
    result = make_plugin().deployment_start(make_info(keyValueConfig={"replicas": "many"}))
    assert result.status is ActionStatus.ERROR and result.state is DeploymentState.ERRORED
    assert "keyValueConfig.replicas" in result.msg and "'many'" in result.msg
    assert [r for r in fake_api.state.requests if r.method in ("POST", "PATCH", "DELETE")] == []


def test_a_failed_build_is_reported_with_its_reason(make_plugin: Any, make_info: Any, fake_api: Any) -> None:
    fake_api.state.build_outcome = "fail"
    result = make_plugin().deployment_start(make_info())
    assert result.status is ActionStatus.ERROR and result.state is DeploymentState.ERRORED
    assert "BackoffLimitExceeded" in result.msg and "UNAUTHORIZED" in result.msg
    assert fake_api.state.names("deployments") == []
    assert fake_api.state.names("configmaps") == [], "the build context is removed after a failure too"


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ("ImagePullBackOff", "ImagePullBackOff"),
        ("CrashLoopBackOff", "ModelLoadError: bad package"),
        ("OOMKilled", "raise memoryLimit"),
    ],
)
def test_a_start_that_never_gets_ready_reports_the_pod_reason(
    make_plugin: Any, make_info: Any, fake_api: Any, outcome: str, expected: str
) -> None:
    fake_api.state.image_outcomes[f"{REPO}:m-model-a"] = outcome
    result = make_plugin().deployment_start(make_info())
    assert result.status is ActionStatus.ERROR and result.state is DeploymentState.ERRORED
    assert expected in result.msg
    assert result.data[DataKey.PREDICTION_URL].endswith("/dep-1/predictions")


def test_a_rollout_that_stays_unready_times_out(make_plugin: Any, make_info: Any, fake_api: Any) -> None:
    fake_api.state.image_outcomes[f"{REPO}:m-model-a"] = "NotReady"
    result = make_plugin(rolloutTimeoutSeconds=0.2).deployment_start(make_info())
    assert result.status is ActionStatus.ERROR
    assert "not ready after 0.2 s" in result.msg and "readiness probe" in result.msg


def test_progress_deadline_exceeded_is_a_failure(make_plugin: Any, make_info: Any, fake_api: Any) -> None:
    fake_api.state.image_outcomes[f"{REPO}:m-model-a"] = "Unschedulable"
    fake_api.state.progress_deadline_exceeded = True
    result = make_plugin().deployment_start(make_info())
    assert result.status is ActionStatus.ERROR
    assert "deadline" in result.msg and "Insufficient memory" in result.msg


def test_forbidden_calls_are_explained(make_plugin: Any, make_info: Any, fake_api: Any) -> None:
    fake_api.state.denied.add(("create", "batch", "jobs"))
    result = make_plugin().deployment_start(make_info())
    assert result.status is ActionStatus.ERROR
    assert "403 permission denied" in result.msg and 'cannot create resource "jobs"' in result.msg


def test_a_server_error_is_reported_not_raised(make_plugin: Any, make_info: Any, fake_api: Any) -> None:
    fake_api.state.fail_next("PATCH", "/ingresses/", 500, "etcdserver: request timed out")
    result = invoke(make_plugin(), "deployment_start", make_info())
    assert result.status is ActionStatus.ERROR
    assert "cannot apply Ingress mlops-dep-1 in namespace default" in result.msg
    assert "etcdserver: request timed out" in result.msg


def test_exact_ids_survive_label_sanitising(make_plugin: Any, make_info: Any, fake_api: Any) -> None:
    odd = "Dep_1.With.A/Very-Long-Identifier-" + "x" * 60
    result = make_plugin().deployment_start(make_info(odd, "Model/ID:7"))
    assert result.ok, result.msg
    listed = make_plugin().deployment_list()
    assert list(listed.data) == [odd]
    assert listed.data[odd]["data"][DataKey.CURRENT_MODEL_ID] == "Model/ID:7"


# -- deployment_replace_model -----------------------------------------------------------------------


def test_replace_model_rolls_to_the_new_image(make_plugin: Any, make_info: Any, fake_api: Any) -> None:
    assert make_plugin().deployment_start(make_info("dep-1", "model-a")).ok
    result = make_plugin().deployment_replace_model(make_info("dep-1", "model-a", newModelId="model-b"))
    assert result.status is ActionStatus.OK, result.msg
    assert result.data[DataKey.CURRENT_MODEL_ID] == "model-b"
    state = fake_api.state
    assert _image(state) == f"{REPO}:m-model-b"
    assert (
        state.get("deployments", "mlops-dep-1")["metadata"]["annotations"][ANNOTATION_MODEL_ID] == "model-b"
    )
    pods = [p for p in state.items("pods") if p["metadata"]["name"].startswith("mlops-dep-1")]
    assert pods and {p["metadata"]["labels"][LABEL_MODEL] for p in pods} == {"model-b"}
    status = make_plugin().deployment_status(make_info("dep-1", "model-b"))
    assert status.ok and status.data[DataKey.CURRENT_MODEL_ID] == "model-b"


@pytest.mark.parametrize("outcome", ["ImagePullBackOff", "CrashLoopBackOff", "OOMKilled"])
def test_a_replacement_that_never_gets_ready_is_rolled_back(
    make_plugin: Any, make_info: Any, fake_api: Any, outcome: str
) -> None:
    assert make_plugin().deployment_start(make_info("dep-1", "model-a", keyValueConfig={"replicas": 2})).ok
    fake_api.state.image_outcomes[f"{REPO}:m-model-b"] = outcome
    info = make_info("dep-1", "model-a", newModelId="model-b", keyValueConfig={"replicas": 2})
    result = make_plugin().deployment_replace_model(info)
    assert result.status is ActionStatus.ERROR and result.state is DeploymentState.ERRORED
    assert result.data[DataKey.OLD_MODEL_IN_USE] is True
    assert result.data[DataKey.CURRENT_MODEL_ID] == "model-a"
    assert outcome in result.msg and "rolled back to model model-a" in result.msg
    state = fake_api.state
    assert _image(state) == f"{REPO}:m-model-a"
    pods = [p for p in state.items("pods") if p["metadata"]["name"].startswith("mlops-dep-1")]
    assert len(pods) == 2 and {p["metadata"]["labels"][LABEL_MODEL] for p in pods} == {"model-a"}
    assert make_plugin().deployment_status(make_info("dep-1", "model-a")).ok


def test_the_old_pods_serve_while_the_new_ones_fail(make_plugin: Any, make_info: Any, fake_api: Any) -> None:
    """Observed mid-rollout (before the plugin rolls back): old pods still ready, status is a warning."""
    assert make_plugin().deployment_start(make_info("dep-1", "model-a")).ok
    fake_api.state.image_outcomes[f"{REPO}:m-model-b"] = "CrashLoopBackOff"
    plugin = make_plugin()
    plugin._ensure_image("model-b", b"package b")
    from shipmate.plugins.kubernetes.manifests import render_deployment_objects

    plugin._apply(
        render_deployment_objects(plugin.settings, make_info("dep-1", "model-a", newModelId="model-b"))
    )
    status = plugin.deployment_status(make_info("dep-1", "model-b"))
    assert status.status is ActionStatus.WARN and status.state is DeploymentState.READY
    assert "1/1 pods serving" in status.msg and "CrashLoopBackOff" in status.msg


def test_a_failed_build_keeps_the_old_model(make_plugin: Any, make_info: Any, fake_api: Any) -> None:
    assert make_plugin().deployment_start(make_info("dep-1", "model-a")).ok
    fake_api.state.build_outcome = "fail"
    result = make_plugin().deployment_replace_model(make_info("dep-1", "model-a", newModelId="model-b"))
    assert result.status is ActionStatus.ERROR and result.data[DataKey.OLD_MODEL_IN_USE] is True
    assert "model model-a keeps serving" in result.msg
    assert _image(fake_api.state) == f"{REPO}:m-model-a"


def test_a_failed_apply_during_a_replacement_rolls_everything_back(
    make_plugin: Any, make_info: Any, fake_api: Any
) -> None:
    """The PDB apply fails after the Deployment was switched: all or nothing, the old model serves."""
    kv = {"replicas": 2}
    assert make_plugin().deployment_start(make_info("dep-1", "model-a", keyValueConfig=kv)).ok
    fake_api.state.fail_next("PATCH", "/poddisruptionbudgets/", 500, "etcdserver: request timed out")
    result = make_plugin().deployment_replace_model(
        make_info("dep-1", "model-a", newModelId="model-b", keyValueConfig=kv)
    )
    assert result.status is ActionStatus.ERROR and result.data is not None, result.msg
    assert (
        result.data[DataKey.OLD_MODEL_IN_USE] is True and result.data[DataKey.CURRENT_MODEL_ID] == "model-a"
    )
    assert "cannot apply PodDisruptionBudget mlops-dep-1" in result.msg
    assert "rolled back to model model-a" in result.msg
    assert _image(fake_api.state) == f"{REPO}:m-model-a"
    for plural in ("deployments", "services", "ingresses", "poddisruptionbudgets"):
        annotations = fake_api.state.get(plural, "mlops-dep-1")["metadata"]["annotations"]
        assert annotations[ANNOTATION_MODEL_ID] == "model-a", plural


def test_the_prediction_url_is_encoded_like_the_ingress_path(
    make_plugin: Any, make_info: Any, fake_api: Any
) -> None:
    result = make_plugin().deployment_start(make_info("churn model/1"))
    assert result.ok, result.msg
    url = result.data[DataKey.PREDICTION_URL]
    assert url == "https://models.example.com/deployments/churn%20model%2F1/predictions"
    ingress = fake_api.state.items("ingresses")[0]
    assert "churn%20model%2F1" in ingress["spec"]["rules"][0]["http"]["paths"][0]["path"]


def test_an_autoscaled_deployment_below_its_minimum_is_not_ready(
    make_plugin: Any, make_info: Any, fake_api: Any
) -> None:
    kv = {"minReplicas": 2, "maxReplicas": 3, "cpuRequest": "1"}
    assert make_plugin().deployment_start(make_info("dep-1", keyValueConfig=kv)).ok
    with fake_api.state.lock:  # something scaled it to 1 behind the HPA's back
        deployment = fake_api.state.objects[("deployments", "default", "mlops-dep-1")]
        deployment["spec"]["replicas"] = 1
        deployment["status"].update(replicas=1, updatedReplicas=1, readyReplicas=1, availableReplicas=1)
    status = make_plugin().deployment_status(make_info("dep-1"))
    assert status.status is not ActionStatus.OK and "1/2" in status.msg, status.msg


def test_a_namespace_enforcing_restricted_pod_security_is_refused_before_the_build(
    make_plugin: Any, make_info: Any, fake_api: Any
) -> None:
    """Kaniko runs as root, which "restricted" forbids: say so now, not after buildTimeoutSeconds."""
    fake_api.state.namespace_labels["default"] = {"pod-security.kubernetes.io/enforce": "restricted"}
    result = make_plugin().deployment_start(make_info("dep-1"))
    assert result.status is ActionStatus.ERROR
    assert 'enforces the "restricted" Pod Security Standard' in result.msg, result.msg
    assert fake_api.state.calls("POST", "jobs") == []


def test_replace_model_of_a_missing_deployment_starts_it(
    make_plugin: Any, make_info: Any, fake_api: Any
) -> None:
    result = make_plugin().deployment_replace_model(make_info("dep-9", "model-a", newModelId="model-b"))
    assert result.ok, result.msg
    assert "was not running" in result.msg
    assert _image(fake_api.state, "mlops-dep-9") == f"{REPO}:m-model-b"


# -- deployment_stop / status / list ----------------------------------------------------------------


def test_stop_removes_everything_and_is_idempotent(make_plugin: Any, make_info: Any, fake_api: Any) -> None:
    kv = {"minReplicas": 2, "maxReplicas": 3, "cpuRequest": "1"}
    assert make_plugin().deployment_start(make_info(keyValueConfig=kv)).ok
    stopped = make_plugin().deployment_stop(make_info())
    assert stopped.status is ActionStatus.OK and stopped.state is DeploymentState.STOPPED
    state = fake_api.state
    for plural in (
        "deployments",
        "services",
        "ingresses",
        "horizontalpodautoscalers",
        "poddisruptionbudgets",
    ):
        assert state.names(plural) == [], plural
    assert [p for p in state.names("pods") if p.startswith("mlops-dep-1")] == []
    again = make_plugin().deployment_stop(make_info())
    assert again.status is ActionStatus.OK and "was not running" in again.msg


def test_stop_also_removes_dependents_whose_owner_reference_is_missing(
    make_plugin: Any, make_info: Any, fake_api: Any
) -> None:
    assert make_plugin().deployment_start(make_info()).ok
    with fake_api.state.lock:  # e.g. created by an older plugin without owner references
        fake_api.state.objects[("services", "default", "mlops-dep-1")]["metadata"].pop("ownerReferences")
    assert make_plugin().deployment_stop(make_info()).ok
    assert fake_api.state.names("services") == []


def test_status_of_an_unknown_deployment(make_plugin: Any, make_info: Any, fake_api: Any) -> None:
    result = make_plugin().deployment_status(make_info("nope"))
    assert result.status is ActionStatus.UNKNOWN and result.state is DeploymentState.STOPPED
    assert "No Kubernetes deployment found for nope" in result.msg


def test_status_names_the_worst_pod_reason(make_plugin: Any, make_info: Any, fake_api: Any) -> None:
    fake_api.state.image_outcomes[f"{REPO}:m-model-a"] = "ImagePullBackOff"
    make_plugin().deployment_start(make_info())
    result = make_plugin().deployment_status(make_info())
    assert result.status is ActionStatus.ERROR and result.state is DeploymentState.ERRORED
    assert "ImagePullBackOff" in result.msg and "No pod is serving" in result.msg


def test_list_recovers_this_environments_deployments(make_plugin: Any, make_info: Any, fake_api: Any) -> None:
    assert make_plugin().deployment_list().data == {}
    assert make_plugin().deployment_start(make_info("dep-1", "model-a")).ok
    assert make_plugin().deployment_start(make_info("dep-2", "model-b", keyValueConfig={"replicas": 3})).ok
    assert make_plugin(env_id="env-other").deployment_start(make_info("dep-3", "model-a")).ok
    result = make_plugin().deployment_list()
    assert result.msg == "Number of deployments: 2"
    assert sorted(result.data) == ["dep-1", "dep-2"]
    assert result.data["dep-2"]["msg"] == "3/3 pods ready"
    deployment = fake_api.state.get("deployments", "mlops-dep-3")
    assert deployment["metadata"]["annotations"][ANNOTATION_DEPLOYMENT_ID] == "dep-3"


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"generatedImageRepo": None}, "'generatedImageRepo': is required"),
        ({"generatedImageRepo": "registry.example.com/models:v1"}, "without a tag"),
        ({"ppsBaseImage": "<FILL-IN-DOCKER-REGISTRY>/pps:1.0"}, "placeholder"),
        ({"outfacingPredictionURLPrefix": "models.example.com"}, "http(s)://"),
        ({"kanikoConfigmapName": "docker-config"}, "not both"),
        ({"ingressType": "traefik"}, "expected nginx or openshift"),
        ({"kanikoInsecureRegistries": "registry.local"}, "expected a list of strings"),
        ({"pollIntervalSeconds": -1}, "positive number of seconds"),
    ],
)
def test_bad_settings_fail_at_load_naming_the_key(
    make_plugin: Any, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match="Kubernetes plugin setting") as caught:
        make_plugin(**overrides)
    assert message in str(caught.value)


def test_private_config_with_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    from shipmate.plugins.kubernetes.plugin import KubernetesPlugin

    path = tmp_path / "plugin.k8s.conf.yaml"
    path.write_text("ppsBaseImage: a\nkubeNamespace: [unclosed\n")
    with pytest.raises(ConfigError, match=r"line 3"):
        KubernetesPlugin({}, str(path))


def test_in_cluster_credentials_outside_a_cluster_are_explained(make_plugin: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = make_plugin(kubeConfigContext="IN_CLUSTER", kubeConfigFile=None).plugin_start()
    assert result.status is ActionStatus.ERROR
    assert "cannot load Kubernetes credentials from the pod's service account (IN_CLUSTER)" in result.msg


def test_an_unknown_kubeconfig_context_is_explained(make_plugin: Any) -> None:
    result = make_plugin(kubeConfigContext="prod-cluster").plugin_start()
    assert result.status is ActionStatus.ERROR
    assert "kubeconfig context 'prod-cluster'" in result.msg
