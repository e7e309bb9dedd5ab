"""Pure judgement of live objects: is a rollout done, failed or under way, and why.

Input is what the API returned (Deployments, Jobs, Pods as plain dicts in the
API's JSON shape); output is a small verdict with the reason a platform
engineer would look for in ``kubectl describe``: ImagePullBackOff,
CrashLoopBackOff, OOMKilled, Unschedulable…
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shipmate.plugins.kubernetes.naming import ANNOTATION_MODEL_ID, LABEL_MODEL


class Phase(StrEnum):
    COMPLETE = "complete"
    PROGRESSING = "progressing"
    FAILED = "failed"


# reason -> (severity, fatal, hint). Fatal reasons do not heal by waiting.
_REASONS: dict[str, tuple[int, bool, str]] = {
    "OOMKilled": (
        100,
        True,
        "the container ran out of memory: raise memoryLimit in the deployment's key-value config",
    ),
    "CrashLoopBackOff": (90, True, "the container keeps exiting: see its logs"),
    "InvalidImageName": (85, True, "the image reference is malformed"),
    "ImagePullBackOff": (
        80,
        True,
        "the image cannot be pulled: check that it was pushed and that the nodes may pull it",
    ),
    "CreateContainerConfigError": (75, True, "a Secret or ConfigMap the pod refers to is missing"),
    "CreateContainerError": (75, True, "the container runtime could not create the container"),
    "RunContainerError": (75, True, "the container runtime could not start the container"),
    "ErrImagePull": (70, False, "the image pull failed; Kubernetes retries"),
    "Error": (60, False, "the container exited with an error"),
    "Unschedulable": (50, False, "no node can run the pod (not enough CPU or memory, taints or selectors)"),
    "NotReady": (20, False, "the readiness probe (GET /ping) does not pass yet"),
    "ContainerCreating": (10, False, "the container is being created"),
    "PodInitializing": (10, False, "the pod is initialising"),
    "Pending": (10, False, "the pod is waiting to be scheduled or started"),
}


@dataclass(frozen=True, slots=True)
class PodProblem:
    """Why one pod does not serve."""

    pod: str
    reason: str
    message: str = ""
    container: str | None = None

    @property
    def severity(self) -> int:
        return _REASONS.get(self.reason, (40, False, ""))[0]

    @property
    def fatal(self) -> bool:
        return _REASONS.get(self.reason, (40, False, ""))[1]

    def describe(self) -> str:
        where = f"pod {self.pod}" + (f", container {self.container}" if self.container else "")
        hint = _REASONS.get(self.reason, (0, False, ""))[2]
        detail = f": {self.message.strip()}" if self.message.strip() else ""
        text = f"{self.reason} ({where}){detail}"
        return f"{text} — {hint}" if hint else text


def pod_problem(pod: dict[str, Any]) -> PodProblem | None:
    """The most severe reason ``pod`` is not serving, or ``None`` when it is ready."""
    name = pod.get("metadata", {}).get("name", "?")
    status = pod.get("status") or {}
    found: list[PodProblem] = []
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            found.append(
                PodProblem(name, condition.get("reason") or "Unschedulable", condition.get("message") or "")
            )
    statuses = list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])
    for cs in statuses:
        container = cs.get("name")
        state = cs.get("state") or {}
        last = (cs.get("lastState") or {}).get("terminated") or {}
        waiting = state.get("waiting")
        terminated = state.get("terminated")
        if last.get("reason") == "OOMKilled" or (terminated or {}).get("reason") == "OOMKilled":
            found.append(PodProblem(name, "OOMKilled", _exit_text(last or terminated or {}), container))
        if waiting:
            reason = waiting.get("reason") or "Pending"
            message = waiting.get("message") or ""
            if reason == "CrashLoopBackOff" and last:
                message = f"{message} last exit: {_exit_text(last)}".strip()
            found.append(PodProblem(name, reason, message, container))
        elif terminated and terminated.get("exitCode", 0) != 0:
            found.append(
                PodProblem(name, terminated.get("reason") or "Error", _exit_text(terminated), container)
            )
        elif (
            state.get("running") is not None
            and cs.get("ready") is False
            and cs in (status.get("containerStatuses") or [])
        ):
            found.append(PodProblem(name, "NotReady", "", container))
    if not found and status.get("phase") == "Pending":
        found.append(PodProblem(name, "Pending", ""))
    return max(found, key=lambda p: p.severity, default=None)


def _exit_text(terminated: dict[str, Any]) -> str:
    parts = [f"exit code {terminated.get('exitCode')}"] if terminated.get("exitCode") is not None else []
    message = (terminated.get("message") or "").strip()
    if message:
        parts.append(message[-500:])
    return "; ".join(parts)


def worst_pod_problem(pods: Iterable[dict[str, Any]]) -> PodProblem | None:
    problems = [
        p
        for p in (pod_problem(pod) for pod in pods if not pod.get("metadata", {}).get("deletionTimestamp"))
        if p
    ]
    return max(problems, key=lambda p: p.severity, default=None)


@dataclass(frozen=True, slots=True)
class Rollout:
    """Where a Deployment's rollout stands."""

    phase: Phase
    desired: int
    updated: int
    ready: int
    available: int
    model_id: str | None
    problem: PodProblem | None
    message: str


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


