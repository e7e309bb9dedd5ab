"""Deployments: user commands change the desired spec (one generation per change, one event each);
agents' reports change the observed state."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session

from shipmate.common.vocabulary import DesiredState, EventType, ReportPhase
from shipmate.plugin.status import ActionStatus, DataKey, DeploymentState
from shipmate.server import lifecycle
from shipmate.server.errors import Conflict, NotFound
from shipmate.server.lifecycle import Command, Verdict
from shipmate.server.models import Deployment, Event, utcnow
from shipmate.server.schemas import Report
from shipmate.server.services import environments, events, packages
from shipmate.server.services.ids import new_id
from shipmate.server.views import deployment_document

log = logging.getLogger(__name__)


def _desired(deployment: Deployment) -> lifecycle.Desired:
    return lifecycle.Desired(
        generation=deployment.generation,
        state=deployment.desired_state,
        model_package_id=deployment.model_package_id,
        relaunch_generation=deployment.relaunch_generation,
        force=deployment.force,
    )


def _record_desired_change(session: Session, deployment: Deployment, *, actor: str, reason: str) -> None:
    session.flush()
    events.append(
        session,
        type=EventType.DESIRED_CHANGED,
        actor=actor,
        environment_id=deployment.environment_id,
        deployment_id=deployment.id,
        generation=deployment.generation,
        message=reason,
        data=deployment_document(deployment),
    )


def create(
    session: Session,
    *,
    environment_id: str,
    model_package_id: str,
    name: str,
    description: str,
    key_value_config: dict[str, Any],
    active: bool,
    actor: str,
) -> Deployment:
    environments.get(session, environment_id)
    package = packages.get(session, model_package_id)
    now = utcnow()
    deployment = Deployment(
        id=new_id("d"),
        name=name,
        description=description,
        environment_id=environment_id,
        model_package_id=package.id,
        key_value_config=key_value_config,
        generation=1,
        desired_state=DesiredState.RUNNING if active else DesiredState.STOPPED,
        relaunch_generation=0,
        force=False,
        observed_state="unknown",
        observed_generation=0,
        observed_status="unknown",
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    deployment.model_package = package
    session.add(deployment)
    events.append(
        session,
        type=EventType.DEPLOYMENT_CREATED,
        actor=actor,
        environment_id=environment_id,
        deployment_id=deployment.id,
        generation=1,
        message=f"deployment {name} created with model {package.name} {package.version}",
    )
    _record_desired_change(
        session, deployment, actor=actor, reason=f"created ({deployment.desired_state.value})"
    )
    return deployment


def get(session: Session, deployment_id: str, *, include_force_deleted: bool = False) -> Deployment:
    """A deployment by id. Force-deleted ones are gone for users, though their agent still sees them."""
    deployment = session.get(Deployment, deployment_id)
    if deployment is None or (deployment.force and not include_force_deleted):
        raise NotFound(f"deployment {deployment_id} not found", field="deploymentId")
    return deployment


def check_event_subject(
    session: Session, *, environment_id: str, deployment_id: str, unknown_allowed: bool
) -> None:
    """An agent's event may name only its own environment's deployments (or, for an
    ``agent.unknown_deployment`` event, one the service does not know at all)."""
    owner = session.scalar(select(Deployment.environment_id).where(Deployment.id == deployment_id))
    if owner == environment_id or (owner is None and unknown_allowed):
        return
    raise NotFound(
        f"deployment {deployment_id} not found in environment {environment_id}", field="deploymentId"
    )


def get_for_update(session: Session, deployment_id: str) -> Deployment:
    deployment = session.get(Deployment, deployment_id, with_for_update=True)
    if deployment is None or deployment.force:
        raise NotFound(f"deployment {deployment_id} not found", field="deploymentId")
    return deployment


@dataclass(frozen=True)
class DeploymentFilter:
    environment_id: str | None = None
    state: str | None = None
    desired_state: DesiredState | None = None
    name: str | None = None
    model_package_id: str | None = None


def list_page(
    session: Session, *, where: DeploymentFilter, limit: int, offset: int
) -> tuple[list[Deployment], int]:
    """One page of deployments (newest first) and the total matching the filter.

    Deployments being deleted are listed only when asked for with ``desiredState=deleted``;
    force-deleted ones never are.
    """
    conditions: list[ColumnElement[bool]] = [Deployment.force.is_(False)]
    if where.desired_state is None:
        conditions.append(Deployment.desired_state != DesiredState.DELETED)
    else:
        conditions.append(Deployment.desired_state == where.desired_state)
    if where.environment_id is not None:
        conditions.append(Deployment.environment_id == where.environment_id)
    if where.state is not None:
        conditions.append(Deployment.observed_state == where.state)
    if where.name is not None:
        conditions.append(Deployment.name == where.name)
    if where.model_package_id is not None:
        conditions.append(Deployment.model_package_id == where.model_package_id)
    total = session.scalar(select(func.count()).select_from(Deployment).where(*conditions)) or 0
    rows = session.scalars(
        select(Deployment)
        .where(*conditions)
        .order_by(Deployment.created_at.desc(), Deployment.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows), int(total)


def update(
    session: Session,
    *,
    deployment_id: str,
    name: str | None,
    description: str | None,
    key_value_config: dict[str, Any] | None,
    actor: str,
) -> Deployment:
    """Change the label, description or key/values; not a desired-state change, so no new generation."""
    deployment = get_for_update(session, deployment_id)
    if deployment.desired_state is DesiredState.DELETED:
        raise Conflict(
            f"deployment {deployment_id} is being deleted; it cannot be updated", field="deploymentId"
        )
    changed = []
    if name is not None and name != deployment.name:
        deployment.name = name
        changed.append("name")
    if description is not None and description != deployment.description:
        deployment.description = description
        changed.append("description")
    if key_value_config is not None and key_value_config != deployment.key_value_config:
        deployment.key_value_config = key_value_config
        changed.append("keyValueConfig")
    if changed:
        deployment.updated_at = utcnow()
        session.flush()
        events.append(
            session,
            type=EventType.DEPLOYMENT_UPDATED,
            actor=actor,
            environment_id=deployment.environment_id,
            deployment_id=deployment.id,
            generation=deployment.generation,
            message=f"{', '.join(changed)} changed",
            data=deployment_document(deployment),
        )
    return deployment


_REASONS = {
    Command.REPLACE_MODEL: "model replaced",
    Command.DEACTIVATE: "deactivated",
    Command.ACTIVATE: "activated",
    Command.RELAUNCH: "relaunch requested",
    Command.DELETE: "deletion requested",
    Command.FORCE_DELETE: "force deletion requested",
}


def command(
    session: Session, *, deployment_id: str, command: Command, actor: str, model_package_id: str | None = None
) -> Deployment:
    """Apply a user command; a command that changes nothing (activate an active one) is not a change."""
    deployment = session.get(Deployment, deployment_id, with_for_update=True)
    if deployment is None or (deployment.force and command is not Command.FORCE_DELETE):
        raise NotFound(f"deployment {deployment_id} not found", field="deploymentId")
    if model_package_id is not None:
        package = packages.get(session, model_package_id)
    new = lifecycle.apply_command(_desired(deployment), command, model_package_id=model_package_id)
    if new is None:
        return deployment
    reason = _REASONS[command]
    if command is Command.REPLACE_MODEL:
        reason = f"model replaced: {deployment.model_package_id} -> {new.model_package_id}"
        deployment.model_package = package
    deployment.generation = new.generation
    deployment.desired_state = new.state
    deployment.model_package_id = new.model_package_id
    deployment.relaunch_generation = new.relaunch_generation
    deployment.force = new.force
    deployment.updated_at = utcnow()
    _record_desired_change(session, deployment, actor=actor, reason=reason)
    return deployment


def desired_state(session: Session, *, environment_id: str) -> tuple[int, list[Deployment]]:
    """Everything the environment's agent must act on, and the cursor to follow changes from.

    The cursor is read first: under READ COMMITTED a change landing in between then shows up
    both in the list and in the feed (harmless), never in neither.
    """
    environments.get(session, environment_id)
    cursor = events.latest_id(session)
    rows = session.scalars(
        select(Deployment).where(Deployment.environment_id == environment_id).order_by(Deployment.created_at)
    )
    return cursor, list(rows)


@dataclass
class ReportOutcome:
    accepted: int = 0
    stale: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


_SNAPSHOT = (
    Deployment.id,
    Deployment.generation,
    Deployment.desired_state,
    Deployment.model_package_id,
    Deployment.relaunch_generation,
    Deployment.force,
    Deployment.observed_generation,
    Deployment.observed_status,
    Deployment.observed_state,
    Deployment.observed_model_package_id,
)


def apply_reports(
    session: Session, *, environment_id: str, reports: Sequence[Report], actor: str
) -> ReportOutcome:
    """Record a batch of agent reports in one transaction (one event per report).

    The hot path of a busy agent: rows are read and written with bulk statements
    (one SELECT, one multi-row INSERT of events, one bulk UPDATE), not object by object.
    """
    environments.touch(session, environment_id=environment_id)
    ids = {report.deployment_id for report in reports}
    rows = session.execute(
        select(*_SNAPSHOT).where(Deployment.id.in_(ids), Deployment.environment_id == environment_id)
    )
    current: dict[str, dict[str, Any]] = {row.id: dict(row._mapping) for row in rows}
    # ids that belong to another environment: the report is treated as for an unknown
    # deployment, and its event does not name the other environment's deployment
    foreign = set(
        session.scalars(select(Deployment.id).where(Deployment.id.in_(ids - current.keys())))
        if ids - current.keys()
        else ()
    )
    changes: dict[str, dict[str, Any]] = {}
    removed: list[str] = []
    event_rows: list[dict[str, Any]] = []
    outcome = ReportOutcome()
    now = utcnow()
    for index, report in enumerate(reports):
        snapshot = current.get(report.deployment_id)
        status = report.status.value if report.status else None
        state = report.state.value if report.state else None
        details: dict[str, Any] = {
            "action": report.action,
            "phase": report.phase.value,
            "state": state,
            "duration": report.duration,
            "attempt": report.attempt,
            **({"data": report.data} if report.data else {}),
        }
        common: dict[str, Any] = {
            "type": report.phase.event_type,
            "actor": actor,
            "environment_id": environment_id,
            "deployment_id": report.deployment_id,
            "generation": report.generation,
            "status": status,
            "message": report.message,
            "timestamp": now,
        }
        if snapshot is None:
            outcome.unknown.append(report.deployment_id)
            unknown = {**details, "unknownDeployment": True}
            if report.deployment_id in foreign:
                common["deployment_id"] = None
                unknown["reportedDeploymentId"] = report.deployment_id
            event_rows.append(events.row(**common, data=unknown))
            continue
        desired = lifecycle.Desired(
            generation=snapshot["generation"],
            state=snapshot["desired_state"],
            model_package_id=snapshot["model_package_id"],
            relaunch_generation=snapshot["relaunch_generation"],
            force=snapshot["force"],
        )
        verdict = lifecycle.judge_report(
            current=desired,
            observed_generation=snapshot["observed_generation"],
            report_generation=report.generation,
            phase=report.phase,
            state=report.state,
            field=f"reports[{index}].generation",
        )
        changed = (status is not None and snapshot["observed_status"] != status) or (
            state is not None and snapshot["observed_state"] != state
        )
        if report.phase is not ReportPhase.OBSERVED or changed or verdict is not Verdict.APPLY:
            stale = {"stale": True} if verdict is Verdict.STALE else {}
            event_rows.append(events.row(**common, data={**details, **stale}))
        outcome.accepted += 1
        if verdict is Verdict.STALE:
            outcome.stale.append(report.deployment_id)
        elif verdict is Verdict.REMOVE:
            outcome.removed.append(report.deployment_id)
            removed.append(report.deployment_id)
            event_rows.append(
                events.row(
                    **{
                        **common,
                        "type": EventType.DEPLOYMENT_REMOVED,
                        "message": "removal confirmed by the agent"
                        + (" (force delete)" if desired.force else ""),
                    },
                    data=None,
                )
            )
            del current[report.deployment_id]
            changes.pop(report.deployment_id, None)
        else:
            claimed = (report.data or {}).get(DataKey.CURRENT_MODEL_ID)
            recognised = not isinstance(claimed, str) or _assigned(session, snapshot, claimed)
            if not recognised:
                log.warning(
                    "deployment %s: the agent reports model %r, which the service never assigned to it;"
                    " ignored",
                    report.deployment_id,
                    claimed,
                )
            update_values = _observation(snapshot, report, now, model_recognised=recognised)
            snapshot.update(update_values)
            changes.setdefault(report.deployment_id, {}).update(update_values)
    events.append_many(session, event_rows)
    if changes:
        session.execute(sql_update(Deployment), [{"id": key, **values} for key, values in changes.items()])
    if removed:
        session.execute(delete(Deployment).where(Deployment.id.in_(removed)))
    return outcome


def _assigned(session: Session, snapshot: dict[str, Any], package_id: str) -> bool:
    """Whether the service ever asked this deployment to run the package.

    What an agent may download follows from the observed model (``used_by_environment``),
    so an agent's claim of what runs is believed only for packages the service itself
    recorded for the deployment: desired now, observed before, or in its desired history.
    """
    if package_id in (snapshot["model_package_id"], snapshot["observed_model_package_id"]):
        return True
    history = session.scalars(
        select(Event.data).where(
            Event.deployment_id == snapshot["id"], Event.type == EventType.DESIRED_CHANGED
        )
    )
    return any(((doc or {}).get("desired") or {}).get("modelPackageId") == package_id for doc in history)


def _observation(
    snapshot: dict[str, Any], report: Report, now: Any, *, model_recognised: bool = True
) -> dict[str, Any]:
    """The observed-state columns a report sets (pure: the snapshot is not touched).

    ``model_recognised`` is false when the report names a current model the service never
    assigned to the deployment: the claim is then ignored.
    """
    values: dict[str, Any] = {
        "observed_generation": report.generation,
        "observed_message": report.message,
        "observed_action": report.action,
        "observed_phase": report.phase.value,
        "observed_duration": report.duration,
        "observed_updated_at": now,
    }
    if report.status is not None:
        values["observed_status"] = report.status.value
    if report.state is not None:
        values["observed_state"] = report.state.value
    data = report.data or {}
    url = data.get(DataKey.PREDICTION_URL)
    if isinstance(url, str):
        values["prediction_url"] = url
    current_model = data.get(DataKey.CURRENT_MODEL_ID)
    if isinstance(current_model, str):
        if model_recognised:
            values["observed_model_package_id"] = current_model
    elif (
        report.phase is ReportPhase.FINISHED
        and report.status is ActionStatus.OK
        and report.generation == snapshot["generation"]
        and report.state is DeploymentState.READY
    ):
        values["observed_model_package_id"] = snapshot["model_package_id"]
    if report.state is DeploymentState.STOPPED:
        values["prediction_url"] = None
    return values
