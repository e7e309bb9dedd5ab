"""The README's tour, run verbatim: its bash block, from a fresh empty directory, must reach predictions.

The block is read from README.md itself, so the README and this test cannot drift
apart. Only the ports are chosen here (the block reads SHIPMATE_PORT and
PREDICT_PORT when they are set), so the test never clashes with a running demo.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"


def tour_block(readme: str) -> str:
    """The first ```bash block after the heading "## A tour on your own machine"."""
    section = readme.split("## A tour on your own machine", 1)[1]
    match = re.search(r"```bash\n(.*?)\n```", section, re.DOTALL)
    assert match, "the README's tour has no bash block"
    return match.group(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_block_is_found_and_self_contained():
    block = tour_block(README.read_text(encoding="utf-8"))
    assert "curl" in block and "shipmate init" in block and "shipmate wait" in block
    assert "examples/" not in block, "the tour must not depend on the repository's working directory"
    assert "sleep" not in block, "the tour must not depend on timing"


def test_the_readme_tour_reaches_predictions(tmp_path: Path):
    script = tmp_path / "tour.sh"
    script.write_text("set -euo pipefail\n" + tour_block(README.read_text(encoding="utf-8")) + "\n")
    workdir = tmp_path / "empty"
    workdir.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SHIPMATE_", "MLOPS_", "PREDICTION_API_")) and k != "PYTHONPATH"
    }
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        SHIPMATE_PORT=str(_free_port()),
        PREDICT_PORT=str(_free_port()),
        SHIPMATE_AGENT_METRICS__PORT="0",  # several agents may run on this machine at once
        PREDICTION_API_WORKERS="1",
    )
    process = subprocess.Popen(
        ["bash", str(script)],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=240)
        stopped = _group_ends(process.pid, timeout=30)  # the block's last line stops what it started
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # whatever the block left running
        time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, f"stdout:\n{out[-3000:]}\nstderr:\n{err[-5000:]}"
    answer = next(line for line in out.splitlines() if line.startswith('{"data"'))
    predictions = json.loads(answer)["data"]
    assert len(predictions) == 1 and predictions[0]["prediction"] in (0, 1, "0", "1")
    assert "Traceback" not in err
    assert "churn" in out and "ready" in out  # deployments list
    assert oct((workdir / "agent.yaml").stat().st_mode & 0o777) == "0o600"
    assert stopped, "the service, agent or prediction server outlived the tour's kill line"
    assert "plugin_stop: passing" in (workdir / "agent.log").read_text()
    assert "alembic" not in (workdir / "server.log").read_text()  # no migration chatter at start


def _group_ends(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False
