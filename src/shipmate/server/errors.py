"""Domain errors raised by the services; ``app.py`` maps each to one HTTP status in one table."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a service raises on purpose. ``field`` names the input at fault, if any."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DomainError):
    """An id that names nothing (or nothing the caller may see)."""


class Conflict(DomainError):
    """The change contradicts the current state (e.g. replacing the model of a deleted deployment)."""


class InvalidInput(DomainError):
    """Well-formed but wrong input: the message says which field and why."""


class InvalidPackage(DomainError):
    """An upload that is not a valid model package."""


class PayloadTooLarge(DomainError):
    """An upload above the configured size limit."""


class Unauthenticated(DomainError):
    """No token, or a token that is unknown or revoked."""


class Forbidden(DomainError):
    """A valid token that may not do this (an agent token outside its environment)."""
