"""What one step's result means, as a table: retry or not (and when), what was applied, what is reported.

``conclude`` is pure, like the reconciler: these are its rules, including a plugin's own
retry intent (``retry_after`` in its status).
"""

from __future__ import annotations

import logging

import pytest

from shipmate.agent.model import (
    ActionKind,
    AppliedRecord,
    AppliedState,
    DesiredDeployment,
    ModelPackageRef,
    PlannedAction,
)
from shipmate.agent.outcome import (
    Belief,
    RetryPolicy,
    adopted,
    conclude,
    reported_only,
    signature,
    transitional,
)
from shipmate.common.backoff import Backoff
from shipmate.common.vocabulary import DesiredState, ReportPhase
from shipmate.plugin.actions import Action
from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DeploymentState

POLICY = RetryPolicy(max_attempts=3, backoff=Backoff(1.0, 4.0))
SPEC = DesiredDeployment("d-1", 2, DesiredState.RUNNING, ModelPackageRef("m-2"), relaunch_generation=1)
OLD = AppliedRecord("d-1", 1, AppliedState.RUNNING, "m-1", reported_state="ready")


def step(kind: ActionKind, *, desired: DesiredDeployment | None = SPEC, force: bool = False) -> PlannedAction:
    return PlannedAction("d-1", kind, "because", 2, desired, force=force)


def ok(state: DeploymentState | None = None, **data: object) -> ActionStatusInfo:
    return ActionStatusInfo(ActionStatus.OK, msg="done", state=state, duration=0.5, data=dict(data) or None)


def failing(retry_after: float | bool | None = None, **data: object) -> ActionStatusInfo:
    return ActionStatusInfo(
        ActionStatus.ERROR,
        msg="broke",
        state=DeploymentState.ERRORED,
        duration=0.5,
        data=dict(data) or None,
        retry_after=retry_after,
    )


# name, step, result, attempt, policy -> retry delay (None: final), record (state, model), belief
CASES = [
    ("a start succeeds", step(ActionKind.START), ok(DeploymentState.READY), 1, POLICY,
     None, (AppliedState.RUNNING, "m-2", "ready"), Belief.RUNNING),
    ("a stop succeeds", step(ActionKind.STOP), ok(), 1, POLICY,
     None, (AppliedState.STOPPED, None, "stopped"), Belief.ABSENT),
    ("a success without a state is ready", step(ActionKind.REPLACE_MODEL), ok(), 1, POLICY,
     None, (AppliedState.RUNNING, "m-2", "ready"), Belief.RUNNING),
    ("a first failure is retried after the back-off", step(ActionKind.START), failing(), 1, POLICY,
     1.0, None, Belief.KEEP),
    ("the back-off doubles", step(ActionKind.START), failing(), 2, POLICY,
     2.0, None, Belief.KEEP),
    ("the last attempt's failure is final", step(ActionKind.START), failing(), 3, POLICY,
     None, (AppliedState.FAILED, None, "errored"), Belief.UNKNOWN),
    ("a failed replacement that kept the old model says so", step(ActionKind.REPLACE_MODEL),
     failing(oldModelInUse=True), 3, POLICY,
     None, (AppliedState.FAILED, "m-1", "errored"), Belief.KEEP),
    ("a force delete is tried once, and recorded stopped whatever the result",
     step(ActionKind.STOP, force=True), failing(), 1, POLICY,
     None, (AppliedState.STOPPED, None, "stopped"), Belief.ABSENT),
    ("while the agent stops nothing is retried", step(ActionKind.START), failing(), 1, POLICY.exhausted(),
     None, (AppliedState.FAILED, None, "errored"), Belief.UNKNOWN),
    ("the plugin's retry delay wins over the back-off", step(ActionKind.START), failing(30), 1, POLICY,
     30.0, None, Belief.KEEP),
    ("a retry delay of zero retries at once", step(ActionKind.START), failing(0), 2, POLICY,
     0.0, None, Belief.KEEP),
    ("the plugin's retry delay does not add attempts", step(ActionKind.START), failing(30), 3, POLICY,
     None, (AppliedState.FAILED, None, "errored"), Belief.UNKNOWN),
    ("the plugin may ask for no retry", step(ActionKind.START), failing(False), 1, POLICY,
     None, (AppliedState.FAILED, None, "errored"), Belief.UNKNOWN),
    ("a success ignores any retry intent", step(ActionKind.START), ActionStatusInfo("passing", retry_after=9),
     1, POLICY, None, (AppliedState.RUNNING, "m-2", "ready"), Belief.RUNNING),
]  # fmt: skip


