"""The Docker plugin: each deployment is a container built from the prediction server base image.

The flow of every action is the same: read the containers this environment owns
(by label), decide what to do (``decisions``), carry it out through the engine
seam (``engine``) and the reverse proxy (``proxy``), and report; the steps of a
rollout (build, start, wait until ready, switch, retire) are ``rollout``'s. With ``dry_run``
every action reports its plan and never contacts the engine.
"""

from __future__ import annotations

from typing import Any

from shipmate.plugin.base import PluginBase
from shipmate.plugin.config import load_private_config
from shipmate.plugin.info import DeploymentInfo, PEInfo
from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DataKey, DeploymentState, worst
from shipmate.plugins.docker import naming
from shipmate.plugins.docker.config import (
    DockerPluginConfig,
    parse_config,
)
from shipmate.plugins.docker.decisions import (
    ContainerView,
    by_deployment,
    container_status,
    serving_container,
)
from shipmate.plugins.docker.engine import Engine, EngineError
from shipmate.plugins.docker.monitoring import ensure_monitoring, monitoring_problems, remove_monitoring
from shipmate.plugins.docker.proxy import ReverseProxy
from shipmate.plugins.docker.rollout import RolloutSteps, dry_run_status


class DockerPlugin(RolloutSteps, PluginBase):
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
                    f"ensure RabbitMQ ({cfg.rabbitmq_image}, ports {_ports(cfg.rabbitmq_port_mapping)}) "
                    f"and the monitoring agent ({cfg.agent_image}) run"
                )
            return dry_run_status(plan)
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
            routes = self._running_routes()
            view, created = self.proxy.ensure_running(routes)
            if not created and self.proxy.current_routes() != routes:
                self.proxy.replace_all(routes)
            notes.append(
                f"reverse proxy {view.name} (Traefik, {cfg.traefik_image}) "
                f"{'started' if created else 'running'}, {len(routes)} route(s)"
            )
            if cfg.monitoring_enabled:
                notes.append(ensure_monitoring(self.engine, cfg))
        except EngineError as exc:
            return ActionStatusInfo(ActionStatus.ERROR, msg=f"Docker plugin could not start: {exc}")
        return ActionStatusInfo(ActionStatus.OK, msg="; ".join(notes))

    def plugin_stop(self) -> ActionStatusInfo:
        if self.dry_run:
            plan = ["close the engine connection"]
            if self.config.stop_proxy_on_plugin_stop:
                plan.insert(0, "stop and remove the reverse proxy")
                if self.config.monitoring_enabled:
                    plan.insert(0, "stop and remove the monitoring agent and RabbitMQ")
            return dry_run_status(plan)
        msg = "Docker plugin stopped; deployments and the reverse proxy keep serving"
        try:
            if self.config.stop_proxy_on_plugin_stop:
                if self.config.monitoring_enabled:
                    remove_monitoring(self.engine, self.config)
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
            return dry_run_status(
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
                # Removed by hand, or stopped: put it back, with the routes of what runs.
                what = "was missing" if proxy is None else f"was {proxy.status}"
                try:
                    routes = {dep: c.name for dep, c in serving.items() if c.running}
                    self.proxy.ensure_running(routes)
                    problems.append(
                        f"Reverse proxy {self.proxy.name} {what}: recreated with {len(routes)} route(s)"
                    )
                    statuses.append(ActionStatus.WARN)
                except EngineError as exc:
                    problems.append(
                        f"Reverse proxy {self.proxy.name} {what} and could not be recreated: {exc}"
                    )
                    statuses.append(ActionStatus.ERROR)
            if not self.engine.network_exists(self.config.docker_network):
                problems.append(f"network {self.config.docker_network} is missing")
                statuses.append(ActionStatus.ERROR)
            if self.config.monitoring_enabled:
                missing = monitoring_problems(self.engine, self.config)
                problems += missing
                statuses += [ActionStatus.WARN] if missing else []
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
            return dry_run_status(
                [f"list containers labelled {naming.ENVIRONMENT}={self.config.environment_id}"]
            )
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
            return dry_run_status(
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
            return dry_run_status([f"inspect the container of deployment {deployment_id} and call its /ping"])
        try:
            view = serving_container(self._containers(deployment_id))
            return self._status_of(deployment_id, view)
        except EngineError as exc:
            return ActionStatusInfo(
                ActionStatus.ERROR, msg=f"Docker engine error: {exc}", state=DeploymentState.UNKNOWN
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


def _ports(mapping: dict[int, int]) -> str:
    return ", ".join(f"{h or 'random'}→{c}" for c, h in sorted(mapping.items())) or "none"
