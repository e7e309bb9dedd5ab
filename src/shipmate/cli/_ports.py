"""Is a TCP port free to listen on? Asked before a server starts, so a busy port is one clear line."""

from __future__ import annotations

import errno
import socket


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on, or None when it can (port 0 always can)."""
    if port == 0:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use (another process listens there)"
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"address {host} is not an address of this machine"
            if exc.errno == errno.EACCES:
                return f"port {port} needs more privileges (ports below 1024 are reserved)"
            return f"cannot listen on {host}:{port}: {exc.strerror}"
        except socket.gaierror as exc:
            return f"address {host!r} cannot be resolved: {exc.strerror}"
    return None
