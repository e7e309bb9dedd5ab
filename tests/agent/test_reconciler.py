"""Table tests of the pure reconciler: three views of one deployment in, the next step (and why) out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shipmate.agent.model import (
    ActionKind,
    AppliedRecord,
    AppliedState,
    DesiredDeployment,
    ModelPackageRef,
    Observation,
    Policy,
    ServiceObserved,
)
from shipmate.agent.reconciler import (
    decide,
    observation_from_status,
    observations_from_list,
    plan,
    plan_status_checks,
)
from shipmate.common.vocabulary import DesiredState


def spec(
    state: DesiredState = DesiredState.RUNNING,
    model: str = "m-1",
    generation: int = 1,
    relaunch: int = 0,
    force: bool = False,
    observed: tuple[int, str | None] = (0, None),
) -> DesiredDeployment:
    return DesiredDeployment(
        id="d-1",
        generation=generation,
        state=state,
        model_package=ModelPackageRef(id=model, sha256="ab" * 32),
        relaunch_generation=relaunch,
        force=force,
        observed=ServiceObserved(generation=observed[0], state=observed[1]),
    )


def done(
    state: AppliedState = AppliedState.RUNNING,
    model: str | None = "m-1",
    generation: int = 1,
    relaunch: int = 0,
    reported: str | None = "ready",
) -> AppliedRecord:
    return AppliedRecord(
        "d-1", generation, state, model, relaunch_generation=relaunch, reported_state=reported
    )


PRESENT = Observation(exists=True, model_id="m-1")
ABSENT = Observation(exists=False)
HEALTHY = Observation(exists=True, model_id="m-1", healthy=True)
ERRORED = Observation(exists=None, model_id=None, healthy=False, message="No deployment dir: /x/")

RUNNING, STOPPED, DELETED = DesiredState.RUNNING, DesiredState.STOPPED, DesiredState.DELETED

CASES = [
    # id, desired, applied, observed, heal attempts, expected kind (None = converged), words in the reason
    ("new deployment starts", spec(), None, ABSENT, 0, ActionKind.START, "new deployment"),
    ("new, plugin not asked yet", spec(), None, None, 0, ActionKind.START, "new deployment"),
    (
        "crash after start: adopt, never start twice",
        spec(),
        None,
        PRESENT,
        0,
        ActionKind.ADOPT,
        "already runs",
    ),
    ("converged", spec(observed=(1, "ready")), done(), PRESENT, 0, None, ""),
    ("converged, plugin view unknown", spec(observed=(1, "ready")), done(), None, 0, None, ""),
    (
        "service missed the finished report",
        spec(observed=(1, "launching")),
        done(),
        PRESENT,
        0,
        ActionKind.REPORT,
        "has not recorded",
    ),
    (
        "model replaced",
        spec(model="m-2", generation=2, observed=(1, "ready")),
        done(),
        PRESENT,
        0,
        ActionKind.REPLACE_MODEL,
        "from m-1 to m-2",
    ),
    (
        "crash after replace: plugin already serves new model",
        spec(model="m-2", generation=2),
        done(),
        Observation(exists=True, model_id="m-2"),
        0,
        ActionKind.ADOPT,
        "",
    ),
    (
        "replace known only from applied",
        spec(model="m-2", generation=2),
        done(),
        None,
        0,
        ActionKind.REPLACE_MODEL,
        "from m-1 to m-2",
    ),
    ("deactivated", spec(STOPPED, generation=2), done(), PRESENT, 0, ActionKind.STOP, "deactivated"),
    (
        "deactivated, already gone: report only",
        spec(STOPPED, generation=2),
        done(),
        ABSENT,
        0,
        ActionKind.REPORT,
        "already absent",
    ),
    ("deleted", spec(DELETED, generation=3), done(), PRESENT, 0, ActionKind.STOP, "deleted"),
    (
        "deleted, plugin view unknown: stop (idempotent)",
        spec(DELETED, generation=3),
        done(),
        None,
        0,
        ActionKind.STOP,
        "deleted",
    ),
    (
        "deleted and stopped, service not told",
        spec(DELETED, generation=3, observed=(2, "ready")),
        done(AppliedState.STOPPED, generation=3, reported="stopped"),
        ABSENT,
        0,
        ActionKind.REPORT,
        "stop",
    ),
    (
        "force delete always calls stop",
        spec(DELETED, generation=3, force=True),
        done(),
        ABSENT,
        0,
        ActionKind.STOP,
        "force deleted",
    ),
    (
        "stopped and recorded",
        spec(STOPPED, generation=2, observed=(2, "stopped")),
        done(AppliedState.STOPPED, generation=2, reported="stopped"),
        ABSENT,
        0,
        None,
        "",
    ),
    (
        "stopped but plugin still runs it",
        spec(STOPPED, generation=2, observed=(2, "stopped")),
        done(AppliedState.STOPPED, generation=2, reported="stopped"),
        PRESENT,
        0,
        ActionKind.STOP,
        "still reports",
    ),
    (
        "activated again",
        spec(generation=3),
        done(AppliedState.STOPPED, generation=2, reported="stopped"),
        ABSENT,
        0,
        ActionKind.START,
        "activated",
    ),
    (
        "relaunch requested",
        spec(generation=2, relaunch=2),
        done(),
        HEALTHY,
        0,
        ActionKind.RELAUNCH,
        "relaunch requested",
    ),
    (
        "relaunch handled",
        spec(generation=2, relaunch=2, observed=(2, "ready")),
        done(generation=2, relaunch=2),
        HEALTHY,
        0,
        None,
        "",
    ),
    (
        "relaunch of a stopped deployment starts it",
        spec(generation=2, relaunch=2),
        None,
        ABSENT,
        0,
        ActionKind.START,
        "relaunch requested",
    ),
    (
        "self-heal: missing",
        spec(observed=(1, "ready")),
        done(),
        ABSENT,
        0,
        ActionKind.RELAUNCH,
        "reports it missing",
    ),
    (
        "self-heal: errored",
        spec(observed=(1, "ready")),
        done(),
        ERRORED,
        1,
        ActionKind.RELAUNCH,
        "attempt 2 of 3",
    ),
    (
        "self-heal is bounded",
        spec(observed=(1, "ready")),
        done(),
        ERRORED,
        3,
        ActionKind.NOTICE,
        "not relaunching again",
    ),
    (
        "failed start waits for a new generation",
        spec(),
        done(AppliedState.FAILED, model=None, reported="errored"),
        ABSENT,
        0,
        None,
        "",
    ),
    (
        "failed start retried on a new generation",
        spec(generation=2),
        done(AppliedState.FAILED, model=None, reported="errored"),
        ABSENT,
        0,
        ActionKind.START,
        "starting model m-1",
    ),
    (
        "failed start that came up after all",
        spec(),
        done(AppliedState.FAILED, model=None, reported="errored"),
        HEALTHY,
        0,
        ActionKind.ADOPT,
        "now reports",
    ),
    (
        "failed stop waits",
        spec(STOPPED, generation=2),
        done(AppliedState.FAILED, generation=2),
        PRESENT,
        0,
        None,
        "",
    ),
    (
        "new generation, same model, kv only",
        spec(generation=2, observed=(1, "ready")),
        done(),
        HEALTHY,
        0,
        ActionKind.ADOPT,
        "needs no change",
    ),
]


@pytest.mark.parametrize(
    ("desired", "applied", "observed", "attempts", "kind", "words"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide(desired, applied, observed, attempts, kind, words):
    step = decide("d-1", desired, applied, observed, heal_attempts=attempts)
    if kind is None:
        assert step is None
        return
    assert step is not None
    assert step.kind is kind, str(step)
    assert words in step.reason
    assert step.generation == desired.generation
    assert step.deployment_id == "d-1"


def test_force_flag_travels_with_the_stop():
    step = decide("d-1", spec(DELETED, generation=3, force=True), done(), PRESENT)
    assert step is not None and step.force is True
    plain = decide("d-1", spec(DELETED, generation=3), done(), PRESENT)
    assert plain is not None and plain.force is False


def test_unknown_deployment_reported_not_stopped_by_default():
    step = decide("x-9", None, None, PRESENT)
    assert step is not None and step.kind is ActionKind.REPORT_UNKNOWN
    assert "stopUnknownDeployments is off" in step.reason


def test_unknown_deployment_stopped_when_configured():
    step = decide("x-9", None, None, PRESENT, policy=Policy(stop_unknown_deployments=True))
    assert step is not None and step.kind is ActionKind.STOP


def test_removed_everywhere_is_forgotten():
    step = decide("d-1", None, done(AppliedState.STOPPED), ABSENT)
    assert step is not None and step.kind is ActionKind.FORGET
    assert decide("d-1", None, None, ABSENT) is None


def test_report_carries_the_state_to_report():
    step = decide("d-1", spec(DELETED, generation=3), done(), ABSENT)
    assert step is not None and step.report_state == "stopped"


def test_plan_covers_every_view_in_order():
    desired = {"d-2": replace(spec(), id="d-2"), "d-1": spec(observed=(1, "ready"))}
    applied = {"d-1": done(), "d-3": replace(done(AppliedState.STOPPED), deployment_id="d-3")}
    observed = {"d-1": PRESENT, "x-1": PRESENT, "gone": ABSENT}
    steps = plan(desired, applied, observed)
    assert [(s.deployment_id, s.kind) for s in steps] == [
        ("d-2", ActionKind.START),
        ("d-3", ActionKind.FORGET),
        ("x-1", ActionKind.REPORT_UNKNOWN),
    ]


def test_status_checks_skip_covered_and_stopped():
    desired = {
        "d-1": spec(),
        "d-2": replace(spec(), id="d-2"),
        "d-3": replace(spec(STOPPED), id="d-3"),
    }
    applied = {
        "d-1": done(),
        "d-2": replace(done(), deployment_id="d-2"),
        "d-3": replace(done(AppliedState.STOPPED), deployment_id="d-3"),
    }
    steps = plan_status_checks(desired, applied, covered={"d-2"})
    assert [(s.deployment_id, s.kind) for s in steps] == [("d-1", ActionKind.STATUS)]


@pytest.mark.parametrize(
    ("raw", "exists", "healthy", "model"),
    [
        ({"status": "passing", "state": "ready", "data": {"currentModelId": "m-7"}}, True, True, "m-7"),
        ({"status": "warning", "state": "ready"}, True, True, None),
        ({"status": "failing", "state": "errored", "msg": "No deployment dir: /x/"}, None, False, None),
        (
            {"status": "unknown", "state": "stopped", "msg": "No Kubernetes deployment found"},
            False,
            False,
            None,
        ),
        ({"status": "unknown"}, None, None, None),
        (None, None, None, None),
    ],
)
def test_observation_from_status(raw, exists, healthy, model):
    seen = observation_from_status(raw)
    assert (seen.exists, seen.healthy, seen.model_id) == (exists, healthy, model)


def test_observations_from_list_reads_every_known_shape():
    found = observations_from_list(
        {
            "d-1": {
                "status": "passing",
                "data": {"currentModelId": "m-1"},
            },  # filesystem/docker: a status dict
            "d-2": {"model_id": "m-2", "state": "running"},  # the test plugin's record
            "d-3": None,
        }
    )
    assert found["d-1"] == Observation(exists=True, model_id="m-1")
    assert found["d-2"].model_id == "m-2"
    assert found["d-3"].exists is True and found["d-3"].model_id is None
