"""The protocol-neutral data plane: find the deployment, shape the rows, score, tell the hooks.

Endpoints of every wire protocol call `DataPlane.infer` with a canonical
`InferenceRequest` and encode the `InferenceResponse` it returns; which class a
row predicts is decided here (`predicted_indices`), not by a wire format.
Scoring runs inline on the event loop: models here are CPU-bound and small per
request, so a thread hop would add latency without adding throughput; the server
scales with worker processes instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from shipmate.packages import Columns, InputRejected, Manifest, ModelError, Scores
from shipmate.packages.baseline import predicted_labels
from shipmate.serving.deployments import Deployment, Registry
from shipmate.serving.errors import DeploymentNotFound, DeploymentNotReady, PredictionFailed
from shipmate.serving.inputs import check_finite, check_no_missing, first_missing, model_input
from shipmate.serving.protocol import InferenceRequest, InferenceResponse, InputError

log = logging.getLogger(__name__)

ScoreHook = Callable[[Deployment, InferenceRequest, Scores], None]
"""Told once per scored request, with every row (even when fan-out scored it on several
workers): the seam for prediction monitoring."""


def predicted_indices(scores: Scores, manifest: Manifest) -> np.ndarray:
    """The index of the predicted class per row, by the package's one rule (`predicted_labels`)."""
    probs = scores.probabilities
    assert probs is not None
    return predicted_labels(probs, manifest)


def respond(
    deployment_id: str, manifest: Manifest, scores: Scores, request_id: str | None = None
) -> InferenceResponse:
    """The response for scores: with each row's predicted class when the model classifies."""
    predicted = predicted_indices(scores, manifest) if scores.probabilities is not None else None
    return InferenceResponse(deployment_id, manifest, scores, predicted, request_id)


class DataPlane:
    def __init__(self, registry: Registry, hooks: Sequence[ScoreHook] = ()) -> None:
        self.registry = registry
        self.hooks = list(hooks)

    def deployment(self, route: str | None) -> Deployment:
        """The deployment for a route id; ``None`` means the only one (single-model mode)."""
        dep = self.registry.only() if route is None else self.registry.get(route)
        if dep is not None:
            return dep
        if route is None and len(self.registry.by_key()) > 1:
            raise DeploymentNotFound(
                "(none given)", hint="several deployments are served here: use /deployments/{id}/predictions"
            )
        if (
            route is None
            and self.registry.initialized
            and not self.registry.pending
            and not self.registry.failures
        ):
            raise DeploymentNotFound("(none given)", hint="no deployment is served here")
        if route is None or not self.registry.initialized:
            raise DeploymentNotReady(
                "the model is not loaded yet" if route is None else "deployments are still being loaded"
            )
        failure = next(
            (f for f in self.registry.failures.values() if route in (f.key, f.deployment_id)), None
        )
        if failure is not None:
            raise DeploymentNotReady(f"deployment {route!r} failed to load: {failure.public_error}")
        raise DeploymentNotFound(route)

    def infer(self, deployment: Deployment, request: InferenceRequest) -> InferenceResponse:
        _, scores = self.score(deployment, request)
        self.notify(deployment, request, scores)
        return respond(deployment.id, deployment.manifest, scores, request.request_id)

    def score(self, deployment: Deployment, request: InferenceRequest) -> tuple[np.ndarray | Columns, Scores]:
        """Check and score the rows without telling the hooks: the rows as the model saw them, and scores."""
        model = deployment.model
        rows = model_input(request, deployment.manifest, model.input_kind, deployment.features)
        if isinstance(rows, np.ndarray):
            check_finite(rows, deployment.features)
            if not model.accepts_missing:
                check_no_missing(rows, deployment.features)
        try:
            return rows, model.predict_checked(rows) if isinstance(rows, np.ndarray) else model.predict(rows)
        except InputError:
            raise
        except InputRejected as exc:
            raise InputError(exc.message, row=exc.row, column=exc.column) from None
        except ModelError as exc:
            log.error("deployment %s: %s", deployment.id, exc)
            raise PredictionFailed(f"the model failed: {exc}") from exc
        except Exception as exc:
            log.exception(
                "deployment %s: the model raised while scoring %d rows", deployment.id, len(request)
            )
            missing = first_missing(rows, deployment.features)
            if missing is not None:  # the likeliest cause, and the client's to fix: a 422 naming it
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise InputError(
                    f"missing value, and the model failed on this batch: {type(exc).__name__}: {first_line}",
                    row=missing[0],
                    column=missing[1],
                ) from None
            raise PredictionFailed(f"the model failed: {type(exc).__name__}: {exc}") from exc

    def notify(self, deployment: Deployment, request: InferenceRequest, scores: Scores) -> None:
        """Tell the hooks about one scored request (once per request, however it was scored)."""
        for hook in self.hooks:
            try:
                hook(deployment, request, scores)
            except Exception:  # monitoring must never fail a prediction
                log.exception("score hook %r failed", hook)
