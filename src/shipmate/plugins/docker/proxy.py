"""The environment's reverse proxy: Traefik, one endpoint for all deployments, switched live.

The plugin drives Traefik's file provider: it keeps the route table (``routes``) in
the proxy container, changes one deployment at a time under a lock, writes the new
table beside the watched directory and renames it into place (atomic: Traefik reads
the old table or the new one, never half of one). Traefik swaps its routers without
closing a connection, so nothing in flight or idle is dropped. The plugin then
confirms through the proxy, by the ``X-Shipmate-Upstream`` header, that the new route
is live before the caller stops anything.

Why the file provider and not Traefik's Docker provider (routes from container
labels): with labels, a container leaves the table only when Docker reports it dead
or unhealthy, i.e. after it has been told to stop, so requests sent meanwhile reach a
server that is shutting down. With the file the plugin takes the old container out
first, sees that it is out, and only then stops it. It also keeps the Docker socket
(root on the host) out of a container that faces the network.
"""

from __future__ import annotations

import io
import logging
import tarfile
import threading
import time
from collections.abc import Mapping
from typing import Any

from shipmate.plugins.docker import naming
from shipmate.plugins.docker.config import DockerPluginConfig, ReadinessVia
from shipmate.plugins.docker.decisions import ContainerView
from shipmate.plugins.docker.engine import Engine, EngineError
from shipmate.plugins.docker.routes import (
    ROUTES_DIR,
    ROUTES_FILE,
    ROUTES_FILE_NAME,
    STAGING_DIR,
    UPSTREAM_HEADER,
    parse_routes,
    render_routes_file,
    traefik_command,
)

log = logging.getLogger(__name__)

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
_PROXY_UID = 10001
"""Owner of the route directories (the user Shipmate's Traefik image runs as; root may write anyway)."""


