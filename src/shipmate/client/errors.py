"""Errors raised by ``ShipmateClient``: one type per HTTP outcome, each saying whether a retry may help.

httpx's own exceptions never escape the client; connection problems become
``ServiceUnavailable`` (retryable).
"""

from __future__ import annotations

from typing import Any


class ShipmateError(Exception):
    """Base of every error the client raises."""

    retryable: bool = False


class ApiError(ShipmateError):
    """The service answered with an error status; ``field`` names the input at fault, when known."""

    def __init__(self, status: int, message: str, *, field: str | None = None, body: Any = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.field = field
        self.body = body

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status >= 500 or self.status == 429


class BadRequest(ApiError):
    """400/422: the request was invalid; ``field`` says which part and ``message`` why."""


class Unauthorized(ApiError):
    """401: no token, or an unknown or revoked one."""


class Forbidden(ApiError):
    """403: the token may not do this (e.g. an agent token outside its environment)."""


class NotFound(ApiError):
    """404: the id names nothing."""


class Conflict(ApiError):
    """409: the change contradicts the current state."""


class PayloadTooLarge(ApiError):
    """413: the upload is above the service's size limit."""


class ServiceUnavailable(ShipmateError):
    """The service could not be reached or answered 5xx; retry later."""

    retryable = True

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ChecksumMismatch(ShipmateError):
    """A downloaded artifact's SHA-256 differs from the one the service announced; retry the download."""

    retryable = True


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: BadRequest,
}


def error_for(status: int, body: Any) -> ShipmateError:
    """The exception for an error response (``body`` is the decoded JSON, or text)."""
    message = str(body)
    field = None
    if isinstance(body, dict):
        message = str(body.get("detail", body))
        field = body.get("field")
    if status >= 500:
        return ServiceUnavailable(f"the service failed ({status}): {message}", status=status)
    return _BY_STATUS.get(status, ApiError)(status, message, field=field, body=body)
