"""The Kubernetes plugin: deployments as Deployment + Service + Ingress, images built by Kaniko.

What to do is decided by the pure modules (``naming``, ``workload``, ``manifests``
and ``build`` render, ``rollout`` judges); this module sequences the calls of
``cluster`` and turns every outcome into an ``ActionStatusInfo``, with the image
build's steps in ``images``. Every action is idempotent: starting a running
deployment re-applies the same objects (server-side apply), stopping an unknown
one succeeds.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shipmate.plugin.base import PluginBase
from shipmate.plugin.config import merge_private_config
from shipmate.plugin.errors import ConfigError
from shipmate.plugin.info import DeploymentInfo, PEInfo
from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DataKey, DeploymentState, worst
from shipmate.plugins.kubernetes.build import render_build
from shipmate.plugins.kubernetes.cluster import (
    FIELD_MANAGER,
    REPLICAS_FIELD_MANAGER,
    REQUIRED_PERMISSIONS,
    Cluster,
    KubernetesApiError,
)
from shipmate.plugins.kubernetes.images import ImageBuildError, ImageSteps
from shipmate.plugins.kubernetes.manifests import DeploymentObjects, owned_by, render_deployment_objects
from shipmate.plugins.kubernetes.naming import (
    ANNOTATION_DEPLOYMENT_ID,
    ANNOTATION_MODEL_ID,
    LABEL_DEPLOYMENT,
    deployment_label_selector,
    managed_selector,
    resource_name,
)
from shipmate.plugins.kubernetes.rollout import Phase, Rollout, assess_rollout
from shipmate.plugins.kubernetes.settings import KubernetesSettings, parse_settings, setting_behind

log = logging.getLogger(__name__)

MINIMUM_VERSION = (1, 20)
"""The oldest Kubernetes tested (a real 1.20 API server in CI); kinds come from discovery."""
DEPENDENT_KINDS = ("Service", "Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget")


class KubernetesPlugin(ImageSteps, PluginBase):
    """Deploys each model package as its own image, Deployment, Service and Ingress path."""

    def __init__(
        self,
        plugin_config: Mapping[str, Any] | None,
        private_config_file: str | None = None,
        pe_info: PEInfo | Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> None:
        super().__init__(plugin_config, private_config_file, pe_info, dry_run)
        merged = merge_private_config(self.plugin_config, private_config_file)
        self.settings: KubernetesSettings = parse_settings(
            merged,
            environment_id=self.pe_info.id if self.pe_info else None,
            source=private_config_file or "pluginConfig",
        )
        self._cluster: Cluster | None = None
        self._sleep: Callable[[float], None] = time.sleep
        self._clock: Callable[[], float] = time.monotonic

    # -- connection --------------------------------------------------------------------

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = Cluster.connect(self.settings)
        return self._cluster

    def _guarded(
        self, action: Callable[[], ActionStatusInfo], *, state_on_error: DeploymentState | None
    ) -> ActionStatusInfo:
        """Run ``action``; a Kubernetes or config problem becomes a ``failing`` status with its message."""
        try:
            return action()
        except (KubernetesApiError, ConfigError, ImageBuildError) as exc:
            log.warning("%s", exc)
            return ActionStatusInfo(ActionStatus.ERROR, msg=str(exc), state=state_on_error)

    # -- environment actions -----------------------------------------------------------

    def plugin_start(self) -> ActionStatusInfo:
        def start() -> ActionStatusInfo:
            version = self.cluster.version()
            problem = _version_problem(version) or self._missing_kinds()
            if problem:
                return ActionStatusInfo(ActionStatus.ERROR, msg=problem)
            return ActionStatusInfo(
                ActionStatus.OK,
                msg=(
                    f"Connected to Kubernetes {version.get('gitVersion', '?')} at {self.cluster.host}; "
                    f"namespace {self.cluster.namespace}"
                ),
            )

        return self._guarded(start, state_on_error=None)

    def plugin_stop(self) -> ActionStatusInfo:
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
        return ActionStatusInfo(ActionStatus.OK, msg="Disconnected from Kubernetes")

    def pe_status(self) -> ActionStatusInfo:
        return self._guarded(self._pe_status, state_on_error=None)

    def _pe_status(self) -> ActionStatusInfo:
        cluster = self.cluster
        version = cluster.version()
        findings: list[tuple[ActionStatus, str]] = []
        problem = _version_problem(version) or self._missing_kinds()
        findings.append(
            (ActionStatus.ERROR, problem)
            if problem
            else (ActionStatus.OK, f"Kubernetes {version.get('gitVersion', '?')} reachable")
        )
        try:
            namespace = cluster.read_namespace()
            if namespace is None:
                findings.append(
                    (
                        ActionStatus.ERROR,
                        f"namespace {cluster.namespace} does not exist: create it or set kubeNamespace",
                    )
                )
            else:
                findings.append((ActionStatus.OK, f"namespace {cluster.namespace} exists"))
        except KubernetesApiError as exc:
            if exc.status != 403:
                raise
            findings.append(
                (
                    ActionStatus.OK,
                    f"namespace {cluster.namespace} not checked (no permission to read namespaces)",
                )
            )
        denied = [str(p) for p in REQUIRED_PERMISSIONS if not cluster.can_i(p.verb, p.group, p.resource)[0]]
        if denied:
            findings.append(
                (
                    ActionStatus.ERROR,
                    f"missing permissions in namespace {cluster.namespace}: {', '.join(denied)} "
                    "(grant them in the agent's Role; the Shipmate chart's RBAC does)",
                )
            )
        else:
            findings.append((ActionStatus.OK, f"all {len(REQUIRED_PERMISSIONS)} permissions present"))
        data: dict[str, Any] | None = None
        wanted = self.pe_info.deployment_ids if self.pe_info else []
        if wanted:
            try:
                statuses = self._statuses(wanted)
                running = {
                    (d["metadata"].get("annotations") or {}).get(
                        ANNOTATION_DEPLOYMENT_ID, d["metadata"]["name"]
                    )
                    for d in cluster.list("Deployment", managed_selector(self.settings.environment_id))
                }
            except KubernetesApiError as exc:  # keep what was found so far (e.g. the missing permissions)
                findings.append((ActionStatus.ERROR, f"deployments not checked: {exc}"))
                statuses, running = {}, set()
            if statuses:
                data = {
                    DataKey.DEPLOYMENTS_STATUS: {dep_id: info.to_dict() for dep_id, info in statuses.items()}
                }
            orphans = sorted(running - set(wanted))
            if orphans:
                findings.append(
                    (
                        ActionStatus.WARN,
                        "deployments running in Kubernetes that the service does not list: "
                        + ", ".join(orphans),
                    )
                )
        status = worst([s for s, _ in findings])
        shown = [text for s, text in findings if s is not ActionStatus.OK] or [text for _, text in findings]
        return ActionStatusInfo(status, msg="; ".join(shown), data=data)

    def deployment_list(self) -> ActionStatusInfo:
        def listing() -> ActionStatusInfo:
            deployments = self.cluster.list("Deployment", managed_selector(self.settings.environment_id))
            if not deployments:
                return ActionStatusInfo(ActionStatus.OK, msg="No deployments running", data={})
            pods = self.cluster.list("Pod", managed_selector(self.settings.environment_id))
            data = {}
            for deployment in deployments:
                annotations = deployment["metadata"].get("annotations") or {}
                dep_id = annotations.get(ANNOTATION_DEPLOYMENT_ID, deployment["metadata"]["name"])
                label = (deployment["metadata"].get("labels") or {}).get(LABEL_DEPLOYMENT)
                own = [p for p in pods if (p["metadata"].get("labels") or {}).get(LABEL_DEPLOYMENT) == label]
                data[dep_id] = _status_from_rollout(assess_rollout(deployment, own)).to_dict()
            return ActionStatusInfo(ActionStatus.OK, msg=f"Number of deployments: {len(data)}", data=data)

        return self._guarded(listing, state_on_error=None)

    # -- deployment actions --------------------------------------------------------------

    def deployment_status(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        return self._guarded(
            lambda: self._statuses([deployment_info.id])[deployment_info.id],
            state_on_error=DeploymentState.UNKNOWN,
        )

    def _statuses(self, deployment_ids: list[str]) -> dict[str, ActionStatusInfo]:
        out = {}
        for dep_id in deployment_ids:
            deployment = self.cluster.get("Deployment", resource_name(dep_id))
            if deployment is None:
                out[dep_id] = ActionStatusInfo(
                    ActionStatus.UNKNOWN,
                    msg=(
                        f"No Kubernetes deployment found for {dep_id} "
                        f"({resource_name(dep_id)} in namespace {self.cluster.namespace})"
                    ),
                    state=DeploymentState.STOPPED,
                )
                continue
            pods = self.cluster.list("Pod", deployment_label_selector(dep_id))
            out[dep_id] = _status_from_rollout(
                assess_rollout(deployment, pods, minimum=self._hpa_minimum(resource_name(dep_id)))
            )
        return out

    def deployment_start(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        return self._guarded(lambda: self._start(deployment_info), state_on_error=DeploymentState.ERRORED)

    def _start(self, info: DeploymentInfo) -> ActionStatusInfo:
        objects = self._render(info)  # bad key-value config fails before any call
        artifact = _read_artifact(info)
        self._check_with_server(objects, info.current_model_id, artifact)
        self._ensure_image(info.current_model_id, artifact)
        self._apply(objects)
        rollout = self._wait_for_rollout(info.id)
        url = self.settings.prediction_url(info.id)
        data = {DataKey.PREDICTION_URL: url, DataKey.CURRENT_MODEL_ID: info.current_model_id}
        if rollout.phase is Phase.COMPLETE:
            return ActionStatusInfo(
                ActionStatus.OK,
                msg=f"Deployment {info.id} is ready: {rollout.message}",
                state=DeploymentState.READY,
                data=data,
            )
        return ActionStatusInfo(
            ActionStatus.ERROR,
            msg=f"Deployment {info.id} was applied but did not become ready: {rollout.message}",
            state=DeploymentState.ERRORED,
            data=data,
        )

    def deployment_replace_model(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        return self._guarded(
            lambda: self._replace_model(deployment_info), state_on_error=DeploymentState.ERRORED
        )

    def _replace_model(self, info: DeploymentInfo) -> ActionStatusInfo:
        new_model = info.current_model_id
        live = self.cluster.get("Deployment", resource_name(info.id))
        if live is None:
            started = self._start(info)
            prefix = f"Deployment {info.id} was not running, so it was started with model {new_model}"
            started.msg = f"{prefix}: {started.msg}"
            return started
        old_model = (live["metadata"].get("annotations") or {}).get(ANNOTATION_MODEL_ID)
        old_raw = {**info.to_dict(), "modelId": old_model or info.model_id}
        old_raw.pop("newModelId", None)
        old_info = DeploymentInfo.from_dict(old_raw)
        objects = self._render(info)
        old_objects = self._render(old_info)
        url = self.settings.prediction_url(info.id)
        artifact = _read_artifact(info)
        self._check_with_server(objects, new_model, artifact)
        try:
            self._ensure_image(new_model, artifact)
        except ImageBuildError as exc:
            return ActionStatusInfo(
                ActionStatus.ERROR,
                msg=f"Model {new_model} was not deployed, model {old_model} keeps serving: {exc}",
                state=DeploymentState.ERRORED,
                data={
                    DataKey.OLD_MODEL_IN_USE: True,
                    DataKey.CURRENT_MODEL_ID: old_model,
                    DataKey.PREDICTION_URL: url,
                },
            )
        try:
            self._apply(objects)
        except KubernetesApiError as exc:
            # All or nothing: whatever was switched goes back to the old model.
            return self._rolled_back(info.id, old_objects, old_model, url, f"Model {new_model} failed: {exc}")
        rollout = self._wait_for_rollout(info.id)
        if rollout.phase is Phase.COMPLETE:
            return ActionStatusInfo(
                ActionStatus.OK,
                msg=f"Model replaced: {old_model} -> {new_model}; {rollout.message}",
                state=DeploymentState.READY,
                data={DataKey.CURRENT_MODEL_ID: new_model, DataKey.PREDICTION_URL: url},
            )
        # Roll back to the old model's template: its pods never stopped serving (maxUnavailable 0).
        return self._rolled_back(
            info.id, old_objects, old_model, url, f"Model {new_model} never became ready ({rollout.message})"
        )

    def _rolled_back(
        self, deployment_id: str, old_objects: DeploymentObjects, old_model: str | None, url: str, why: str
    ) -> ActionStatusInfo:
        """Re-apply the old model's objects (all of them: annotations too); the replacement failed."""
        try:
            self._apply(old_objects)
            back = self._wait_for_rollout(deployment_id)
            outcome = (
                f"rolled back to model {old_model}, which is serving ({back.message})"
                if back.phase is Phase.COMPLETE
                else f"the rollback to model {old_model} has not completed either: {back.message}"
            )
        except KubernetesApiError as exc:
            outcome = f"the rollback to model {old_model} failed too: {exc}"
        return ActionStatusInfo(
            ActionStatus.ERROR,
            msg=f"{why}; {outcome}",
            state=DeploymentState.ERRORED,
            data={
                DataKey.OLD_MODEL_IN_USE: True,
                DataKey.CURRENT_MODEL_ID: old_model,
                DataKey.PREDICTION_URL: url,
            },
        )

    def deployment_stop(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        return self._guarded(lambda: self._stop(deployment_info.id), state_on_error=DeploymentState.ERRORED)

    def _stop(self, deployment_id: str) -> ActionStatusInfo:
        cluster = self.cluster
        removed = ["Deployment"] if cluster.delete("Deployment", resource_name(deployment_id)) else []
        # Owner references make the garbage collector delete the rest; delete them here too so
        # nothing lingers if the collector is slow or an object predates its owner.
        served = cluster.api_versions()
        for kind in DEPENDENT_KINDS:
            if served.of(kind) is None:  # a kind this cluster does not serve cannot have been created
                continue
            for obj in cluster.list(kind, deployment_label_selector(deployment_id)):
                if cluster.delete(kind, obj["metadata"]["name"]):
                    removed.append(kind)
        msg = (
            f"Deployment {deployment_id} stopped (deleted {', '.join(removed)})"
            if removed
            else f"Deployment {deployment_id} was not running in namespace {cluster.namespace}"
        )
        return ActionStatusInfo(ActionStatus.OK, msg=msg, state=DeploymentState.STOPPED)

    # -- steps -----------------------------------------------------------------------------

    def _render(self, info: DeploymentInfo) -> DeploymentObjects:
        """The objects of ``info`` in the API versions this cluster serves (a missing kind fails here)."""
        problem = self._missing_kinds()
        if problem:
            raise KubernetesApiError(problem)
        return render_deployment_objects(self.settings, info, self.cluster.api_versions())

    def _missing_kinds(self) -> str | None:
        missing = self.cluster.api_versions().missing()
        if not missing:
            return None
        return (
            f"this Kubernetes cluster does not serve what the plugin needs: {'; '.join(missing)}. "
            "Upgrade the cluster or enable those APIs"
        )

    def _check_with_server(self, objects: DeploymentObjects, model_id: str, artifact: bytes) -> None:
        """A server-side dry run of every object, before any image is built or anything changes.

        The API server validates exactly what it would store, so a wrong field in a
        configured mapping (``ppsTolerations``, ``kanikoExtraVolumeMounts``…) is named now.
        """
        plan = render_build(self.settings, model_id, artifact)
        for manifest in [objects.deployment, *objects.dependents(), plan.job]:
            try:
                self.cluster.dry_run(manifest)
            except KubernetesApiError as exc:
                setting = setting_behind(manifest["kind"], str(exc)) if exc.status in (400, 422) else None
                if setting is None:
                    raise
                raise KubernetesApiError(f"{exc}; check the setting {setting}", status=exc.status) from None

    def _hpa_minimum(self, name: str) -> int | None:
        if self.cluster.api_versions().of("HorizontalPodAutoscaler") is None:
            return None
        hpa = self.cluster.get("HorizontalPodAutoscaler", name)
        return int((hpa or {}).get("spec", {}).get("minReplicas") or 1) if hpa else None

    def _hand_replicas_to_hpa(self, live: dict[str, Any], hpa: dict[str, Any]) -> None:
        """Keep the running replica count when the HPA takes over ``spec.replicas``.

        A server-side apply that stops setting a field this manager owned removes it,
        and the server then defaults ``replicas`` to 1, below the HPA's minimum. Setting
        it under a second field manager (clamped to the HPA's range) keeps the field
        owned, so the plugin's apply leaves it alone and the HPA scales from there.
        """
        name = live["metadata"]["name"]
        owners = {
            entry.get("manager")
            for entry in live["metadata"].get("managedFields") or []
            if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
        }
        if owners - {FIELD_MANAGER}:
            return  # someone else (the HPA controller, an earlier hand-over) already owns it
        current = int(live["spec"].get("replicas") or 1)
        spec = hpa["spec"]
        replicas = min(max(current, int(spec["minReplicas"])), int(spec["maxReplicas"]))
        self.cluster.apply(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name},
                "spec": {"replicas": replicas},
            },
            field_manager=REPLICAS_FIELD_MANAGER,
        )

    def _apply(self, objects: DeploymentObjects) -> None:
        existing = self.cluster.get("Deployment", objects.deployment["metadata"]["name"])
        if objects.hpa is not None and existing is not None:  # before: the apply would reset replicas
            self._hand_replicas_to_hpa(existing, objects.hpa)
        live = self.cluster.apply(objects.deployment)
        if objects.hpa is not None and existing is None:  # after: start at the HPA's minimum
            self._hand_replicas_to_hpa(live, objects.hpa)
        for manifest in objects.dependents():
            self.cluster.apply(owned_by(manifest, live))
        name = objects.deployment["metadata"]["name"]
        if objects.hpa is None:
            self.cluster.delete("HorizontalPodAutoscaler", name)
        if objects.pdb is None:
            self.cluster.delete("PodDisruptionBudget", name)

    def _wait_for_rollout(self, deployment_id: str) -> Rollout:
        name = resource_name(deployment_id)
        deadline = self._clock() + self.settings.rollout_timeout_seconds
        while True:
            deployment = self.cluster.get("Deployment", name)
            if deployment is None:
                raise KubernetesApiError(
                    f"Deployment {name} disappeared during its rollout (deleted by someone else?)"
                )
            rollout = assess_rollout(
                deployment,
                self.cluster.list("Pod", deployment_label_selector(deployment_id)),
                minimum=self._hpa_minimum(name),
            )
            if rollout.phase is not Phase.PROGRESSING:
                return rollout
            if self._clock() >= deadline:
                return dataclasses.replace(
                    rollout,
                    phase=Phase.FAILED,
                    message=f"not ready after {self.settings.rollout_timeout_seconds:g} s: {rollout.message}",
                )
            self._sleep(self.settings.poll_interval_seconds)


