"""The steps of a Docker rollout: build the model image, start a container, wait until it is
ready, switch the route, retire the old one. A part of `DockerPlugin`."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from shipmate.plugin.errors import ConfigError
from shipmate.plugin.info import DeploymentInfo, PEInfo
from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DataKey, DeploymentState
from shipmate.plugins.docker import naming
from shipmate.plugins.docker.config import DockerPluginConfig, ReadinessVia
from shipmate.plugins.docker.decisions import (
    ContainerView,
    StartDecision,
    container_status,
    plan_start,
    unique_name,
)
from shipmate.plugins.docker.engine import Engine, EngineError
from shipmate.plugins.docker.monitoring import ensure_monitoring, prediction_environment
from shipmate.plugins.docker.proxy import ReverseProxy


class RolloutFailed(Exception):
    """A new container did not become ready; ``reason`` says why (exit code, log lines, timeout)."""


class RolloutSteps:
    """The rollout steps of `DockerPlugin`, which provides the config, the engine and the proxy."""

    config: DockerPluginConfig
    _logger: logging.Logger
    pe_info: PEInfo | None
    dry_run: bool

    @property
    def engine(self) -> Engine:
        raise NotImplementedError

    @property
    def proxy(self) -> ReverseProxy:
        raise NotImplementedError

    def _containers(self, deployment_id: str | None = None) -> list[ContainerView]:
        raise NotImplementedError

    def _serving_by_deployment(self) -> dict[str, ContainerView]:
        raise NotImplementedError

    def _running_routes(self) -> dict[str, str]:
        """``deployment id → container`` for every deployment whose serving container runs."""
        return {dep: c.name for dep, c in self._serving_by_deployment().items() if c.running}

    # -- the rollout: build, start, wait ready, switch, retire ----------------------------

    def _rollout(self, info: DeploymentInfo, *, force_new: bool, replacing: bool) -> ActionStatusInfo:
        cfg = self.config
        model_id = naming.current_model_id(info)
        naming.check_id(info.id, "deployment id")
        naming.check_id(model_id, "model id")
        artifact = self._artifact(info)
        base_image = str(info.key_value_config.get("baseImage") or cfg.pps_base_image)
        name = naming.container_name(cfg.prefix, info.id, model_id)
        if self.dry_run:
            url = naming.prediction_url(self._url_prefix(proxy_port=cfg.proxy_host_port), info.id)
            return dry_run_status(
                [
                    f"build (or reuse by content hash) an image from {base_image} + {artifact.name}",
                    f"start container {name} on network {cfg.docker_network}, wait until /ping answers",
                    f"route /{info.id}/ to it on the reverse proxy",
                    "then stop the deployment's previous container, if any",
                ],
                data={DataKey.PREDICTION_URL: url},
            )
        try:
            self._ensure_environment()
            url = naming.prediction_url(self._url_prefix(), info.id)
            existing = self._containers(info.id)
            base_id = self.engine.ensure_image(base_image)
            digest = naming.package_digest(artifact, base_id)
            plan = plan_start(existing, model_id, digest.package_sha256, force_new=force_new)
            self._logger.info("deployment %s: %s (%s)", info.id, plan.decision.value, plan.reason)
            if plan.decision is StartDecision.REUSE and plan.keep is not None:
                self.proxy.set_route(info.id, plan.keep.name)
                self._retire(plan.retire)
                return self._ready(info, plan.keep, url, note=f"already running in {plan.keep.name}")
            image = self._model_image(base_image, digest, artifact)
            old_serving = [v for v in plan.retire if v.running]
            retire_after = plan.retire
            taken = [v.name for v in existing]
            if plan.decision is StartDecision.START:
                self._retire(plan.retire)  # nothing serves: free the name first
                retire_after, taken = (), []
            new_name = unique_name(name, taken, digest.image_digest)
            view = self._start_container(info, image, new_name, digest.package_sha256, url, artifact.name)
            try:
                view = self._wait_ready(view)
                self.proxy.set_route(info.id, view.name)
            except (RolloutFailed, EngineError) as exc:
                self.engine.stop_and_remove(view.id, timeout=2)
                if old_serving:
                    keep = old_serving[0]
                    try:
                        self.proxy.set_route(info.id, keep.name)
                    except EngineError as route_exc:
                        self._logger.warning("restoring route of %s failed: %s", info.id, route_exc)
                    return ActionStatusInfo(
                        ActionStatus.ERROR,
                        msg=(
                            f"Failed to replace model - {exc}; "
                            f"model {keep.model_id} keeps serving in {keep.name}"
                        ),
                        state=DeploymentState.ERRORED,
                        data={DataKey.OLD_MODEL_IN_USE: True, DataKey.CURRENT_MODEL_ID: keep.model_id},
                    )
                return ActionStatusInfo(
                    ActionStatus.ERROR,
                    msg=f"Deployment {info.id} did not start: {exc}",
                    state=DeploymentState.ERRORED,
                )
            if old_serving and cfg.drain_seconds:
                time.sleep(cfg.drain_seconds)
            self._retire(retire_after)
        except EngineError as exc:
            prefix = "Failed to replace model - " if replacing else f"Deployment {info.id} did not start: "
            data = {DataKey.OLD_MODEL_IN_USE: True} if replacing else None
            return ActionStatusInfo(
                ActionStatus.ERROR, msg=f"{prefix}{exc}", state=DeploymentState.ERRORED, data=data
            )
        verb = {StartDecision.START: "started", StartDecision.ROLL: "replaced"}[plan.decision]
        return self._ready(info, view, url, note=f"{verb} in {view.name} ({plan.reason})")

    def _ensure_environment(self) -> None:
        """Network, proxy (and monitoring), in case this process never ran ``plugin_start`` (or someone
        removed them)."""
        cfg = self.config
        if not self.engine.network_exists(cfg.docker_network):
            if not cfg.create_network:
                raise EngineError(
                    f"Docker network {cfg.docker_network!r} does not exist (createNetwork is false)"
                )
            self.engine.create_network(
                cfg.docker_network, naming.environment_labels(cfg.environment_id, "network")
            )
        proxy = self.proxy.container()
        if proxy is None or not proxy.running:
            self.proxy.ensure_running(self._running_routes())
        if cfg.monitoring_enabled:
            ensure_monitoring(self.engine, cfg)

    def _url_prefix(self, proxy_port: int | None = None) -> str:
        """``outfacingPredictionURLPrefix``, else the proxy's HTTP port as published on this host."""
        cfg = self.config
        if cfg.outfacing_prediction_url_prefix:
            return cfg.outfacing_prediction_url_prefix
        if proxy_port is None:
            proxy = self.proxy.container()
            proxy_port = proxy.ports.get(80) if proxy else None
        host = "127.0.0.1" if cfg.publish_address in ("0.0.0.0", "::") else cfg.publish_address
        return f"http://{host}:{proxy_port or '<proxy port>'}"

    def _artifact(self, info: DeploymentInfo) -> Path:
        if not info.model_artifact:
            raise ConfigError(
                f"deploymentInfo of {info.id}: 'modelArtifact' is required to start a container"
            )
        path = Path(info.model_artifact)
        if not path.is_file():
            raise ConfigError(
                f"deploymentInfo of {info.id}: modelArtifact {path} does not exist or is not a file"
            )
        return path

    def _model_image(self, base_image: str, digest: naming.PackageDigest, artifact: Path) -> str:
        tag = naming.model_image(self.config.generated_image_prefix, digest.image_digest)
        if self.engine.image_id(tag) is None:
            labels = {
                naming.MANAGED_BY: naming.MANAGED_BY_VALUE,
                naming.PACKAGE_DIGEST: digest.package_sha256,
                naming.MODEL_FILE: _model_file(artifact),
                "org.shipmate.base-image": base_image,
            }
            self.engine.build_model_image(tag, base_image, artifact, _model_file(artifact), labels)
        return tag

    def _start_container(
        self, info: DeploymentInfo, image: str, name: str, package_sha256: str, url: str, artifact_name: str
    ) -> ContainerView:
        cfg = self.config
        kv = info.key_value_config
        model_id = naming.current_model_id(info)
        labels = naming.deployment_labels(
            cfg.environment_id,
            info,
            package_sha256=package_sha256,
            prediction_url=url,
            model_file=artifact_name,
        )
        environment = {
            "MLOPS_DEPLOYMENT_ID": info.id,
            "MLOPS_MODEL_ID": model_id,
            "MONITORING_AGENT": "False",
            **prediction_environment(cfg),
        }
        workers = kv.get("PREDICTION_API_WORKERS") or cfg.prediction_server_workers
        if workers:
            environment["PREDICTION_API_WORKERS"] = str(workers)
        host_port = kv.get("port")
        if host_port is not None and (isinstance(host_port, bool) or not str(host_port).isdigit()):
            raise ConfigError(
                f"keyValueConfig 'port' of deployment {info.id} must be a port number, got {host_port!r}"
            )
        kwargs: dict[str, Any] = {
            "image": image,
            "name": name,
            "network": cfg.docker_network,
            "labels": labels,
            "environment": environment,
            "ports": {
                f"{naming.PREDICTION_PORT}/tcp": (cfg.publish_address, int(host_port) if host_port else None)
            },
            "restart_policy": {"Name": cfg.restart_policy.value},
            "read_only": True,
            "tmpfs": {"/tmp": "rw,nosuid,nodev,size=512m,mode=1777"},
            "stop_signal": "SIGTERM",
        }
        return self.engine.run(**kwargs)

    def _wait_ready(self, view: ContainerView) -> ContainerView:
        """Poll until ``/ping`` answers 200; fail early, with the reason, when the container dies."""
        import httpx

        deadline = time.monotonic() + self.config.readiness_timeout_seconds
        last_error = "no answer yet"
        with httpx.Client(timeout=2.0) as client:
            while True:
                current = self.engine.get(view.name)
                if current is None:
                    raise RolloutFailed(f"container {view.name} disappeared while starting")
                if current.status in ("exited", "dead") or (
                    current.status == "restarting" or current.restart_count > 0
                ):
                    tail = self.engine.logs_tail(view.name, self.config.log_tail_lines)
                    status = container_status(
                        current, view.deployment_id or "?", answers_ping=False, log_tail=tail
                    )
                    raise RolloutFailed(status.msg or f"container {view.name} stopped")
                if current.running:
                    try:
                        response = client.get(self._ping_url(current))
                        if response.status_code == 200:
                            return current
                        last_error = f"/ping answered {response.status_code}"
                        failed = _load_failures(response)
                        if failed:
                            tail = self.engine.logs_tail(view.name, self.config.log_tail_lines)
                            raise RolloutFailed(
                                f"the prediction server in {view.name} could not load the model: {failed}"
                                + (f". Last lines of its log:\n{tail.rstrip()}" if tail.strip() else "")
                            )
                    except httpx.HTTPError as exc:
                        last_error = f"/ping: {type(exc).__name__}"
                if time.monotonic() > deadline:
                    raise RolloutFailed(
                        f"container {view.name} did not answer /ping within "
                        f"{self.config.readiness_timeout_seconds:.0f} s ({last_error})"
                    )
                time.sleep(0.1)

    def _ping_url(self, view: ContainerView) -> str:
        if self.config.readiness_via is ReadinessVia.CONTAINER_NAME or view.host_port is None:
            return f"http://{view.name}:{naming.PREDICTION_PORT}/ping"
        address = self.config.publish_address
        host = "127.0.0.1" if address in ("0.0.0.0", "::") else address
        return f"http://{host}:{view.host_port}/ping"

    def _retire(self, views: tuple[ContainerView, ...]) -> None:
        for view in views:
            # By id: a new container may have taken over the retired one's name.
            self.engine.stop_and_remove(view.id, timeout=self.config.stop_timeout_seconds)

    def _ready(self, info: DeploymentInfo, view: ContainerView, url: str, *, note: str) -> ActionStatusInfo:
        return ActionStatusInfo(
            ActionStatus.OK,
            msg=f"Deployment {info.id} is ready: {note}",
            state=DeploymentState.READY,
            data={
                DataKey.PREDICTION_URL: url,
                DataKey.CURRENT_MODEL_ID: view.model_id,
                "container": view.name,
                "image": view.image,
            },
        )


def _load_failures(response: Any) -> str | None:
    """A prediction server that answers ``/ping`` 503 with ``failed`` and nothing ``loading`` has given up."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("loading") or not body.get("failed"):
        return None
    failed = body["failed"]
    if isinstance(failed, dict):
        return "; ".join(f"{key}: {error}" for key, error in failed.items())
    return str(failed)


def _model_file(artifact: Path) -> str:
    """The package's file name inside the image; always ``*.mlpkg`` (what ``shipmate serve`` looks for)."""
    name = artifact.name
    return name if name.endswith(".mlpkg") else f"{artifact.stem or 'model'}.mlpkg"


def dry_run_status(
    plan: list[str], *, state: DeploymentState | None = None, data: dict[str, Any] | None = None
) -> ActionStatusInfo:
    """A dry run reports the plan, touches nothing, and says so."""
    return ActionStatusInfo(
        ActionStatus.OK,
        msg="Dry run, nothing was changed. Would: " + "; ".join(plan),
        state=state,
        data={"dryRun": True, "plan": plan, **(data or {})},
    )
