"""The plugin SDK: the contract every Shipmate plugin implements.

Public names are re-exported lazily so that ``bosun-plugin-runner`` pays only for
what an action uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipmate.plugin.actions import Action, invoke
    from shipmate.plugin.base import BosunPluginBase, PluginBase
    from shipmate.plugin.errors import ConfigError, ContractViolation, PluginError, PluginLoadError, StatusFileError
    from shipmate.plugin.info import DeploymentInfo, EndpointInfo, PEInfo
    from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DataKey, DeploymentState

_EXPORTS = {
    "Action": "shipmate.plugin.actions",
    "invoke": "shipmate.plugin.actions",
    "PluginBase": "shipmate.plugin.base",
    "BosunPluginBase": "shipmate.plugin.base",
    "ConfigError": "shipmate.plugin.errors",
    "ContractViolation": "shipmate.plugin.errors",
    "PluginError": "shipmate.plugin.errors",
    "PluginLoadError": "shipmate.plugin.errors",
    "StatusFileError": "shipmate.plugin.errors",
    "DeploymentInfo": "shipmate.plugin.info",
    "EndpointInfo": "shipmate.plugin.info",
    "PEInfo": "shipmate.plugin.info",
    "ActionStatus": "shipmate.plugin.status",
    "ActionStatusInfo": "shipmate.plugin.status",
    "DataKey": "shipmate.plugin.status",
    "DeploymentState": "shipmate.plugin.status",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'shipmate.plugin' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
