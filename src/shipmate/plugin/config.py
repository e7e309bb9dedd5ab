"""The action config YAML (``--config``), private configs and secret masking.

``ActionConfig`` is the typed form of the file the agent writes for every action
(``pluginConfig``, ``peInfo``, ``deploymentInfo``, ``endpointInfo``). It is
validated at the edge: every error names the file, the line and the field.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from shipmate.common.masking import mask
from shipmate.plugin.errors import ConfigError, describe_yaml_error
from shipmate.plugin.info import DeploymentInfo, EndpointInfo, PEInfo

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the runner ms
if TYPE_CHECKING:
    from typing import Any

    from shipmate.plugin.actions import Action

API_TOKEN_KEY = "mlopsApiToken"
"""pluginConfig key holding the service's API token (filled from ``MLOPS_API_TOKEN``)."""

API_TOKEN_ENV = "MLOPS_API_TOKEN"
VERIFY_SSL_KEY = "MLOPS_AGENT_VERIFY_SSL"

SECTIONS = ("pluginConfig", "peInfo", "deploymentInfo", "endpointInfo")

_SECRET_WORDS = ("token", "password", "secret", "apikey", "api_key")

PE_INFO_OPTIONAL_FOR = frozenset({"plugin_start", "plugin_stop", "deployment_list"})
"""Actions that run without a ``peInfo`` section (the package's own samples send ``null``)."""


# -- secrets ------------------------------------------------------------------------

mask_secret = mask
"""The SDK's name for ``shipmate.common.masking.mask``: first 12 characters, then ``*******``."""


