"""``shipmate demo`` as people stop and restart it: SIGTERM stops every part, busy ports and a
running demo are named, and a second run reuses the first run's environment, model and deployment."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

SHIPMATE = [sys.executable, "-c", "from shipmate.cli.main import main; main()"]


def _demo(data: Path, *args: str) -> list[str]:
    return [*SHIPMATE, "demo", "--data-dir", str(data), *args]


def _read_summary(process: subprocess.Popen[str]) -> dict[str, Any]:
    """The --json summary the demo prints once everything answers (it then keeps running)."""
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.rstrip() == "}":
            return dict(json.loads("".join(lines)))
    raise AssertionError(f"the demo ended without a summary: {''.join(lines)}")


def _listening(url: str) -> bool:
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


def test_sigterm_stops_everything_and_the_next_run_reuses_the_deployment(tmp_path: Path):
    data = tmp_path / "demo"
    first = subprocess.Popen(
        _demo(data, "--port", "0", "--predict-port", "0", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        summary = _read_summary(first)
        service_url, prediction_url = summary["serviceUrl"], summary["predictionUrl"]

        # a second demo on the same data directory is refused while the first runs
        same_dir = subprocess.run(_demo(data, "--once"), capture_output=True, text=True, timeout=60)
        assert same_dir.returncode == 1 and "another demo" in same_dir.stdout + same_dir.stderr
        # a second demo elsewhere, on the first one's port, says so and stops
        port = service_url.rsplit(":", 1)[1]
        clash = subprocess.run(
            _demo(tmp_path / "other", "--port", port, "--once"), capture_output=True, text=True, timeout=60
        )
        said = clash.stdout + clash.stderr
        assert clash.returncode == 1 and f"--port {port}" in said and "--any-port" in said
        assert "Traceback" not in said

        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
    assert not _listening(service_url) and not _listening(prediction_url)
    assert "plugin_stop: passing" in (data / "logs" / "agent.log").read_text()

    again = subprocess.run(
        _demo(data, "--port", "0", "--predict-port", "0", "--once", "--json"),
        capture_output=True,
        text=True,
        timeout=280,
        start_new_session=True,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads(again.stdout)
    assert second["deploymentId"] == summary["deploymentId"]
    assert second["environmentId"] == summary["environmentId"]
    assert second["modelPackageId"] == summary["modelPackageId"]
    assert second["predictionUrl"] != prediction_url  # moved with the prediction server, and answering
    assert len(second["predictions"]) == 3
    assert "reused" in again.stderr
