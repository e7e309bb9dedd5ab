"""The environment's reverse proxy: one endpoint for all deployments, switched without a restart.

Two ways to drive it, chosen by ``reverseProxy`` (or from the image):

* **nginx** (Shipmate's ``shipmate/reverse-proxy`` image, built locally): the plugin
  keeps the route table in the proxy (``routes.conf``), changes it one deployment at
  a time, validates it (``nginx -t``) and reloads gracefully (``nginx -s reload``:
  new workers take new connections, old ones finish their requests). It then
  confirms through the proxy, by the ``X-Shipmate-Upstream`` header, that the new
  route is live before the caller stops anything.
* **traefik** (the documented image): Traefik discovers routes from container labels
  (``routes.traefik_labels``) and only routes containers whose health check passes.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from shipmate.plugins.docker import naming
from shipmate.plugins.docker.config import DockerPluginConfig, ProxyKind, ReadinessVia
from shipmate.plugins.docker.decisions import ContainerView
from shipmate.plugins.docker.engine import Engine, EngineError
from shipmate.plugins.docker.routes import (
    ROUTES_FILE,
    UPSTREAM_HEADER,
    UPSTREAMS_FILE,
    render_nginx_routes,
    render_nginx_upstreams,
    route_table,
    traefik_command,
)

log = logging.getLogger(__name__)

_ROUTE_LINE = re.compile(r"^# route (\S+) (\S+):(\d+)$", re.MULTILINE)
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def parse_nginx_routes(text: str) -> dict[str, str]:
    """``deployment id → container`` from a ``routes.conf`` this module wrote."""
    return {m.group(1): m.group(2) for m in _ROUTE_LINE.finditer(text)}


def render_routes_file(active: Mapping[str, str]) -> str:
    """``routes.conf`` with a machine-readable index, so the table can be read back and changed."""
    routes = route_table(active)
    index = "".join(f"# route {r.deployment_id} {r.upstream}\n" for r in routes)
    return index + render_nginx_routes(routes)


def render_route_files(active: Mapping[str, str]) -> dict[str, str]:
    """Both files of the table, by path: the upstreams (http level) and the locations (server level)."""
    return {
        UPSTREAMS_FILE: render_nginx_upstreams(route_table(active)),
        ROUTES_FILE: render_routes_file(active),
    }


def routes_are_stale(table: Mapping[str, str], views: list[ContainerView], loaded_at: str) -> bool:
    """True when a routed container (re)started after the table was loaded: nginx may hold its old address."""
    started = {v.name: v.started_at for v in views if v.running}
    return any(started.get(name, "") > loaded_at for name in table.values())


def _lock_for(name: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(name, threading.Lock())


class ReverseProxy:
    """The proxy container of one environment, and its route table."""

    def __init__(self, engine: Engine, config: DockerPluginConfig) -> None:
        self._engine = engine
        self._config = config
        self.name = naming.environment_container_name(config.prefix, config.environment_id, naming.ROLE_PROXY)
        self._kind: ProxyKind | None = (
            None if config.reverse_proxy is ProxyKind.AUTO else config.reverse_proxy
        )

    # -- what kind of proxy ------------------------------------------------------------

    @property
    def kind(self) -> ProxyKind:
        if self._kind is None:
            self._kind = self._detect_kind()
        return self._kind

    def _detect_kind(self) -> ProxyKind:
        image = self._config.traefik_image
        labels = self._engine.image_labels(image) if self._engine.image_id(image) else {}
        declared = labels.get(naming.PROXY_KIND_LABEL)
        if declared:
            try:
                return ProxyKind(declared)
            except ValueError:
                raise EngineError(f"image {image} declares an unknown proxy kind {declared!r}") from None
        if "traefik" in image.rsplit("/", 1)[-1]:
            return ProxyKind.TRAEFIK
        raise EngineError(
            f"cannot tell how to drive the reverse proxy image {image}: it is not Traefik and has no "
            f"'{naming.PROXY_KIND_LABEL}' label; set reverseProxy: nginx or traefik"
        )

    # -- the container -----------------------------------------------------------------

    def container(self) -> ContainerView | None:
        return self._engine.get(self.name)

    def ensure_running(self) -> tuple[ContainerView, bool]:
        """Start the proxy when missing (or not running); returns it and whether it was (re)created."""
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
            "network": cfg.docker_network,
            "ports": ports,
            "labels": naming.environment_labels(cfg.environment_id, naming.ROLE_PROXY),
            "restart_policy": {"Name": "unless-stopped"},
        }
        if self.kind is ProxyKind.TRAEFIK:
            kwargs["command"] = traefik_command(cfg.environment_id, cfg.docker_network, naming.ENVIRONMENT)
            kwargs["volumes"] = {"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "ro"}}
        view = self._engine.run(**kwargs)
        self._wait_answering()
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
        import httpx

        deadline = time.monotonic() + timeout
        url = self.base_url() + ("/healthz" if self.kind is ProxyKind.NGINX else "/")
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

    def remove(self) -> bool:
        return self._engine.stop_and_remove(self.name, timeout=5)

    # -- routes ------------------------------------------------------------------------

    def current_routes(self) -> dict[str, str]:
        if self.kind is not ProxyKind.NGINX:
            return {}
        code, text = self._engine.exec(self.name, ["cat", ROUTES_FILE])
        return parse_nginx_routes(text) if code == 0 else {}

    def replace_all(self, active: Mapping[str, str]) -> None:
        """Rewrite the whole table (after the proxy was (re)created or to repair it)."""
        if self.kind is not ProxyKind.NGINX:
            return
        with _lock_for(self.name):
            self._write_and_reload(dict(active))

    def set_route(self, deployment_id: str, container: str | None) -> None:
        """Route ``deployment_id`` to ``container`` (``None``: remove its route), then confirm it is live."""
        if self.kind is not ProxyKind.NGINX:
            return
        with _lock_for(self.name):
            table = self.current_routes()
            if container is None:
                if table.pop(deployment_id, None) is None:
                    return
            else:
                # Reload even when the name is unchanged: a re-created container has a new
                # address, and only fresh workers are sure not to hold the old one in cache.
                table[deployment_id] = container
            self._write_and_reload(table)
        self._confirm(deployment_id, container)

    def _write_and_reload(self, table: dict[str, str]) -> None:
        # nginx resolves upstream names when it loads the table: route only running containers.
        for dep, container in list(table.items()):
            view = self._engine.get(container)
            if view is None or not view.running:
                log.warning("dropping the route of %s: container %s is not running", dep, container)
                del table[dep]
        previous = {
            path: self._engine.exec(self.name, ["cat", path])[1] for path in (UPSTREAMS_FILE, ROUTES_FILE)
        }
        self._put(render_route_files(table))
        code, output = self._engine.exec(self.name, ["nginx", "-t", "-q"])
        if code != 0:
            self._put(previous)
            raise EngineError(
                f"the new route table was rejected by nginx (previous table kept): {output.strip()}"
            )
        code, output = self._engine.exec(self.name, ["nginx", "-s", "reload"])
        if code != 0:
            raise EngineError(f"reloading the reverse proxy {self.name} failed: {output.strip()}")

    def _put(self, files: Mapping[str, str]) -> None:
        directory = ROUTES_FILE.rsplit("/", 1)[0]
        self._engine.put_files(
            self.name, directory, {path.rsplit("/", 1)[1]: text for path, text in files.items()}
        )

    def refresh_if_stale(self, views: list[ContainerView]) -> bool:
        """Reload the table when a routed container restarted since it was loaded; True if it did."""
        if self.kind is not ProxyKind.NGINX:
            return False
        command = ["date", "-u", "-r", ROUTES_FILE, "+%Y-%m-%dT%H:%M:%S.%N"]
        code, loaded_at = self._engine.exec(self.name, command)
        if code != 0 or not routes_are_stale(self.current_routes(), views, loaded_at.strip()):
            return False
        with _lock_for(self.name):
            self._write_and_reload(self.current_routes())
        return True

    def _confirm(self, deployment_id: str, container: str | None, timeout: float = 30.0) -> None:
        """Wait until requests for the deployment reach ``container`` (or, for ``None``, no container)."""
        import httpx

        url = f"{self.base_url()}/{deployment_id}/ping"
        wanted = f"{container}:{naming.PREDICTION_PORT}" if container else None
        deadline = time.monotonic() + timeout
        seen: str | None = "nothing yet"
        while time.monotonic() < deadline:
            try:
                response = httpx.get(url, timeout=2.0)
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