def _lock_for(name: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(name, threading.Lock())


def initial_tree(active: Mapping[str, str]) -> bytes:
    """A tar (extracted at ``/``) with the route directories and a first table: any Traefik image
    has them before it starts, so the file provider finds its directory."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for directory in ("etc/traefik", ROUTES_DIR.lstrip("/"), STAGING_DIR.lstrip("/")):
            entry = tarfile.TarInfo(directory)
            entry.type, entry.mode, entry.uid, entry.gid = tarfile.DIRTYPE, 0o775, _PROXY_UID, 0
            tar.addfile(entry)
        data = render_routes_file(active).encode()
        entry = tarfile.TarInfo(ROUTES_FILE.lstrip("/"))
        entry.size, entry.mode, entry.uid, entry.gid, entry.mtime = (
            len(data),
            0o644,
            _PROXY_UID,
            0,
            int(time.time()),
        )
        tar.addfile(entry, io.BytesIO(data))
    return archive.getvalue()


class ReverseProxy:
    """The Traefik container of one environment, and its route table."""

    def __init__(self, engine: Engine, config: DockerPluginConfig) -> None:
        self._engine = engine
        self._config = config
        self.name = naming.environment_container_name(config.prefix, config.environment_id, naming.ROLE_PROXY)

    # -- the container -----------------------------------------------------------------

    def container(self) -> ContainerView | None:
        return self._engine.get(self.name)

    def ensure_running(self, active: Mapping[str, str] | None = None) -> tuple[ContainerView, bool]:
        """Start the proxy when missing (or not running) with the table ``active``; returns it and
        whether it was (re)created. A running proxy keeps its table."""
        current = self._engine.get(self.name)
        if current is not None and current.running:
            return current, False
        if current is not None:
            self._engine.stop_and_remove(self.name, timeout=5)
        self._engine.ensure_image(self._config.traefik_image)
        cfg = self._config
        ports = {
            f"{container_port}/tcp": (cfg.publish_address, host_port or None)
            for container_port, host_port in cfg.traefik_port_mapping.items()
        }
        kwargs: dict[str, Any] = {
            "image": cfg.traefik_image,
            "name": self.name,
            "command": traefik_command(),
            "network": cfg.docker_network,
            "ports": ports,
            "labels": naming.environment_labels(cfg.environment_id, naming.ROLE_PROXY),
            "restart_policy": {"Name": "unless-stopped"},
        }
        view = self._engine.run(files=("/", initial_tree(active or {})), **kwargs)
        self._wait_answering()
        self._wait_routes_loaded(active or {})
        return view, True

    def base_url(self) -> str:
        """Where the plugin itself reaches the proxy (to confirm route switches)."""
        if self._config.readiness_via is ReadinessVia.CONTAINER_NAME:
            return f"http://{self.name}:80"
        view = self._engine.get(self.name)
        port = view.ports.get(80) if view else None
        if not port:
            raise EngineError(
                f"the reverse proxy {self.name} does not publish port 80; add 80 to traefikPortMapping "
                "or set readinessVia: container-name"
            )
        return f"http://{_host(self._config.publish_address)}:{port}"

    def _wait_answering(self, timeout: float = 30.0) -> None:
        """Until the entry point answers (404 for an unknown path is an answer)."""
        import httpx

        deadline = time.monotonic() + timeout
        url = self.base_url() + "/"
        while True:
            try:
                httpx.get(url, timeout=2.0)
                return
            except httpx.HTTPError as exc:
                if time.monotonic() > deadline:
                    raise EngineError(
                        f"the reverse proxy {self.name} does not answer at {url}: {exc}"
                    ) from None
            view = self._engine.get(self.name)
            if view is None or view.status in ("exited", "dead"):
                tail = self._engine.logs_tail(self.name, 10)
                raise EngineError(f"the reverse proxy {self.name} stopped during start-up: {tail.strip()}")
            time.sleep(0.2)

    def _wait_routes_loaded(self, active: Mapping[str, str], timeout: float = 30.0) -> None:
        """Until the table is loaded: the entry point answers before the file provider has read it,
        and until then every route is Traefik's own 404. Any other answer (a container that is
        still starting included) means the router matched."""
        import httpx

        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            for deployment_id in active:
                url = f"{self.base_url()}/{deployment_id}/ping"
                while True:
                    try:
                        if client.get(url).status_code != 404:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise EngineError(
                            f"the reverse proxy {self.name} did not load the route of deployment "
                            f"{deployment_id} within {timeout:.0f} s"
                        )
                    time.sleep(0.05)

    def remove(self) -> bool:
        return self._engine.stop_and_remove(self.name, timeout=5)

    # -- routes ------------------------------------------------------------------------

    def current_routes(self) -> dict[str, str]:
        code, text = self._engine.exec(self.name, ["cat", ROUTES_FILE])
        return parse_routes(text) if code == 0 else {}

    def replace_all(self, active: Mapping[str, str]) -> None:
        """Rewrite the whole table (to repair it, or after the proxy was re-created)."""
        with _lock_for(self.name):
            self._write(dict(active))

    def set_route(self, deployment_id: str, container: str | None) -> None:
        """Route ``deployment_id`` to ``container`` (``None``: remove its route), then confirm it is live."""
        with _lock_for(self.name):
            table = self.current_routes()
            if container is None:
                if table.pop(deployment_id, None) is None:
                    return
                self._write(table)
            elif table.get(deployment_id) != container:
                table[deployment_id] = container
                self._write(table)
        self._confirm(deployment_id, container)

    def _write(self, table: dict[str, str]) -> None:
        """Write the table beside the watched directory, then rename it into place (atomic)."""
        staged = f"{STAGING_DIR}/{ROUTES_FILE_NAME}"
        self._engine.put_files(self.name, STAGING_DIR, {ROUTES_FILE_NAME: render_routes_file(table)})
        code, output = self._engine.exec(self.name, ["mv", "-f", staged, ROUTES_FILE])
        if code != 0:
            raise EngineError(f"installing the route table in {self.name} failed: {output.strip()}")

    def _confirm(self, deployment_id: str, container: str | None, timeout: float = 30.0) -> None:
        """Wait until requests for the deployment reach ``container`` (or, for ``None``, no container)."""
        import httpx

        url = f"{self.base_url()}/{deployment_id}/ping"
        wanted = f"{container}:{naming.PREDICTION_PORT}" if container else None
        deadline = time.monotonic() + timeout
        seen: str | None = "nothing yet"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                try:
                    response = client.get(url)
                    seen = response.headers.get(UPSTREAM_HEADER)
                    if seen == wanted and (container is None or response.status_code == 200):
                        return
                except httpx.HTTPError as exc:
                    seen = f"error {exc}"
                time.sleep(0.05)
        raise EngineError(
            f"the reverse proxy did not switch deployment {deployment_id} to {wanted or 'no route'} "
            f"within {timeout:.0f} s (last answer from {seen})"
        )


def _host(address: str) -> str:
    return "127.0.0.1" if address in ("0.0.0.0", "::", "") else address
