"""Adapt ``shipmate.client.ShipmateClient`` to the agent's ``ControlPlane`` port.

The one place where the client's types and exceptions meet the agent's:
connection problems and 5xx become ``ControlPlaneUnavailable`` (retry with
back-off), refusals become ``ControlPlaneRejected``. Each answer is parsed once,
by the client's typed models, and converted here field by field into the agent's
values; a document that does not validate (say, a desired spec without a state)
is refused here with a message naming the field, never guessed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from shipmate.agent.model import DesiredDeployment, ModelPackageRef, ServiceObserved
from shipmate.agent.ports import (
    Change,
    ChangePage,
    ControlPlaneRejected,
    ControlPlaneUnavailable,
    DesiredSnapshot,
    EnvironmentDescription,
    Report,
    ReportOutcome,
)
from shipmate.client import errors
from shipmate.client.client import ShipmateClient
from shipmate.client.models import Deployment
from shipmate.client.models import Report as WireReport
from shipmate.common.vocabulary import EventType

T = TypeVar("T")
log = logging.getLogger(__name__)


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except (errors.ServiceUnavailable, errors.ChecksumMismatch) as exc:
        raise ControlPlaneUnavailable(f"{what}: {exc}") from None
    except errors.ShipmateError as exc:
        raise ControlPlaneRejected(f"{what}: {exc}") from None
    except ValidationError as exc:
        raise ControlPlaneRejected(f"{what}: the service's answer is not valid: {_first(exc)}") from None


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {error['msg']}{more}"


def desired_from(deployment: Deployment) -> DesiredDeployment:
    """The agent's desired spec from the client's typed deployment."""
    package = deployment.model_package
    observed = deployment.observed
    return DesiredDeployment(
        id=deployment.id,
        generation=deployment.generation,
        state=deployment.desired.state,
        model_package=ModelPackageRef(
            id=deployment.desired.model_package_id,
            sha256=package.sha256,
            name=package.name,
            version=package.version,
            size=package.size,
        ),
        relaunch_generation=deployment.desired.relaunch_generation,
        force=deployment.desired.force,
        name=deployment.name,
        description=deployment.description,
        key_value_config=dict(deployment.key_value_config),
        observed=ServiceObserved(
            generation=observed.generation, state=observed.state.value, status=observed.status.value
        ),
    )


def wire_report(report: Report) -> WireReport:
    """The client's report from the agent's (one conversion; the client writes the JSON)."""
    return WireReport(
        deployment_id=report.deployment_id,
        generation=report.generation,
        action=report.action.value,
        phase=report.phase,
        status=report.status,
        state=report.state,
        message=report.message,
        duration=report.duration,
        attempt=report.attempt,
        data=dict(report.data),
    )


class ServiceControlPlane:
    """The real service, through the shared client (one connection pool per agent)."""

    def __init__(self, client: ShipmateClient, feed_client: ShipmateClient | None = None) -> None:
        self.client = client
        self._feed = feed_client or client
        """The long poll gets its own pool so it never waits behind a report batch."""

    @classmethod
    def connect(
        cls, base_url: str, token: str, verify: bool = True, timeout: float = 30.0
    ) -> ServiceControlPlane:
        return cls(
            ShipmateClient(base_url, token, timeout=timeout, verify=verify),
            ShipmateClient(base_url, token, timeout=timeout, verify=verify),
        )

    def close(self) -> None:
        self.client.close()
        if self._feed is not self.client:
            self._feed.close()

    def _call(self, what: str, call: Callable[[], T]) -> T:
        with _translated(what):
            return call()
        raise AssertionError("unreachable")  # pragma: no cover

    def get_environment(self, environment_id: str) -> EnvironmentDescription:
        env = self._call("read the environment", lambda: self.client.get_environment(environment_id))
        return EnvironmentDescription(
            id=env.id,
            name=env.name,
            description=env.description or None,
            created_on=env.created_at.isoformat() if env.created_at else None,
            created_by=env.created_by,
            key_value_config=dict(env.config or {}),
            plugin_config=dict(env.plugin_config or {}),
        )

    def desired_state(self, environment_id: str) -> DesiredSnapshot:
        state = self._call("read the desired state", lambda: self.client.desired_state(environment_id))
        return DesiredSnapshot(cursor=state.cursor, deployments=[desired_from(d) for d in state.deployments])

    def changes(self, environment_id: str, after: int, wait: float, limit: int = 500) -> ChangePage:
        page = self._call(
            "follow the change feed",
            lambda: self._feed.events(environment_id=environment_id, after=after, wait=wait, limit=limit),
        )
        changes = []
        for event in page.events:
            spec = None
            if event.type == EventType.DESIRED_CHANGED and event.data:
                try:
                    deployment = event.deployment()
                except ValidationError as exc:
                    log.error(
                        "change feed event %d (%s) carries no valid desired spec: %s; ignored",
                        event.id,
                        event.type,
                        _first(exc),
                    )
                    continue
                spec = desired_from(deployment) if deployment is not None else None
            changes.append(
                Change(
                    id=event.id,
                    type=event.type,
                    deployment_id=event.deployment_id,
                    generation=event.generation,
                    timestamp=event.timestamp.timestamp() if event.timestamp else None,
                    spec=spec,
                )
            )
        return ChangePage(cursor=page.cursor, changes=changes)

    def download_model_package(self, package_id: str, dest: Path) -> str:
        return self._call(
            f"download model package {package_id}",
            lambda: self.client.download_model_package(package_id, dest),
        )

    def report(self, environment_id: str, reports: Sequence[Report]) -> ReportOutcome:
        wire = [wire_report(r) for r in reports]
        result = self._call("report", lambda: self.client.report(environment_id, wire))
        return ReportOutcome(accepted=result.accepted, stale=result.stale, removed=result.removed)

    def report_health(
        self, environment_id: str, status: str, message: str | None, data: Mapping[str, Any]
    ) -> None:
        from shipmate import __version__

        self._call(
            "report environment health",
            lambda: self.client.report_health(
                environment_id, status, message, dict(data), agent_version=f"shipmate-agent {__version__}"
            ),
        )

    def post_event(
        self,
        environment_id: str,
        type: str,
        message: str,
        deployment_id: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        self._call(
            f"post event {type}",
            lambda: self.client.post_event(
                environment_id, type, message, deployment_id=deployment_id, data=dict(data or {})
            ),
        )
