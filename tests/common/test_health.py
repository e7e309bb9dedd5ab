"""The shared rules (``shipmate.common.health``) the CLI and the web UI both show."""

from __future__ import annotations

from shipmate.common.health import DeploymentView, environment_health, is_pending


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