def _read_artifact(info: DeploymentInfo) -> bytes:
    if not info.model_artifact:
        raise ConfigError(
            f"deploymentInfo.modelArtifact is missing for deployment {info.id}: "
            "the agent must download the model package first"
        )
    try:
        return Path(info.model_artifact).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read deploymentInfo.modelArtifact {info.model_artifact}: {exc.strerror or exc}"
        ) from None


def _version_problem(version: Mapping[str, Any]) -> str | None:
    """Why this server is too old, or ``None``. Minor versions like ``"27+"`` (EKS, GKE) are accepted."""
    try:
        major = int(str(version.get("major", "0")).rstrip("+"))
        minor = int(str(version.get("minor", "0")).rstrip("+"))
    except ValueError:
        return None  # an unusual build string: do not refuse on a guess
    if (major, minor) < MINIMUM_VERSION:
        shown = version.get("gitVersion", f"{major}.{minor}")
        wanted = ".".join(str(p) for p in MINIMUM_VERSION)
        return f"Kubernetes {shown} is not supported: Shipmate needs {wanted} or later"
    return None


def _status_from_rollout(rollout: Rollout) -> ActionStatusInfo:
    data = {
        DataKey.CURRENT_MODEL_ID: rollout.model_id,
        "readyReplicas": rollout.ready,
        "replicas": rollout.desired,
    }
    if rollout.phase is Phase.COMPLETE:
        return ActionStatusInfo(
            ActionStatus.OK,
            msg=f"{rollout.ready}/{rollout.desired} pods ready",
            state=DeploymentState.READY,
            data=data,
        )
    if rollout.available == 0:
        if rollout.phase is Phase.FAILED:
            return ActionStatusInfo(
                ActionStatus.ERROR,
                msg=f"No pod is serving: {rollout.message}",
                state=DeploymentState.ERRORED,
                data=data,
            )
        return ActionStatusInfo(
            ActionStatus.WARN, msg=f"Starting: {rollout.message}", state=DeploymentState.LAUNCHING, data=data
        )
    return ActionStatusInfo(
        ActionStatus.WARN,
        msg=f"{rollout.available}/{rollout.desired} pods serving; {rollout.message}",
        state=DeploymentState.READY,
        data=data,
    )
