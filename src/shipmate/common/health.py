"""What a deployment's and an environment's status mean to a person (pure rules, standard library only).

The CLI and the web UI both show them, from the same deployment records the
deployments table shows, so the two can never tell different stories: a change the
agent has not carried out is *pending* (never the previous report as if it were new),
and an environment is never "passing" beside a failing deployment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SEVERITY = {"passing": 0, "unknown": 1, "warning": 2, "failing": 3}
"""Status words (``ActionStatus`` values), from best to worst."""

SETTLED_PHASES = (None, "finished", "observed")
"""Report phases after which an observed state is the outcome, not a step under way."""


def is_pending(generation: int, observed_generation: int, phase: str | None) -> bool:
    """The environment has not yet reported the outcome of the deployment's latest generation."""
    return observed_generation < generation or phase not in SETTLED_PHASES


@dataclass(frozen=True, slots=True)
class DeploymentView:
    """The parts of a deployment record the rules read."""

    desired: str
    """running, stopped or deleted"""
    state: str
    status: str
    pending: bool


def environment_health(agent_status: str, deployments: Iterable[DeploymentView]) -> tuple[str, str]:
    """The environment's health and a one-line count of its deployments by state.

    Health is the worse of the agent's own check of the environment (``agent_status``) and the
    settled reports of the deployments that should be running.
    """
    counts: dict[str, int] = {}
    worst = agent_status
    for d in deployments:
        if d.desired == "deleted":
            continue
        key = "pending" if d.pending else d.state
        counts[key] = counts.get(key, 0) + 1
        if not d.pending and d.desired == "running" and SEVERITY.get(d.status, 1) > SEVERITY.get(worst, 1):
            worst = d.status
    total = sum(counts.values())
    parts = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    return worst, f"{total} deployment{'s' if total != 1 else ''}" + (f": {parts}" if parts else "")


BADGES = ("LAUNCHING", "STOPPING", "REPLACING", "READY", "ERRORED", "STOPPED", "UNKNOWN")
"""The one word a person sees for a deployment (the web console's state badge)."""


def state_badge(view: DeploymentView, *, model_changing: bool = False) -> str:
    """What the deployment is doing or has reached, from desired state, observed state and whether the
    environment has caught up: a change under way is named by where it is going."""
    if view.state == "errored" or (not view.pending and view.status == "failing"):
        return "ERRORED"
    if view.pending:
        if view.desired in ("stopped", "deleted"):
            return "STOPPING"
        if model_changing or view.state == "replacingModel":
            return "REPLACING"
        return "LAUNCHING"
    if view.state == "ready":
        return "READY"
    if view.state == "stopped":
        return "STOPPED"
    return {"launching": "LAUNCHING", "shuttingDown": "STOPPING", "replacingModel": "REPLACING"}.get(
        view.state, "UNKNOWN"
    )
