"""What to do and what to report, decided from snapshots of containers (pure: no engine, no clock).

The engine layer turns ``docker inspect`` output into ``ContainerView`` snapshots;
these functions decide which container serves a deployment, whether a start can
reuse what runs, and how a container's state reads as an ``ActionStatusInfo``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DataKey, DeploymentState
from shipmate.plugins.docker import naming


@dataclass(frozen=True, slots=True)
class ContainerView:
    """The facts about one container that decisions need."""

    name: str
    id: str
    status: str
    """Docker's state: created, running, restarting, paused, exited, dead, removing."""
    labels: Mapping[str, str] = field(default_factory=dict)
    exit_code: int | None = None
    restart_count: int = 0
    created: str = ""
    """ISO-8601 creation time (sorts chronologically)."""
    started_at: str = ""
    """ISO-8601 time the container last started (a restart changes it, and maybe its address)."""
    finished_at: str = ""
    """ISO-8601 time the container last stopped; Docker's zero time (``0001-…``) when it never did."""
    health: str | None = None
    """Docker health check status when the container has one."""
    oom_killed: bool = False
    error: str | None = None
    ports: Mapping[int, int] = field(default_factory=dict)
    """Published ports: container port → host port."""
    image: str = ""

    @property
    def host_port(self) -> int | None:
        """Host port the prediction server is published on, if any."""
        return self.ports.get(naming.PREDICTION_PORT)

    @property
    def deployment_id(self) -> str | None:
        return naming.label(self.labels, naming.DEPLOYMENT_ID)

    @property
    def model_id(self) -> str | None:
        return naming.label(self.labels, naming.MODEL_ID)

    @property
    def package_sha256(self) -> str | None:
        return naming.label(self.labels, naming.PACKAGE_DIGEST)

    @property
    def prediction_url(self) -> str | None:
        return naming.label(self.labels, naming.PREDICTION_URL)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def stopped_before(self) -> bool:
        """Running again after it had stopped (the engine restarted, or Docker's restart policy)."""
        return self.running and bool(self.finished_at) and not self.finished_at.startswith("0001-")


def by_deployment(views: Iterable[ContainerView]) -> dict[str, list[ContainerView]]:
    """Group deployment containers by deployment id, newest first."""
    groups: dict[str, list[ContainerView]] = {}
    for view in views:
        if view.deployment_id:
            groups.setdefault(view.deployment_id, []).append(view)
    for group in groups.values():
        group.sort(key=lambda v: v.created, reverse=True)
    return groups


def serving_container(views: list[ContainerView]) -> ContainerView | None:
    """The container that should receive a deployment's traffic: the newest running one, else the newest."""
    if not views:
        return None
    newest_first = sorted(views, key=lambda v: v.created, reverse=True)
    for view in newest_first:
        if view.running:
            return view
    return newest_first[0]


def active_routes(views: Iterable[ContainerView]) -> dict[str, str]:
    """``deployment id → container name`` for every deployment with a running container."""
    routes = {}
    for dep, group in by_deployment(views).items():
        chosen = serving_container(group)
        if chosen is not None and chosen.running:
            routes[dep] = chosen.name
    return routes


class StartDecision(enum.StrEnum):
    """What ``deployment_start`` does given what already runs."""

    REUSE = "reuse"
    """A running container already serves this model from this package: keep it."""
    START = "start"
    """Nothing runs for the deployment: start a container."""
    ROLL = "roll"
    """Something else runs: start the new container, switch the route, then retire the old ones."""


@dataclass(frozen=True, slots=True)
class StartPlan:
    decision: StartDecision
    reason: str
    keep: ContainerView | None = None
    retire: tuple[ContainerView, ...] = ()
    """Containers to stop once the new one serves (or, for REUSE, stale extras)."""


