"""The monitoring agent's configuration: DataRobot's ``mlops.agent.conf.yaml`` keys.

Checked once at start-up; every error names the key and the file. The token comes from
``MLOPS_API_TOKEN`` when set (the name the published agent uses), else from ``apiToken``.
Keys the published agent knows but this agent does not need are accepted and ignored, so
an existing file works unchanged; an unknown key is an error (it is most likely a typo).

Without a file, the agent reads the variables DataRobot's agent image is configured with
(``from_environment``), which is how the Docker and Kubernetes plugins start it.

A ``RABBITMQ_SPOOL`` channel takes the prediction server's RabbitMQ TLS settings under the
channel's own key style (`TLS_KEYS`: DataRobot documents none for the agent's file), and
the environment path reads ``MLOPS_RABBITMQ_SSL_*`` as the prediction server does; the TLS
context is built at start-up by the one function the spooler uses, so a missing file stops
the agent with a line naming the key and the file.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from shipmate.monitoring.settings import (
    TlsError,
    TlsNames,
    absolute_file,
    parse_tls_version,
    rabbitmq_tls_context,
)

TOKEN_VARIABLE = "MLOPS_API_TOKEN"

IGNORED_KEYS = frozenset(
    {
        "statsPath", "predictionEnvironmentId", "httpConcurrentRequest", "numMLOpsConnections",
        "datarobotAppVersion", "agentThreadPoolSize", "agentMaxRecordsTask", "aggregatorOverwrites",
        "proxy", "logging", "dryRun",
    }
)  # fmt: skip
"""Keys of the published agent's file that mean nothing here (its JVM pools, stats file ...)."""

UNSUPPORTED_CHANNELS = ("SQS_SPOOL", "PUBSUB_SPOOL", "KAFKA_SPOOL")

SERVICE_URL_VARIABLE = "MLOPS_SERVICE_URL"
"""Set: the agent takes its configuration from the environment (``from_environment``)."""


class ConfigError(Exception):
    """The configuration is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class FilesystemChannel:
    name: str
    directory: Path


@dataclass(frozen=True)
class RabbitChannel:
    name: str
    queue_url: str
    queue_name: str
    tls: ssl.SSLContext | None = field(default=None, compare=False, repr=False)
    """Set by the channel's TLS keys (or ``MLOPS_RABBITMQ_SSL_*``): the connection is made with TLS."""


TLS_KEYS = (
    ("sslCaCertificatePath", "rabbitmq_ssl_ca_certificate_path", "MLOPS_RABBITMQ_SSL_CA_CERTIFICATE_PATH"),
    ("sslCertificatePath", "rabbitmq_ssl_certificate_path", "MLOPS_RABBITMQ_SSL_CERTIFICATE_PATH"),
    ("sslKeyfilePath", "rabbitmq_ssl_keyfile_path", "MLOPS_RABBITMQ_SSL_KEYFILE_PATH"),
    ("sslTlsVersion", "rabbitmq_ssl_tls_version", "MLOPS_RABBITMQ_SSL_TLS_VERSION"),
)
"""A RABBITMQ_SPOOL channel's TLS keys: the prediction server's ``MLOPS_RABBITMQ_SSL_*`` settings in
the channel's camelCase (``queueUrl``), and in the embedded agent's spelling (``rabbitmq_queue_url``)."""


Channel = FilesystemChannel | RabbitChannel


@dataclass(frozen=True)
class AgentConfig:
    mlops_url: str
    api_token: str = field(repr=False)
    channels: tuple[Channel, ...]
    http_timeout_s: float = 20.0
    http_retry: int = 3
    """Attempts before a failing post is logged as an error; the agent then keeps retrying, slower."""
    retry_max_delay_s: float = 30.0
    max_aggregated_records: int = 500
    """Most spool records merged into one post."""
    pending_timeout_s: float = 2.5
    """Longest a read record waits for more before the batch is posted."""
    server_mode: bool = False
    server_port: int = 8080
    verify_ssl: bool = True
    run_once: bool = False
    """Forward what the channels hold now, then exit (for jobs and benchmarks)."""


