"""Carry one planned step out: fetch the model, call the plugin, apply the outcome, report.

The runtime decides which step comes next (``reconciler.decide``) and when; this
module does the I/O of one step and hands the plugin's result to the pure
``outcome.conclude``, then applies what it says in the order that makes a crash
safe: persist what was applied, then report it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shipmate.agent.artifacts import ArtifactCache, ArtifactError
from shipmate.agent.config import AgentSettings
from shipmate.agent.desired import DesiredView
from shipmate.agent.metrics import AgentMetrics
from shipmate.agent.model import (
    ActionKind,
    AppliedRecord,
    DesiredDeployment,
    Observation,
    PlannedAction,
    ServiceObserved,
)
from shipmate.agent.outcome import (
    Belief,
    Outcome,
    RetryPolicy,
    adopted,
    conclude,
    reported_only,
    signature,
    transitional,
)
from shipmate.agent.ports import (
    ActionRequest,
    ControlPlane,
    ControlPlaneRejected,
    ControlPlaneUnavailable,
    PluginDriver,
    Report,
)
from shipmate.agent.reconciler import observation_from_status
from shipmate.agent.reporter import Reporter
from shipmate.agent.store import AppliedStore
from shipmate.common.vocabulary import EventType, ReportPhase
from shipmate.plugin.actions import Action
from shipmate.plugin.info import DeploymentInfo
from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DeploymentState

log = logging.getLogger(__name__)

_NEEDS_ARTIFACT = frozenset({ActionKind.START, ActionKind.REPLACE_MODEL, ActionKind.RELAUNCH})


@dataclass(frozen=True, slots=True)
class PendingRetry:
    """A step to try again: its next attempt's number, not before ``not_before`` (monotonic seconds)."""

    attempt: int
    not_before: float
    signature: tuple[Any, ...]


@dataclass
class Memory:
    """The agent's working memory, shared by the runtime and the executor under ``lock``."""

    desired: DesiredView = field(default_factory=DesiredView)
    observed: dict[str, Observation] = field(default_factory=dict)
    heal: dict[str, int] = field(default_factory=dict)
    """Deployment id -> self-healing relaunches since it was last seen healthy."""
    retries: dict[str, PendingRetry] = field(default_factory=dict)
    told: set[tuple[str, str]] = field(default_factory=set)
    """(deployment id, kind:generation) of informational steps already said once."""
    changed_at: dict[str, float] = field(default_factory=dict)
    """Deployment id -> when the service changed it (for the change-to-action metric)."""
    lock: threading.RLock = field(default_factory=threading.RLock)