def plan_start(
    existing: list[ContainerView], model_id: str, package_sha256: str, *, force_new: bool = False
) -> StartPlan:
    """Decide how to bring a deployment to ``model_id`` from the package ``package_sha256``."""
    if not existing:
        return StartPlan(StartDecision.START, "no container runs for this deployment")
    if not force_new:
        for view in sorted(existing, key=lambda v: v.created, reverse=True):
            if view.running and view.model_id == model_id and view.package_sha256 == package_sha256:
                others = tuple(v for v in existing if v.id != view.id)
                return StartPlan(
                    StartDecision.REUSE,
                    f"container {view.name} already serves model {model_id}",
                    keep=view,
                    retire=others,
                )
    running = [v for v in existing if v.running]
    if not running:
        names = ", ".join(v.name for v in existing)
        return StartPlan(
            StartDecision.START,
            f"no running container (found {names}); starting afresh",
            retire=tuple(existing),
        )
    current = running[0]
    reason = (
        f"relaunching {current.name}"
        if force_new
        else f"container {current.name} serves model {current.model_id}, wanted {model_id}"
    )
    return StartPlan(StartDecision.ROLL, reason, retire=tuple(existing))


def unique_name(wanted: str, taken: Iterable[str], digest: str) -> str:
    """The convention's name unless a container we are replacing still holds it."""
    taken = set(taken)
    if wanted not in taken:
        return wanted
    for length in (8, 12, 16, 64):
        candidate = f"{wanted}.{digest[:length]}"
        if candidate not in taken:
            return candidate
    index = 2
    while f"{wanted}.{index}" in taken:
        index += 1
    return f"{wanted}.{index}"


def container_status(
    view: ContainerView | None, deployment_id: str, *, answers_ping: bool | None, log_tail: str | None = None
) -> ActionStatusInfo:
    """How one deployment's container reads as a status: running, restarting, exited apart."""
    if view is None:
        return ActionStatusInfo(
            ActionStatus.ERROR,
            msg=f"No container for deployment {deployment_id} was found",
            state=DeploymentState.ERRORED,
        )
    data: dict[str, object] = {
        DataKey.CURRENT_MODEL_ID: view.model_id,
        "container": view.name,
        "containerStatus": view.status,
        "restartCount": view.restart_count,
    }
    if view.prediction_url:
        data[DataKey.PREDICTION_URL] = view.prediction_url
    if view.status == "running":
        if answers_ping is False:
            return ActionStatusInfo(
                ActionStatus.WARN,
                msg=f"Container {view.name} is running but does not answer /ping yet",
                state=DeploymentState.LAUNCHING,
                data=data,
            )
        text = f"Deployment {deployment_id} is running in container {view.name}"
        if view.stopped_before:
            text += f" (it stopped at {view.finished_at} and started again at {view.started_at})"
            data["stoppedAt"], data["startedAt"] = view.finished_at, view.started_at
        return ActionStatusInfo(
            ActionStatus.OK,
            msg=text,
            state=DeploymentState.READY,
            data=data,
        )
    if view.status == "restarting":
        data["exitCode"] = view.exit_code
        text = (
            f"Container {view.name} is restarting (restart count {view.restart_count}, "
            f"last exit code {view.exit_code})"
        )
        return ActionStatusInfo(
            ActionStatus.ERROR, msg=_with_log(text, log_tail), state=DeploymentState.ERRORED, data=data
        )
    if view.status in ("exited", "dead"):
        data["exitCode"] = view.exit_code
        cause = " (killed: out of memory)" if view.oom_killed else ""
        text = f"Container {view.name} exited with code {view.exit_code}{cause}"
        if view.error:
            text += f": {view.error}"
        return ActionStatusInfo(
            ActionStatus.ERROR, msg=_with_log(text, log_tail), state=DeploymentState.ERRORED, data=data
        )
    if view.status == "created":
        return ActionStatusInfo(
            ActionStatus.WARN,
            msg=f"Container {view.name} is created but not started",
            state=DeploymentState.LAUNCHING,
            data=data,
        )
    return ActionStatusInfo(
        ActionStatus.WARN,
        msg=f"Container {view.name} is {view.status}",
        state=DeploymentState.UNKNOWN,
        data=data,
    )


def _with_log(text: str, log_tail: str | None) -> str:
    if log_tail and log_tail.strip():
        return f"{text}. Last lines of its log:\n{log_tail.rstrip()}"
    return text
