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