def load(path: Path, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Read and check ``path``; raise `ConfigError` naming the file and the key at fault."""
    environ = os.environ if environ is None else environ
    where = str(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the file: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{where}: expected a mapping of keys (mlopsUrl, apiToken, channelConfigs ...)")
    return parse(document, where, environ)


def parse(document: Mapping[str, Any], where: str, environ: Mapping[str, str]) -> AgentConfig:
    known = {
        "mlopsUrl", "apiToken", "channelConfigs", "httpTimeout", "httpRetry", "httpRetryMaxDelay",
        "agentMaxAggregatedRecords", "agentPendingRecordsTimeoutMs", "serverMode", "serverPort",
        "verifySSL", "runOnce",
    }  # fmt: skip
    for key in document:
        if key not in known and key not in IGNORED_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")
    url = _text(document, "mlopsUrl", where)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{where}: mlopsUrl must be an http(s) URL of the service, got {url!r}")
    token = environ.get(TOKEN_VARIABLE) or document.get("apiToken")
    if not isinstance(token, str) or not token.strip():
        raise ConfigError(f"{where}: apiToken is missing: set it in the file or in {TOKEN_VARIABLE}")
    channels = _channels(document.get("channelConfigs"), where)
    return AgentConfig(
        mlops_url=url.rstrip("/"),
        api_token=token.strip(),
        channels=channels,
        http_timeout_s=_number(document, "httpTimeout", where, 20000, low=1) / 1000,
        http_retry=int(_number(document, "httpRetry", where, 3, low=0, whole=True)),
        retry_max_delay_s=_number(document, "httpRetryMaxDelay", where, 30000, low=1) / 1000,
        max_aggregated_records=int(
            _number(document, "agentMaxAggregatedRecords", where, 500, low=1, high=10_000, whole=True)
        ),
        pending_timeout_s=_number(document, "agentPendingRecordsTimeoutMs", where, 2500, low=0) / 1000,
        server_mode=_flag(document, "serverMode", where, False),
        server_port=int(_number(document, "serverPort", where, 8080, low=0, high=65535, whole=True)),
        verify_ssl=_flag(document, "verifySSL", where, True),
        run_once=_flag(document, "runOnce", where, False),
    )


def _channels(value: Any, where: str) -> tuple[Channel, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(
            f"{where}: channelConfigs must list at least one channel (FS_SPOOL or RABBITMQ_SPOOL)"
        )
    channels: list[Channel] = []
    for index, entry in enumerate(value):
        at = f"channelConfigs[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("details", {}), dict):
            raise ConfigError(f"{where}: {at} must be a mapping with 'type' and 'details'")
        kind = entry.get("type")
        details: dict[str, Any] = entry.get("details") or {}
        name = details.get("name") or f"channel-{index}"
        if not isinstance(name, str):
            raise ConfigError(f"{where}: {at}.details.name must be text")
        if kind == "FS_SPOOL":
            directory = details.get("spoolDirectoryPath")
            if not isinstance(directory, str) or not directory:
                raise ConfigError(f"{where}: {at}.details.spoolDirectoryPath is required for FS_SPOOL")
            if not Path(directory).is_absolute():
                raise ConfigError(f"{where}: {at}.details.spoolDirectoryPath must be an absolute path")
            channels.append(FilesystemChannel(name, Path(directory)))
        elif kind == "RABBITMQ_SPOOL":
            url = details.get("queueUrl", details.get("rabbitmq_queue_url"))
            queue = details.get("queueName", details.get("rabbitmq_queue_name"))
            if not isinstance(url, str) or urlsplit(url).scheme not in ("amqp", "amqps"):
                raise ConfigError(
                    f"{where}: {at}.details.queueUrl (or rabbitmq_queue_url) must be an amqp:// URL"
                )
            if not isinstance(queue, str) or not queue:
                raise ConfigError(f"{where}: {at}.details.queueName (or rabbitmq_queue_name) is required")
            tls = _rabbit_tls(details, where, f"{at}.details.".__add__)  # a key as written in the file
            channels.append(RabbitChannel(name, url, queue, tls))
        elif kind in UNSUPPORTED_CHANNELS:
            raise ConfigError(
                f"{where}: {at}.type {kind} is not supported yet; supported: FS_SPOOL, RABBITMQ_SPOOL"
            )
        else:
            raise ConfigError(f"{where}: {at}.type must be FS_SPOOL or RABBITMQ_SPOOL, got {kind!r}")
    names = [c.name for c in channels]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: channelConfigs names must be unique, got {names}")
    return tuple(channels)


def _rabbit_tls(
    details: Mapping[str, Any], where: str, spelled: Callable[[str], str]
) -> ssl.SSLContext | None:
    """The channel's TLS context, or None without TLS keys. ``spelled`` names a key as the
    user wrote it (``channelConfigs[0].details.sslCaCertificatePath``, or a variable)."""
    known = {key for keys in TLS_KEYS for key in keys[:2]}
    for key in details:
        if key.lower().startswith(("ssl", "rabbitmq_ssl")) and key not in known:
            raise ConfigError(
                f"{where}: {spelled(key)} is not a TLS key (known: {', '.join(k[0] for k in TLS_KEYS)}, "
                "or the same as rabbitmq_ssl_ca_certificate_path ...)"
            )
    paths: list[Path | None] = []
    version: ssl.TLSVersion | None = None
    names: list[str] = []
    for camel, snake, _ in TLS_KEYS:
        key = snake if snake in details and camel not in details else camel
        names.append(spelled(key))
        raw = details.get(key)
        if raw is not None and (
            isinstance(raw, bool) or not isinstance(raw, str | int | float) or not str(raw).strip()
        ):
            raise ConfigError(f"{where}: {spelled(key)} must be text, got {raw!r}")
        try:
            if camel == "sslTlsVersion":
                version = None if raw is None else parse_tls_version(str(raw))
            else:
                paths.append(None if raw is None else absolute_file(str(raw)))
        except ValueError as exc:
            raise ConfigError(f"{where}: {spelled(key)}: {exc}") from None
    if version is None and all(path is None for path in paths):
        return None
    ca, certificate, keyfile = paths
    try:
        return rabbitmq_tls_context(ca, certificate, keyfile, version, TlsNames(*names))
    except TlsError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _text(document: Mapping[str, Any], key: str, where: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} is required (text)")
    return value.strip()


def _number(
    document: Mapping[str, Any],
    key: str,
    where: str,
    default: float,
    *,
    low: float,
    high: float | None = None,
    whole: bool = False,
) -> float:
    value = document.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (whole and not float(value).is_integer())
    ):
        raise ConfigError(f"{where}: {key} must be a {'whole ' if whole else ''}number, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise ConfigError(f"{where}: {key} must be {bound}, got {value!r}")
    return float(value)


def _flag(document: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = document.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
    return value


ENVIRONMENT_SOURCE = "the environment (MLOPS_SERVICE_URL ...)"


def from_environment(environ: Mapping[str, str]) -> AgentConfig:
    """The configuration DataRobot's agent image builds from its variables: one channel.

    ``MLOPS_SERVICE_URL``, ``MLOPS_API_TOKEN``, ``MLOPS_SPOOLER_TYPE`` (``FILESYSTEM`` with
    ``MLOPS_FILESYSTEM_DIRECTORY``, or ``RABBITMQ`` with ``MLOPS_RABBITMQ_QUEUE_URL`` and
    ``MLOPS_RABBITMQ_QUEUE_NAME``, and TLS with ``MLOPS_RABBITMQ_SSL_*``; the older names too),
    ``MLOPS_AGENT_SERVER_PORT`` (serves ``/metrics`` and ``/healthz``) and
    ``MLOPS_AGENT_VERIFY_SSL``. Errors name the variable.
    """

    def get(*names: str) -> str | None:
        for name in names:
            value = environ.get(name, "").strip()
            if value:
                return value
        return None

    def fail(problem: str) -> ConfigError:
        return ConfigError(f"{ENVIRONMENT_SOURCE}: {problem}")

    url = get(SERVICE_URL_VARIABLE) or ""
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise fail(f"{SERVICE_URL_VARIABLE} must be an http(s) URL of the service, got {url!r}")
    spooler = (get("MLOPS_SPOOLER_TYPE", "MLOPS_OUTPUT_TYPE") or "FILESYSTEM").upper()
    spooler = {"OUTPUT_DIR": "FILESYSTEM", "RABBIT_MQ": "RABBITMQ"}.get(spooler, spooler)
    document: dict[str, Any] = {"mlopsUrl": url}
    if spooler == "FILESYSTEM":
        directory = get("MLOPS_FILESYSTEM_DIRECTORY", "MLOPS_SPOOLER_DIR_PATH") or "/tmp/ta"
        channel = {"type": "FS_SPOOL", "details": {"name": "filesystem", "spoolDirectoryPath": directory}}
    elif spooler == "RABBITMQ":
        queue_url = get("MLOPS_RABBITMQ_QUEUE_URL", "MLOPS_RABBITMQ_URL")
        queue = get("MLOPS_RABBITMQ_QUEUE_NAME")
        if queue_url is None or queue is None:
            missing = "MLOPS_RABBITMQ_QUEUE_URL" if queue_url is None else "MLOPS_RABBITMQ_QUEUE_NAME"
            raise fail(f"{missing} is required with MLOPS_SPOOLER_TYPE=RABBITMQ")
        channel = {
            "type": "RABBITMQ_SPOOL",
            "details": {"name": "rabbitmq", "queueUrl": queue_url, "queueName": queue},
        }
    else:
        raise fail(
            f"MLOPS_SPOOLER_TYPE {spooler} is not supported by the agent; supported: FILESYSTEM, RABBITMQ"
        )
    document["channelConfigs"] = [channel]
    port = get("MLOPS_AGENT_SERVER_PORT")
    if port is not None:
        if not port.isdigit():
            raise fail(f"MLOPS_AGENT_SERVER_PORT must be a port number, got {port!r}")
        document["serverMode"], document["serverPort"] = True, int(port)
    if get("MLOPS_AGENT_VERIFY_SSL") is not None:
        document["verifySSL"] = (get("MLOPS_AGENT_VERIFY_SSL") or "").lower() != "false"
    config = parse(document, ENVIRONMENT_SOURCE, environ)
    if spooler == "RABBITMQ":
        variables = {camel: variable for camel, _, variable in TLS_KEYS}
        given = {camel: value for camel, variable in variables.items() if (value := get(variable))}
        tls = _rabbit_tls(given, ENVIRONMENT_SOURCE, variables.__getitem__)
        if tls is not None:
            channels = tuple(replace(c, tls=tls) for c in config.channels if isinstance(c, RabbitChannel))
            config = replace(config, channels=channels)
    return config
