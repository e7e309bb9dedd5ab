"""What one carried-out step means: pure functions from a plugin's result to the agent's next move.

The executor runs a step and hands the result here; ``conclude`` says whether to
try again (and when), what was applied (the record to persist), what the agent
now believes the environment runs, and what to report. No I/O and no clock, so
the rules are a table (``tests/agent/test_outcome.py``), like the reconciler's.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, replace
from typing import Any

from shipmate.agent.model import (
    ActionKind,
    AppliedRecord,
    AppliedState,
    PlannedAction,
)
from shipmate.agent.ports import Report
from shipmate.common.backoff import Backoff
from shipmate.common.vocabulary import ReportPhase
from shipmate.plugin.actions import Action
from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DataKey, DeploymentState


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how soon a failing action is tried again (from the agent's ``retry`` settings)."""

    max_attempts: int
    backoff: Backoff

    def exhausted(self) -> RetryPolicy:
        """The same policy with no attempt left: what applies while the agent is stopping."""
        return replace(self, max_attempts=0)


class Belief(enum.Enum):
    """What the agent should now believe about the deployment in the environment."""

    KEEP = "keep"
    """Nothing new was learnt."""
    UNKNOWN = "unknown"
    """It may or may not run: forget what was observed, so the next decision asks the plugin."""
    ABSENT = "absent"
    RUNNING = "running"
    """It runs the desired model, healthy."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Try the same step again, not before ``delay`` seconds."""

    attempt: int
    """The number of the next attempt."""
    delay: float
    signature: tuple[Any, ...]
    """What the retried step must still be (see ``signature``); a different plan drops the retry."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The agent's next move after one step."""

    report: Report | None = None
    record: AppliedRecord | None = None
    """What was applied, to persist before the report is sent."""
    retry: Retry | None = None
    belief: Belief = Belief.KEEP
    forget_record: bool = False
    """The local record goes: an unknown deployment was stopped by policy."""
    log_level: int = logging.INFO
    log_message: str = ""
    """What to log about it; nothing when empty."""


def signature(step: PlannedAction) -> tuple[Any, ...]:
    """A retry belongs to this kind of step, for this generation and model package."""
    return (step.kind, step.generation, step.desired.model_package_id if step.desired else None)


def transitional(kind: ActionKind) -> DeploymentState | None:
    """The state to report while a step of ``kind`` is under way."""
    return _TRANSITIONAL.get(kind)


_TRANSITIONAL = {
    ActionKind.START: DeploymentState.LAUNCHING,
    ActionKind.RELAUNCH: DeploymentState.LAUNCHING,
    ActionKind.REPLACE_MODEL: DeploymentState.REPLACING_MODEL,
    ActionKind.STOP: DeploymentState.SHUTTING_DOWN,
}


def conclude(
    step: PlannedAction,
    result: ActionStatusInfo,
    previous: AppliedRecord | None,
    attempt: int,
    policy: RetryPolicy,
) -> Outcome:
    """The outcome of attempt ``attempt`` of a plugin step (start, replace, stop, relaunch).

    A failure is retried with the policy's back-off until ``max_attempts``, unless the step is
    a force delete or the plugin stated its own intent in ``result.retry_after`` (a delay to use,
    or ``False`` for no further attempt). ``previous`` is the record before the step.
    """
    action = step.kind.plugin_action
    assert action is not None, step
    failed = result.status is ActionStatus.ERROR
    plugin_refuses = result.retry_after is False
    if failed and not step.force and attempt < policy.max_attempts and not plugin_refuses:
        asked = result.retry_after
        delay = float(asked) if isinstance(asked, int | float) else policy.backoff.delay(attempt)
        said = "the plugin asked to retry in" if asked is not None else "retrying in"
        message = f"attempt {attempt} of {policy.max_attempts} failed: {result.msg}; {said} {delay:.1f}s"
        report = None
        if step.desired is not None:
            report = Report(
                step.deployment_id,
                step.generation,
                action,
                ReportPhase.RETRYING,
                status=result.status,
                state=transitional(step.kind),
                duration=result.duration,
                message=message,
                attempt=attempt,
                data=dict(result.data or {}),
            )
        return Outcome(
            report=report,
            retry=Retry(attempt + 1, delay, signature(step)),
            log_level=logging.WARNING,
            log_message=f"{action} failed (attempt {attempt} of {policy.max_attempts}): {result.msg}; "
            f"{said} {delay:.1f}s",
        )
    if step.desired is None:  # an unknown deployment stopped by policy
        if failed:
            return Outcome(log_level=logging.ERROR, log_message=f"{action} failed: {result.msg}")
        return Outcome(
            belief=Belief.ABSENT,
            forget_record=True,
            log_message="stopped a deployment the service does not know",
        )
    record, belief = _applied(step, result, previous)
    if failed:
        why = " (the plugin asked not to retry)" if plugin_refuses and not step.force else ""
        level, text = logging.ERROR, f"{action} failed after {attempt} attempt(s){why}: {result.msg}"
    else:
        level, text = logging.INFO, f"{action}: {result.status.value} {result.msg or ''}"
    return Outcome(
        report=finished(step, record, action, result, attempt),
        record=record,
        belief=belief,
        log_level=level,
        log_message=text,
    )


