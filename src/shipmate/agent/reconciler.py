"""Decide what to do: desired state, applied state and the plugin's view in; a plan with reasons out.

Pure functions, no I/O and no clock, in the manner of Argo CD's sync planning:
pair the three views of each deployment, compare, and emit at most one next
step with the reason it is needed. The executor carries a step out, records
the outcome, and asks again (level-triggered), so a plan never goes stale.

Truth, in order: what the plugin reports (``Observation``) beats what the agent
remembers applying (``AppliedRecord``); both only inform *how* to reach what the
service wants (``DesiredDeployment``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shipmate.agent.model import (
    ActionKind,
    AppliedRecord,
    AppliedState,
    DesiredDeployment,
    Observation,
    PlannedAction,
    Policy,
)
from shipmate.common.vocabulary import DesiredState
from shipmate.plugin.status import DataKey, DeploymentState

READY = DeploymentState.READY.value
STOPPED = DeploymentState.STOPPED.value


def plan(
    desired: Mapping[str, DesiredDeployment],
    applied: Mapping[str, AppliedRecord],
    observed: Mapping[str, Observation],
    *,
    heal_attempts: Mapping[str, int] | None = None,
    policy: Policy | None = None,
) -> list[PlannedAction]:
    """The next step for every deployment any of the three views knows, in id order."""
    ids = sorted(set(desired) | set(applied) | {k for k, o in observed.items() if o.exists})
    attempts = heal_attempts or {}
    steps = (
        decide(
            i,
            desired.get(i),
            applied.get(i),
            observed.get(i),
            heal_attempts=attempts.get(i, 0),
            policy=policy,
        )
        for i in ids
    )
    return [s for s in steps if s is not None]


def decide(
    deployment_id: str,
    desired: DesiredDeployment | None,
    applied: AppliedRecord | None,
    observed: Observation | None,
    *,
    heal_attempts: int = 0,
    policy: Policy | None = None,
) -> PlannedAction | None:
    """The one next step for one deployment, or None when it has converged."""
    policy = policy or Policy()
    seen = observed or Observation()
    if desired is None:
        return _not_desired(deployment_id, applied, seen, policy)
    if desired.state is DesiredState.RUNNING:
        return _should_run(desired, applied, seen, heal_attempts, policy)
    return _should_not_run(desired, applied, seen)


def _not_desired(
    deployment_id: str, applied: AppliedRecord | None, seen: Observation, policy: Policy
) -> PlannedAction | None:
    we_ran_it = applied is not None and applied.state is AppliedState.RUNNING
    if seen.exists or (seen.exists is None and we_ran_it):
        where = "the plugin runs it" if seen.exists else "the agent started it"
        if policy.stop_unknown_deployments:
            return PlannedAction(
                deployment_id,
                ActionKind.STOP,
                f"{where} but the service does not know it (stopUnknownDeployments is on)",
            )
        return PlannedAction(
            deployment_id,
            ActionKind.REPORT_UNKNOWN,
            f"{where} but the service does not know it; left running (stopUnknownDeployments is off)",
        )
    if applied is not None:
        return PlannedAction(
            deployment_id,
            ActionKind.FORGET,
            "the service no longer lists it and the environment does not run it",
        )
    return None


def _should_not_run(
    desired: DesiredDeployment, applied: AppliedRecord | None, seen: Observation
) -> PlannedAction | None:
    force = desired.state is DesiredState.DELETED and desired.force
    wanted = (
        "force deleted" if force else ("deleted" if desired.state is DesiredState.DELETED else "deactivated")
    )
    current = applied is not None and applied.generation >= desired.generation
    if current and applied is not None and applied.state is AppliedState.FAILED and not force:
        return None  # retries are exhausted for this generation; a new change will try again
    if current and applied is not None and applied.state is AppliedState.STOPPED:
        if seen.exists:
            return _step(
                desired, ActionKind.STOP, f"{wanted}, and stopped before, but the plugin still reports it"
            )
        if _service_lags(desired, applied):
            return _step(
                desired,
                ActionKind.REPORT,
                f"the service has not recorded the stop at generation {applied.generation}",
                report_state=STOPPED,
            )
        return None
    if seen.exists is False and not force:
        return _step(
            desired, ActionKind.REPORT, f"{wanted}; already absent from the environment", report_state=STOPPED
        )
    what = "the plugin reports it" if seen.exists else "it may be running"
    return _step(desired, ActionKind.STOP, f"{wanted} ({what})", force=force)


def _should_run(
    desired: DesiredDeployment,
    applied: AppliedRecord | None,
    seen: Observation,
    heal_attempts: int,
    policy: Policy,
) -> PlannedAction | None:
    model = desired.model_package_id
    we_ran_it = applied is not None and applied.state is AppliedState.RUNNING
    running = seen.exists if seen.exists is not None else we_ran_it
    running_model = (
        seen.model_id
        if seen.exists and seen.model_id
        else (applied.model_package_id if we_ran_it and applied else None)
    )
    current = applied is not None and applied.generation >= desired.generation
    failed_here = current and applied is not None and applied.state is AppliedState.FAILED
    relaunch_wanted = desired.relaunch_generation > (applied.relaunch_generation if applied else 0)

    if failed_here:
        if running and running_model == model and seen.healthy:
            return _step(desired, ActionKind.ADOPT, f"the plugin now reports model {model} healthy")
        return None  # retries are exhausted for this generation; a new change will try again

    if not running:
        if we_ran_it and seen.exists is False and not relaunch_wanted:
            return _self_heal(desired, seen, "missing", heal_attempts, policy)
        return _step(desired, ActionKind.START, _start_reason(desired, applied, relaunch_wanted))

    if running_model is not None and running_model != model:
        return _step(
            desired, ActionKind.REPLACE_MODEL, f"model package changed from {running_model} to {model}"
        )
    if seen.healthy is False and we_ran_it and not relaunch_wanted:
        return _self_heal(desired, seen, "errored", heal_attempts, policy)
    if relaunch_wanted:
        return _step(
            desired, ActionKind.RELAUNCH, f"relaunch requested (generation {desired.relaunch_generation})"
        )
    if (
        applied is None
        or not we_ran_it
        or applied.generation < desired.generation
        or applied.model_package_id != model
    ):
        if applied is None or not we_ran_it:
            reason = f"already runs model {model} in the environment; nothing to start"
        else:
            reason = f"generation {desired.generation} needs no change in the environment"
        return _step(desired, ActionKind.ADOPT, reason)
    if _service_lags(desired, applied):
        return _step(
            desired,
            ActionKind.REPORT,
            f"the service has not recorded generation {applied.generation} as ready",
            report_state=applied.reported_state or READY,
        )
    return None


def _start_reason(desired: DesiredDeployment, applied: AppliedRecord | None, relaunch_wanted: bool) -> str:
    model = desired.model_package_id
    if relaunch_wanted:
        return (
            f"relaunch requested (generation {desired.relaunch_generation}) and it is not running; "
            f"starting model {model}"
        )
    if applied is None:
        return f"new deployment; starting model {model}"
    if applied.state is AppliedState.STOPPED:
        return f"activated; starting model {model}"
    return f"not running in the environment; starting model {model}"


def _self_heal(
    desired: DesiredDeployment, seen: Observation, problem: str, attempts: int, policy: Policy
) -> PlannedAction:
    detail = f": {seen.message}" if seen.message else ""
    if attempts >= policy.max_self_heal_attempts:
        return _step(
            desired,
            ActionKind.NOTICE,
            f"should be ready but the plugin reports it {problem}{detail}; not relaunching again "
            f"after {attempts} self-healing attempts",
        )
    return _step(
        desired,
        ActionKind.RELAUNCH,
        f"should be ready but the plugin reports it {problem}{detail} "
        f"(self-healing attempt {attempts + 1} of {policy.max_self_heal_attempts})",
        self_heal=True,
    )


def _service_lags(desired: DesiredDeployment, applied: AppliedRecord) -> bool:
    seen_by_service = desired.observed
    if seen_by_service.generation < applied.generation:
        return True
    return applied.reported_state is not None and seen_by_service.state != applied.reported_state


def _step(
    desired: DesiredDeployment,
    kind: ActionKind,
    reason: str,
    *,
    force: bool = False,
    report_state: str | None = None,
    self_heal: bool = False,
) -> PlannedAction:
    return PlannedAction(
        desired.id,
        kind,
        reason,
        generation=desired.generation,
        desired=desired,
        force=force,
        report_state=report_state,
        self_heal=self_heal,
    )


# -- periodic status -----------------------------------------------------------------


def plan_status_checks(
    desired: Mapping[str, DesiredDeployment],
    applied: Mapping[str, AppliedRecord],
    covered: Iterable[str] = (),
) -> list[PlannedAction]:
    """``deployment_status`` for every running deployment that ``pe_status`` did not already cover."""
    skip = set(covered)
    steps = []
    for deployment_id in sorted(desired):
        spec = desired[deployment_id]
        record = applied.get(deployment_id)
        if deployment_id in skip or spec.state is not DesiredState.RUNNING:
            continue
        if record is None or record.state is not AppliedState.RUNNING:
            continue
        steps.append(_step(spec, ActionKind.STATUS, "periodic health check"))
    return steps


# -- reading what the plugin says ------------------------------------------------------


def observation_from_status(raw: Mapping[str, Any] | None) -> Observation:
    """Turn one ``deployment_status`` result (or a nested ``deploymentsStatus`` entry) into an observation.

    ``unknown``/``stopped`` and ``failing``/``errored`` with a "not found" style
    message mean absent; ``failing`` otherwise means present but unhealthy.
    """
    if not raw:
        return Observation()
    status = str(raw.get("status") or "").lower()
    state = str(raw.get("state") or "").lower()
    message = raw.get("msg")
    data = raw.get("data") if isinstance(raw.get("data"), Mapping) else {}
    model_id = _model_id(raw, data)
    if state == STOPPED:
        return Observation(exists=False, model_id=None, healthy=False, message=_text(message))
    if status in ("passing", "warning"):
        return Observation(exists=True, model_id=model_id, healthy=True, message=_text(message))
    if status == "failing" or state == "errored":
        return Observation(exists=None, model_id=model_id, healthy=False, message=_text(message))
    return Observation(exists=None, model_id=model_id, healthy=None, message=_text(message))


def observations_from_list(data: Mapping[str, Any] | None) -> dict[str, Observation]:
    """Presence (and model, when given) of every deployment ``deployment_list`` returned."""
    found: dict[str, Observation] = {}
    for deployment_id, entry in (data or {}).items():
        inner = entry if isinstance(entry, Mapping) else {}
        nested = inner.get("data") if isinstance(inner.get("data"), Mapping) else {}
        found[str(deployment_id)] = Observation(exists=True, model_id=_model_id(inner, nested), healthy=None)
    return found


def _model_id(raw: Mapping[str, Any], data: Mapping[str, Any] | None) -> str | None:
    for source in (data or {}, raw):
        for key in (DataKey.CURRENT_MODEL_ID, "model_id", "modelId"):  # plus pe_status spellings
            value = source.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def _text(value: object) -> str | None:
    return None if value is None else str(value)
