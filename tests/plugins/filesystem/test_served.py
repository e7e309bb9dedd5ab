"""``waitForPredictionServer``: the filesystem environment reports a deployment ready only once the
prediction server over its directory serves the new model (asked at ``<base>/deployments/<id>``).

The prediction server here is a stand-in at the HTTP boundary that answers as ``shipmate serve``
does; the README tour's test runs the real one.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipmate.plugin.actions import invoke
from shipmate.plugin.errors import ConfigError
from shipmate.plugin.info import DeploymentInfo, PEInfo
from shipmate.plugins.filesystem import FilesystemPlugin


class _Serving(http.server.BaseHTTPRequestHandler):
    served: dict[str, str] = {}

    def do_GET(self) -> None:  # the standard library names it so
        deployment_id = self.path.rsplit("/", 1)[-1]
        model = self.served.get(deployment_id)
        self.send_response(200 if model else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        body = {"deploymentId": deployment_id, "modelId": model} if model else {"detail": "unknown"}
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def prediction_server() -> Iterator[tuple[str, dict[str, str]]]:
    served: dict[str, str] = {}
    handler = type("Handler", (_Serving,), {"served": served})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


def _plugin(base: Path, url: str, wait: Any = 1.0) -> FilesystemPlugin:
    config = {"baseDir": str(base), "deploymentPredictionBaseUrl": url, "waitForPredictionServer": wait}
    return FilesystemPlugin(config, None, PEInfo(id="pe-1", deployments=[]), False)


def _info(artifact: Path, model_id: str = "m1", **extra: Any) -> DeploymentInfo:
    return DeploymentInfo(id="d1", model_id=model_id, model_artifact=str(artifact), **extra)


def test_ready_once_the_prediction_server_serves_the_model(tmp_path, model_artifact, prediction_server):
    url, served = prediction_server
    served["d1"] = "m1"
    result = invoke(_plugin(tmp_path, url), "deployment_start", _info(model_artifact))
    assert (result.status.value, result.state.value) == ("passing", "ready")  # type: ignore[union-attr]
    assert result.data["predictionUrl"] == f"{url}/d1/predict"


def test_not_ready_while_nothing_serves_it(tmp_path, model_artifact):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens there
    result = invoke(_plugin(tmp_path, url, wait=0.5), "deployment_start", _info(model_artifact))
    assert (result.status.value, result.state.value) == ("failing", "errored")  # type: ignore[union-attr]
    assert url in (result.msg or "") and "does not answer" in (result.msg or "")
    assert "shipmate serve --deployments-dir" in (result.msg or "")
    assert (tmp_path / "deployment_d1" / "config.yml").is_file()  # written; a retry finds it in place


def test_a_replacement_is_ready_only_when_the_new_model_serves(tmp_path, model_artifact, prediction_server):
    url, served = prediction_server
    served["d1"] = "m1"
    plugin = _plugin(tmp_path, url, wait=0.5)
    assert invoke(plugin, "deployment_start", _info(model_artifact)).status.value == "passing"
    replaced = invoke(plugin, "deployment_replace_model", _info(model_artifact, new_model_id="m2"))
    assert replaced.status.value == "failing" and "still serves model m1" in (replaced.msg or "")
    served["d1"] = "m2"
    again = invoke(plugin, "deployment_replace_model", _info(model_artifact, new_model_id="m2"))
    assert (again.status.value, again.state.value) == ("passing", "ready")  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["soon", -1, True])
def test_the_wait_must_be_seconds(tmp_path, bad):
    with pytest.raises(ConfigError, match="waitForPredictionServer"):
        _plugin(tmp_path, "http://127.0.0.1:8080", wait=bad)
