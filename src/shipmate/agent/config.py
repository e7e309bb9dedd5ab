"""The agent's settings: one YAML file (camelCase keys), every key also from ``SHIPMATE_AGENT_*``.

Precedence, highest first: explicit overrides (command-line options), environment
variables, the YAML file, the defaults here. Nested keys use ``__`` in variable
names (``SHIPMATE_AGENT_PLUGIN__NAME=filesystem``). The token may also come from
``MLOPS_API_TOKEN`` or ``SHIPMATE_TOKEN``, the names the published agent and the
Helm chart use. An invalid setting stops start-up with a message naming the key.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from shipmate.common.backoff import Backoff
from shipmate.plugin.actions import Action

ENV_PREFIX = "SHIPMATE_AGENT_"
PLACEHOLDER_MARKS = ("<", "changeme", "CHANGEME", "FILL-IN", "REPLACE-ME", "REPLACE_ME")
RECONNECT_FIRST_DELAY = 0.2
"""Seconds before the first reconnection attempt to an unreachable service."""


class AgentConfigError(Exception):
    """The agent's configuration is invalid; the message names the key and the file."""


class _Section(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class PluginSettings(_Section):
    """Which plugin carries the actions out: in-process by name, or an external command prefix."""

    name: str | None = None
    """A built-in plugin name (filesystem, test, docker, kubernetes), a dotted module or a file path."""
    private_config: Path | None = None
    """The plugin's own YAML file (passed to the plugin in-process; a command carries it in its prefix)."""
    command: str | None = None
    """An external command prefix, exactly as the seed's "Configure the command prefix"; the agent appends
    ``--config F --action A --status-file S``."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Extra ``pluginConfig`` entries passed to the plugin with every action."""
    dry_run: bool = False

    @model_validator(mode="after")
    def _one_form(self) -> PluginSettings:
        if bool(self.name) == bool(self.command):
            raise ValueError(
                "set exactly one of plugin.name (an in-process plugin) or plugin.command (a command prefix)"
            )
        if self.command:
            try:
                words = shlex.split(self.command)
            except ValueError as exc:
                raise ValueError(f"plugin.command cannot be split into words: {exc}") from None
            if not words:
                raise ValueError("plugin.command is empty")
        return self

    @property
    def command_words(self) -> list[str]:
        return shlex.split(self.command or "")

    @property
    def is_external(self) -> bool:
        return bool(self.command)


class TimeoutSettings(_Section):
    """Per-action timeouts in seconds; an action that takes longer is stopped and reported ``failing``."""

    default: float = Field(default=1800.0, gt=0)
    """Any action not listed below (the published agent's templates say 30 minutes)."""
    plugin_start: float | None = Field(default=None, gt=0)
    plugin_stop: float | None = Field(default=None, gt=0)
    deployment_start: float | None = Field(default=None, gt=0)
    deployment_stop: float | None = Field(default=None, gt=0)
    deployment_replace_model: float | None = Field(default=None, gt=0)
    deployment_relaunch: float | None = Field(default=None, gt=0)
    deployment_status: float | None = Field(default=120.0, gt=0)
    pe_status: float | None = Field(default=120.0, gt=0)
    deployment_list: float | None = Field(default=300.0, gt=0)

    def for_action(self, action: Action) -> float:
        """The timeout of ``action``; ``default`` when it has no key of its own or its key is unset.

        A name that is no action raises ``ValueError`` rather than silently getting the default.
        """
        name = Action(action).value
        value = getattr(self, name) if name in type(self).model_fields else None
        return float(value) if value is not None else self.default


class RetrySettings(_Section):
    """Retries of failing actions: capped exponential backoff."""

    max_attempts: int = Field(default=4, ge=1)
    """Attempts per action, the first included."""
    initial_delay: float = Field(default=1.0, gt=0)
    """Seconds before the second attempt; doubles after each failure."""
    max_delay: float = Field(default=60.0, gt=0)
    """Cap on the delay between attempts, seconds."""

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.initial_delay, self.max_delay)


class IntervalSettings(_Section):
    """How often the agent looks on its own, in seconds (changes themselves arrive through the feed)."""

    pe_status: float = Field(default=60.0, gt=0)
    """Environment health (``pe_status``), which also covers the deployments' health when the plugin can."""
    deployment_status: float = Field(default=60.0, gt=0)
    """Per-deployment ``deployment_status`` for deployments ``pe_status`` did not cover."""
    resync: float = Field(default=300.0, gt=0)
    """Full re-read of the desired state, to catch anything the feed missed."""
    feed_wait: float = Field(default=25.0, gt=0, le=30)
    """Long-poll wait on the change feed."""
    reconnect_max: float = Field(default=30.0, gt=0)
    """Cap on the back-off between reconnection attempts when the service is unreachable."""

    @property
    def reconnect_backoff(self) -> Backoff:
        """From 0.2 s, doubling, up to ``reconnect_max``."""
        return Backoff(RECONNECT_FIRST_DELAY, self.reconnect_max)


