"""Python client of the Shipmate service API (httpx, sync): typed results, typed errors."""

from shipmate.client.client import ShipmateClient
from shipmate.client.errors import (
    ApiError,
    BadRequest,
    ChecksumMismatch,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    ShipmateError,
    Unauthorized,
)
from shipmate.client.models import (
    Deployment,
    DeploymentPage,
    DesiredState,
    Environment,
    Event,
    EventPage,
    ModelPackage,
    Report,
    ReportResult,
    TokenInfo,
)

__all__ = [
    "ApiError",
    "BadRequest",
    "ChecksumMismatch",
    "Conflict",
    "Deployment",
    "DeploymentPage",
    "DesiredState",
    "Environment",
    "Event",
    "EventPage",
    "Forbidden",
    "ModelPackage",
    "NotFound",
    "PayloadTooLarge",
    "Report",
    "ReportResult",
    "ServiceUnavailable",
    "ShipmateClient",
    "ShipmateError",
    "TokenInfo",
    "Unauthorized",
]
