"""The plugin SDK: the contract every Shipmate plugin implements.

Public names are re-exported lazily so that ``bosun-plugin-runner`` pays only for
what an action uses.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the runner ms
if TYPE_CHECKING:
    from typing import Any

    from shipmate.plugin.actions import Action, invoke
    from shipmate.plugin.base import BosunPluginBase, PluginBase
    from shipmate.plugin.config import ActionConfig, load_private_config, mask_secret, sanitized
    from shipmate.plugin.errors import (
        ConfigError,
        PluginError,
        PluginLoadError,
        StatusFileError,
    )
    from shipmate.plugin.info import DeploymentInfo, EndpointInfo, PEInfo
    from shipmate.plugin.loader import build_plugin, load_plugin_class
    from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DataKey, DeploymentState

_EXPORTS = {
    "Action": "shipmate.plugin.actions",
    "invoke": "shipmate.plugin.actions",
    "PluginBase": "shipmate.plugin.base",
    "BosunPluginBase": "shipmate.plugin.base",
    "ActionConfig": "shipmate.plugin.config",
    "load_private_config": "shipmate.plugin.config",
    "mask_secret": "shipmate.plugin.config",
    "sanitized": "shipmate.plugin.config",
    "ConfigError": "shipmate.plugin.errors",
    "PluginError": "shipmate.plugin.errors",
    "PluginLoadError": "shipmate.plugin.errors",
    "StatusFileError": "shipmate.plugin.errors",
    "DeploymentInfo": "shipmate.plugin.info",
    "EndpointInfo": "shipmate.plugin.info",
    "PEInfo": "shipmate.plugin.info",
    "build_plugin": "shipmate.plugin.loader",
    "load_plugin_class": "shipmate.plugin.loader",
    "ActionStatus": "shipmate.plugin.status",
    "ActionStatusInfo": "shipmate.plugin.status",
    "DataKey": "shipmate.plugin.status",
    "DeploymentState": "shipmate.plugin.status",
}

__all__ = [
    "Action",
    "ActionConfig",
    "ActionStatus",
    "ActionStatusInfo",
    "BosunPluginBase",
    "ConfigError",
    "DataKey",
    "DeploymentInfo",
    "DeploymentState",
    "EndpointInfo",
    "PEInfo",
    "PluginBase",
    "PluginError",
    "PluginLoadError",
    "StatusFileError",
    "build_plugin",
    "invoke",
    "load_plugin_class",
    "load_private_config",
    "mask_secret",
    "sanitized",
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'shipmate.plugin' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
