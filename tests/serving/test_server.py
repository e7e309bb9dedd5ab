"""Fan-out in a real `shipmate serve --workers 2`: the workers find each other, answer as one
worker would, and the parent removes their directory when it stops."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from sklearn.datasets import load_iris
from tests.serving.conftest import stop_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_worker_processes_share_a_batch_and_clean_up(
    packages: dict[str, Path], tmp_path: Path, wait: Callable[..., Any]
) -> None:
    X, _ = load_iris(return_X_y=True, as_frame=True)
    n = 4000  # about 400 KB: the body arrives in more than one piece
    rows = X.sample(n, replace=True, random_state=1) + np.random.default_rng(1).normal(0, 0.1, (n, 4))
    body = orjson.dumps(rows.to_dict("records"))
    csv_body = rows.to_csv(index=False).encode()
    temp = Path(tempfile.mkdtemp(dir="/tmp"))  # short: a socket's path must fit in 107 bytes
    port = free_port()
    cmd = [sys.executable, "-c", "from shipmate.cli.main import main; main()", "serve",
           "--model", str(packages["iris"]), "--workers", "2", "--port", str(port),
           "--work-dir", str(tmp_path / "work"), "--log-level", "debug"]  # fmt: skip
    env = {**os.environ, "TMPDIR": str(temp), "SHIPMATE_SERVE_FANOUT_MIN_BYTES": "1024"}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(url + "/ping", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait(ready, timeout=90, interval=0.2)
        (peers,) = temp.glob("shipmate-w-*")
        assert stat.S_IMODE(peers.stat().st_mode) == 0o700  # only the server's user can reach the sockets

        def both_joined() -> bool:  # the second worker may still be loading when the first answers
            assert proc.poll() is None, log.read_text()
            return len(list(peers.glob("*.sock"))) == 2 and len(list(peers.glob("*.load"))) == 2

        wait(both_joined, timeout=90, interval=0.2)

        def post(content: bytes, ctype: str | None = "application/json") -> bytes:
            headers = {"Content-Type": ctype} if ctype else {}
            response = httpx.post(url + "/predictions", content=content, headers=headers, timeout=30)
            assert response.status_code == 200, response.text
            return response.content

        answers = {post(body) for _ in range(10)} | {post(csv_body, "text/csv") for _ in range(10)}
        assert len(answers) == 1, log.read_text()[-4000:]  # JSON or CSV, whichever worker took it
        (answer,) = answers
        data = orjson.loads(answer)["data"]
        assert [r["rowId"] for r in data] == list(range(n))
        assert post(body, None) == answer  # no Content-Type: scored whole, the same answer
        single = post(orjson.dumps(rows.head(5).to_dict("records")))
        assert orjson.loads(single)["data"] == data[:5]  # small bodies are scored whole: same scores

        def sibling_answered() -> bool:
            """Some batch was joined from a sibling's answer. A sibling logs each chunk it scores; the
            receiving worker logs each chunk it scored itself instead (a sibling that missed its
            patience, which a busy machine makes happen now and then): more of the first than of the
            second means at least one sibling's answer was used."""
            text = log.read_text()
            if text.count("scored a chunk of") > text.count("scoring its chunk here"):
                return True
            assert post(body) == answer  # another batch, the same answer however it was shared
            return False

        wait(sibling_answered, timeout=120, interval=0)
    finally:
        stop_server(proc)
    assert not peers.exists()
    shutil.rmtree(temp, ignore_errors=True)