class MetricsSettings(_Section):
    """The agent's own HTTP endpoint: ``/metrics`` (Prometheus) and ``/healthz``."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)
    """0 picks a free port (logged at start-up)."""


class AgentSettings(BaseSettings):
    """Everything ``shipmate agent`` needs; see ``docs/agent.md`` for an annotated example."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )

    service_url: str = "http://127.0.0.1:8000"
    """The control-plane service's base URL."""
    token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("token", f"{ENV_PREFIX}TOKEN", "MLOPS_API_TOKEN", "SHIPMATE_TOKEN"),
    )
    """The agent's API token (bound to one environment). Prefer the environment to the file."""
    environment_id: str
    """The prediction environment this agent manages."""
    plugin: PluginSettings
    concurrency: int = Field(default=8, ge=1, le=256)
    """Actions on different deployments that may run at once (one deployment's run in order)."""
    timeouts: TimeoutSettings = TimeoutSettings()
    retry: RetrySettings = RetrySettings()
    intervals: IntervalSettings = IntervalSettings()
    work_dir: Path = Path("./shipmate-agent")
    """Model cache, action configs and the record of what was applied (keep it across restarts)."""
    stop_unknown_deployments: bool = False
    """Stop deployments the plugin runs that the service does not know (otherwise only report them)."""
    max_self_heal_attempts: int = Field(default=3, ge=0)
    """Relaunches of a deployment the plugin reports missing or errored, before giving up until it changes."""
    shutdown_grace: float = Field(default=30.0, ge=0)
    """On SIGTERM, seconds to let in-flight actions finish (beyond it they are timed out)."""
    verify_ssl: bool = True
    metrics: MetricsSettings = MetricsSettings()

    @field_validator("service_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("token")
    @classmethod
    def _real_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            text = value.get_secret_value()
            if not text.strip():
                raise ValueError("is empty")
            if any(mark in text for mark in PLACEHOLDER_MARKS):
                raise ValueError("still holds a placeholder; set the agent's real token")
        return value

    @field_validator("environment_id")
    @classmethod
    def _env_id(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty: set it to an id from shipmate env list")
        if any(mark in value for mark in PLACEHOLDER_MARKS):
            raise ValueError(
                f"{value!r} is a placeholder, not the id of a prediction environment: set it to an id from "
                "shipmate env list (shipmate init writes a config with the right one)"
            )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlByFieldName(settings_cls))

    def token_text(self) -> str:
        return self.token.get_secret_value() if self.token is not None else ""


class _YamlByFieldName(YamlConfigSettingsSource):
    """The YAML file's top-level camelCase keys under their field names, as the environment source
    gives them: otherwise ``SHIPMATE_AGENT_SERVICE_URL`` beside ``serviceUrl`` in the file reads as
    two settings, one of them "unknown", instead of the variable overriding the file."""

    def __call__(self) -> dict[str, Any]:
        by_alias = {to_camel(name): name for name in AgentSettings.model_fields}
        return {by_alias.get(key, key): value for key, value in super().__call__().items()}


def load_settings(path: Path | str | None = None, **overrides: Any) -> AgentSettings:
    """Read the YAML file (if any), the environment and ``overrides``; errors name the key."""
    source = Path(path) if path is not None else None
    settings_class = AgentSettings
    if source is not None:
        _check_yaml(source)

        class _FromFile(AgentSettings):
            model_config = SettingsConfigDict(yaml_file=source, yaml_file_encoding="utf-8")

        settings_class = _FromFile
    try:
        clean = {k: v for k, v in overrides.items() if v is not None}
        return settings_class(**clean)
    except ValidationError as exc:
        raise AgentConfigError(_describe(exc, source)) from None
    except SettingsError as exc:  # an environment variable that is not valid JSON for a nested key
        match = re.search(r'field "([^"]+)" from source "(\w+)"', str(exc))
        key, origin = (match.group(1), match.group(2)) if match else ("?", "?")
        hint = (
            f" (check {ENV_PREFIX}{key.upper()}: nested values are JSON)" if origin.startswith("Env") else ""
        )
        raise AgentConfigError(f"agent config: key '{_camel(key)}': cannot be parsed{hint}") from None


def _check_yaml(path: Path) -> None:
    import yaml

    if not path.is_file():
        raise AgentConfigError(f"agent config {path}: no such file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise AgentConfigError(
            f"agent config {path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}"
        ) from None
    if raw is not None and not isinstance(raw, dict):
        raise AgentConfigError(
            f"agent config {path}: expected a mapping of settings, got {type(raw).__name__}"
        )


def _describe(exc: ValidationError, source: Path | None) -> str:
    where = f"agent config {source}" if source else "agent config"
    lines = []
    for error in exc.errors():
        key = ".".join(_camel(str(p)) for p in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            env = ENV_PREFIX + "__".join(_snake(str(p)).upper() for p in error["loc"])
            message = f"missing (set it in the file or as {env})"
        elif error["type"] == "extra_forbidden":
            message = "unknown setting"
        lines.append(f"{where}: key '{key}': {message}")
    return "\n".join(lines)


def _snake(part: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", part)


def _camel(part: str) -> str:
    return to_camel(part) if "_" in part else part
