"""The Docker plugin: each deployment is a container built from the prediction server base image.

The flow of every action is the same: read the containers this environment owns
(by label), decide what to do (``decisions``), carry it out through the engine
seam (``engine``) and the reverse proxy (``proxy``), and report. With ``dry_run``
every action reports its plan and never contacts the engine.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from shipmate.plugin.base import PluginBase
from shipmate.plugin.config import load_private_config
from shipmate.plugin.errors import ConfigError
from shipmate.plugin.info import DeploymentInfo, PEInfo
from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DataKey, DeploymentState, worst
from shipmate.plugins.docker import naming
from shipmate.plugins.docker.config import (
    DockerPluginConfig,
    ProxyKind,
    ReadinessVia,
    parse_config,
)
from shipmate.plugins.docker.decisions import (
    ContainerView,
    StartDecision,
    by_deployment,
    container_status,
    plan_start,
    serving_container,
    unique_name,
)
from shipmate.plugins.docker.engine import Engine, EngineError
from shipmate.plugins.docker.proxy import ReverseProxy
from shipmate.plugins.docker.routes import traefik_labels


class RolloutFailed(Exception):
    """A new container did not become ready; ``reason`` says why (exit code, log lines, timeout)."""


class DockerPlugin(PluginBase):
    """Deployments as containers on one Docker engine, behind one reverse proxy."""

    def __init__(
        self,
        plugin_config: Any,
        private_config_file: str | None = None,
        pe_info: PEInfo | Any = None,
        dry_run: bool = False,
    ) -> None:
        super().__init__(plugin_config, private_config_file, pe_info, dry_run)
        private = load_private_config(private_config_file)
        source = f"Docker plugin config{f' ({private_config_file})' if private_config_file else ''}"
        self.config: DockerPluginConfig = parse_config(
            self.plugin_config,
            private,
            environment_id=self.pe_info.id if self.pe_info else None,
            source=source,
        )
        self._engine: Engine | None = None
        self._proxy: ReverseProxy | None = None

    # -- lazily connected seams ----------------------------------------------------------

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = Engine()
        return self._engine

    @property
    def proxy(self) -> ReverseProxy:
        if self._proxy is None:
            self._proxy = ReverseProxy(self.engine, self.config)
        return self._proxy

    def _containers(self, deployment_id: str | None = None) -> list[ContainerView]:
        filters = naming.selector(self.config.environment_id, naming.ROLE_DEPLOYMENT)
        if deployment_id is not None:
            filters["label"].append(f"{naming.DEPLOYMENT_ID}={deployment_id}")
        return self.engine.containers(filters)

    # -- environment actions -------------------------------------------------------------

    def plugin_start(self) -> ActionStatusInfo:
        cfg = self.config
        proxy_name = naming.environment_container_name(cfg.prefix, cfg.environment_id, naming.ROLE_PROXY)
        if self.dry_run:
            plan = [
                "check the Docker engine answers",
                f"ensure network {cfg.docker_network} exists"
                + (" (create it when missing)" if cfg.create_network else " (fail when missing)"),
                f"ensure reverse proxy {proxy_name} runs from {cfg.traefik_image}, "
                f"ports {_ports(cfg.traefik_port_mapping)} on {cfg.publish_address}",
                "rewrite its route table from the running deployment containers",
            ]
            if cfg.monitoring_enabled:
                plan.append(
                    f"ensure tracking agent ({cfg.agent_image}) and RabbitMQ ({cfg.rabbitmq_image}) run"
                )
            return _dry_run(plan)
        try:
            info = self.engine.info()
            notes = [f"Docker Engine {info.version} (API {info.api_version}) answers"]
            if not self.engine.network_exists(cfg.docker_network):
                if not cfg.create_network:
                    return ActionStatusInfo(
                        ActionStatus.ERROR,
                        msg=(
                            f"Docker network {cfg.docker_network!r} does not exist; create it "
                            f"(docker network create {cfg.docker_network}) or set createNetwork: true"
                        ),
                    )
                self.engine.create_network(
                    cfg.docker_network, naming.environment_labels(cfg.environment_id, "network")
                )
                notes.append(f"network {cfg.docker_network} created")
            view, created = self.proxy.ensure_running()
            routes = {dep: c.name for dep, c in self._serving_by_deployment().items() if c.running}
            if created or self.proxy.current_routes() != routes:
                self.proxy.replace_all(routes)
            notes.append(
                f"reverse proxy {view.name} ({self.proxy.kind.value}) {'started' if created else 'running'}, "
                f"{len(routes)} route(s)"
            )
            if cfg.monitoring_enabled:
                notes.append(self._ensure_monitoring())
        except EngineError as exc:
            return ActionStatusInfo(ActionStatus.ERROR, msg=f"Docker plugin could not start: {exc}")
        return ActionStatusInfo(ActionStatus.OK, msg="; ".join(notes))

    def plugin_stop(self) -> ActionStatusInfo:
        if self.dry_run:
            plan = ["close the engine connection"]
            if self.config.stop_proxy_on_plugin_stop:
                plan.insert(0, "stop and remove the reverse proxy")
            return _dry_run(plan)
        msg = "Docker plugin stopped; deployments and the reverse proxy keep serving"
        try:
            if self.config.stop_proxy_on_plugin_stop:
                self.proxy.remove()
                msg = "Docker plugin stopped; reverse proxy removed, deployment containers keep running"
        except EngineError as exc:
            return ActionStatusInfo(ActionStatus.WARN, msg=f"Docker plugin stopped, but: {exc}")
        finally:
            if self._engine is not None:
                self._engine.close()
                self._engine = None
                self._proxy = None
        return ActionStatusInfo(ActionStatus.OK, msg=msg)

    def pe_status(self) -> ActionStatusInfo:
        wanted = self.pe_info.deployment_ids if self.pe_info else []
        if self.dry_run:
            return _dry_run(
                ["check the Docker engine answers", "check the reverse proxy runs"]
                + [f"report the container of deployment {dep}" for dep in wanted]
            )
        try:
            info = self.engine.info()
        except EngineError as exc:
            return ActionStatusInfo(ActionStatus.ERROR, msg=f"Docker engine is not reachable: {exc}")
        problems: list[str] = []
        statuses = [ActionStatus.OK]
        try:
            proxy = self.proxy.container()
            serving = self._serving_by_deployment()
            if proxy is None or not proxy.running:
                problems.append(f"Reverse proxy {self.proxy.name} is not running")
                statuses.append(ActionStatus.ERROR)
            elif self.proxy.refresh_if_stale(list(serving.values())):
                problems.append("route table reloaded: a deployment container had restarted")
            if not self.engine.network_exists(self.config.docker_network):
                problems.append(f"network {self.config.docker_network} is missing")
                statuses.append(ActionStatus.ERROR)
            per_deployment = {dep: self._status_of(dep, serving.get(dep)).to_dict() for dep in wanted}
        except EngineError as exc:
            return ActionStatusInfo(ActionStatus.ERROR, msg=f"Docker engine error: {exc}")
        msg = f"Docker Engine {info.version} answers; {len(serving)} deployment(s) with containers"
        if problems:
            msg += "; " + "; ".join(problems)
        data = {DataKey.DEPLOYMENTS_STATUS: per_deployment} if per_deployment else None
        return ActionStatusInfo(worst(statuses), msg=msg, data=data)

    def deployment_list(self) -> ActionStatusInfo:
        if self.dry_run:
            return _dry_run([f"list containers labelled {naming.ENVIRONMENT}={self.config.environment_id}"])
        try:
            serving = self._serving_by_deployment()
            data = {dep: self._status_of(dep, view).to_dict() for dep, view in sorted(serving.items())}
        except EngineError as exc:
            return ActionStatusInfo(ActionStatus.ERROR, msg=f"Listing deployments failed: {exc}")
        for dep, entry in data.items():
            view = serving[dep]
            entry["data"] = dict(entry.get("data") or {})
            entry["data"].update(
                {
                    "modelId": view.model_id,
                    "name": naming.label(view.labels, naming.DEPLOYMENT_NAME),
                    "modelExecutionType": naming.label(view.labels, naming.MODEL_EXECUTION_TYPE),
                    DataKey.PREDICTION_URL: view.prediction_url,
                }
            )
        if not data:
            return ActionStatusInfo(ActionStatus.OK, msg="No containers running", data={})
        return ActionStatusInfo(ActionStatus.OK, msg=f"Number of deployments: {len(data)}", data=data)

    # -- deployment actions --------------------------------------------------------------

    def deployment_start(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        return self._rollout(deployment_info, force_new=False, replacing=False)

    def deployment_replace_model(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        return self._rollout(deployment_info, force_new=False, replacing=True)

    def deployment_relaunch(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        """A fresh container for the same model, started before the old one stops (no downtime)."""
        return self._rollout(deployment_info, force_new=True, replacing=False)

    def deployment_stop(self, deployment_info: DeploymentInfo | str) -> ActionStatusInfo:
        deployment_id = deployment_info if isinstance(deployment_info, str) else deployment_info.id
        naming.check_id(deployment_id, "deployment id")
        if self.dry_run:
            return _dry_run(
                [
                    f"remove the route of deployment {deployment_id}",
                    f"stop and remove every container labelled {naming.DEPLOYMENT_ID}={deployment_id}",
                ],
                state=DeploymentState.STOPPED,
            )
        try:
            containers = self._containers(deployment_id)
            if self.proxy.container() is not None:
                self.proxy.set_route(deployment_id, None)
            for view in containers:
                self.engine.stop_and_remove(view.id, timeout=self.config.stop_timeout_seconds)
        except EngineError as exc:
            return ActionStatusInfo(
                ActionStatus.ERROR,
                msg=f"Stopping deployment {deployment_id} failed: {exc}",
                state=DeploymentState.ERRORED,
            )
        if not containers:
            msg = f"No container for deployment {deployment_id} was found - nothing to stop"
        else:
            msg = f"Deployment {deployment_id} stopped: removed {', '.join(v.name for v in containers)}"
        return ActionStatusInfo(ActionStatus.OK, msg=msg, state=DeploymentState.STOPPED)

    def deployment_status(self, deployment_info: DeploymentInfo | str) -> ActionStatusInfo:
        deployment_id = deployment_info if isinstance(deployment_info, str) else deployment_info.id
        naming.check_id(deployment_id, "deployment id")
        if self.dry_run:
            return _dry_run([f"inspect the container of deployment {deployment_id} and call its /ping"])
        try:
            view = serving_container(self._containers(deployment_id))
            return self._status_of(deployment_id, view)
        except EngineError as exc:
            return ActionStatusInfo(
                ActionStatus.ERROR, msg=f"Docker engine error: {exc}", state=DeploymentState.UNKNOWN
            )

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
            return _dry_run(
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
        """Network and proxy, in case this process never ran ``plugin_start`` (or someone removed them)."""
        cfg = self.config
        if not self.engine.network_exists(cfg.docker_network):
            if not cfg.create_network:
                raise EngineError(
                    f"Docker network {cfg.docker_network!r} does not exist (createNetwork is false)"
                )
            self.engine.create_network(
                cfg.docker_network, naming.environment_labels(cfg.environment_id, "network")
            )
        _, created = self.proxy.ensure_running()
        if created:
            self.proxy.replace_all(
                {dep: c.name for dep, c in self._serving_by_deployment().items() if c.running}
            )

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
            "PREDICTION_API_MONITORING_ENABLED": str(cfg.monitoring_enabled),
            "MONITORING_AGENT": "False",
        }
        workers = kv.get("PREDICTION_API_WORKERS") or cfg.prediction_server_workers
        if workers:
            environment["PREDICTION_API_WORKERS"] = str(workers)
        if cfg.monitoring_enabled:
            settings = self._spooler_settings()
            environment["PREDICTION_API_MONITORING_SETTINGS"] = settings
            environment["PORTABLE_PREDICTION_API_MONITORING_SETTINGS"] = settings
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
        if self.proxy.kind is ProxyKind.TRAEFIK:
            labels.update(traefik_labels(cfg.environment_id, info.id, cfg.docker_network))
            kwargs["healthcheck"] = {
                "test": [
                    "CMD",
                    "python3",
                    "-c",
                    "import urllib.request; "
                    f"urllib.request.urlopen('http://127.0.0.1:{naming.PREDICTION_PORT}/ping', timeout=2)",
                ],
                "interval": 2_000_000_000,
                "timeout": 3_000_000_000,
                "retries": 3,
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

    # -- reading state -------------------------------------------------------------------

    def _serving_by_deployment(self) -> dict[str, ContainerView]:
        groups = by_deployment(self._containers())
        chosen = {dep: serving_container(group) for dep, group in groups.items()}
        return {dep: view for dep, view in chosen.items() if view is not None}

    def _status_of(self, deployment_id: str, view: ContainerView | None) -> ActionStatusInfo:
        if view is None:
            return container_status(None, deployment_id, answers_ping=None)
        answers: bool | None = None
        tail: str | None = None
        if view.running:
            answers = self._answers_ping(view)
        elif view.status in ("exited", "dead", "restarting"):
            tail = self.engine.logs_tail(view.name, self.config.log_tail_lines)
        return container_status(view, deployment_id, answers_ping=answers, log_tail=tail)

    def _answers_ping(self, view: ContainerView) -> bool:
        import httpx

        try:
            return httpx.get(self._ping_url(view), timeout=3.0).status_code == 200
        except httpx.HTTPError:
            return False

    # -- monitoring (tracking agent + RabbitMQ channel) -----------------------------------

    def _spooler_settings(self) -> str:
        rabbit = naming.environment_container_name(
            self.config.prefix, self.config.environment_id, naming.ROLE_RABBITMQ
        )
        return f"spooler_type=rabbitmq;rabbitmq_queue_url=amqp://{rabbit};rabbitmq_queue_name=shipmate"

    def _ensure_monitoring(self) -> str:
        cfg = self.config
        rabbit = naming.environment_container_name(cfg.prefix, cfg.environment_id, naming.ROLE_RABBITMQ)
        agent = naming.environment_container_name(cfg.prefix, cfg.environment_id, naming.ROLE_TRACKING_AGENT)
        started = []
        if not (self.engine.get(rabbit) or _absent()).running:
            self.engine.stop_and_remove(rabbit, timeout=5)
            self.engine.ensure_image(cfg.rabbitmq_image)
            self.engine.run(
                image=cfg.rabbitmq_image,
                name=rabbit,
                network=cfg.docker_network,
                labels=naming.environment_labels(cfg.environment_id, naming.ROLE_RABBITMQ),
                ports={
                    f"{c}/tcp": (cfg.publish_address, h or None) for c, h in cfg.rabbitmq_port_mapping.items()
                },
                restart_policy={"Name": "unless-stopped"},
            )
            started.append(rabbit)
        if not (self.engine.get(agent) or _absent()).running:
            self.engine.stop_and_remove(agent, timeout=5)
            self.engine.ensure_image(cfg.agent_image)
            self.engine.run(
                image=cfg.agent_image,
                name=agent,
                network=cfg.docker_network,
                labels=naming.environment_labels(cfg.environment_id, naming.ROLE_TRACKING_AGENT),
                environment={
                    "MLOPS_SERVICE_URL": cfg.monitoring_url or "",
                    "MLOPS_API_TOKEN": cfg.api_token or "",
                    "MLOPS_SPOOLER_TYPE": "RABBITMQ",
                    "MLOPS_RABBITMQ_QUEUE_URL": f"amqp://{rabbit}",
                    "MLOPS_RABBITMQ_QUEUE_NAME": "shipmate",
                },
                restart_policy={"Name": "unless-stopped"},
            )
            started.append(agent)
        return f"monitoring: {', '.join(started) + ' started' if started else 'running'}"


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


def _absent() -> ContainerView:
    return ContainerView(name="", id="", status="absent")


def _model_file(artifact: Path) -> str:
    """The package's file name inside the image; always ``*.mlpkg`` (what ``shipmate serve`` looks for)."""
    name = artifact.name
    return name if name.endswith(".mlpkg") else f"{artifact.stem or 'model'}.mlpkg"


def _ports(mapping: dict[int, int]) -> str:
    return ", ".join(f"{h or 'random'}→{c}" for c, h in sorted(mapping.items())) or "none"


def _dry_run(
    plan: list[str], *, state: DeploymentState | None = None, data: dict[str, Any] | None = None
) -> ActionStatusInfo:
    """A dry run reports the plan, touches nothing, and says so."""
    return ActionStatusInfo(
        ActionStatus.OK,
        msg="Dry run, nothing was changed. Would: " + "; ".join(plan),
        state=state,
        data={"dryRun": True, "plan": plan, **(data or {})},
    )
