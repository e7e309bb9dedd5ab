"""Action names and ``invoke``: run one action on a plugin, never letting an exception escape."""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping

from shipmate.plugin.base import PluginBase, call_with_deployment
from shipmate.plugin.errors import ConfigError
from shipmate.plugin.info import DeploymentInfo, EndpointInfo
from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DeploymentState

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the runner ms
if TYPE_CHECKING:
    from typing import Any


class Action(enum.StrEnum):
    """Every action name, in the order ``--list-actions`` prints them."""

    PLUGIN_START = "plugin_start"
    PLUGIN_STOP = "plugin_stop"
    DEPLOYMENT_START = "deployment_start"
    DEPLOYMENT_STOP = "deployment_stop"
    DEPLOYMENT_REPLACE_MODEL = "deployment_replace_model"
    DEPLOYMENT_STATUS = "deployment_status"
    PE_STATUS = "pe_status"
    DEPLOYMENT_LIST = "deployment_list"
    DEPLOYMENT_RELAUNCH = "deployment_relaunch"
    ENDPOINT_UPDATE = "endpoint_update"
    ENDPOINT_STATUS = "endpoint_status"

    @property
    def needs_deployment_info(self) -> bool:
        return self in DEPLOYMENT_ACTIONS

    @property
    def needs_endpoint_info(self) -> bool:
        return self in (Action.ENDPOINT_UPDATE, Action.ENDPOINT_STATUS)

    def __str__(self) -> str:
        return self.value


DEPLOYMENT_ACTIONS = frozenset(
    {
        Action.DEPLOYMENT_START,
        Action.DEPLOYMENT_STOP,
        Action.DEPLOYMENT_REPLACE_MODEL,
        Action.DEPLOYMENT_STATUS,
        Action.DEPLOYMENT_RELAUNCH,
    }
)
"""Actions that act on one deployment and so need a ``deploymentInfo`` section."""

DOCUMENTED_ACTIONS = tuple(Action)[:9]
"""The documented actions plus ``deployment_relaunch``; ``endpoint_*`` are optional extras."""


def parse_action(name: str) -> Action:
    try:
        return Action(name)
    except ValueError:
        known = ", ".join(a.value for a in Action)
        raise ConfigError(f"Action is not supported: {name} (known actions: {known})") from None


def invoke(
    plugin: PluginBase,
    action: Action | str,
    deployment_info: DeploymentInfo | Mapping[str, Any] | None = None,
    endpoint_info: EndpointInfo | Mapping[str, Any] | None = None,
) -> ActionStatusInfo:
    """Run ``action`` on ``plugin`` and return its status; never raises.

    An exception becomes ``failing``/``errored`` with its message; a return value
    that is not an ``ActionStatusInfo`` is reported as a contract violation. The
    duration (seconds) is always measured here and set on the result.
    """
    started = time.perf_counter()
    name = action.value if isinstance(action, Action) else str(action)
    try:
        result = _dispatch(plugin, name, deployment_info, endpoint_info)
        if not isinstance(result, ActionStatusInfo) and type(result).__name__ == "ActionStatusInfo":
            result = _foreign_status(result)  # e.g. from DataRobot's own package, when installed
        if not isinstance(result, ActionStatusInfo):
            result = ActionStatusInfo(
                ActionStatus.ERROR,
                msg=(
                    f"Contract violation: {type(plugin).__name__}.{name} returned "
                    f"{type(result).__name__}, not ActionStatusInfo"
                ),
                state=DeploymentState.ERRORED,
            )
    except (Exception, SystemExit) as exc:  # an action must never take its caller down
        import logging

        logging.getLogger(__name__).debug("action %s raised", name, exc_info=True)
        text = str(exc) or type(exc).__name__
        result = ActionStatusInfo(
            ActionStatus.ERROR,
            msg=f"Exception occurred while running action {name} : error {text}",
            state=DeploymentState.ERRORED,
        )
    result.duration = round(time.perf_counter() - started, 4)
    return result


def _foreign_status(value: Any) -> ActionStatusInfo:
    """Our ActionStatusInfo from another package's object of that name (same fields, same values)."""
    from shipmate.plugin.errors import StatusFileError

    raw = {
        key: getattr(value, key, None) for key in ("status", "msg", "state", "duration", "data", "timestamp")
    }
    try:
        return ActionStatusInfo.from_dict(raw, source=f"{type(value).__module__}.ActionStatusInfo")
    except StatusFileError as exc:
        return ActionStatusInfo(
            ActionStatus.ERROR, msg=f"Contract violation: {exc}", state=DeploymentState.ERRORED
        )


def _dispatch(
    plugin: PluginBase,
    name: str,
    deployment_info: DeploymentInfo | Mapping[str, Any] | None,
    endpoint_info: EndpointInfo | Mapping[str, Any] | None,
) -> Any:
    action = parse_action(name)
    if action.needs_deployment_info:
        if deployment_info is None:
            raise ConfigError(f"action {name} needs a deploymentInfo section")
        info = (
            deployment_info
            if isinstance(deployment_info, DeploymentInfo)
            else DeploymentInfo.from_dict(deployment_info)
        )
        plugin._set_deployment_info(info.to_dict())
        method = getattr(plugin, name)
        if action in (Action.DEPLOYMENT_STOP, Action.DEPLOYMENT_STATUS):
            return call_with_deployment(method, info)
        return method(info)
    if action.needs_endpoint_info:
        if endpoint_info is None:
            raise ConfigError(f"action {name} needs an endpointInfo section")
        endpoint = (
            endpoint_info
            if isinstance(endpoint_info, EndpointInfo)
            else EndpointInfo.from_dict(endpoint_info)
        )
        return getattr(plugin, name)(endpoint)
    return getattr(plugin, name)()
