"""The agent's Prometheus metrics, declared in one place with fixed labels, and its HTTP endpoint.

Each agent gets its own registry so several can live in one process (tests,
benchmarks). ``/metrics`` serves them; ``/healthz`` says whether the agent is
running (200) or starting, stopping or unable to reach its plugin (503).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ACTIONS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.actions = Counter(
            "shipmate_agent_actions",
            "Plugin actions carried out, by action and result.",
            ["action", "result"],
            registry=r,
        )
        self.action_duration = Histogram(
            "shipmate_agent_action_duration_seconds",
            "Wall time of plugin actions.",
            ["action"],
            buckets=_ACTIONS,
            registry=r,
        )
        self.retries = Counter(
            "shipmate_agent_action_retries", "Failed actions scheduled again.", ["action"], registry=r
        )
        self.queue_depth = Gauge(
            "shipmate_agent_queue_depth", "Deployments waiting for a worker.", registry=r
        )
        self.in_flight = Gauge(
            "shipmate_agent_actions_in_flight", "Deployments being worked on now.", registry=r
        )
        self.feed_lag = Histogram(
            "shipmate_agent_feed_lag_seconds",
            "From an event's timestamp to the agent reading it.",
            buckets=_FAST,
            registry=r,
        )
        self.change_to_action = Histogram(
            "shipmate_agent_change_to_action_seconds",
            "From a desired-state change in the service to its action starting.",
            buckets=_FAST,
            registry=r,
        )
        self.report_backlog = Gauge("shipmate_agent_report_backlog", "Reports not yet delivered.", registry=r)
        self.connected = Gauge("shipmate_agent_service_connected", "1 when the service answers.", registry=r)
        self.deployments = Gauge("shipmate_agent_deployments", "Deployments the agent knows of.", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """``/metrics`` and ``/healthz`` on a small threaded HTTP server."""

    def __init__(
        self, metrics: AgentMetrics, health: Callable[[], tuple[bool, dict[str, Any]]], host: str, port: int
    ):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    body = metrics.render()
                    self._send(200, CONTENT_TYPE_LATEST, body)
                elif self.path.split("?")[0] in ("/healthz", "/health"):
                    ok, detail = health()
                    self._send(200 if ok else 503, "application/json", json.dumps(detail).encode())
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("metrics endpoint: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)
        del outer

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
