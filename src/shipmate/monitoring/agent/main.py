"""``shipmate monitor [--config agent.yaml]``: wiring of config, channels, the service and signals.

One forwarding thread per channel (a pika connection belongs to one thread). SIGTERM or
SIGINT stops the loops after the post in flight; whatever was not acknowledged is read
again by the next start. The token is masked in every log line (a logging filter replaces
it wherever it would appear).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shipmate.common.backoff import Backoff
from shipmate.common.masking import mask
from shipmate.monitoring.agent.config import (
    AgentConfig,
    ConfigError,
    FilesystemChannel,
    from_environment,
    load,
)
from shipmate.monitoring.agent.forwarder import Forwarder, PostRefused, PostResult, ServiceDown
from shipmate.monitoring.agent.metrics import AgentMetrics, serve
from shipmate.monitoring.spool import SpoolReader

log = logging.getLogger("shipmate.monitor")


class MaskSecret(logging.Filter):
    """Replaces a secret in every record's final message, whatever logged it."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg = message.replace(self.secret, mask(self.secret))
            record.args = None
        return True


class HttpSink:
    """Posts records to the service's ingest route through ``ShipmateClient``."""

    def __init__(self, config: AgentConfig) -> None:
        from shipmate.client import ShipmateClient

        self._client = ShipmateClient(
            config.mlops_url, config.api_token, timeout=config.http_timeout_s, verify=config.verify_ssl
        )

    def post(self, records: Sequence[dict[str, Any]]) -> PostResult:
        return self._post(self._client.post_monitoring_aggregates, records)

    def post_predictions(self, records: Sequence[dict[str, Any]]) -> PostResult:
        return self._post(self._client.post_monitoring_predictions, records)

    def _post(
        self, send: Callable[[Sequence[dict[str, Any]]], Any], records: Sequence[dict[str, Any]]
    ) -> PostResult:
        from shipmate.client import ApiError, ServiceUnavailable

        try:
            answer = send(records)
        except ServiceUnavailable as exc:
            raise ServiceDown(str(exc)) from None
        except ApiError as exc:
            if exc.retryable:
                raise ServiceDown(str(exc)) from None
            raise PostRefused(exc.status, exc.message) from None
        return PostResult(
            stored=answer.stored,
            duplicate=answer.duplicate,
            rejected=answer.rejected,
            duplicate_ids=[p.id for p in answer.problems if p.outcome == "duplicate"],
            rejected_ids=[p.id for p in answer.problems if p.outcome == "rejected"],
            partial=[(p.id, p.seen_ids) for p in answer.problems if p.outcome == "partial"],
            reasons=[f"{p.id}: {p.reason}" for p in answer.problems if p.outcome == "rejected"],
        )

    def close(self) -> None:
        self._client.close()


def reader_for(channel: Any) -> SpoolReader:
    """The prediction server's own consumer side of the channel's spool (the one reader of each type)."""
    if isinstance(channel, FilesystemChannel):
        from shipmate.monitoring.fs_spool import FilesystemSpoolReader

        return FilesystemSpoolReader(channel.directory)
    from shipmate.monitoring.rabbit_spool import RabbitSpoolReader

    return RabbitSpoolReader(channel.queue_url, channel.queue_name, channel.tls)


def _configure_logging(level: str) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.getLogger("pika").setLevel(logging.CRITICAL)  # the reader reports connection losses
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return handler


def run(config_path: Path | None, *, log_level: str = "info", stop: threading.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or, with ``runOnce``, until the channels are empty); the exit code.

    ``config_path`` ``None``: the configuration comes from the environment (``from_environment``).

    Without ``stop`` this is the process's entry point: it configures logging (with the token
    masked) and the signals. With one (tests, embedding) it touches neither.
    """
    handler = _configure_logging(log_level) if stop is None else None
    try:
        config = load(config_path) if config_path is not None else from_environment(os.environ)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    if handler is not None:
        handler.addFilter(MaskSecret(config.api_token))
    if stop is None:
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set() if stop else None)
    metrics = AgentMetrics()
    sink = HttpSink(config)
    backoff = Backoff(initial=0.2, maximum=config.retry_max_delay_s, jitter=0.2)
    threads: dict[str, threading.Thread] = {}

    def loop(channel: Any) -> None:
        failures = 0
        while not stop.is_set():
            reader = None
            try:
                reader = reader_for(channel)
                Forwarder(
                    channel.name, reader, sink, metrics,
                    max_records=config.max_aggregated_records, pending_timeout=config.pending_timeout_s,
                    http_retry=config.http_retry, backoff=backoff, stop=stop, run_once=config.run_once,
                ).run()  # fmt: skip
                if config.run_once:
                    return
            except Exception as exc:  # a bug or an unreadable channel: say so, wait, start the loop again
                failures += 1
                metrics.channel_errors.labels(channel.name).inc()
                metrics.set_channel_error(channel.name, str(exc))
                log.error("%s: %s: %s; restarting the channel", channel.name, type(exc).__name__, exc,
                          exc_info=log.isEnabledFor(logging.DEBUG))  # fmt: skip
                stop.wait(backoff.delay(failures))
            finally:
                if reader is not None:
                    reader.close()

    for channel in config.channels:
        threads[channel.name] = threading.Thread(target=loop, args=(channel,), name=f"monitor-{channel.name}")
    server = None
    if config.server_mode:
        server = serve(metrics, lambda: {n: t.is_alive() for n, t in threads.items()}, "0.0.0.0",
                       config.server_port)  # fmt: skip
        log.info("serving /metrics and /healthz on port %d", server.server_address[1])
    for thread in threads.values():
        thread.start()
    described = ", ".join(
        f"{c.name} (FS_SPOOL {c.directory})"
        if isinstance(c, FilesystemChannel)
        else f"{c.name} (RABBITMQ{', TLS' if c.tls is not None else ''})"
        for c in config.channels
    )
    log.info(
        "monitoring agent running: %s -> %s (token %s)", described, config.mlops_url, mask(config.api_token)
    )
    for thread in threads.values():
        while thread.is_alive():
            thread.join(0.5)
    if server is not None:
        server.shutdown()
    sink.close()
    log.info("monitoring agent stopped")
    return 0
