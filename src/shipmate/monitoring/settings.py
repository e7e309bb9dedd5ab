"""Monitoring settings of the prediction server, read the way DataRobot's library reads them.

Three ways in, merged into one `MonitorSettings` (pure functions, table-tested; the one
I/O is loading the RabbitMQ TLS files named, so a missing one stops start-up):

- the ``MLOPS_*`` environment variables (`VARIABLES`; deprecated names too);
- one settings string ``key=value;key=value`` from ``shipmate serve --monitor-settings``,
  ``PREDICTION_API_MONITORING_SETTINGS``, ``PORTABLE_PREDICTION_API_MONITORING_SETTINGS``,
  ``MONITOR_SETTINGS`` or ``MLOPS_SPOOLER_CONFIG`` (the first one set, in that order). A key
  names a variable by a case-insensitive suffix (``directory`` is
  ``MLOPS_FILESYSTEM_DIRECTORY``); the delimiters can be changed with
  ``MLOPS_SPOOLER_CONFIG_RECORD_DELIMITER`` and ``MLOPS_SPOOLER_CONFIG_KEY_VALUE_SEPARATOR``;
- switches: ``PREDICTION_API_MONITORING_ENABLED`` / ``MONITOR`` (true turns monitoring on
  with the other settings, false turns it off whatever else is set).

As in DataRobot's library, a variable set in the environment overrides the same key in the
settings string. A wrong key or value raises `SettingsError` naming it; the prediction
server then refuses to start. DataRobot settings that do not apply to Shipmate are
accepted with a warning (``MonitorSettings.warnings``).
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A monitoring setting that is wrong; the message names the key and what to do."""


class SpoolerType(StrEnum):
    FILESYSTEM = "FILESYSTEM"
    RABBITMQ = "RABBITMQ"
    STDOUT = "STDOUT"
    NONE = "NONE"


SUPPORTED = ", ".join(SpoolerType)
NOT_YET = frozenset({"SQS", "PUBSUB", "KAFKA", "MEMORY", "ASYNC_MEMORY", "API"})
_TYPE_ALIASES = {"OUTPUT_DIR": "FILESYSTEM", "RABBIT_MQ": "RABBITMQ"}
SETTINGS_STRING_VARIABLES = (
    "PREDICTION_API_MONITORING_SETTINGS",
    "PORTABLE_PREDICTION_API_MONITORING_SETTINGS",
    "MONITOR_SETTINGS",
    "MLOPS_SPOOLER_CONFIG",
)
ENABLE_VARIABLES = ("PREDICTION_API_MONITORING_ENABLED", "MONITOR")
RECORD_DELIMITER = "MLOPS_SPOOLER_CONFIG_RECORD_DELIMITER"
KEY_VALUE_SEPARATOR = "MLOPS_SPOOLER_CONFIG_KEY_VALUE_SEPARATOR"
MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    """Everything the recorder and its spooler need; ``enabled`` False means no monitoring at all."""

    enabled: bool = False
    spooler_type: SpoolerType = SpoolerType.FILESYSTEM
    directory: Path | None = None
    max_files: int = 10
    file_max_size: int = 10 * MIB
    rabbitmq_queue_url: str | None = None
    rabbitmq_queue_name: str | None = None
    deployment_id: str | None = None
    model_id: str | None = None
    association_id_column: str | None = None
    sample_percentage: float = 0.0
    flush_rows: int = 5_000
    flush_seconds: float = 2.0
    max_pending_rows: int = 200_000
    max_buffered_records: int = 10_000
    rabbitmq_ssl_ca_certificate: Path | None = None
    rabbitmq_ssl_certificate: Path | None = None
    rabbitmq_ssl_keyfile: Path | None = None
    rabbitmq_ssl_tls_version: ssl.TLSVersion | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def describe(self) -> str:
        """One log line: what is recorded where (no secrets: a queue URL's password is masked)."""
        if not self.enabled:
            return "monitoring off"
        if self.spooler_type is SpoolerType.FILESYSTEM:
            where = f"FILESYSTEM {self.directory} ({self.max_files} files x {self.file_max_size} bytes)"
        elif self.spooler_type is SpoolerType.RABBITMQ:
            where = f"RABBITMQ {mask_url(self.rabbitmq_queue_url or '')} queue {self.rabbitmq_queue_name}"
            if self.rabbitmq_tls:
                where += " (TLS with the MLOPS_RABBITMQ_SSL_* files)"
        else:
            where = str(self.spooler_type)
        return f"monitoring on: spooler {where}, flush every {self.flush_rows} rows or {self.flush_seconds} s"

    @property
    def rabbitmq_tls(self) -> bool:
        """Whether the RabbitMQ connection is made with TLS settings of its own."""
        return any(
            value is not None
            for value in (
                self.rabbitmq_ssl_ca_certificate,
                self.rabbitmq_ssl_certificate,
                self.rabbitmq_ssl_keyfile,
                self.rabbitmq_ssl_tls_version,
            )
        )


