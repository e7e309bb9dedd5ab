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

SETTINGS_ENV = "SHIPMATE_SERVE_SETTINGS_JSON"


def _settings_json(settings: ServeSettings) -> str:
    data = settings.model_dump(mode="json", exclude={"model_repository"})
    if settings.api_key is not None:
        data["api_key"] = settings.api_key.get_secret_value()
    import json

    return json.dumps(data)


def app_from_environment() -> Starlette:
    """uvicorn factory for worker processes: the settings the parent put in the environment."""
    from shipmate.serving.app import create_app

    raw = os.environ.get(SETTINGS_ENV)
    settings = ServeSettings.model_validate_json(raw) if raw else ServeSettings()
    configure_logging(settings.log_level)  # a spawned worker starts with logging unconfigured
    return create_app(settings)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"
    )


def run(settings: ServeSettings) -> None:
    """Serve until interrupted."""
    import uvicorn

    configure_logging(settings.log_level)
    workers = settings.effective_workers()
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
        from shipmate.serving.app import create_app

        uvicorn.run(create_app(settings), **common)
    else:
        # 0700; short, as a Unix socket's path must fit in 107 bytes (a long TMPDIR turns fan-out off)
        peer_dir = tempfile.mkdtemp(prefix="shipmate-w-") if settings.fanout else None
        try:
            os.environ[SETTINGS_ENV] = _settings_json(settings.model_copy(update={"peer_dir": peer_dir}))
            uvicorn.run(
                "shipmate.serving.server:app_from_environment", factory=True, workers=workers, **common
            )
        finally:
            if peer_dir is not None:
                shutil.rmtree(peer_dir, ignore_errors=True)
