"""The desired-state view's ordering rules, as a table of feed events and snapshots (no agent needed)."""

from __future__ import annotations

import pytest

from shipmate.agent.desired import DesiredView
from shipmate.agent.model import DesiredDeployment, ModelPackageRef, ServiceObserved
from shipmate.agent.ports import Change
from shipmate.common.vocabulary import DesiredState, EventType


def spec(deployment_id: str, generation: int, state: str = "running") -> DesiredDeployment:
    return DesiredDeployment(deployment_id, generation, DesiredState(state), ModelPackageRef("m-1"))


def changed(event_id: int, deployment_id: str, generation: int, state: str = "running") -> Change:
    return Change(
        event_id,
        EventType.DESIRED_CHANGED,
        deployment_id,
        generation,
        None,
        spec(deployment_id, generation, state),
    )


def removed(event_id: int, deployment_id: str) -> Change:
    return Change(event_id, EventType.DEPLOYMENT_REMOVED, deployment_id, None)


SNAPSHOT = "snapshot"

# (what happens, in order) -> (deployment id -> generation the view ends with, or None for absent)
CASES = {
    "an event older than a snapshot that did not list it cannot bring it back": (
        [(SNAPSHOT, 10, []), changed(5, "d-1", 2)],
        {"d-1": None},
    ),
    "an event newer than the snapshot adds it": (
        [(SNAPSHOT, 10, []), changed(11, "d-1", 1)],
        {"d-1": 1},
    ),
    "removals are final, whatever a later snapshot or event says": (
        [changed(11, "d-2", 1), removed(12, "d-2"), (SNAPSHOT, 11, [spec("d-2", 1)]), changed(13, "d-2", 1)],
        {"d-2": None},
    ),
    "what the feed delivered after the snapshot was taken survives the merge": (
        [changed(20, "d-3", 1), (SNAPSHOT, 15, [])],
        {"d-3": 1},
    ),
    "what the feed delivered before the snapshot goes if the snapshot does not list it": (
        [changed(14, "d-3", 1), (SNAPSHOT, 15, [])],
        {"d-3": None},
    ),
    "a newer generation wins over an older snapshot entry": (
        [changed(21, "d-3", 2, "stopped"), (SNAPSHOT, 16, [spec("d-3", 1)])],
        {"d-3": 2},
    ),
    "a newer snapshot entry wins over an older event": (
        [changed(21, "d-3", 1), (SNAPSHOT, 22, [spec("d-3", 3)])],
        {"d-3": 3},
    ),
    "an older event does not replace a newer generation": (
        [changed(5, "d-4", 3), changed(6, "d-4", 2)],
        {"d-4": 3},
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_ordering_rules(name: str) -> None:
    steps, expected = CASES[name]
    view = DesiredView()
    for step in steps:
        if isinstance(step, tuple):
            _, cursor, deployments = step
            view.merge(cursor, deployments)
        else:
            view.apply(step)
    for deployment_id, generation in expected.items():
        found = view.get(deployment_id)
        assert (found.generation if found else None) == generation, name


def test_apply_names_the_deployment_to_look_at_again() -> None:
    view = DesiredView()
    assert view.apply(changed(1, "d-1", 1)) == "d-1"
    assert view.apply(removed(2, "d-1")) == "d-1"  # look again: it must be stopped
    assert view.apply(changed(3, "d-1", 2)) is None  # removed for good
    assert view.apply(Change(4, EventType.ENVIRONMENT_UPDATED)) is None


def test_a_report_updates_what_the_service_is_known_to_have_recorded() -> None:
    view = DesiredView()
    view.apply(changed(1, "d-1", 2))
    view.note_reported("d-1", 1, ServiceObserved(1, "ready", "passing"))  # an older generation: ignored
    assert view.get("d-1") == spec("d-1", 2)
    view.note_reported("d-1", 2, ServiceObserved(2, "ready", "passing"))
    found = view.get("d-1")
    assert found is not None and found.observed == ServiceObserved(2, "ready", "passing")
    view.remove(["d-1"])
    assert "d-1" not in view and len(view) == 0
