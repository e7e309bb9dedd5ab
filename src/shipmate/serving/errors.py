"""Domain errors of the prediction server; `shipmate.serving.edge.guard` maps them to HTTP in one place."""

from __future__ import annotations


class ServingError(Exception):
    status = 500


class DeploymentNotFound(ServingError):
    status = 404

    def __init__(self, deployment_id: str, hint: str | None = None) -> None:
        super().__init__(hint or f"no deployment {deployment_id!r} is served here")
        self.deployment_id = deployment_id


class DeploymentNotReady(ServingError):
    status = 503


class PredictionFailed(ServingError):
    """The model raised while scoring; the message is logged and returned, the server keeps serving."""

    status = 500


class PayloadTooLarge(ServingError):
    status = 413


class UnsupportedMediaType(ServingError):
    status = 415


class Unauthorized(ServingError):
    status = 401


class ManagementDisabled(ServingError):
    status = 403


class UploadRefused(ServingError):
    status = 422