@pytest.mark.parametrize(
    ("step_", "result", "attempt", "policy", "delay", "record", "belief"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_conclude(step_, result, attempt, policy, delay, record, belief) -> None:
    outcome = conclude(step_, result, OLD, attempt, policy)
    assert outcome.belief is belief
    if delay is None:
        assert outcome.retry is None
    else:
        assert outcome.retry is not None and outcome.retry.delay == delay
        assert outcome.retry.attempt == attempt + 1 and outcome.retry.signature == signature(step_)
    if record is None:
        assert outcome.record is None
    else:
        assert outcome.record is not None
        assert (
            outcome.record.state,
            outcome.record.model_package_id,
            outcome.record.reported_state,
        ) == record
        assert outcome.record.generation == 2 and outcome.record.relaunch_generation == 1


def test_a_retry_is_reported_as_retrying_with_the_wait() -> None:
    outcome = conclude(step(ActionKind.REPLACE_MODEL), failing(), OLD, 1, POLICY)
    report = outcome.report
    assert report is not None and report.phase is ReportPhase.RETRYING
    assert report.action is Action.DEPLOYMENT_REPLACE_MODEL
    assert report.state is DeploymentState.REPLACING_MODEL and report.status is ActionStatus.ERROR
    assert report.message == "attempt 1 of 3 failed: broke; retrying in 1.0s"
    assert outcome.log_level == logging.WARNING


def test_the_plugins_own_wait_is_named_in_the_report() -> None:
    outcome = conclude(step(ActionKind.START), failing(12), OLD, 1, POLICY)
    assert outcome.report is not None
    assert outcome.report.message == "attempt 1 of 3 failed: broke; the plugin asked to retry in 12.0s"


def test_a_final_result_is_reported_finished_with_the_reason() -> None:
    outcome = conclude(step(ActionKind.START), ok(DeploymentState.READY, predictionUrl="u"), None, 2, POLICY)
    report = outcome.report
    assert report is not None and report.phase is ReportPhase.FINISHED
    assert (report.status, report.state, report.attempt) == (ActionStatus.OK, DeploymentState.READY, 2)
    assert report.data == {"predictionUrl": "u", "reason": "because"}


def test_a_refused_retry_says_why_in_the_log() -> None:
    outcome = conclude(step(ActionKind.START), failing(False), OLD, 1, POLICY)
    assert outcome.log_level == logging.ERROR and "the plugin asked not to retry" in outcome.log_message


@pytest.mark.parametrize(("result", "forget"), [(ok(), True), (failing(), False)])
def test_an_unknown_deployment_stopped_by_policy(result: ActionStatusInfo, forget: bool) -> None:
    outcome = conclude(step(ActionKind.STOP, desired=None), result, None, 3, POLICY)
    assert outcome.record is None and outcome.report is None
    assert outcome.forget_record is forget
    assert outcome.belief is (Belief.ABSENT if forget else Belief.KEEP)


def test_adopting_records_what_runs_and_reports_it_ready() -> None:
    outcome = adopted(step(ActionKind.ADOPT))
    assert outcome.record == AppliedRecord(
        "d-1",
        2,
        AppliedState.RUNNING,
        "m-2",
        relaunch_generation=1,
        message="because",
        reported_state="ready",
    )
    assert outcome.report is not None and outcome.report.action is Action.DEPLOYMENT_START
    assert outcome.report.data == {"adopted": True, "reason": "because"}


@pytest.mark.parametrize(
    ("report_state", "current", "expected"),
    [
        ("stopped", None, (AppliedState.STOPPED, None, "stopped", Action.DEPLOYMENT_STOP)),
        (None, None, (AppliedState.RUNNING, "m-2", "ready", Action.DEPLOYMENT_START)),
        ("ready", AppliedRecord("d-1", 2, AppliedState.RUNNING, "m-2", reported_state="errored"),
         (AppliedState.RUNNING, "m-2", "ready", Action.DEPLOYMENT_START)),
        ("ready", AppliedRecord("d-1", 2, AppliedState.FAILED, None),
         (AppliedState.RUNNING, "m-2", "ready", Action.DEPLOYMENT_START)),
    ],
)  # fmt: skip
def test_reporting_only_what_was_applied(report_state, current, expected) -> None:
    planned = PlannedAction("d-1", ActionKind.REPORT, "lags", 2, SPEC, report_state=report_state)
    outcome = reported_only(planned, current)
    assert outcome.record is not None and outcome.report is not None
    record = outcome.record
    assert (record.state, record.model_package_id, record.reported_state, outcome.report.action) == expected


@pytest.mark.parametrize(
    ("kind", "state"),
    [
        (ActionKind.START, DeploymentState.LAUNCHING),
        (ActionKind.RELAUNCH, DeploymentState.LAUNCHING),
        (ActionKind.REPLACE_MODEL, DeploymentState.REPLACING_MODEL),
        (ActionKind.STOP, DeploymentState.SHUTTING_DOWN),
        (ActionKind.STATUS, None),
    ],
)
def test_the_state_reported_while_a_step_is_under_way(
    kind: ActionKind, state: DeploymentState | None
) -> None:
    assert transitional(kind) is state
