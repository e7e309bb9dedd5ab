"""Run plugins written for DataRobot's ``datarobot-bosun`` package unchanged.

Such plugins import the SDK from the package's module paths (``from
bosun.plugin.bosun_plugin_base import BosunPluginBase`` and so on). When the real
package is not installed, ``install()`` adds an import hook that answers those
paths with Shipmate's own SDK. When it is installed, nothing is aliased: the
loader accepts classes derived from the real ``BosunPluginBase`` as they are.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Sequence

_SDK_MODULES = (
    "shipmate.plugin.base",
    "shipmate.plugin.status",
    "shipmate.plugin.info",
    "shipmate.plugin.actions",
)

ALIASED_MODULES = (
    "bosun",
    "bosun.plugin",
    "bosun.plugin.bosun_plugin_base",
    "bosun.plugin.action_status",
    "bosun.plugin.deployment_info",
    "bosun.plugin.pe_info",
    "bosun.plugin.endpoint_info",
    "bosun.plugin.constants",
    "bosun.plugin.constants_ext",
    "bosun.plugin.utils",
)
"""The package's module paths that plugins import SDK names from."""

_installed = False


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``bosun.plugin.*`` imports with a module holding Shipmate's SDK names."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in ALIASED_MODULES:
            return None
        is_package = fullname in ("bosun", "bosun.plugin")
        return importlib.util.spec_from_loader(fullname, self, is_package=is_package)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        if module.__name__ in ("bosun", "bosun.plugin"):
            module.__path__ = []
        for name in _SDK_MODULES:
            source = importlib.import_module(name)
            for key, value in vars(source).items():
                if not key.startswith("_"):
                    module.__dict__.setdefault(key, value)
        module.__dict__.update(_package_names())
        module.__dict__["__shipmate_alias__"] = True


def _package_names() -> dict[str, object]:
    """The package's constant-holder names, answered from Shipmate's vocabularies."""
    from shipmate.plugin import actions, base, config, info, status

    class BosunPluginConfigConstants:
        PLUGIN_CONFIG_KEY = "pluginConfig"
        MLOPS_URL_KEY = "MLOPS_BOSUN_MONITORING_URL"
        MLOPS_AGENT_VERIFY_SSL = config.VERIFY_SSL_KEY
        MLOPS_API_TOKEN_ENV = config.API_TOKEN_ENV
        MLOPS_API_TOKEN_KEY = config.API_TOKEN_KEY
        MLOPS_BOSUN_PRED_ENV_TYPE_KEY = "MLOPS_BOSUN_PRED_ENV_TYPE"
        MLOPS_BOSUN_PRED_ENV_PLATFORM_KEY = "MLOPS_BOSUN_PRED_ENV_PLATFORM"
        MLOPS_BOSUN_PRED_ENV_ID_KEY = "MLOPS_BOSUN_PRED_ENV_ID"
        MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING_KEY = "MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING"
        COMMAND_KEY = "command"

    class PeInfoConfigConstants:
        PE_INFO_KEY = "peInfo"

    class EndpointConfigConstants:
        ENDPOINT_KEY = "endpointInfo"

    class DeploymentInfoConfigConstants:
        DEPLOYMENT_INFO_KEY = "deploymentInfo"
        MODEL_FORMAT_MLPKG = "datarobot"
        MODEL_FORMAT_SCORING_CODE = "datarobotScoringCode"

    class DeploymentInfo(info.DeploymentInfo):
        """Built from the raw mapping, as the package's class is: ``DeploymentInfo(raw)``."""

        def __init__(self, raw: object, endpoint_info: object = None, **kwargs: object) -> None:
            source = info.DeploymentInfo.from_dict(raw)
            for name in info.DeploymentInfo.__slots__:
                setattr(self, name, getattr(source, name))

    class PEInfo(info.PEInfo):
        """Built from the raw mapping, as the package's class is: ``PEInfo(raw)``."""

        def __init__(self, raw: object, **kwargs: object) -> None:
            source = info.PEInfo.from_dict(raw)
            for name in info.PEInfo.__slots__:
                setattr(self, name, getattr(source, name))

    return {
        "BosunPluginBase": base.PluginBase,
        "ActionDataFields": status.DataKey,
        "BosunPluginActions": actions.Action,
        "BosunPluginConfigConstants": BosunPluginConfigConstants,
        "PeInfoConfigConstants": PeInfoConfigConstants,
        "EndpointConfigConstants": EndpointConfigConstants,
        "DeploymentInfoConfigConstants": DeploymentInfoConfigConstants,
        "DeploymentInfo": DeploymentInfo,
        "PEInfo": PEInfo,
    }


def real_bosun_installed() -> bool:
    """True when DataRobot's own package is importable (then nothing is aliased)."""
    if _installed:
        return False
    try:
        return importlib.util.find_spec("bosun") is not None
    except (ImportError, ValueError):
        return False


def install() -> bool:
    """Add the alias hook once, unless the real package is installed; True when active."""
    global _installed
    if _installed:
        return True
    if real_bosun_installed():
        return False
    sys.meta_path.append(_AliasFinder())
    _installed = True
    return True