def assess_rollout(
    deployment: dict[str, Any], pods: list[dict[str, Any]], *, minimum: int | None = None
) -> Rollout:
    """Judge a Deployment from its status and its current pods.

    Complete when the controller has seen the latest spec and every desired
    replica runs the new template and is available; failed when Kubernetes gave
    up (ProgressDeadlineExceeded) or a new pod hit a reason that waiting will not
    fix; under way otherwise. ``minimum`` is the HPA's ``minReplicas`` when one owns the
    replica count: fewer replicas than that is not "ready", whatever the spec says.
    """
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    metadata = deployment.get("metadata") or {}
    desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    if minimum is not None:
        desired = max(desired, minimum)
    updated = int(status.get("updatedReplicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    observed = int(status.get("observedGeneration") or 0)
    generation = int(metadata.get("generation") or 0)
    template_model = ((spec.get("template") or {}).get("metadata") or {}).get("labels", {}).get(LABEL_MODEL)
    model_id = (metadata.get("annotations") or {}).get(ANNOTATION_MODEL_ID)
    new_pods = [
        p for p in pods if (p.get("metadata", {}).get("labels") or {}).get(LABEL_MODEL) == template_model
    ]
    problem = worst_pod_problem(new_pods)
    progressing = _condition(deployment, "Progressing") or {}

    def verdict(phase: Phase, message: str) -> Rollout:
        return Rollout(phase, desired, updated, ready, available, model_id, problem, message)

    if observed >= generation and updated >= desired and available >= desired and total <= updated:
        return verdict(Phase.COMPLETE, f"{available}/{desired} pods ready")
    # A deadline condition from before the latest change is stale until the controller sees it.
    if progressing.get("reason") == "ProgressDeadlineExceeded" and observed >= generation:
        detail = problem.describe() if problem else progressing.get("message") or "no reason reported"
        return verdict(Phase.FAILED, f"the rollout made no progress before its deadline: {detail}")
    if problem is not None and problem.fatal:
        return verdict(Phase.FAILED, problem.describe())
    detail = f"; {problem.describe()}" if problem else ""
    return verdict(
        Phase.PROGRESSING, f"rollout in progress: {updated}/{desired} updated, {available} available{detail}"
    )


@dataclass(frozen=True, slots=True)
class Build:
    phase: Phase
    message: str


def assess_build(job: dict[str, Any], pods: list[dict[str, Any]]) -> Build:
    """Judge a Kaniko build Job from its conditions and its pods."""
    status = job.get("status") or {}
    complete = _condition(job, "Complete")
    failed = _condition(job, "Failed")
    problem = worst_pod_problem(pods)
    if int(status.get("succeeded") or 0) > 0 or (complete and complete.get("status") == "True"):
        return Build(Phase.COMPLETE, "image built and pushed")
    if failed and failed.get("status") == "True":
        reason = failed.get("reason") or "Failed"
        detail = problem.describe() if problem else failed.get("message") or ""
        return Build(Phase.FAILED, f"{reason}: {detail}".rstrip(": "))
    if problem is not None and problem.fatal:
        return Build(Phase.FAILED, problem.describe())
    return Build(Phase.PROGRESSING, problem.describe() if problem else "building")
