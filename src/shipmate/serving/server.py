"""Running the prediction server: uvicorn with one or more worker processes on one port.

With several workers uvicorn binds the socket once and each worker process
accepts on it; every worker loads its own copy of the models and follows the
deployments directory itself. The settings reach the workers through one
environment variable, so nothing is parsed at import time.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any

from starlette.applications import Starlette

from shipmate.serving.settings import ServeSettings
from shipmate.serving.threads import limit_thread_pools

SETTINGS_ENV = "SHIPMATE_SERVE_SETTINGS_JSON"


def _settings_json(settings: ServeSettings) -> str:
    data = settings.model_dump(mode="json", exclude={"model_repository"})
    if settings.api_key is not None:
        data["api_key"] = settings.api_key.get_secret_value()
    import json

    return json.dumps(data)


def app_from_environment() -> Starlette | Any:
    """uvicorn factory for worker processes: the settings the parent put in the environment."""
    raw = os.environ.get(SETTINGS_ENV)
    settings = ServeSettings.model_validate_json(raw) if raw else ServeSettings()
    configure_logging(settings.log_level)  # a spawned worker starts with logging unconfigured
    limit_thread_pools(settings.effective_workers())  # before any model loads its own pool
    return build_app(settings)


def build_app(settings: ServeSettings) -> Starlette | Any:
    """The app of one worker: with monitoring around it when it is configured (shipmate.monitoring)."""
    from shipmate.monitoring.settings import monitor_settings
    from shipmate.serving.app import create_app

    monitor = monitor_settings(os.environ, settings.monitor_settings, multi_model=settings.multi_model)
    if not monitor.enabled:
        return create_app(settings)
    from shipmate.monitoring.asgi import monitored_app

    return monitored_app(create_app, settings, monitor)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"
    )


def run(settings: ServeSettings) -> None:
    """Serve until interrupted."""
    import uvicorn

    configure_logging(settings.log_level)
    workers = settings.effective_workers()
    from shipmate.monitoring.settings import monitor_settings

    monitor = monitor_settings(
        os.environ, settings.monitor_settings, multi_model=settings.multi_model, log=True
    )
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "access_log": False,
        "http": "httptools",
        "loop": "uvloop",
        "timeout_keep_alive": 30,
        "server_header": False,
        "lifespan": "on",
    }
    logging.getLogger(__name__).info(
        "serving %s on %s:%d with %d worker(s)",
        settings.model or settings.deployments_dir,
        settings.host,
        settings.port,
        workers,
    )
    if workers == 1:
        uvicorn.run(build_app(settings), **common)
    else:
        # 0700; short, as a Unix socket's path must fit in 107 bytes (a long TMPDIR turns fan-out off)
        peer_dir = tempfile.mkdtemp(prefix="shipmate-w-") if settings.fanout else None
        metrics_dir = None  # workers' metrics in files, so any worker answers /metrics for all
        if monitor.enabled and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            metrics_dir = tempfile.mkdtemp(prefix="shipmate-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        try:
            os.environ[SETTINGS_ENV] = _settings_json(settings.model_copy(update={"peer_dir": peer_dir}))
            uvicorn.run(
                "shipmate.serving.server:app_from_environment", factory=True, workers=workers, **common
            )
        finally:
            for made in (peer_dir, metrics_dir):
                if made is not None:
                    shutil.rmtree(made, ignore_errors=True)
