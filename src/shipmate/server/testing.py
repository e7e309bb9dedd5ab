"""Test support: a real service on a free loopback port, in a thread, and small model packages.

Used by the service's own tests and by other areas (the agent's tests run against a
real service instead of a mock of it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from shipmate.server.settings import ServerSettings

TEST_ADMIN_TOKEN = "smt_test-admin-token-0123456789abcdef"


@dataclass(frozen=True)
class LiveServer:
    base_url: str
    admin_token: str
    settings: ServerSettings


@contextmanager
def live_server(settings: ServerSettings, *, startup_timeout: float = 60.0) -> Iterator[LiveServer]:
    """Serve ``create_app(settings)`` with uvicorn on 127.0.0.1 (an OS-chosen port) until the block ends."""
    import uvicorn

    from shipmate.server.app import create_app

    if settings.admin_token is None:
        settings = settings.model_copy(update={"admin_token": SecretStr(TEST_ADMIN_TOKEN)})
    assert settings.admin_token is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings), log_level="warning", lifespan="on", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="shipmate-test-server"
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", settings.admin_token.get_secret_value(), settings)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def write_test_package(
    path: Path,
    *,
    name: str = "test-model",
    version: str = "1",
    framework: str = "custom",
    target_type: str = "regression",
    payload: bytes = b"not a real model",
    extra_manifest: dict[str, Any] | None = None,
) -> Path:
    """A small ``.mlpkg`` (zip with ``manifest.json``) in the agreed format, for tests and benchmarks."""
    files = {"model/payload.bin": payload}
    manifest = {
        "formatVersion": 1,
        "name": name,
        "version": version,
        "framework": framework,
        "targetType": target_type,
        "classLabels": None,
        "features": [{"name": "x", "type": "numeric"}],
        "baseline": {},
        "createdAt": dt.datetime(2026, 1, 1, tzinfo=dt.UTC).isoformat(),
        "modelPath": "model/payload.bin",
        "files": {member: hashlib.sha256(data).hexdigest() for member, data in files.items()},
        **(extra_manifest or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
        for member, data in files.items():
            archive.writestr(member, data)
    return path
