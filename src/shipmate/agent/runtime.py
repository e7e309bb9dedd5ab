"""The agent's loop: follow the service, reconcile each deployment, carry the steps out, report.

    start:   environment -> plugin_start -> deployment_list -> desired state + cursor
    follow:  change feed (long poll) -> desired[id] -> queue(id)        periodic: resync, pe_status, status
    work:    queue(id) -> decide(desired, applied, observed) -> act -> record -> report -> decide again
    stop:    SIGTERM -> no new actions -> in-flight ones finish or time out -> plugin_stop -> exit 0

The decisions are the reconciler's (pure); this module only does I/O around them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shipmate.agent.artifacts import ArtifactCache, ArtifactError
from shipmate.agent.config import AgentSettings
from shipmate.agent.metrics import AgentMetrics
from shipmate.agent.model import (
    ActionKind,
    AppliedRecord,
    AppliedState,
    DesiredDeployment,
    DesiredState,
    Observation,
    PlannedAction,
    Policy,
    ServiceObserved,
)
from shipmate.agent.ports import (
    ActionRequest,
    Change,
    ControlPlane,
    ControlPlaneRejected,
    ControlPlaneUnavailable,
    EnvironmentDescription,
    PluginDriver,
    Report,
    ReportOutcome,
    ReportPhase,
)
from shipmate.agent.reconciler import (
    decide,
    observation_from_status,
    observations_from_list,
    plan_status_checks,
)
from shipmate.agent.refusals import explain as explain_refusal
from shipmate.agent.refusals import give_up as give_up_after
from shipmate.agent.refusals import is_final as refusal_is_final
from shipmate.agent.reporter import Reporter
from shipmate.agent.store import AppliedStore
from shipmate.agent.workqueue import KeyedWorkQueue
from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DataKey, DeploymentState

log = logging.getLogger(__name__)

MAX_STEPS_PER_TURN = 8
"""Guard against a decision loop: a deployment gets at most this many steps before yielding."""


@dataclass(slots=True)
class _Retry:
    signature: tuple[Any, ...]
    attempt: int
    not_before: float


class _Adapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['deployment'] if self.extra else '-'}] {msg}", kwargs


class Agent:
    """One management agent for one prediction environment."""

    def __init__(
        self,
        settings: AgentSettings,
        service: ControlPlane,
        driver_factory: Callable[[EnvironmentDescription], PluginDriver],
        *,
        metrics: AgentMetrics | None = None,
    ) -> None:
        """``driver_factory(environment: EnvironmentDescription) -> PluginDriver`` builds the plugin driver
        once the environment is known (the action config's ``peInfo`` needs it)."""
        self.settings = settings
        self.service = service
        self._driver_factory = driver_factory
        self.driver: PluginDriver | None = None
        self.metrics = metrics or AgentMetrics()
        self.environment_id = settings.environment_id
        self.environment: EnvironmentDescription | None = None
        work = Path(settings.work_dir)
        work.mkdir(parents=True, exist_ok=True)
        self.store = AppliedStore(work / "applied.sqlite3")
        self.artifacts = ArtifactCache(work / "models", service)
        self.policy = Policy(
            stop_unknown_deployments=settings.stop_unknown_deployments,
            max_self_heal_attempts=settings.max_self_heal_attempts,
        )
        self._lock = threading.RLock()
        self.desired: dict[str, DesiredDeployment] = {}
        self.observed: dict[str, Observation] = {}
        self._heal: dict[str, int] = {}
        self._retries: dict[str, _Retry] = {}
        self._status_due: set[str] = set()
        self._told: set[tuple[str, str]] = set()
        self._changed_at: dict[str, float] = {}
        self.change_to_action: deque[float] = deque(maxlen=100_000)
        """Seconds from a change's timestamp to its action starting (benchmarks read it)."""
        self.feed_lags: deque[float] = deque(maxlen=100_000)
        """Seconds from an event's timestamp to the agent reading it from the feed."""
        self.cursor = 0
        self._snapshot_cursor = 0
        self._seen_at: dict[str, int] = {}
        """Deployment id -> id of the feed event that last set its desired spec."""
        self._removed: set[str] = set()
        """Deployments the service has removed (ids are never reused): never brought back."""
        self._stop = threading.Event()
        self.started = threading.Event()
        self.connected = False
        self.failure: str | None = None
        """Why start-up gave up (the service kept refusing), for the exit message."""
        self._queue = KeyedWorkQueue(self._sync, settings.concurrency, name="action")
        self.reporter = Reporter(
            service,
            self.environment_id,
            on_outcome=self._reports_delivered,
            max_backoff=settings.intervals.reconnect_max,
            on_connection=self._set_connected,
        )
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------

    def run(self) -> int:
        """Start, work until ``stop()``, shut down cleanly. Returns the process exit code."""
        try:
            if not self.start():
                return 0 if self._stop.is_set() else 1
            self._stop.wait()
        finally:
            self.shutdown()
        return 1 if self.failure else 0

    def start(self) -> bool:
        """Everything up to the first reconcile; False if stopped before it was ready."""
        self.environment = self._until_available("read the environment", self._get_environment)
        if self.environment is None:
            return False
        self.driver = self._driver_factory(self.environment)
        if not self._plugin_start():
            return False
        self.reporter.start()
        self._observe_list()
        snapshot = self._until_available(
            "read the desired state", lambda: self.service.desired_state(self.environment_id)
        )
        if snapshot is None:
            return False
        self._merge_snapshot(snapshot.cursor, snapshot.deployments)
        self.cursor = snapshot.cursor
        self._queue.start()
        self._queue.add_all(self._all_ids())
        for target, name in ((self._follow, "feed"), (self._periodic, "periodic")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.started.set()
        log.info(
            "agent running for environment %s: %d deployment(s) desired, %d seen by the plugin, cursor %d",
            self.environment_id,
            len(self.desired),
            sum(1 for o in self.observed.values() if o.exists),
            self.cursor,
        )
        return True

    def stop(self) -> None:
        """Ask the agent to stop (SIGTERM): no new actions; ``run`` then finishes the shutdown."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def shutdown(self) -> None:
        self._stop.set()
        grace = self.settings.shutdown_grace
        finished = self._queue.close(timeout=grace)
        if not finished:
            log.warning("actions still running after %.0fs of grace; stopping them", grace)
            if self.driver is not None:
                self.driver.close()  # kills the process groups of commands still running
        for thread in self._threads:
            thread.join(timeout=0.5)  # the feed may sit in a long poll; it is a daemon and holds no state
        if self.driver is not None and self.started.is_set():
            result = self.driver.run(
                ActionRequest("plugin_stop", timeout=self.settings.timeouts.for_action("plugin_stop"))
            )
            log.info("plugin_stop: %s %s", result.status.value, result.msg or "")
        self.reporter.close(timeout=5.0)
        if self.driver is not None:
            self.driver.close()
        self.store.close()
        log.info("agent stopped")

    def wait_idle(self, timeout: float) -> bool:
        """For tests: True once no work is queued or running and every report was delivered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.idle() and self.reporter.backlog == 0:
                return True
            time.sleep(0.02)
        return False

    # -- start-up ---------------------------------------------------------------------

    def _get_environment(self) -> EnvironmentDescription:
        return self.service.get_environment(self.environment_id)

    def _until_available(self, what: str, call: Any) -> Any:
        delay = 0.2
        refusals = 0
        while not self._stop.is_set():
            try:
                value = call()
                self._set_connected(True)
                return value
            except ControlPlaneUnavailable as exc:
                self._set_connected(False)
                refusals = 0
                log.warning("cannot %s: %s; retrying in %.1fs", what, exc, delay)
            except ControlPlaneRejected as exc:
                refusals = refusals + 1 if refusal_is_final(str(exc)) else 0
                reason = explain_refusal(str(exc), self.environment_id)
                if give_up_after(refusals):
                    log.error("stopping: the service refused %d times to %s: %s", refusals, what, reason)
                    self.failure = reason
                    return None
                log.error("the service refused to %s: %s; retrying in %.1fs", what, reason, delay)
            self._stop.wait(delay)
            delay = min(delay * 2, self.settings.intervals.reconnect_max)
        return None

    def _plugin_start(self) -> bool:
        assert self.driver is not None
        delay = self.settings.retry.initial_delay
        attempt = 1
        while not self._stop.is_set():
            result = self.driver.run(
                ActionRequest("plugin_start", timeout=self.settings.timeouts.for_action("plugin_start"))
            )
            self._count("plugin_start", result)
            self._send_health(result)
            if result.status is not ActionStatus.ERROR:
                log.info("plugin_start: %s %s", result.status.value, result.msg or "")
                return True
            log.error("plugin_start failed (attempt %d): %s; retrying in %.1fs", attempt, result.msg, delay)
            self._stop.wait(delay)
            delay = min(delay * 2, self.settings.retry.max_delay)
            attempt += 1
        return False

    def _observe_list(self) -> None:
        assert self.driver is not None
        result = self.driver.run(
            ActionRequest("deployment_list", timeout=self.settings.timeouts.for_action("deployment_list"))
        )
        self._count("deployment_list", result)
        if result.status is ActionStatus.ERROR:
            log.warning("deployment_list failed (%s); the plugin's view starts unknown", result.msg)
            return
        found = observations_from_list(result.data)
        with self._lock:
            self.observed = {**found}
            # what deployment_list did not return is known to be absent
            for deployment_id in self.store.all():
                self.observed.setdefault(deployment_id, Observation(exists=False))
        log.info("deployment_list: %d deployment(s) running in the environment", len(found))

    def _all_ids(self) -> list[str]:
        with self._lock:
            known = (
                set(self.desired) | set(self.store.all()) | {k for k, o in self.observed.items() if o.exists}
            )
        return sorted(known)

    # -- following the service ----------------------------------------------------------

    def _follow(self) -> None:
        delay = 0.2
        lost = False
        refusals = 0
        while not self._stop.is_set():
            try:
                page = self.service.changes(
                    self.environment_id, after=self.cursor, wait=self.settings.intervals.feed_wait
                )
            except ControlPlaneUnavailable as exc:
                self._set_connected(False)
                if not lost:
                    log.warning("lost the service (%s); reconnecting with back-off", exc)
                lost = True
                self._stop.wait(delay)
                delay = min(delay * 2, self.settings.intervals.reconnect_max)
                continue
            except ControlPlaneRejected as exc:
                refusals = refusals + 1 if refusal_is_final(str(exc)) else 0
                reason = explain_refusal(str(exc), self.environment_id)
                if give_up_after(refusals):  # e.g. the token was revoked: waiting will not mend it
                    log.error("stopping: the service refused the change feed %d times: %s", refusals, reason)
                    self.failure = reason
                    self._stop.set()
                    return
                log.error("the service refused the change feed: %s", reason)
                self._stop.wait(delay)
                delay = min(delay * 2, self.settings.intervals.reconnect_max)
                continue
            delay = 0.2
            refusals = 0
            self._set_connected(True)
            for change in page.changes:
                self._apply_change(change)
            self.cursor = max(self.cursor, page.cursor)
            if lost:
                log.info("reconnected to the service; resumed from cursor %d", self.cursor)
                lost = False
                self.resync()

    def _apply_change(self, change: Change) -> None:
        """Fold one feed event into the desired state.

        Ordering rules that keep a stale view from resurrecting a removed deployment: removals are
        final (tombstones), a newer generation always wins, and an event older than the last full
        snapshot cannot re-add a deployment that snapshot did not list.
        """
        now = time.time()
        if change.timestamp is not None:
            lag = max(0.0, now - change.timestamp)
            self.metrics.feed_lag.observe(lag)
            self.feed_lags.append(lag)
        deployment_id = change.deployment_id
        if deployment_id is None:
            return
        if change.type == "deployment.removed":
            with self._lock:
                self.desired.pop(deployment_id, None)
                self._removed.add(deployment_id)
            self._queue.add(deployment_id)
            return
        if change.spec is None:
            return
        with self._lock:
            if deployment_id in self._removed:
                return
            current = self.desired.get(deployment_id)
            if current is None and change.id <= self._snapshot_cursor:
                return  # a newer full snapshot did not list it: it is gone
            if current is not None and current.generation > change.spec.generation:
                return
            self.desired[deployment_id] = change.spec
            self._seen_at[deployment_id] = change.id
            if change.timestamp is not None:
                self._changed_at.setdefault(deployment_id, change.timestamp)
        self._queue.add(deployment_id)

    def resync(self) -> None:
        """Re-read the whole desired state and reconcile everything (catches whatever the feed missed)."""
        try:
            snapshot = self.service.desired_state(self.environment_id)
        except (ControlPlaneUnavailable, ControlPlaneRejected) as exc:
            log.warning("resync failed: %s", exc)
            return
        self._merge_snapshot(snapshot.cursor, snapshot.deployments)
        self._queue.add_all(self._all_ids())

    def _merge_snapshot(self, cursor: int, deployments: Sequence[DesiredDeployment]) -> None:
        """Merge a full snapshot taken at ``cursor`` with what the feed may have delivered meanwhile."""
        with self._lock:
            merged: dict[str, DesiredDeployment] = {}
            for spec in deployments:
                if spec.id in self._removed:
                    continue
                current = self.desired.get(spec.id)
                merged[spec.id] = (
                    current if current is not None and current.generation > spec.generation else spec
                )
            for deployment_id, current in self.desired.items():
                if deployment_id not in merged and self._seen_at.get(deployment_id, 0) > cursor:
                    merged[deployment_id] = current  # learned from the feed after the snapshot was taken
            self.desired = merged
            self._snapshot_cursor = max(self._snapshot_cursor, cursor)

    # -- periodic work --------------------------------------------------------------------

    def _periodic(self) -> None:
        intervals = self.settings.intervals
        now = time.monotonic()
        next_resync = now + intervals.resync
        next_pe = now + intervals.pe_status
        next_status = now + intervals.deployment_status
        while not self._stop.wait(
            min(1.0, intervals.pe_status, intervals.deployment_status, intervals.resync)
        ):
            now = time.monotonic()
            self.metrics.queue_depth.set(self._queue.depth)
            self.metrics.in_flight.set(self._queue.busy)
            self.metrics.report_backlog.set(self.reporter.backlog)
            with self._lock:
                self.metrics.deployments.set(len(self.desired))
            covered: set[str] = set()
            if now >= next_pe:
                next_pe = now + intervals.pe_status
                covered = self.check_environment()
            if now >= next_status:
                next_status = now + intervals.deployment_status
                self.schedule_status_checks(covered)
            if now >= next_resync:
                next_resync = now + intervals.resync
                self.resync()

    def check_environment(self) -> set[str]:
        """``pe_status`` with every running deployment; returns the ids it reported on."""
        assert self.driver is not None
        with self._lock:
            running = [
                self._deployment_info(spec)
                for spec in self.desired.values()
                if spec.state is DesiredState.RUNNING
                and (rec := self.store.get(spec.id)) is not None
                and rec.state is AppliedState.RUNNING
            ]
        result = self.driver.run(
            ActionRequest(
                "pe_status", pe_deployments=running, timeout=self.settings.timeouts.for_action("pe_status")
            )
        )
        self._count("pe_status", result)
        self._send_health(result)
        statuses = (result.data or {}).get(DataKey.DEPLOYMENTS_STATUS) or {}
        covered: set[str] = set()
        if isinstance(statuses, Mapping):
            for deployment_id, raw in statuses.items():
                if isinstance(raw, Mapping):
                    covered.add(str(deployment_id))
                    self._record_observation(str(deployment_id), observation_from_status(raw), raw)
        return covered

    def schedule_status_checks(self, covered: set[str] | None = None) -> None:
        with self._lock:
            steps = plan_status_checks(self.desired, self.store.all(), covered or ())
            ids = [s.deployment_id for s in steps]
            self._status_due.update(ids)
        self._queue.add_all(ids)

    def _send_health(self, result: ActionStatusInfo) -> None:
        try:
            self.service.report_health(
                self.environment_id,
                result.status.value,
                result.msg,
                {k: v for k, v in (result.data or {}).items() if k != DataKey.DEPLOYMENTS_STATUS},
            )
        except (ControlPlaneUnavailable, ControlPlaneRejected) as exc:
            log.warning("could not report environment health: %s", exc)

    def _record_observation(self, deployment_id: str, seen: Observation, raw: Mapping[str, Any]) -> None:
        with self._lock:
            before = self.observed.get(deployment_id)
            self.observed[deployment_id] = seen
            if seen.healthy:
                self._heal.pop(deployment_id, None)
            spec = self.desired.get(deployment_id)
        changed = before is None or before.healthy != seen.healthy or before.exists != seen.exists
        if changed and spec is not None:
            self.reporter.submit(
                Report(
                    deployment_id,
                    spec.generation,
                    "deployment_status",
                    ReportPhase.OBSERVED,
                    status=str(raw.get("status") or "unknown"),
                    state=raw.get("state"),
                    message=seen.message,
                    data=dict(raw.get("data") or {}) if isinstance(raw.get("data"), Mapping) else {},
                )
            )
        if seen.healthy is False or seen.exists is False:
            self._queue.add(deployment_id)

    # -- the work on one deployment --------------------------------------------------------

    def _sync(self, deployment_id: str) -> float | None:
        for _ in range(MAX_STEPS_PER_TURN):
            if self._stop.is_set():
                return None
            with self._lock:
                step = decide(
                    deployment_id,
                    self.desired.get(deployment_id),
                    self.store.get(deployment_id),
                    self.observed.get(deployment_id),
                    heal_attempts=self._heal.get(deployment_id, 0),
                    policy=self.policy,
                )
                status_due = deployment_id in self._status_due
                self._status_due.discard(deployment_id)
            if step is None:
                self._changed_at.pop(deployment_id, None)
                if status_due:
                    self._check_status(deployment_id)
                    continue
                return None
            if step.kind in (ActionKind.REPORT_UNKNOWN, ActionKind.NOTICE):
                self._act(step)  # said once; nothing more to do until something changes
                return None
            wait = self._retry_wait(step)
            if wait is not None:
                return wait
            again = self._act(step)
            if again is not None:
                return again
        log.warning(
            "[%s] did not converge within %d steps; looking again in 1s", deployment_id, MAX_STEPS_PER_TURN
        )
        return 1.0

    def _retry_wait(self, step: PlannedAction) -> float | None:
        signature = (step.kind, step.generation, step.desired.model_package_id if step.desired else None)
        with self._lock:
            retry = self._retries.get(step.deployment_id)
            if retry is None:
                return None
            if retry.signature != signature:
                del self._retries[step.deployment_id]
                return None
            remaining = retry.not_before - time.monotonic()
        return remaining if remaining > 0 else None

    def _act(self, step: PlannedAction) -> float | None:
        """Carry one step out. Returns a delay when it should be tried again later."""
        say = _Adapter(log, {"deployment": step.deployment_id})
        kind = step.kind
        if kind is ActionKind.FORGET:
            say.info("forgetting: %s", step.reason)
            with self._lock:
                self.store.delete(step.deployment_id)
                self.observed.pop(step.deployment_id, None)
                self._heal.pop(step.deployment_id, None)
            return None
        if kind is ActionKind.REPORT_UNKNOWN:
            self._tell_once(step, "agent.unknown_deployment")
            return None
        if kind is ActionKind.NOTICE:
            if self._tell_once(step, None):
                say.warning("%s", step.reason)
            return None
        if kind is ActionKind.ADOPT:
            self._adopt(step)
            return None
        if kind is ActionKind.REPORT:
            self._report_only(step)
            return None
        return self._run_plugin_step(step, say)

    def _tell_once(self, step: PlannedAction, event_type: str | None) -> bool:
        """Say an informational step once per deployment and generation (resyncs re-plan it).

        With ``event_type`` it is posted as that agent event, otherwise reported as an observation.
        """
        key = (step.deployment_id, f"{step.kind.value}:{step.generation}")
        with self._lock:
            if key in self._told:
                return False
            self._told.add(key)
        if event_type is not None:
            try:
                self.service.post_event(
                    self.environment_id, event_type, step.reason, deployment_id=step.deployment_id, data={}
                )
            except (ControlPlaneUnavailable, ControlPlaneRejected) as exc:
                log.warning("could not post %s for %s: %s", event_type, step.deployment_id, exc)
                with self._lock:
                    self._told.discard(key)
        else:
            self.reporter.submit(
                Report(
                    step.deployment_id,
                    step.generation,
                    "deployment_relaunch",
                    ReportPhase.OBSERVED,
                    status=ActionStatus.ERROR.value,
                    state=DeploymentState.ERRORED.value,
                    message=step.reason,
                )
            )
        return True

    def _adopt(self, step: PlannedAction) -> None:
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
        self._finish(
            step,
            record,
            "deployment_start",
            ActionStatusInfo(
                ActionStatus.OK, msg=step.reason, state=DeploymentState.READY, data={"adopted": True}
            ),
            attempt=1,
        )
        return None

    def _report_only(self, step: PlannedAction) -> None:
        spec = step.desired
        assert spec is not None
        state = step.report_state or DeploymentState.READY.value
        current = self.store.get(spec.id)
        if (
            current is not None
            and current.generation >= spec.generation
            and current.state is not AppliedState.FAILED
        ):
            record = replace(current, reported_state=state)
        else:
            running = state == DeploymentState.READY.value
            record = AppliedRecord(
                spec.id,
                spec.generation,
                AppliedState.RUNNING if running else AppliedState.STOPPED,
                spec.model_package_id if running else None,
                relaunch_generation=spec.relaunch_generation,
                message=step.reason,
                reported_state=state,
            )
        action = "deployment_stop" if state == DeploymentState.STOPPED.value else "deployment_start"
        self._finish(
            step, record, action, ActionStatusInfo(ActionStatus.OK, msg=step.reason, state=state), attempt=1
        )
        return None

    def _run_plugin_step(self, step: PlannedAction, say: logging.LoggerAdapter) -> float | None:  # type: ignore[type-arg]
        assert self.driver is not None
        action = step.kind.plugin_action
        assert action is not None
        with self._lock:
            retry = self._retries.get(step.deployment_id)
            attempt = retry.attempt if retry is not None else 1
            changed_at = self._changed_at.pop(step.deployment_id, None)
            if step.self_heal:
                self._heal[step.deployment_id] = self._heal.get(step.deployment_id, 0) + 1
        if changed_at is not None:
            lag = max(0.0, time.time() - changed_at)
            self.metrics.change_to_action.observe(lag)
            self.change_to_action.append(lag)
        if step.kind is not ActionKind.STATUS:
            say.info("%s (attempt %d): %s", action, attempt, step.reason)
            if step.desired is not None:
                self.reporter.submit(
                    Report(
                        step.deployment_id,
                        step.generation,
                        action,
                        ReportPhase.STARTED,
                        state=_transitional(step.kind),
                        message=step.reason,
                        attempt=attempt,
                    )
                )
        try:
            info = self._deployment_info(
                step.desired, step.deployment_id, with_artifact=step.kind in _NEEDS_ARTIFACT
            )
        except (ArtifactError, ControlPlaneUnavailable, ControlPlaneRejected, OSError) as exc:
            message = str(exc) if isinstance(exc, ArtifactError) else f"cannot fetch the model package: {exc}"
            result = ActionStatusInfo(
                ActionStatus.ERROR, msg=message, state=DeploymentState.ERRORED, duration=0.0
            )
        else:
            if step.kind is ActionKind.REPLACE_MODEL:
                info["newModelId"] = info["modelId"]
                previous = self.store.get(step.deployment_id)
                if previous is not None and previous.model_package_id:
                    info["modelId"] = previous.model_package_id
            started = time.perf_counter()
            result = self.driver.run(
                ActionRequest(action, deployment_info=info, timeout=self.settings.timeouts.for_action(action))
            )
            self.metrics.action_duration.labels(action).observe(time.perf_counter() - started)
        self._count(action, result)
        if step.kind is ActionKind.STATUS:
            self._record_observation(
                step.deployment_id, observation_from_status(result.to_dict()), result.to_dict()
            )
            return None
        return self._conclude(step, action, result, attempt, say)

    def _conclude(
        self,
        step: PlannedAction,
        action: str,
        result: ActionStatusInfo,
        attempt: int,
        say: logging.LoggerAdapter,  # type: ignore[type-arg]
    ) -> float | None:
        spec = step.desired
        failed = result.status is ActionStatus.ERROR
        retry_cfg = self.settings.retry
        if failed and not step.force and attempt < retry_cfg.max_attempts and not self._stop.is_set():
            delay = float(min(retry_cfg.initial_delay * 2 ** (attempt - 1), retry_cfg.max_delay))
            signature = (step.kind, step.generation, spec.model_package_id if spec else None)
            with self._lock:
                self._retries[step.deployment_id] = _Retry(signature, attempt + 1, time.monotonic() + delay)
            self.metrics.retries.labels(action).inc()
            say.warning(
                "%s failed (attempt %d of %d): %s; retrying in %.1fs",
                action,
                attempt,
                retry_cfg.max_attempts,
                result.msg,
                delay,
            )
            if spec is not None:
                self.reporter.submit(
                    Report(
                        step.deployment_id,
                        step.generation,
                        action,
                        ReportPhase.RETRYING,
                        status=result.status.value,
                        state=_transitional(step.kind),
                        duration=result.duration,
                        message=f"attempt {attempt} of {retry_cfg.max_attempts} failed: {result.msg}; "
                        f"retrying in {delay:.1f}s",
                        attempt=attempt,
                        data=dict(result.data or {}),
                    )
                )
            return delay
        with self._lock:
            self._retries.pop(step.deployment_id, None)
        if spec is None:  # an unknown deployment stopped by policy
            if not failed:
                with self._lock:
                    self.store.delete(step.deployment_id)
                    self.observed[step.deployment_id] = Observation(exists=False)
                say.info("stopped a deployment the service does not know")
            return None
        record = self._record_after(step, result)
        if failed:
            say.error("%s failed after %d attempt(s): %s", action, attempt, result.msg)
        else:
            say.info("%s: %s %s", action, result.status.value, result.msg or "")
        self._finish(step, record, action, result, attempt)
        return None

    def _record_after(self, step: PlannedAction, result: ActionStatusInfo) -> AppliedRecord:
        spec = step.desired
        assert spec is not None
        failed = result.status is ActionStatus.ERROR
        previous = self.store.get(spec.id)
        stopping = step.kind is ActionKind.STOP
        state_text = _state(result) or (
            DeploymentState.STOPPED.value if stopping else DeploymentState.READY.value
        )
        if failed and not step.force:
            old_model = previous.model_package_id if previous is not None else None
            still_old = bool((result.data or {}).get(DataKey.OLD_MODEL_IN_USE))
            if not still_old:
                with self._lock:
                    self.observed.pop(spec.id, None)
            return AppliedRecord(
                spec.id,
                spec.generation,
                AppliedState.FAILED,
                old_model if still_old else None,
                relaunch_generation=spec.relaunch_generation,
                message=result.msg,
                reported_state=state_text if state_text else DeploymentState.ERRORED.value,
            )
        with self._lock:
            if stopping:
                self.observed[spec.id] = Observation(exists=False)
            else:
                self.observed[spec.id] = Observation(
                    exists=True, model_id=spec.model_package_id, healthy=True
                )
        return AppliedRecord(
            spec.id,
            spec.generation,
            AppliedState.STOPPED if stopping else AppliedState.RUNNING,
            None if stopping else spec.model_package_id,
            relaunch_generation=spec.relaunch_generation,
            message=result.msg,
            reported_state=DeploymentState.STOPPED.value if stopping else state_text,
        )

    def _finish(
        self, step: PlannedAction, record: AppliedRecord, action: str, result: ActionStatusInfo, attempt: int
    ) -> None:
        """Persist what was applied, then report it (the order that makes a crash safe)."""
        self.store.put(record)
        spec = step.desired
        assert spec is not None
        state = record.reported_state
        with self._lock:
            current = self.desired.get(spec.id)
            if current is not None and current.generation == spec.generation:
                self.desired[spec.id] = replace(
                    current, observed=ServiceObserved(spec.generation, state, result.status.value)
                )
        message = result.msg
        data = dict(result.data or {})
        data.setdefault("reason", step.reason)
        self.reporter.submit(
            Report(
                spec.id,
                spec.generation,
                action,
                ReportPhase.FINISHED,
                status=result.status.value,
                state=state,
                message=message,
                duration=result.duration,
                attempt=attempt,
                data=data,
            )
        )

    def _check_status(self, deployment_id: str) -> None:
        with self._lock:
            spec = self.desired.get(deployment_id)
        if spec is None:
            return
        step = PlannedAction(deployment_id, ActionKind.STATUS, "periodic health check", spec.generation, spec)
        self._run_plugin_step(step, _Adapter(log, {"deployment": deployment_id}))

    # -- helpers ----------------------------------------------------------------------------

    def _deployment_info(
        self, spec: DesiredDeployment | None, deployment_id: str | None = None, with_artifact: bool = False
    ) -> dict[str, Any]:
        """The contract's ``deploymentInfo`` for a deployment (downloading its model when needed)."""
        if spec is None:
            seen = self.observed.get(deployment_id or "")
            return {
                "id": deployment_id,
                "modelId": (seen.model_id if seen and seen.model_id else "unknown"),
                "modelExecutionType": "dedicated",
                "keyValueConfig": {},
            }
        info: dict[str, Any] = {
            "id": spec.id,
            "name": spec.name or spec.id,
            "description": spec.description,
            "modelId": spec.model_package_id,
            "modelExecutionType": "dedicated",
            "keyValueConfig": dict(spec.key_value_config),
        }
        if spec.model_package.name:
            info["modelName"] = spec.model_package.name
        if with_artifact:
            info["modelArtifact"] = str(self.artifacts.fetch(spec.model_package))
        return {k: v for k, v in info.items() if v is not None}

    def _count(self, action: str, result: ActionStatusInfo) -> None:
        self.metrics.actions.labels(action, result.status.value).inc()

    def _set_connected(self, value: bool) -> None:
        self.connected = value
        self.metrics.connected.set(1 if value else 0)

    def _reports_delivered(self, batch: Sequence[Report], outcome: ReportOutcome) -> None:
        if outcome.removed:
            with self._lock:
                for deployment_id in outcome.removed:
                    self.desired.pop(deployment_id, None)
                    self._removed.add(deployment_id)
            self._queue.add_all(list(outcome.removed))

    def health(self) -> tuple[bool, dict[str, Any]]:
        ok = self.started.is_set() and not self._stop.is_set()
        return ok, {
            "status": "ok" if ok else ("stopping" if self._stop.is_set() else "starting"),
            "environmentId": self.environment_id,
            "serviceConnected": self.connected,
            "queueDepth": self._queue.depth,
            "inFlight": self._queue.busy,
            "cursor": self.cursor,
        }


_NEEDS_ARTIFACT = frozenset({ActionKind.START, ActionKind.REPLACE_MODEL, ActionKind.RELAUNCH})


def _transitional(kind: ActionKind) -> str | None:
    return {
        ActionKind.START: DeploymentState.LAUNCHING.value,
        ActionKind.RELAUNCH: DeploymentState.LAUNCHING.value,
        ActionKind.REPLACE_MODEL: DeploymentState.REPLACING_MODEL.value,
        ActionKind.STOP: DeploymentState.SHUTTING_DOWN.value,
    }.get(kind)


def _state(result: ActionStatusInfo) -> str | None:
    return result.state.value if result.state is not None else None
