"""The plugin contract: one abstract base class, every documented action.

A plugin subclasses ``PluginBase`` (also importable as ``BosunPluginBase``) and
implements the abstract actions; each returns an ``ActionStatusInfo``. Plugins
should be idempotent: starting a running deployment or stopping an unknown one
succeeds. They are run through ``shipmate.plugin.actions.invoke``, which never
lets an exception escape.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping

from shipmate.plugin.info import DeploymentInfo, EndpointInfo, PEInfo
from shipmate.plugin.status import ActionStatus, ActionStatusInfo

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the runner ms
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable
    from typing import Any


def call_with_deployment(method: Callable[..., Any], deployment_info: DeploymentInfo) -> Any:
    """Call ``deployment_stop``/``deployment_status`` the way the plugin was written.

    The documented contract passes the ``DeploymentInfo``; DataRobot's package
    passes the id string. A plugin whose first parameter is named
    ``deployment_id`` gets the id, every other plugin the info.
    """
    code = getattr(getattr(method, "__func__", method), "__code__", None)
    if code is not None and code.co_argcount >= 2 and code.co_varnames[1] == "deployment_id":
        return method(deployment_info.id)
    return method(deployment_info)


class PluginBase(abc.ABC):
    """Base class of every Shipmate (and DataRobot-bosun style) plugin.

    ``plugin_config`` is the action config's ``pluginConfig`` mapping (with the
    private config merged in by plugins that want it, see ``load_private_config``);
    ``pe_info`` may arrive as a mapping or a ``PEInfo`` and is kept as ``PEInfo``.
    """

    def __init__(
        self,
        plugin_config: Mapping[str, Any] | None,
        private_config_file: str | None = None,
        pe_info: PEInfo | Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> None:
        self._plugin_config: dict[str, Any] = dict(plugin_config or {})
        self._private_config_file = private_config_file
        if pe_info is None or isinstance(pe_info, PEInfo):
            self._pe_info = pe_info
        else:
            self._pe_info = PEInfo.from_dict(pe_info) if pe_info else None
        self._dry_run = bool(dry_run)
        self._deployment_info: dict[str, Any] | None = None
        self._endpoint_info: dict[str, Any] | None = None

    # -- logging --------------------------------------------------------------------

    @property
    def logger(self) -> logging.Logger:
        """This plugin's logger, made on first use: ``logging`` costs the runner milliseconds to import."""
        found: logging.Logger | None = self.__dict__.get("_plugin_logger")
        if found is None:
            import logging

            found = logging.getLogger(f"{type(self).__module__}.{type(self).__name__}")
            self.__dict__["_plugin_logger"] = found
        return found

    @logger.setter
    def logger(self, value: logging.Logger) -> None:
        self.__dict__["_plugin_logger"] = value

    _logger = logger  # the name plugins written for DataRobot's package use

    # -- what the runner hands over ------------------------------------------------

    @property
    def plugin_config(self) -> dict[str, Any]:
        return self._plugin_config

    @property
    def private_config_file(self) -> str | None:
        return self._private_config_file

    @property
    def pe_info(self) -> PEInfo | None:
        return self._pe_info

    @property
    def dry_run(self) -> bool:
        return self._dry_run

    def _set_deployment_info(self, raw: Mapping[str, Any] | None) -> None:
        """The raw ``deploymentInfo`` section, kept for plugins that read it directly."""
        self._deployment_info = dict(raw) if raw is not None else None

    def _set_endpoint_info(self, raw: Mapping[str, Any] | None) -> None:
        self._endpoint_info = dict(raw) if raw is not None else None

    # -- the actions ----------------------------------------------------------------

    @abc.abstractmethod
    def plugin_start(self) -> ActionStatusInfo:
        """Check the environment is reachable; called once, before any deployment action."""

    @abc.abstractmethod
    def plugin_stop(self) -> ActionStatusInfo:
        """Tear down (close clients); called once, after every deployment action."""

    @abc.abstractmethod
    def deployment_list(self) -> ActionStatusInfo:
        """Deployments already running: ``data`` maps deployment id to its information."""

    @abc.abstractmethod
    def deployment_start(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        """Launch a deployment; ``modelArtifact`` is already on disk. Blocks until ready or failed."""

    @abc.abstractmethod
    def deployment_stop(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        """Stop a deployment and clean up; stopping an unknown deployment succeeds.

        A subclass may name the parameter ``deployment_id`` to receive the id string
        instead, as plugins written for DataRobot's package do.
        """

    @abc.abstractmethod
    def deployment_replace_model(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        """Serve ``newModelId`` from ``modelArtifact``; on failure keep the old model (``oldModelInUse``)."""

    @abc.abstractmethod
    def pe_status(self) -> ActionStatusInfo:
        """Environment health, plus ``data.deploymentsStatus`` for the ids in ``peInfo.deployments``."""

    @abc.abstractmethod
    def deployment_status(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        """Is this deployment running and serving its current model (``data.currentModelId``)?"""

    def deployment_relaunch(self, deployment_info: DeploymentInfo) -> ActionStatusInfo:
        """Stop then start; a failed stop is logged and ignored, the start's result returned."""
        try:
            stopped = call_with_deployment(self.deployment_stop, deployment_info)
            self._logger.info("relaunch %s: stop returned %s", deployment_info.id, stopped)
        except Exception as exc:  # the documented default ignores a failed stop
            self._logger.warning("relaunch %s: stop failed, starting anyway: %s", deployment_info.id, exc)
        return self.deployment_start(deployment_info)

    def endpoint_update(self, endpoint_info: EndpointInfo) -> ActionStatusInfo:
        """Optional extra; not supported unless a plugin overrides it."""
        return ActionStatusInfo(
            ActionStatus.ERROR, msg=f"{type(self).__name__} does not support endpoint_update"
        )

    def endpoint_status(self, endpoint_info: EndpointInfo) -> ActionStatusInfo:
        """Optional extra; not supported unless a plugin overrides it."""
        return ActionStatusInfo(
            ActionStatus.ERROR, msg=f"{type(self).__name__} does not support endpoint_status"
        )


BosunPluginBase = PluginBase
"""The documented name of the base class."""