def tls_context(settings: MonitorSettings) -> ssl.SSLContext:
    """The TLS context of the RabbitMQ connection: the broker's certificate checked against the
    CA file (or the system's CAs), the client certificate and key presented when given, the TLS
    version pinned when given. Raises `SettingsError` naming the variable whose file is missing or
    unreadable."""
    ca = settings.rabbitmq_ssl_ca_certificate
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(
            f"monitoring settings: MLOPS_RABBITMQ_SSL_CA_CERTIFICATE_PATH: cannot load {ca}: {_reason(exc)}"
        ) from None
    certificate, key = settings.rabbitmq_ssl_certificate, settings.rabbitmq_ssl_keyfile
    if certificate is not None:
        try:
            context.load_cert_chain(str(certificate), str(key) if key else None)
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(
                "monitoring settings: MLOPS_RABBITMQ_SSL_CERTIFICATE_PATH / MLOPS_RABBITMQ_SSL_KEYFILE_PATH: "
                f"cannot load {certificate}{f' with {key}' if key else ''}: {_reason(exc)}"
            ) from None
    version = settings.rabbitmq_ssl_tls_version
    if version is not None:
        context.minimum_version = context.maximum_version = version
    return context


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def mask_url(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


# ---- value parsers -------------------------------------------------------------------------


def _spooler_type(text: str) -> SpoolerType:
    name = text.strip().upper()
    name = _TYPE_ALIASES.get(name, name)
    if name in NOT_YET:
        raise ValueError(f"spooler type {name} is not supported yet; supported: {SUPPORTED}")
    try:
        return SpoolerType(name)
    except ValueError:
        raise ValueError(f"{text!r} is not a spooler type; supported: {SUPPORTED}") from None


def _directory(text: str) -> Path:
    path = Path(text.strip())
    if not path.is_absolute():
        raise ValueError(f"{text!r} must be an absolute path")
    return path


def _positive_int(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise ValueError(f"{value} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not value > 0:
        raise ValueError(f"{value} must be above 0")
    return value


def _percentage(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not 0 <= value <= 100:
        raise ValueError(f"{value} must be a percentage from 0 to 100")
    return value


def _text(text: str) -> str:
    value = text.strip()
    if not value or len(value) > 200:
        raise ValueError(f"{text!r} must be 1 to 200 characters")
    return value


def _amqp_url(text: str) -> str:
    value = text.strip()
    if not value.startswith(("amqp://", "amqps://")):
        raise ValueError(f"{mask_url(value)!r} must be an amqp:// or amqps:// URL")
    return value


def _file(text: str) -> Path:
    path = Path(text.strip())
    if not path.is_absolute():
        raise ValueError(f"{text!r} must be an absolute path")
    return path


_TLS_VERSIONS = {
    "TLSV1": ssl.TLSVersion.TLSv1,
    "TLSV1.1": ssl.TLSVersion.TLSv1_1,
    "TLSV1.2": ssl.TLSVersion.TLSv1_2,
    "TLSV1.3": ssl.TLSVersion.TLSv1_3,
}


def _tls_version(text: str) -> ssl.TLSVersion:
    """``TLSv1.2``, ``TLSv1_2``, ``PROTOCOL_TLSv1_2`` or ``1.2`` (Python's ``ssl`` names, as DataRobot's)."""
    name = text.strip().upper().removeprefix("PROTOCOL_").replace("_", ".")
    version = _TLS_VERSIONS.get(name) or _TLS_VERSIONS.get("TLSV" + name)
    if version is None:
        raise ValueError(f"{text!r} is not a TLS version; use TLSv1.2 or TLSv1.3 (or TLSv1, TLSv1.1)")
    return version


def _json_only(text: str) -> str:
    if text.strip().upper() != "JSON":
        raise ValueError(f"{text!r}: only JSON records are written (BYTE_ARRAY is not supported)")
    return "JSON"


def _true(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def _checksum(text: str) -> bool:
    if not _true(text):
        raise ValueError("records are always checksummed; it cannot be turned off")
    return True


@dataclass(frozen=True, slots=True)
class Variable:
    """One setting: its canonical variable name, older names, the field it sets and its parser."""

    name: str
    field: str | None  # None: a DataRobot setting accepted and ignored, with a warning
    parse: Callable[[str], Any] = _text
    deprecated: tuple[str, ...] = ()
    note: str = ""


VARIABLES: tuple[Variable, ...] = (
    Variable("MLOPS_SPOOLER_TYPE", "spooler_type", _spooler_type, ("MLOPS_OUTPUT_TYPE",)),
    Variable("MLOPS_FILESYSTEM_DIRECTORY", "directory", _directory, ("MLOPS_SPOOLER_DIR_PATH",)),
    Variable(
        "MLOPS_FILESYSTEM_MAX_FILE_SIZE", "file_max_size", _positive_int, ("MLOPS_SPOOLER_FILE_MAX_SIZE",)
    ),
    Variable("MLOPS_FILESYSTEM_MAX_NUM_FILES", "max_files", _positive_int, ("MLOPS_SPOOLER_MAX_FILES",)),
    Variable("MLOPS_RABBITMQ_QUEUE_URL", "rabbitmq_queue_url", _amqp_url, ("MLOPS_RABBITMQ_URL",)),
    Variable("MLOPS_RABBITMQ_QUEUE_NAME", "rabbitmq_queue_name"),
    Variable("MLOPS_RABBITMQ_SSL_CA_CERTIFICATE_PATH", "rabbitmq_ssl_ca_certificate", _file),
    Variable("MLOPS_RABBITMQ_SSL_CERTIFICATE_PATH", "rabbitmq_ssl_certificate", _file),
    Variable("MLOPS_RABBITMQ_SSL_KEYFILE_PATH", "rabbitmq_ssl_keyfile", _file),
    Variable("MLOPS_RABBITMQ_SSL_TLS_VERSION", "rabbitmq_ssl_tls_version", _tls_version),
    Variable("MLOPS_DEPLOYMENT_ID", "deployment_id"),
    Variable("MLOPS_MODEL_ID", "model_id"),
    Variable("MLOPS_ASSOCIATION_ID_COLUMN_NAME", "association_id_column"),
    Variable("MLOPS_STATS_AGGREGATION_AUTO_SAMPLING_PERCENTAGE", "sample_percentage", _percentage),
    Variable("MLOPS_SHIPMATE_FLUSH_ROWS", "flush_rows", _positive_int),
    Variable("MLOPS_SHIPMATE_FLUSH_SECONDS", "flush_seconds", _positive_float),
    Variable("MLOPS_SHIPMATE_MAX_PENDING_ROWS", "max_pending_rows", _positive_int),
    Variable("MLOPS_SHIPMATE_MAX_BUFFERED_RECORDS", "max_buffered_records", _positive_int),
    Variable("MLOPS_SPOOLER_DATA_FORMAT", None, _json_only, note="records are JSON"),
    Variable("MLOPS_SPOOLER_CHECKSUM", None, _checksum, note="records are always checksummed"),
    Variable("MLOPS_FILESYSTEM_ACKNOWLEDGEMENT_DEADLINE", None, _positive_int, note="consumers acknowledge"),
    Variable("MLOPS_ASYNC_REPORTING", None, _true, note="recording is always asynchronous"),
    Variable("MLOPS_REPORT_QUEUE_NUM_LISTS", None, _positive_int),
    Variable("MLOPS_REPORT_QUEUE_LIST_SIZE", None, _positive_int),
    Variable("MLOPS_REPORT_QUEUE_MAX_SIZE", None, _positive_int),
    Variable("MLOPS_TIMEOUT_PROCESS_QUEUE_MS", None, _positive_int),
    Variable("MLOPS_FEATURE_DATA_ROWS_IN_ONE_MESSAGE", None, _positive_int),
    Variable("MLOPS_PREDICTIONS_DATA_MAX_CHUNKS", None, _positive_int),
    Variable("MLOPS_PREDICTIONS_DATA_MAX_LINES_PER_CHUNK", None, _positive_int),
    Variable("MLOPS_SPOOLER_ACTION", None),
    Variable("MLOPS_SPOOLER_DEQUEUE_ACK_RECORDS", None),
    Variable("MLOPS_SPOOLER_DEQUEUE_MAX_RECORDS_PER_CALL", None),
)
_BY_NAME = {name: var for var in VARIABLES for name in (var.name, *var.deprecated)}
_ALL_NAMES = [name for var in VARIABLES for name in (var.name, *var.deprecated)]
_UNSUPPORTED_PREFIXES = {
    f"MLOPS_{kind}_": f"spooler type {kind} is not supported yet; supported: {SUPPORTED}" for kind in NOT_YET
}
_CHECKED_PREFIXES = ("MLOPS_SPOOLER_", "MLOPS_FILESYSTEM_", "MLOPS_RABBITMQ_", "MLOPS_SHIPMATE_")


def resolve_key(key: str) -> tuple[Variable, list[str]]:
    """The variable a settings-string key names (case-insensitive suffix), with warnings."""
    wanted = key.strip().upper()
    if not wanted:
        raise SettingsError("monitoring settings: an empty key")
    bare = wanted.removeprefix("MLOPS_")
    for prefix, why in _UNSUPPORTED_PREFIXES.items():
        if bare.startswith(prefix.removeprefix("MLOPS_")):
            raise SettingsError(f"monitoring settings: key {key!r}: {why}")
    matches = [name for name in _ALL_NAMES if name == wanted or name.endswith("_" + wanted)]
    if not matches:
        raise SettingsError(
            f"monitoring settings: unknown key {key!r} (known: spooler_type, directory, max_files, "
            "file_max_size, queue_url, queue_name, deployment_id, model_id, association_id_column_name, "
            "auto_sampling_percentage, flush_rows, flush_seconds, or any MLOPS_* variable name)"
        )
    warnings = []
    variable = _BY_NAME[matches[0]]
    if len({_BY_NAME[m].name for m in matches}) > 1:
        warnings.append(
            f"monitoring settings: key {key!r} is ambiguous ({', '.join(matches)}); using {matches[0]}"
        )
    return variable, warnings


def split_settings(text: str, record_delimiter: str = ";", separator: str = "=") -> list[tuple[str, str]]:
    """``key=value;key=value`` as pairs (empty records are skipped)."""
    if not record_delimiter or not separator:
        raise SettingsError(f"{RECORD_DELIMITER} and {KEY_VALUE_SEPARATOR} must not be empty")
    pairs = []
    for record in text.split(record_delimiter):
        if not record.strip():
            continue
        key, sep, value = record.partition(separator)
        if not sep:
            raise SettingsError(f"monitoring settings: {record.strip()!r} is not key{separator}value")
        pairs.append((key.strip(), value))
    return pairs


def settings_string(env: Mapping[str, str], given: str | None = None) -> str | None:
    """The settings string: the one given (the CLI option), else the first variable set."""
    if given:
        return given
    return next((env[name] for name in SETTINGS_STRING_VARIABLES if env.get(name)), None)


def parse(env: Mapping[str, str], given: str | None = None) -> MonitorSettings:
    """The monitoring settings from an environment and an optional settings string (pure)."""
    values: dict[str, Any] = {}
    warnings: list[str] = []
    text = settings_string(env, given)
    set_by: dict[str, str] = {}

    def apply(variable: Variable, raw: str, where: str) -> None:
        try:
            value = variable.parse(raw)
        except ValueError as exc:
            raise SettingsError(f"monitoring settings: {where}: {exc}") from None
        if variable.field is None:
            warnings.append(f"monitoring settings: {where} does not apply to Shipmate and is ignored")
            return
        values[variable.field] = value
        set_by[variable.field] = where

    if text:
        pairs = split_settings(text, env.get(RECORD_DELIMITER, ";"), env.get(KEY_VALUE_SEPARATOR, "="))
        for key, raw in pairs:
            variable, ambiguous = resolve_key(key)
            warnings.extend(ambiguous)
            apply(variable, raw, f"key {key!r} ({variable.name})")
    for name in sorted(env):
        unsupported = next(
            (why for prefix, why in _UNSUPPORTED_PREFIXES.items() if name.startswith(prefix)), None
        )
        if unsupported:  # another spooler's variable: harmless while that spooler is not chosen
            warnings.append(f"monitoring settings: {name} is ignored: {unsupported}")
            continue
        if not name.startswith(_CHECKED_PREFIXES) or name in (RECORD_DELIMITER, KEY_VALUE_SEPARATOR):
            continue
        if name in SETTINGS_STRING_VARIABLES:
            continue
        if name not in _BY_NAME:
            raise SettingsError(f"monitoring settings: unknown variable {name}; see docs/monitoring.md")
    for variable in VARIABLES:  # the environment overrides the string; a current name an old one
        for name in (*variable.deprecated, variable.name):
            if env.get(name):
                if name != variable.name:
                    warnings.append(f"monitoring settings: {name} is deprecated; use {variable.name}")
                apply(variable, env[name], name)
    enabled = bool(text) or "spooler_type" in values
    for name in ENABLE_VARIABLES:
        switch = env.get(name)
        if not switch:
            continue
        try:
            enabled = _true(switch)
        except ValueError as exc:
            raise SettingsError(f"monitoring settings: {name}: {exc}") from None
        break
    settings = replace(MonitorSettings(), enabled=enabled, warnings=tuple(warnings), **values)
    return _checked(settings, set_by) if enabled else settings


def _checked(settings: MonitorSettings, set_by: Mapping[str, str]) -> MonitorSettings:
    kind = settings.spooler_type
    if kind is SpoolerType.FILESYSTEM and settings.directory is None:
        raise SettingsError(
            "monitoring settings: the FILESYSTEM spooler needs a directory "
            "(MLOPS_FILESYSTEM_DIRECTORY, or directory=/absolute/path in the settings string)"
        )
    if kind is SpoolerType.RABBITMQ:
        for name, variable in (
            ("rabbitmq_queue_url", "MLOPS_RABBITMQ_QUEUE_URL"),
            ("rabbitmq_queue_name", "MLOPS_RABBITMQ_QUEUE_NAME"),
        ):
            if getattr(settings, name) is None:
                raise SettingsError(f"monitoring settings: the RABBITMQ spooler needs {variable}")
        if settings.rabbitmq_ssl_keyfile is not None and settings.rabbitmq_ssl_certificate is None:
            raise SettingsError(
                "monitoring settings: MLOPS_RABBITMQ_SSL_KEYFILE_PATH is the key of a client certificate: "
                "set MLOPS_RABBITMQ_SSL_CERTIFICATE_PATH too"
            )
        if settings.rabbitmq_tls:
            tls_context(settings)  # the files exist and load, or start-up stops naming the variable
    if settings.sample_percentage > 0 and settings.association_id_column is None:
        raise SettingsError(
            "monitoring settings: sampling raw rows (auto_sampling_percentage) needs "
            "MLOPS_ASSOCIATION_ID_COLUMN_NAME"
        )
    return settings


def monitor_settings(
    env: Mapping[str, str], given: str | None = None, *, multi_model: bool = False, log: bool = False
) -> MonitorSettings:
    """`parse` for the prediction server. In multi-model mode every deployment reports its own
    id, so ``MLOPS_DEPLOYMENT_ID``/``MLOPS_MODEL_ID`` are ignored (with a warning). With ``log``,
    the warnings and a description are logged (once, by the parent process)."""
    settings = parse(env, given)
    if multi_model and (settings.deployment_id or settings.model_id):
        settings = replace(
            settings,
            deployment_id=None,
            model_id=None,
            warnings=(
                *settings.warnings,
                "monitoring settings: deployment and model ids are ignored in multi-model mode "
                "(each deployment reports its own)",
            ),
        )
    if log:
        logger = logging.getLogger(__name__)
        for warning in settings.warnings:
            logger.warning("%s", warning)
        logger.info("%s", settings.describe())
    return settings
