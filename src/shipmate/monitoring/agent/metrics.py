"""The monitoring agent's own Prometheus metrics and health, served on ``/metrics`` and ``/healthz``."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class AgentMetrics:
    """Counters of what was read, forwarded and refused, per channel; plus the agent's health."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.read = Counter("shipmate_monitor_records_read", "Spool records read", ["channel"], registry=r)
        self.outcomes = Counter(
            "shipmate_monitor_records", "Spool records by what became of them: stored, duplicate, rejected, "
            "malformed and skipped (raw samples) before posting", ["channel", "outcome"], registry=r,
        )  # fmt: skip
        self.rows = Counter(
            "shipmate_monitor_rows_forwarded",
            "Prediction rows in the aggregates acknowledged (whatever the service answered)",
            ["channel"],
            registry=r,
        )
        self.posts = Counter(
            "shipmate_monitor_posts", "Posts to the service by result", ["result"], registry=r
        )
        self.post_seconds = Histogram(
            "shipmate_monitor_post_seconds", "Time of one successful post", registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )  # fmt: skip
        self.pending = Gauge("shipmate_monitor_pending_records", "Records read, not yet acknowledged",
                             ["channel"], registry=r)  # fmt: skip
        self.channel_errors = Counter(
            "shipmate_monitor_channel_errors", "Connection losses of a channel", ["channel"], registry=r
        )
        self.last_success = Gauge(
            "shipmate_monitor_last_success_timestamp_seconds", "When a post last succeeded", registry=r
        )
        self.service_failures = 0
        """Consecutive failed posts (0 when the service is reachable)."""
        self._lock = threading.Lock()
        self._channels: dict[str, dict[str, Any]] = {}

    def mark_read(self, channel: str) -> None:
        with self._lock:
            state = self._channels.setdefault(channel, {})
            state["lastReadAt"] = time.time()
            state["lastError"] = None

    def set_channel_error(self, channel: str, error: str) -> None:
        with self._lock:
            self._channels.setdefault(channel, {})["lastError"] = error

    def health(self, alive: dict[str, bool]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body): 503 when a channel's loop has died, else 200 with the details."""
        with self._lock:
            channels = {name: {"alive": ok, **self._channels.get(name, {})} for name, ok in alive.items()}
        dead = [name for name, ok in alive.items() if not ok]
        status = "failed" if dead else ("degraded" if self.service_failures else "ok")
        body = {"status": status, "channels": channels, "serviceFailures": self.service_failures}
        return (503 if dead else 200), body


def serve(metrics: AgentMetrics, alive: Any, host: str, port: int) -> ThreadingHTTPServer:
    """Start ``/metrics`` and ``/healthz`` in a daemon thread; ``alive()`` maps channel -> loop alive."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                body, status, kind = generate_latest(metrics.registry), 200, CONTENT_TYPE_LATEST
            elif self.path == "/healthz":
                status, doc = metrics.health(alive())
                body, kind = json.dumps(doc).encode(), "application/json"
            else:
                body, status, kind = b'{"detail": "not found"}', 404, "application/json"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            return None

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="monitor-metrics", daemon=True).start()
    return server
