"""The README's tour and docs/getting-started.md, run verbatim from a fresh empty directory.

The commands are read from the documents themselves (the README's tour block; every
```bash block of the getting-started page, in order), so documents and tests cannot
drift apart. Only the ports are chosen here (the blocks read SHIPMATE_PORT and
PREDICT_PORT when set), so the tests never clash with a running demo or each other.
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

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
GETTING_STARTED = REPO / "docs" / "getting-started.md"


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", text, re.DOTALL)


def tour_block(readme: str) -> str:
    """The first ```bash block after the heading "## A tour on your own machine"."""
    blocks = bash_blocks(readme.split("## A tour on your own machine", 1)[1])
    assert blocks, "the README's tour has no bash block"
    return blocks[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _group_ends(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def run_verbatim(script_text: str, tmp_path: Path) -> tuple[str, str, Path]:
    """Run the commands as one bash script (stopping at the first failure) in an empty directory.

    Returns stdout, stderr and the directory; fails if anything the script started outlives it.
    """
    script = tmp_path / "commands.sh"
    script.write_text("set -euo pipefail\n" + script_text + "\n")
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
        out, err = process.communicate(timeout=280)
        stopped = _group_ends(process.pid, timeout=30)  # the last line stops what the script started
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, f"stdout:\n{out[-3000:]}\nstderr:\n{err[-5000:]}"
    assert stopped, "the service, agent or prediction server outlived the script's kill line"
    assert "Traceback" not in err
    assert "plugin_stop: passing" in (workdir / "agent.log").read_text()
    assert "alembic" not in (workdir / "server.log").read_text()  # no migration chatter at start
    return out, err, workdir


def predictions(out: str) -> list[list[dict[str, object]]]:
    return [json.loads(line)["data"] for line in out.splitlines() if line.startswith('{"data"')]


def test_the_documents_are_self_contained():
    for block in [tour_block(README.read_text(encoding="utf-8")), *bash_blocks(GETTING_STARTED.read_text())]:
        assert "examples/" not in block, "no step may depend on the repository's working directory"
        assert "sleep" not in block, "no step may depend on timing"
    tour = tour_block(README.read_text(encoding="utf-8"))
    assert "curl" in tour and "shipmate init" in tour and "shipmate wait" in tour


def test_the_readme_tour_reaches_predictions(tmp_path: Path):
    out, _, workdir = run_verbatim(tour_block(README.read_text(encoding="utf-8")), tmp_path)
    [answer] = predictions(out)
    assert len(answer) == 1 and answer[0]["prediction"] in (0, 1)
    assert "churn" in out and "ready" in out  # deployments list
    assert oct((workdir / "agent.yaml").stat().st_mode & 0o777) == "0o600"


def test_getting_started_runs_from_install_to_removal(tmp_path: Path):
    out, _, workdir = run_verbatim(
        "\n".join(bash_blocks(GETTING_STARTED.read_text(encoding="utf-8"))), tmp_path
    )
    first, csv = predictions(out)
    assert len(first) == 2 and len(csv) == 1
    info = json.loads(next(line for line in out.splitlines() if line.startswith('{"deploymentId"')))
    assert info["version"] == "2" and info["targetName"] == "churned"  # the replacement serves
    assert "deleted deployment" in out
    assert not [p for p in (workdir / "deployments").iterdir() if not p.name.startswith(".")]
