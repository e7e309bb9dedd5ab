"""The one error type of model packages: what is wrong, and with which file."""

from __future__ import annotations


class PackageError(ValueError):
    """A model package is malformed, unsafe, tampered with, or its model cannot be used.

    Raised for untrusted input, so the message names the member or field at fault
    and never includes the content of the package.
    """


class ModelError(RuntimeError):
    """The model raised while loading or scoring, or returned output of the wrong shape.

    Distinct from `PackageError`: the package was fine, the code inside it was not.
    """


class InputRejected(ValueError):
    """Well-formed rows that this model cannot take (e.g. a value beyond its float32 input).

    Carries the row and column at fault, so the prediction server answers a 422 naming them.
    """

    def __init__(self, message: str, *, row: int, column: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.row = row
        self.column = column
