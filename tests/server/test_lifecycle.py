"""The service's pure lifecycle rules, as tables: what a command does to the desired spec, and how a
report bears on a deployment (the agent tests' fake service calls these same functions)."""

from __future__ import annotations

import pytest

from shipmate.common.vocabulary import DesiredState, ReportPhase
from shipmate.plugin.status import DeploymentState
from shipmate.server.errors import Conflict, InvalidInput
from shipmate.server.lifecycle import Command, Desired, Verdict, apply_command, judge_report

RUNNING = Desired(3, DesiredState.RUNNING, "m-1")
NEXT_RUNNING, NEXT_STOPPED, NEXT_DELETED = (Desired(4, s, "m-1") for s in DesiredState)
NEXT_FORCED = Desired(4, DesiredState.DELETED, "m-1", force=True)
STOPPED = Desired(3, DesiredState.STOPPED, "m-1")
DELETED = Desired(3, DesiredState.DELETED, "m-1")

COMMANDS = [
    ("replace the model", RUNNING, Command.REPLACE_MODEL, "m-2", Desired(4, DesiredState.RUNNING, "m-2")),
    ("replace with the same model", RUNNING, Command.REPLACE_MODEL, "m-1", None),
    ("deactivate", RUNNING, Command.DEACTIVATE, None, NEXT_STOPPED),
    ("deactivate twice", STOPPED, Command.DEACTIVATE, None, None),
    ("activate", STOPPED, Command.ACTIVATE, None, NEXT_RUNNING),
    ("relaunch", RUNNING, Command.RELAUNCH, None, Desired(4, RUNNING.state, "m-1", relaunch_generation=4)),
    ("delete", RUNNING, Command.DELETE, None, NEXT_DELETED),
    ("delete twice", DELETED, Command.DELETE, None, None),
    ("force a delete under way", DELETED, Command.FORCE_DELETE, None, NEXT_FORCED),
    ("force delete", STOPPED, Command.FORCE_DELETE, None, NEXT_FORCED),
]  # fmt: skip


@pytest.mark.parametrize(("current", "command", "package", "expected"), [c[1:] for c in COMMANDS],
                         ids=[c[0] for c in COMMANDS])  # fmt: skip
def test_commands(current: Desired, command: Command, package: str | None, expected: Desired | None) -> None:
    assert apply_command(current, command, model_package_id=package) == expected


@pytest.mark.parametrize(
    ("current", "command", "problem"),
    [
        (STOPPED, Command.RELAUNCH, Conflict),
        (DELETED, Command.ACTIVATE, Conflict),
        (RUNNING, Command.REPLACE_MODEL, InvalidInput),
    ],
)
def test_commands_that_contradict_the_spec(current: Desired, command: Command, problem: type) -> None:
    with pytest.raises(problem):
        apply_command(current, command)


FINISHED, OBSERVED = ReportPhase.FINISHED, ReportPhase.OBSERVED
READY, GONE = DeploymentState.READY, DeploymentState.STOPPED
FORCED = Desired(3, DesiredState.DELETED, "m-1", force=True)

REPORTS = [
    ("the current generation applies", RUNNING, 2, 3, FINISHED, READY, Verdict.APPLY),
    ("an older generation than observed is stale", RUNNING, 3, 2, FINISHED, READY, Verdict.STALE),
    ("a confirmed stop of a deleted deployment removes it", DELETED, 2, 3, FINISHED, GONE, Verdict.REMOVE),
    ("a stop still under way does not", DELETED, 2, 3, ReportPhase.STARTED, GONE, Verdict.APPLY),
    ("an observation does not", DELETED, 2, 3, OBSERVED, GONE, Verdict.APPLY),
    ("a failed stop does not", DELETED, 2, 3, FINISHED, DeploymentState.ERRORED, Verdict.APPLY),
    ("a force delete goes, whatever the result", FORCED, 2, 3, FINISHED, None, Verdict.REMOVE),
    ("a stop of an older generation does not", DELETED, 1, 2, FINISHED, GONE, Verdict.APPLY),
]  # fmt: skip


@pytest.mark.parametrize(("current", "observed", "generation", "phase", "state", "verdict"),
                         [r[1:] for r in REPORTS], ids=[r[0] for r in REPORTS])  # fmt: skip
def test_reports(current, observed, generation, phase, state, verdict) -> None:
    found = judge_report(
        current=current, observed_generation=observed, report_generation=generation, phase=phase, state=state
    )
    assert found is verdict


def test_a_report_from_the_future_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidInput, match="newer than") as caught:
        judge_report(current=RUNNING, observed_generation=0, report_generation=4, phase=FINISHED,
                     state=READY, field="reports[2].generation")  # fmt: skip
    assert caught.value.field == "reports[2].generation"