def is_secret_key(key: str) -> bool:
    """True for keys whose value must never be logged or written in clear."""
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def sanitized(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` safe to log: secret-looking string values masked, recursively."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out[key] = sanitized(value)
        elif isinstance(value, str) and value and is_secret_key(str(key)):
            out[key] = mask_secret(value)
        else:
            out[key] = value
    return out


def secret_values(config: Mapping[str, Any]) -> list[str]:
    """The clear-text secrets found in ``config`` (to scrub them from messages)."""
    found: list[str] = []
    for key, value in config.items():
        if isinstance(value, Mapping):
            found.extend(secret_values(value))
        elif isinstance(value, str) and len(value) >= 4 and is_secret_key(str(key)):
            found.append(value)
    return found


def scrub(value: Any, secrets: list[str]) -> Any:
    """Replace every occurrence of each secret in strings nested in ``value`` by its mask."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, mask_secret(secret))
        return value
    if isinstance(value, Mapping):
        return {k: scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, secrets) for v in value]
    return value


def inject_environment(
    plugin_config: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Add what the runner takes from the environment, as DataRobot's runner does.

    ``mlopsApiToken`` <- ``MLOPS_API_TOKEN`` (only when set; overrides the file), and
    ``MLOPS_AGENT_VERIFY_SSL`` (false only when the variable says ``false``; default true).
    """
    env = os.environ if environ is None else environ
    out = dict(plugin_config)
    token = env.get(API_TOKEN_ENV)
    if token is not None:
        out[API_TOKEN_KEY] = token
    out[VERIFY_SSL_KEY] = env.get(VERIFY_SSL_KEY, "true").strip().lower() != "false"
    return out


# -- YAML files ---------------------------------------------------------------------


def _read_text(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path}: is a directory, expected a YAML file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot be read: {exc.strerror}") from None


def _parse_yaml(text: str, where: str) -> Any:
    from shipmate.plugin.yamlio import import_yaml, safe_load

    yaml = import_yaml()
    try:
        return safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: malformed YAML at {describe_yaml_error(exc)}") from None


def load_private_config(path: str | None) -> dict[str, Any]:
    """Read a plugin's private config (YAML; JSON is valid YAML). No file or an empty one is ``{}``."""
    if not path:
        return {}
    where = f"private config {path}"
    raw = _parse_yaml(_read_text(path, "private config"), where)
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{where}: expected a mapping of settings at the top level, got {type(raw).__name__}"
        )
    return {str(k): v for k, v in raw.items()}


def merge_private_config(plugin_config: Mapping[str, Any], private_config_file: str | None) -> dict[str, Any]:
    """``pluginConfig`` with the private config merged over it (the private file wins)."""
    return {**plugin_config, **load_private_config(private_config_file)}


def _line_of(text: str, dotted: str) -> int | None:
    """1-based line of ``a.b[2].c`` in a YAML document, or None; used only on the error path."""
    import re

    import yaml

    try:
        node: Any = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line: int | None = None
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", dotted):
        if node is None:
            break
        if part.startswith("[") and isinstance(node, yaml.SequenceNode):
            index = int(part[1:-1])
            if index >= len(node.value):
                break
            node = node.value[index]
            line = node.start_mark.line + 1
        elif isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == part:
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                break
        else:
            break
    return line


# -- the action config --------------------------------------------------------------


class ActionConfig:
    """One action's input: ``pluginConfig``, ``peInfo``, ``deploymentInfo``, ``endpointInfo``."""

    __slots__ = ("deployment_info", "endpoint_info", "pe_info", "plugin_config", "source")

    def __init__(
        self,
        plugin_config: Mapping[str, Any] | None = None,
        pe_info: PEInfo | None = None,
        deployment_info: DeploymentInfo | None = None,
        endpoint_info: EndpointInfo | None = None,
        source: str | None = None,
    ) -> None:
        self.plugin_config: dict[str, Any] = dict(plugin_config or {})
        self.pe_info = pe_info
        self.deployment_info = deployment_info
        self.endpoint_info = endpoint_info
        self.source = source

    def __repr__(self) -> str:
        return (
            f"ActionConfig(plugin_config={sanitized(self.plugin_config)!r}, pe_info={self.pe_info!r}, "
            f"deployment_info={self.deployment_info!r}, endpoint_info={self.endpoint_info!r})"
        )

    # -- reading ------------------------------------------------------------------

    @classmethod
    def load(cls, path: str) -> ActionConfig:
        """Read and validate an action config file; ``ConfigError`` names file, line and field."""
        return cls.from_text(_read_text(path, "action config"), source=path)

    @classmethod
    def from_text(cls, text: str, source: str = "<config>") -> ActionConfig:
        raw = _parse_yaml(text, f"action config {source}")
        try:
            return cls.from_dict(raw, source=source)
        except ConfigError as exc:
            raise ConfigError(_with_line(str(exc), text, source)) from None

    @classmethod
    def from_dict(cls, raw: object, source: str = "<config>") -> ActionConfig:
        if raw is None:
            raise ConfigError(
                f"action config {source}: the file is empty (expected pluginConfig, peInfo, ...)"
            )
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f"action config {source}: expected a mapping at the top level, got {type(raw).__name__}"
            )
        if "pluginConfig" not in raw:
            raise ConfigError(f"pluginConfig in {source}: missing required section")
        plugin_config = raw["pluginConfig"]
        if plugin_config is None:
            plugin_config = {}
        if not isinstance(plugin_config, Mapping):
            raise ConfigError(
                f"pluginConfig in {source}: expected a mapping, got {type(plugin_config).__name__}"
            )
        pe_raw = raw.get("peInfo")
        dep_raw = raw.get("deploymentInfo")
        end_raw = raw.get("endpointInfo")
        return cls(
            plugin_config={str(k): v for k, v in plugin_config.items()},
            pe_info=None if pe_raw is None else PEInfo.from_dict(pe_raw, source=source),
            deployment_info=None if dep_raw is None else DeploymentInfo.from_dict(dep_raw, source=source),
            endpoint_info=None if end_raw is None else EndpointInfo.from_dict(end_raw, source=source),
            source=source,
        )

    def check_for(self, action: Action | str) -> None:
        """Raise ``ConfigError`` when a section ``action`` needs is missing."""
        from shipmate.plugin.actions import parse_action

        parsed = parse_action(str(action))
        where = f" in {self.source}" if self.source else ""
        if parsed.needs_deployment_info and self.deployment_info is None:
            raise ConfigError(f"deploymentInfo{where}: missing, but action {parsed.value} needs it")
        if parsed.needs_endpoint_info and self.endpoint_info is None:
            raise ConfigError(f"endpointInfo{where}: missing, but action {parsed.value} needs it")
        if parsed.value not in PE_INFO_OPTIONAL_FOR and self.pe_info is None:
            raise ConfigError(f"peInfo{where}: missing, but action {parsed.value} needs it")

    # -- writing ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The wire form. ``peInfo`` is never null when a PE id is known (DataRobot's runner needs it)."""
        pe: dict[str, Any] | None = self.pe_info.to_dict() if self.pe_info is not None else None
        if pe is None:
            pe_id = self.plugin_config.get("MLOPS_BOSUN_PRED_ENV_ID")
            if pe_id:
                pe = {"id": str(pe_id), "deployments": [], "keyValueConfig": {}}
        out: dict[str, Any] = {"pluginConfig": dict(self.plugin_config), "peInfo": pe}
        if self.deployment_info is not None:
            out["deploymentInfo"] = self.deployment_info.to_dict()
        if self.endpoint_info is not None:
            out["endpointInfo"] = _endpoint_to_dict(self.endpoint_info)
        return out

    def to_yaml(self) -> str:
        from shipmate.plugin.yamlio import safe_dump

        text: str = safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        return text

    def write(self, path: str, mode: int = 0o600) -> None:
        """Write the config with ``mode`` from the start (it may hold the API token in clear)."""
        text = self.to_yaml()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                fd = -1
                handle.write(text)
        finally:
            if fd >= 0:
                os.close(fd)


def _endpoint_to_dict(info: EndpointInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": info.name,
        "endpointType": info.endpoint_type,
        "predictionEnvironmentId": info.prediction_environment_id,
        "tags": dict(info.tags),
        "trafficSplit": dict(info.traffic_split),
    }
    optional = {
        "id": info.id,
        "description": info.description,
        "authType": info.auth_type,
        "trafficUpdatedAt": info.traffic_updated_at,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    return out


def _with_line(message: str, text: str, source: str) -> str:
    """Prefix ``message`` (which starts with a dotted field path) with the file and line."""
    import re

    field = message.split(" ", 1)[0].rstrip(":")
    nested = re.search(r"\((peInfo\.deployments\[\d+\])\)", message)
    if nested and field.startswith("deploymentInfo"):
        field = nested.group(1) + field[len("deploymentInfo") :]
    line = _line_of(text, field)
    if line is None:
        return message
    short = re.sub(r" in " + re.escape(source) + r"( \([^)]*\))?", "", message, count=1)
    return f"{source}, line {line}: {short}"
