"""Property: from any mix of desired, applied and observed state, following the reconciler's steps
(with an environment that does what it is told) converges in a few steps to what the service wants,
and never starts a deployment the environment already runs (when the plugin's view is known)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from shipmate.agent.model import (
    ActionKind,
    AppliedRecord,
    AppliedState,
    DesiredDeployment,
    ModelPackageRef,
    Observation,
    ServiceObserved,
)
from shipmate.agent.reconciler import decide
from shipmate.common.vocabulary import DesiredState

MODELS = st.sampled_from(["m-1", "m-2"])


@st.composite
def situations(draw):
    generation = draw(st.integers(1, 5))
    desired = None
    if draw(st.booleans()):
        desired = DesiredDeployment(
            "d-1",
            generation,
            draw(st.sampled_from(list(DesiredState))),
            ModelPackageRef(draw(MODELS)),
            relaunch_generation=draw(st.integers(0, generation)),
            force=draw(st.booleans()),
            observed=ServiceObserved(
                draw(st.integers(0, generation)), draw(st.sampled_from([None, "ready", "stopped"]))
            ),
        )
    applied = None
    if draw(st.booleans()):
        state = draw(st.sampled_from([AppliedState.RUNNING, AppliedState.STOPPED]))
        applied = AppliedRecord(
            "d-1",
            draw(st.integers(0, generation)),
            state,
            draw(MODELS) if state is AppliedState.RUNNING else None,
            relaunch_generation=draw(st.integers(0, generation)),
            reported_state=draw(st.sampled_from([None, "ready", "stopped"])),
        )
    env_model = draw(st.sampled_from([None, "m-1", "m-2"]))
    known = draw(st.booleans())  # did deployment_list run?
    return desired, applied, env_model, known


@settings(max_examples=500, deadline=None)
@given(situations())
def test_following_the_plan_converges(situation):
    desired, applied, env_model, known = situation
    known_from_start = known
    starts_while_running = 0
    told_service: ServiceObserved | None = None
    trail: list[str] = []
    for _ in range(8):
        observed = Observation(exists=env_model is not None, model_id=env_model) if known else None
        spec = desired if told_service is None or desired is None else replace(desired, observed=told_service)
        step = decide("d-1", spec, applied, observed)
        trail.append(str(step))
        if step is None:
            break
        kind = step.kind
        if kind is ActionKind.START and env_model is not None and known:
            starts_while_running += 1
            print("START while running:", situation, step)
        if kind in (ActionKind.START, ActionKind.REPLACE_MODEL, ActionKind.RELAUNCH):
            assert desired is not None
            env_model = desired.model_package_id
            applied = AppliedRecord("d-1", desired.generation, AppliedState.RUNNING, env_model,
                                    desired.relaunch_generation, reported_state="ready")  # fmt: skip
            told_service = ServiceObserved(desired.generation, "ready")
        elif kind is ActionKind.STOP:
            env_model = None
            if desired is None:
                applied = None
            else:
                applied = AppliedRecord("d-1", desired.generation, AppliedState.STOPPED, None,
                                        desired.relaunch_generation, reported_state="stopped")  # fmt: skip
                told_service = ServiceObserved(desired.generation, "stopped")
        elif kind in (ActionKind.ADOPT, ActionKind.REPORT):
            assert desired is not None
            state = step.report_state or "ready"
            running = state == "ready"
            applied = AppliedRecord(
                "d-1",
                desired.generation,
                AppliedState.RUNNING if running else AppliedState.STOPPED,
                desired.model_package_id if running else None,
                desired.relaunch_generation,
                reported_state=state,
            )
            told_service = ServiceObserved(desired.generation, state)
        elif kind is ActionKind.FORGET:
            applied = None
        elif kind in (ActionKind.REPORT_UNKNOWN, ActionKind.NOTICE):
            break  # said once; the agent waits for a change
        known = True  # after any action the agent knows the environment's state
    else:
        raise AssertionError(f"no convergence from {situation}")
    assert starts_while_running == 0
    if not known_from_start:
        return  # without deployment_list the agent can only trust its own record; converging is enough
    if desired is not None and desired.state is DesiredState.RUNNING:
        assert env_model == desired.model_package_id, (situation, trail)
    elif desired is not None:
        assert env_model is None, (situation, trail)