class Say(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Log lines prefixed with the deployment id."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['deployment'] if self.extra else '-'}] {msg}", kwargs


def say_for(deployment_id: str) -> Say:
    return Say(log, {"deployment": deployment_id})


class Executor:
    """Carries steps out for one agent; safe to call from several worker threads (one per deployment)."""

    def __init__(
        self,
        settings: AgentSettings,
        service: ControlPlane,
        memory: Memory,
        store: AppliedStore,
        artifacts: ArtifactCache,
        reporter: Reporter,
        metrics: AgentMetrics,
        stopping: Callable[[], bool],
        look_again: Callable[[str], None],
    ) -> None:
        """``look_again(deployment_id)`` queues a deployment for another decision (the runtime's queue)."""
        self.settings = settings
        self.service = service
        self.memory = memory
        self.store = store
        self.artifacts = artifacts
        self.reporter = reporter
        self.metrics = metrics
        self.driver: PluginDriver | None = None
        self._stopping = stopping
        self._look_again = look_again
        self.retry_policy = RetryPolicy(settings.retry.max_attempts, settings.retry.backoff)

    # -- plugin calls -------------------------------------------------------------------------

    def run(
        self,
        action: Action,
        deployment_info: DeploymentInfo | None = None,
        pe_deployments: tuple[DeploymentInfo, ...] = (),
    ) -> ActionStatusInfo:
        """Run one plugin action with its configured timeout, and count it."""
        assert self.driver is not None
        request = ActionRequest(
            action,
            deployment_info=deployment_info,
            pe_deployments=pe_deployments,
            timeout=self.settings.timeouts.for_action(action),
        )
        result = self.driver.run(request)
        self.metrics.actions.labels(action.value, result.status.value).inc()
        return result

    # -- one step ---------------------------------------------------------------------------------

    def wait_before(self, step: PlannedAction) -> float | None:
        """Seconds before ``step`` may run (a retry not yet due), or None to run it now."""
        with self.memory.lock:
            retry = self.memory.retries.get(step.deployment_id)
            if retry is None:
                return None
            if retry.signature != signature(step):
                del self.memory.retries[step.deployment_id]
                return None
            remaining = retry.not_before - time.monotonic()
        return remaining if remaining > 0 else None

    def carry_out(self, step: PlannedAction) -> float | None:
        """Carry one step out. Returns a delay when it should be tried again later."""
        say = say_for(step.deployment_id)
        kind = step.kind
        if kind is ActionKind.FORGET:
            say.info("forgetting: %s", step.reason)
            with self.memory.lock:
                self.store.delete(step.deployment_id)
                self.memory.observed.pop(step.deployment_id, None)
                self.memory.heal.pop(step.deployment_id, None)
            return None
        if kind is ActionKind.REPORT_UNKNOWN:
            self._tell_once(step, EventType.AGENT_UNKNOWN_DEPLOYMENT)
            return None
        if kind is ActionKind.NOTICE:
            if self._tell_once(step, None):
                say.warning("%s", step.reason)
            return None
        if kind is ActionKind.ADOPT:
            self._apply(step, adopted(step), say)
            return None
        if kind is ActionKind.REPORT:
            self._apply(step, reported_only(step, self.store.get(step.deployment_id)), say)
            return None
        return self._plugin_step(step, say)

    def check_status(self, spec: DesiredDeployment) -> None:
        """``deployment_status`` for one deployment (the periodic health check)."""
        step = PlannedAction(spec.id, ActionKind.STATUS, "periodic health check", spec.generation, spec)
        self._plugin_step(step, say_for(spec.id))

    def _plugin_step(self, step: PlannedAction, say: Say) -> float | None:
        action = step.kind.plugin_action
        assert action is not None
        with self.memory.lock:
            retry = self.memory.retries.get(step.deployment_id)
            attempt = retry.attempt if retry is not None else 1
            changed_at = self.memory.changed_at.pop(step.deployment_id, None)
            if step.self_heal:
                self.memory.heal[step.deployment_id] = self.memory.heal.get(step.deployment_id, 0) + 1
        if changed_at is not None:
            self.metrics.change_to_action.observe(max(0.0, time.time() - changed_at))
        if step.kind is not ActionKind.STATUS:
            say.info("%s (attempt %d): %s", action, attempt, step.reason)
            if step.desired is not None:
                self.reporter.submit(
                    Report(
                        step.deployment_id,
                        step.generation,
                        action,
                        ReportPhase.STARTED,
                        state=transitional(step.kind),
                        message=step.reason,
                        attempt=attempt,
                    )
                )
        previous = self.store.get(step.deployment_id)
        try:
            info = self.deployment_info(step, previous, with_artifact=step.kind in _NEEDS_ARTIFACT)
        except (ArtifactError, ControlPlaneUnavailable, ControlPlaneRejected, OSError) as exc:
            message = str(exc) if isinstance(exc, ArtifactError) else f"cannot fetch the model package: {exc}"
            result = ActionStatusInfo(
                ActionStatus.ERROR, msg=message, state=DeploymentState.ERRORED, duration=0.0
            )
            self.metrics.actions.labels(action.value, result.status.value).inc()
        else:
            started = time.perf_counter()
            result = self.run(action, info)
            self.metrics.action_duration.labels(action.value).observe(time.perf_counter() - started)
        if step.kind is ActionKind.STATUS:
            raw = result.to_dict()
            self.record_observation(step.deployment_id, observation_from_status(raw), raw)
            return None
        policy = self.retry_policy.exhausted() if self._stopping() else self.retry_policy
        outcome = conclude(step, result, previous, attempt, policy)
        if outcome.retry is not None:
            self.metrics.retries.labels(action.value).inc()
        self._apply(step, outcome, say)
        return outcome.retry.delay if outcome.retry is not None else None

    def _apply(self, step: PlannedAction, outcome: Outcome, say: Say) -> None:
        """Make the outcome true: remember, persist, then report (the order that makes a crash safe)."""
        deployment_id = step.deployment_id
        memory = self.memory
        with memory.lock:
            if outcome.retry is not None:
                retry = outcome.retry
                memory.retries[deployment_id] = PendingRetry(
                    retry.attempt, time.monotonic() + retry.delay, retry.signature
                )
            else:
                memory.retries.pop(deployment_id, None)
            if outcome.forget_record:
                self.store.delete(deployment_id)
            if outcome.belief is Belief.UNKNOWN:
                memory.observed.pop(deployment_id, None)
            elif outcome.belief is Belief.ABSENT:
                memory.observed[deployment_id] = Observation(exists=False)
            elif outcome.belief is Belief.RUNNING and step.desired is not None:
                memory.observed[deployment_id] = Observation(
                    exists=True, model_id=step.desired.model_package_id, healthy=True
                )
        if outcome.log_message:
            say.log(outcome.log_level, "%s", outcome.log_message)
        if outcome.record is not None:
            self.store.put(outcome.record)
            report = outcome.report
            status = report.status.value if report is not None and report.status is not None else None
            with memory.lock:
                memory.desired.note_reported(
                    deployment_id,
                    outcome.record.generation,
                    ServiceObserved(outcome.record.generation, outcome.record.reported_state, status),
                )
        if outcome.report is not None:
            self.reporter.submit(outcome.report)

    def _tell_once(self, step: PlannedAction, event_type: EventType | None) -> bool:
        """Say an informational step once per deployment and generation (resyncs re-plan it).

        With ``event_type`` it is posted as that agent event, otherwise reported as an observation.
        """
        key = (step.deployment_id, f"{step.kind.value}:{step.generation}")
        with self.memory.lock:
            if key in self.memory.told:
                return False
            self.memory.told.add(key)
        if event_type is not None:
            try:
                self.service.post_event(
                    self.settings.environment_id,
                    event_type,
                    step.reason,
                    deployment_id=step.deployment_id,
                    data={},
                )
            except (ControlPlaneUnavailable, ControlPlaneRejected) as exc:
                log.warning("could not post %s for %s: %s", event_type, step.deployment_id, exc)
                with self.memory.lock:
                    self.memory.told.discard(key)
        else:
            self.reporter.submit(
                Report(
                    step.deployment_id,
                    step.generation,
                    Action.DEPLOYMENT_RELAUNCH,
                    ReportPhase.OBSERVED,
                    status=ActionStatus.ERROR,
                    state=DeploymentState.ERRORED,
                    message=step.reason,
                )
            )
        return True

    # -- what the plugin sees and says ------------------------------------------------------

    def deployment_info(
        self, step: PlannedAction, previous: AppliedRecord | None, with_artifact: bool
    ) -> DeploymentInfo:
        """The contract's ``deploymentInfo`` for a step (downloading its model when needed)."""
        spec = step.desired
        if spec is None:
            with self.memory.lock:
                seen = self.memory.observed.get(step.deployment_id)
            return DeploymentInfo(
                step.deployment_id, seen.model_id if seen is not None and seen.model_id else "unknown"
            )
        info = describe(spec)
        if with_artifact:
            info.model_artifact = str(self.artifacts.fetch(spec.model_package))
        if step.kind is ActionKind.REPLACE_MODEL:
            info.new_model_id = info.model_id
            if previous is not None and previous.model_package_id:
                info.model_id = previous.model_package_id
        return info

    def record_observation(self, deployment_id: str, seen: Observation, raw: Mapping[str, Any]) -> None:
        """Remember what the plugin said; report it when health or presence changed; look again if bad."""
        memory = self.memory
        with memory.lock:
            before = memory.observed.get(deployment_id)
            memory.observed[deployment_id] = seen
            if seen.healthy:
                memory.heal.pop(deployment_id, None)
            spec = memory.desired.get(deployment_id)
        changed = before is None or before.healthy != seen.healthy or before.exists != seen.exists
        if changed and spec is not None:
            data = raw.get("data")
            self.reporter.submit(
                Report(
                    deployment_id,
                    spec.generation,
                    Action.DEPLOYMENT_STATUS,
                    ReportPhase.OBSERVED,
                    status=_status(raw.get("status")),
                    state=_state(raw.get("state")),
                    message=seen.message,
                    data=dict(data) if isinstance(data, Mapping) else {},
                )
            )
        if seen.healthy is False or seen.exists is False:
            self._look_again(deployment_id)


def describe(spec: DesiredDeployment) -> DeploymentInfo:
    """The plugin's view of a desired deployment (no model artifact yet)."""
    return DeploymentInfo(
        spec.id,
        spec.model_package_id,
        name=spec.name or spec.id,
        description=spec.description,
        model_name=spec.model_package.name or None,
        key_value_config=dict(spec.key_value_config),
    )


def _status(value: object) -> ActionStatus:
    """A plugin's status word, read once here; anything unreadable is ``unknown``."""
    try:
        return ActionStatus.parse(value)
    except ValueError:
        return ActionStatus.UNKNOWN


def _state(value: object) -> DeploymentState | None:
    if value is None:
        return None
    try:
        return DeploymentState.parse(value)
    except ValueError:
        return None
