"""The shared rules (``shipmate.common.health``) the CLI and the web UI both show."""

from __future__ import annotations

import pytest

from shipmate.common.health import BADGES, DeploymentView, environment_health, is_pending, state_badge


def test_pending_until_the_latest_generation_is_reported_finished():
    assert is_pending(2, 1, "finished")
    assert is_pending(2, 2, "started")
    assert (
        not is_pending(2, 2, "finished") and not is_pending(2, 2, None) and not is_pending(2, 2, "observed")
    )


def test_health_is_never_better_than_a_deployment_that_should_run():
    ready = DeploymentView("running", "ready", "passing", pending=False)
    broken = DeploymentView("running", "errored", "failing", pending=False)
    stopped_badly = DeploymentView("stopped", "errored", "failing", pending=False)
    assert environment_health("passing", [ready, ready]) == ("passing", "2 deployments: 2 ready")
    assert environment_health("passing", [ready, broken])[0] == "failing"
    assert environment_health("passing", [stopped_badly])[0] == "passing"  # it should not run anyway
    assert environment_health("failing", [ready]) == ("failing", "1 deployment: 1 ready")
    gone = DeploymentView("deleted", "stopped", "passing", pending=True)
    assert environment_health("unknown", [gone]) == ("unknown", "0 deployments")


@pytest.mark.parametrize(
    ("desired", "state", "status", "pending", "changing", "badge"),
    [
        ("running", "unknown", "unknown", True, False, "LAUNCHING"),
        ("running", "ready", "passing", False, False, "READY"),
        ("running", "ready", "passing", True, True, "REPLACING"),
        ("stopped", "ready", "passing", True, False, "STOPPING"),
        ("deleted", "ready", "passing", True, False, "STOPPING"),
        ("stopped", "stopped", "passing", False, False, "STOPPED"),
        ("running", "errored", "failing", False, False, "ERRORED"),
        ("running", "launching", "failing", False, False, "ERRORED"),
        ("running", "launching", "unknown", False, False, "LAUNCHING"),
    ],
)
def test_the_state_badge_names_where_a_change_is_going(
    desired: str, state: str, status: str, pending: bool, changing: bool, badge: str
) -> None:
    view = DeploymentView(desired, state, status, pending)
    assert state_badge(view, model_changing=changing) == badge
    assert badge in BADGES
