"""The agent's loop: follow the service, reconcile each deployment, carry the steps out, report.

    start:   environment -> plugin_start -> deployment_list -> desired state + cursor
    follow:  change feed (long poll) -> desired view -> queue(id)      periodic: resync, pe_status, status
    work:    queue(id) -> decide(desired, applied, observed) -> executor -> conclude -> record, report
    stop:    SIGTERM -> no new actions -> in-flight ones finish or time out -> plugin_stop -> exit 0

This module owns the threads and the timing. What the service wants is kept by
``desired.DesiredView`` (pure), what to do next is the reconciler's decision
(pure), one step is carried out by ``executor.Executor``, and what its result
means is ``outcome.conclude`` (pure).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from shipmate.agent.artifacts import ArtifactCache
from shipmate.agent.config import AgentSettings
from shipmate.agent.executor import Executor, Memory, describe
from shipmate.agent.metrics import AgentMetrics
from shipmate.agent.model import ActionKind, AppliedState, Observation, Policy
from shipmate.agent.ports import (
    Change,
    ControlPlane,
    ControlPlaneRejected,
    ControlPlaneUnavailable,
    DesiredSnapshot,
    EnvironmentDescription,
    PluginDriver,
    Report,
    ReportOutcome,
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
from shipmate.common.vocabulary import DesiredState
from shipmate.plugin.actions import Action
from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DataKey

log = logging.getLogger(__name__)

MAX_STEPS_PER_TURN = 8
"""Guard against a decision loop: a deployment gets at most this many steps before yielding."""


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
        self.metrics = metrics or AgentMetrics()
        self.environment_id = settings.environment_id
        self.environment: EnvironmentDescription | None = None
        work = Path(settings.work_dir)
        work.mkdir(parents=True, exist_ok=True)
        self.store = AppliedStore(work / "applied.sqlite3")
        self.policy = Policy(
            stop_unknown_deployments=settings.stop_unknown_deployments,
            max_self_heal_attempts=settings.max_self_heal_attempts,
        )
        self.memory = Memory()
        self._status_due: set[str] = set()
        self.cursor = 0
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
            backoff=settings.intervals.reconnect_backoff,
            on_connection=self._set_connected,
        )
        self.executor = Executor(
            settings,
            service,
            self.memory,
            self.store,
            ArtifactCache(work / "models", service),
            self.reporter,
            self.metrics,
            stopping=self._stop.is_set,
            look_again=self._queue.add,
        )
        self._threads: list[threading.Thread] = []

    @property
    def driver(self) -> PluginDriver | None:
        return self.executor.driver

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
        self.executor.driver = self._driver_factory(self.environment)
        if not self._plugin_start():
            return False
        self.reporter.start()
        self._observe_list()
        snapshot: DesiredSnapshot | None = self._until_available(
            "read the desired state", lambda: self.service.desired_state(self.environment_id)
        )
        if snapshot is None:
            return False
        with self.memory.lock:
            self.memory.desired.merge(snapshot.cursor, snapshot.deployments)
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
            len(self.memory.desired),
            sum(1 for o in self.memory.observed.values() if o.exists),
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
            result = self.executor.run(Action.PLUGIN_STOP)
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
        backoff = self.settings.intervals.reconnect_backoff
        failures = 0
        refusals = 0
        while not self._stop.is_set():
            try:
                value = call()
                self._set_connected(True)
                return value
            except ControlPlaneUnavailable as exc:
                failures += 1
                delay = backoff.delay(failures)
                self._set_connected(False)
                refusals = 0
                log.warning("cannot %s: %s; retrying in %.1fs", what, exc, delay)
            except ControlPlaneRejected as exc:
                failures += 1
                delay = backoff.delay(failures)
                refusals = refusals + 1 if refusal_is_final(str(exc)) else 0
                reason = explain_refusal(str(exc), self.environment_id)
                if give_up_after(refusals):
                    log.error("stopping: the service refused %d times to %s: %s", refusals, what, reason)
                    self.failure = reason
                    return None
                log.error("the service refused to %s: %s; retrying in %.1fs", what, reason, delay)
            self._stop.wait(delay)
        return None

    def _plugin_start(self) -> bool:
        attempt = 1
        while not self._stop.is_set():
            result = self.executor.run(Action.PLUGIN_START)
            self._send_health(result)
            if result.status is not ActionStatus.ERROR:
                log.info("plugin_start: %s %s", result.status.value, result.msg or "")
                return True
            delay = self.settings.retry.backoff.delay(attempt)
            log.error("plugin_start failed (attempt %d): %s; retrying in %.1fs", attempt, result.msg, delay)
            self._stop.wait(delay)
            attempt += 1
        return False

    def _observe_list(self) -> None:
        result = self.executor.run(Action.DEPLOYMENT_LIST)
        if result.status is ActionStatus.ERROR:
            log.warning("deployment_list failed (%s); the plugin's view starts unknown", result.msg)
            return
        found = observations_from_list(result.data)
        with self.memory.lock:
            self.memory.observed = {**found}
            # what deployment_list did not return is known to be absent
            for deployment_id in self.store.all():
                self.memory.observed.setdefault(deployment_id, Observation(exists=False))
        log.info("deployment_list: %d deployment(s) running in the environment", len(found))

    def _all_ids(self) -> list[str]:
        with self.memory.lock:
            known = (
                set(self.memory.desired)
                | set(self.store.all())
                | {k for k, o in self.memory.observed.items() if o.exists}
            )
        return sorted(known)

    # -- following the service ----------------------------------------------------------

    def _follow(self) -> None:
        backoff = self.settings.intervals.reconnect_backoff
        failures = 0
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
                failures += 1
                self._stop.wait(backoff.delay(failures))
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
                failures += 1
                self._stop.wait(backoff.delay(failures))
                continue
            failures = 0
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
        """Fold one feed event into the desired view and queue the deployment it names."""
        if change.timestamp is not None:
            self.metrics.feed_lag.observe(max(0.0, time.time() - change.timestamp))
        with self.memory.lock:
            deployment_id = self.memory.desired.apply(change)
            if deployment_id is not None and change.spec is not None and change.timestamp is not None:
                self.memory.changed_at.setdefault(deployment_id, change.timestamp)
        if deployment_id is not None:
            self._queue.add(deployment_id)

    def resync(self) -> None:
        """Re-read the whole desired state and reconcile everything (catches whatever the feed missed)."""
        try:
            snapshot = self.service.desired_state(self.environment_id)
        except (ControlPlaneUnavailable, ControlPlaneRejected) as exc:
            log.warning("resync failed: %s", exc)
            return
        with self.memory.lock:
            self.memory.desired.merge(snapshot.cursor, snapshot.deployments)
        self._queue.add_all(self._all_ids())

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
            with self.memory.lock:
                self.metrics.deployments.set(len(self.memory.desired))
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
        with self.memory.lock:
            running = tuple(
                describe(spec)
                for spec in self.memory.desired.specs()
                if spec.state is DesiredState.RUNNING
                and (rec := self.store.get(spec.id)) is not None
                and rec.state is AppliedState.RUNNING
            )
        result = self.executor.run(Action.PE_STATUS, pe_deployments=running)
        self._send_health(result)
        statuses = (result.data or {}).get(DataKey.DEPLOYMENTS_STATUS) or {}
        covered: set[str] = set()
        if isinstance(statuses, Mapping):
            for deployment_id, raw in statuses.items():
                if isinstance(raw, Mapping):
                    covered.add(str(deployment_id))
                    self.executor.record_observation(str(deployment_id), observation_from_status(raw), raw)
        return covered

    def schedule_status_checks(self, covered: set[str] | None = None) -> None:
        with self.memory.lock:
            steps = plan_status_checks(self.memory.desired.as_mapping(), self.store.all(), covered or ())
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

    # -- the work on one deployment --------------------------------------------------------

    def _sync(self, deployment_id: str) -> float | None:
        """One turn for one deployment: decide, carry out, decide again, until it converges."""
        memory = self.memory
        for _ in range(MAX_STEPS_PER_TURN):
            if self._stop.is_set():
                return None
            with memory.lock:
                step = decide(
                    deployment_id,
                    memory.desired.get(deployment_id),
                    self.store.get(deployment_id),
                    memory.observed.get(deployment_id),
                    heal_attempts=memory.heal.get(deployment_id, 0),
                    policy=self.policy,
                )
                status_due = deployment_id in self._status_due
                self._status_due.discard(deployment_id)
                spec = memory.desired.get(deployment_id)
            if step is None:
                with memory.lock:
                    memory.changed_at.pop(deployment_id, None)
                if status_due and spec is not None:
                    self.executor.check_status(spec)
                    continue
                return None
            if step.kind in (ActionKind.REPORT_UNKNOWN, ActionKind.NOTICE):
                self.executor.carry_out(step)  # said once; nothing more to do until something changes
                return None
            wait = self.executor.wait_before(step)
            if wait is not None:
                return wait
            again = self.executor.carry_out(step)
            if again is not None:
                return again
        log.warning(
            "[%s] did not converge within %d steps; looking again in 1s", deployment_id, MAX_STEPS_PER_TURN
        )
        return 1.0

    # -- helpers ----------------------------------------------------------------------------

    def _set_connected(self, value: bool) -> None:
        self.connected = value
        self.metrics.connected.set(1 if value else 0)

    def _reports_delivered(self, batch: Sequence[Report], outcome: ReportOutcome) -> None:
        if outcome.removed:
            with self.memory.lock:
                self.memory.desired.remove(outcome.removed)
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
