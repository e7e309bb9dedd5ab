"""Pure rules of the deployment lifecycle: what a user command does to the desired spec, and
what an agent's report does to the observed state. No I/O here; the services apply the verdicts."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from shipmate.common.vocabulary import DesiredState, ReportPhase
from shipmate.plugin.status import DeploymentState
from shipmate.server.errors import Conflict, InvalidInput


class Command(enum.StrEnum):
    REPLACE_MODEL = "replace_model"
    DEACTIVATE = "deactivate"
    ACTIVATE = "activate"
    RELAUNCH = "relaunch"
    DELETE = "delete"
    FORCE_DELETE = "force_delete"


@dataclass(frozen=True)
class Desired:
    """A deployment's desired spec and the generation it was set at."""

    generation: int
    state: DesiredState
    model_package_id: str
    relaunch_generation: int = 0
    force: bool = False


def apply_command(
    current: Desired, command: Command, *, model_package_id: str | None = None
) -> Desired | None:
    """The desired spec after ``command``: one generation newer, or ``None`` when nothing would change.

    Raises ``Conflict`` when the command contradicts the current spec.
    """
    nxt = current.generation + 1
    if current.state is DesiredState.DELETED:
        if command is Command.FORCE_DELETE and not current.force:
            return replace(current, generation=nxt, force=True)
        if command in (Command.DELETE, Command.FORCE_DELETE):
            return None
        raise Conflict(
            f"the deployment is being deleted; it cannot {command.value.replace('_', ' ')}",
            field="desired.state",
        )
    match command:
        case Command.REPLACE_MODEL:
            if model_package_id is None:
                raise InvalidInput("a model package id is required", field="modelPackageId")
            if model_package_id == current.model_package_id:
                return None
            return replace(current, generation=nxt, model_package_id=model_package_id)
        case Command.DEACTIVATE:
            if current.state is DesiredState.STOPPED:
                return None
            return replace(current, generation=nxt, state=DesiredState.STOPPED)
        case Command.ACTIVATE:
            if current.state is DesiredState.RUNNING:
                return None
            return replace(current, generation=nxt, state=DesiredState.RUNNING)
        case Command.RELAUNCH:
            if current.state is not DesiredState.RUNNING:
                raise Conflict(
                    "the deployment is stopped; activate it instead of relaunching", field="desired.state"
                )
            return replace(current, generation=nxt, relaunch_generation=nxt)
        case Command.DELETE:
            return replace(current, generation=nxt, state=DesiredState.DELETED)
        case Command.FORCE_DELETE:
            return replace(current, generation=nxt, state=DesiredState.DELETED, force=True)
    raise AssertionError(command)  # pragma: no cover


class Verdict(enum.StrEnum):
    APPLY = "apply"  # update the observed state
    STALE = "stale"  # older than what is known: log it only
    REMOVE = "remove"  # the agent confirmed removal: drop the record


def judge_report(
    *,
    current: Desired,
    observed_generation: int,
    report_generation: int,
    phase: ReportPhase,
    state: DeploymentState | None,
    field: str = "generation",
) -> Verdict:
    """How one report bears on a deployment. Reports for an old generation never overwrite a newer one."""
    if report_generation > current.generation:
        raise InvalidInput(
            f"generation {report_generation} is newer than the deployment's generation {current.generation}",
            field=field,
        )
    if report_generation < observed_generation:
        return Verdict.STALE
    if (
        phase is ReportPhase.FINISHED
        and report_generation == current.generation
        and current.state is DesiredState.DELETED
        and (current.force or state is DeploymentState.STOPPED)
    ):
        return Verdict.REMOVE
    return Verdict.APPLY