def _applied(
    step: PlannedAction, result: ActionStatusInfo, previous: AppliedRecord | None
) -> tuple[AppliedRecord, Belief]:
    """What was applied after the step's last attempt, and what the environment now runs."""
    spec = step.desired
    assert spec is not None
    stopping = step.kind is ActionKind.STOP
    state = result.state or (DeploymentState.STOPPED if stopping else DeploymentState.READY)
    if result.status is ActionStatus.ERROR and not step.force:
        still_old = bool((result.data or {}).get(DataKey.OLD_MODEL_IN_USE))
        old_model = previous.model_package_id if previous is not None else None
        record = AppliedRecord(
            spec.id,
            spec.generation,
            AppliedState.FAILED,
            old_model if still_old else None,
            relaunch_generation=spec.relaunch_generation,
            message=result.msg,
            reported_state=state.value,
        )
        return record, Belief.KEEP if still_old else Belief.UNKNOWN
    record = AppliedRecord(
        spec.id,
        spec.generation,
        AppliedState.STOPPED if stopping else AppliedState.RUNNING,
        None if stopping else spec.model_package_id,
        relaunch_generation=spec.relaunch_generation,
        message=result.msg,
        reported_state=DeploymentState.STOPPED.value if stopping else state.value,
    )
    return record, Belief.ABSENT if stopping else Belief.RUNNING


def adopted(step: PlannedAction) -> Outcome:
    """The plugin already runs the desired model: record it as applied and report it ready."""
    spec = step.desired
    assert spec is not None
    record = AppliedRecord(
        spec.id,
        spec.generation,
        AppliedState.RUNNING,
        spec.model_package_id,
        relaunch_generation=spec.relaunch_generation,
        message=step.reason,
        reported_state=DeploymentState.READY.value,
    )
    result = ActionStatusInfo(
        ActionStatus.OK, msg=step.reason, state=DeploymentState.READY, data={"adopted": True}
    )
    return Outcome(
        report=finished(step, record, Action.DEPLOYMENT_START, result, 1),
        record=record,
    )


def reported_only(step: PlannedAction, current: AppliedRecord | None) -> Outcome:
    """Nothing to do in the environment; the service's record lags: report what was applied."""
    spec = step.desired
    assert spec is not None
    state = DeploymentState.parse(step.report_state or DeploymentState.READY.value)
    if (
        current is not None
        and current.generation >= spec.generation
        and current.state is not AppliedState.FAILED
    ):
        record = replace(current, reported_state=state.value)
    else:
        running = state is DeploymentState.READY
        record = AppliedRecord(
            spec.id,
            spec.generation,
            AppliedState.RUNNING if running else AppliedState.STOPPED,
            spec.model_package_id if running else None,
            relaunch_generation=spec.relaunch_generation,
            message=step.reason,
            reported_state=state.value,
        )
    action = Action.DEPLOYMENT_STOP if state is DeploymentState.STOPPED else Action.DEPLOYMENT_START
    result = ActionStatusInfo(ActionStatus.OK, msg=step.reason, state=state)
    return Outcome(
        report=finished(step, record, action, result, 1),
        record=record,
    )


def finished(
    step: PlannedAction, record: AppliedRecord, action: Action, result: ActionStatusInfo, attempt: int
) -> Report:
    """The ``finished`` report of a step, carrying the reason it was planned."""
    data = dict(result.data or {})
    data.setdefault("reason", step.reason)
    return Report(
        record.deployment_id,
        record.generation,
        action,
        ReportPhase.FINISHED,
        status=result.status,
        state=DeploymentState.parse(record.reported_state) if record.reported_state else None,
        message=result.msg,
        duration=result.duration,
        attempt=attempt,
        data=data,
    )
