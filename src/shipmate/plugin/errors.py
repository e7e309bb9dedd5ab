"""Errors of the plugin SDK. Each message names what is wrong and where."""

from __future__ import annotations


class PluginError(Exception):
    """Base of every error the SDK raises on purpose."""


class ConfigError(PluginError):
    """An action config, private config or info section is missing or malformed."""


class PluginLoadError(PluginError):
    """The plugin named by ``--plugin`` cannot be found, imported or built."""


class StatusFileError(PluginError):
    """A status file is missing, unreadable or not a valid ActionStatusInfo."""


def describe_yaml_error(exc: Exception) -> str:
    """``line L, column C: problem`` for a PyYAML error, its text otherwise."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return str(problem)
