"""Every mistake a new user made in their first hour: one `error:` line naming what is wrong, no traceback.

Each case runs the real command (Typer app in-process, or a real process where
the command runs a server); services are real (a live Shipmate service on
loopback) except where the mistake is pointing at something else entirely.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from shipmate.cli.main import build_app
from shipmate.server.testing import LiveServer

SHIPMATE = [sys.executable, "-c", "from shipmate.cli.main import main; main()"]


def one_error_line(result: Any, *needles: str) -> str:
    """The command failed with exactly one line starting with error:, naming every needle."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``shipmate agent`` configures the root logger, as a process should; in-process, put it back."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def cli() -> Any:
    runner = CliRunner()
    app = build_app()
    clean = {k: None for k in os.environ if k.startswith(("SHIPMATE_", "MLOPS_"))}

    def run(*args: str, env: dict[str, str] | None = None) -> Any:
        return runner.invoke(app, list(args), env={**clean, "COLUMNS": "200", **(env or {})})

    return run


@pytest.fixture
def classifier_files(tmp_path: Path) -> tuple[Path, Path]:
    sample = tmp_path / "train.csv"
    sample.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20)))
    model = tmp_path / "model.joblib"
    frame = pd.read_csv(sample)
    joblib.dump(LogisticRegression().fit(frame[["a", "b"]], frame["y"]), model)
    return model, sample


@contextlib.contextmanager
def held_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def build(cli: Any, model: Path, sample: Path, out: Path, *extra: str) -> Any:
    return cli("package", "build", "sklearn", str(model), "--sample", str(sample), "--name", "m",
               "-o", str(out), *extra)  # fmt: skip


# ---- package build -----------------------------------------------------------------------------


def test_a_csv_file_given_as_the_model(cli: Any, classifier_files: tuple[Path, Path], tmp_path: Path):
    _, sample = classifier_files
    result = build(cli, sample, sample, tmp_path / "m.mlpkg", "--target", "y")
    one_error_line(result, f"model {sample}", "not a scikit-learn model")


def test_a_text_file_given_as_the_model(cli: Any, classifier_files: tuple[Path, Path], tmp_path: Path):
    _, sample = classifier_files
    text = tmp_path / "notes.txt"
    text.write_text("this is not a model\n")
    one_error_line(build(cli, text, sample, tmp_path / "m.mlpkg"), f"model {text}", "joblib")


def test_a_missing_sample(cli: Any, classifier_files: tuple[Path, Path], tmp_path: Path):
    model, _ = classifier_files
    one_error_line(build(cli, model, tmp_path / "nosuch.csv", tmp_path / "m.mlpkg"), "--sample", "nosuch.csv")


def test_a_missing_model_file(cli: Any, classifier_files: tuple[Path, Path], tmp_path: Path):
    _, sample = classifier_files
    one_error_line(
        build(cli, tmp_path / "gone.joblib", sample, tmp_path / "m.mlpkg"), "gone.joblib", "no such"
    )


def test_a_target_column_the_sample_lacks(cli: Any, classifier_files: tuple[Path, Path], tmp_path: Path):
    model, sample = classifier_files
    one_error_line(
        build(cli, model, sample, tmp_path / "m.mlpkg", "--target", "label"), "--target", "'label'"
    )


def test_regression_declared_for_a_classifier(cli: Any, classifier_files: tuple[Path, Path], tmp_path: Path):
    model, sample = classifier_files
    result = build(cli, model, sample, tmp_path / "m.mlpkg", "--target", "y", "--target-type", "regression")
    one_error_line(result, "regression", "classifier")
    assert not (tmp_path / "m.mlpkg").exists()


def test_the_target_is_recorded_as_the_target_name(
    cli: Any, classifier_files: tuple[Path, Path], tmp_path: Path
):
    model, sample = classifier_files
    out = tmp_path / "m.mlpkg"
    assert build(cli, model, sample, out, "--target", "y").exit_code == 0
    import json

    manifest = json.loads(cli("package", "inspect", str(out), "--json").output)
    assert manifest["targetName"] == "y"
    verified = json.loads(cli("package", "verify", str(out), "--json").output)
    assert verified["ok"] is True and verified["name"] == "m"


def test_an_output_directory_that_does_not_exist(
    cli: Any, classifier_files: tuple[Path, Path], tmp_path: Path
):
    model, sample = classifier_files
    one_error_line(build(cli, model, sample, tmp_path / "nodir" / "m.mlpkg"), "--out", "does not exist")


# ---- servers on busy ports ---------------------------------------------------------------------


def test_serve_on_a_busy_port(tmp_path: Path):
    with held_port() as port:
        done = subprocess.run(
            [*SHIPMATE, "serve", "--deployments-dir", str(tmp_path / "d"), "--port", str(port)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"--port {port}" in done.stderr and "already in use" in done.stderr
    assert "serving" not in done.stderr.lower().replace("error", "")


def test_server_on_a_busy_port(cli: Any, tmp_path: Path):
    with held_port() as port:
        result = cli("server", "--data-dir", str(tmp_path / "var"), "--port", str(port))
    one_error_line(result, f"--port {port}", "already in use")


def _agent_config(tmp_path: Path, **overrides: Any) -> Path:
    base = tmp_path / "deployments"
    base.mkdir(exist_ok=True)
    private = tmp_path / "fs.yaml"
    private.write_text(yaml.safe_dump({"baseDir": str(base)}))
    config = tmp_path / "agent.yaml"
    values = {
        "serviceUrl": "http://127.0.0.1:9",
        "environmentId": "e-0123456789",
        "plugin": {"name": "filesystem", "privateConfig": str(private)},
        "workDir": str(tmp_path / "work"),
        **overrides,
    }
    config.write_text(yaml.safe_dump(values))
    return config


def test_a_second_agent_on_the_metrics_port(cli: Any, tmp_path: Path):
    with held_port() as port:
        config = _agent_config(tmp_path, metrics={"port": port})
        result = cli("agent", "--config", str(config), env={"MLOPS_API_TOKEN": "smt_some-agent-token"})
    one_error_line(result, f"metrics.port {port}", "already in use", "SHIPMATE_AGENT_METRICS__PORT")


# ---- agent configuration -----------------------------------------------------------------------


def test_the_examples_placeholder_environment_id(cli: Any, tmp_path: Path):
    config = _agent_config(tmp_path, environmentId="e-REPLACE-ME")
    result = cli("agent", "--config", str(config), "--check", env={"MLOPS_API_TOKEN": "smt_x"})
    one_error_line(result, "environmentId", "placeholder", "shipmate env list")


def test_a_missing_agent_config(cli: Any, tmp_path: Path):
    one_error_line(cli("agent", "--config", str(tmp_path / "nope.yaml")), "nope.yaml", "no such file")


def test_check_with_a_wrong_token(cli: Any, server: LiveServer, tmp_path: Path):
    env_id = server_env(server)
    config = _agent_config(tmp_path, serviceUrl=server.base_url, environmentId=env_id)
    result = cli(
        "agent", "--config", str(config), "--check", env={"MLOPS_API_TOKEN": "smt_wrong-token-000000"}
    )
    one_error_line(result, "refused the token", "MLOPS_API_TOKEN")


def test_check_with_an_environment_that_does_not_exist(cli: Any, server: LiveServer, tmp_path: Path):
    config = _agent_config(tmp_path, serviceUrl=server.base_url, environmentId="e-doesnotexist")
    result = cli("agent", "--config", str(config), "--check", env={"MLOPS_API_TOKEN": server.admin_token})
    one_error_line(result, "environmentId e-doesnotexist", "no such environment")


def test_check_with_a_service_that_is_not_running(cli: Any, tmp_path: Path):
    with held_port() as port:
        pass  # a port nothing listens on any more
    config = _agent_config(tmp_path, serviceUrl=f"http://127.0.0.1:{port}")
    result = cli("agent", "--config", str(config), "--check", env={"MLOPS_API_TOKEN": "smt_x"})
    one_error_line(result, "serviceUrl", "cannot reach")


def test_check_passes_against_the_service(cli: Any, server: LiveServer, tmp_path: Path):
    env_id = server_env(server)
    config = _agent_config(tmp_path, serviceUrl=server.base_url, environmentId=env_id)
    result = cli("agent", "--config", str(config), "--check", env={"MLOPS_API_TOKEN": server.admin_token})
    assert result.exit_code == 0 and "accepts the token" in result.output


def test_an_agent_whose_environment_does_not_exist_stops(server: LiveServer, tmp_path: Path):
    config = _agent_config(
        tmp_path, serviceUrl=server.base_url, environmentId="e-doesnotexist", metrics={"port": 0}
    )
    done = subprocess.run(
        [*SHIPMATE, "agent", "--config", str(config)],
        env={**os.environ, "MLOPS_API_TOKEN": server.admin_token},
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert "stopping: the service refused" in done.stderr and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def server_env(server: LiveServer) -> str:
    from shipmate.client import ShipmateClient

    with ShipmateClient(server.base_url, server.admin_token) as admin:
        return admin.create_environment("checked", "filesystem").id


# ---- the resource commands ---------------------------------------------------------------------


class _NotShipmate(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the standard library names it so
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"detail": "Not Found"}')

    def log_message(self, *_: Any) -> None:
        pass


def test_the_url_of_something_else(cli: Any):
    """SHIPMATE_URL at the prediction server (or anything not Shipmate) is named, not a bare 404."""
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotShipmate)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{other.server_address[1]}"
        result = cli("env", "list", env={"SHIPMATE_URL": url, "SHIPMATE_TOKEN": "smt_x"})
    finally:
        other.shutdown()
        other.server_close()
    one_error_line(result, url, "not a Shipmate service", "SHIPMATE_URL")


def test_no_service_listening(cli: Any):
    with held_port() as port:
        pass
    result = cli("env", "list", env={"SHIPMATE_URL": f"http://127.0.0.1:{port}", "SHIPMATE_TOKEN": "smt_x"})
    one_error_line(result, "cannot reach")


def test_a_wrong_token(cli: Any, server: LiveServer):
    result = cli(
        "env", "list", env={"SHIPMATE_URL": server.base_url, "SHIPMATE_TOKEN": "smt_wrong-0000000000"}
    )
    one_error_line(result, "refused the token", "SHIPMATE_TOKEN")


def test_pushing_a_file_that_is_not_there(cli: Any, server: LiveServer, tmp_path: Path):
    env = {"SHIPMATE_URL": server.base_url, "SHIPMATE_TOKEN": server.admin_token}
    one_error_line(
        cli("model", "push", str(tmp_path / "churn.mlpkg"), env=env), "churn.mlpkg", "no such file"
    )


def test_deploying_to_an_unknown_environment(cli: Any, server: LiveServer):
    env = {"SHIPMATE_URL": server.base_url, "SHIPMATE_TOKEN": server.admin_token}
    one_error_line(cli("deploy", "churn", "--env", "nowhere", env=env), "'nowhere'", "shipmate env list")


def test_init_does_not_overwrite_a_config(cli: Any, server: LiveServer, tmp_path: Path):
    existing = tmp_path / "agent.yaml"
    existing.write_text("mine: true\n")
    env = {"SHIPMATE_URL": server.base_url, "SHIPMATE_TOKEN": server.admin_token}
    one_error_line(cli("init", "local", "--config", str(existing), env=env), "--config", "--force")
    assert existing.read_text() == "mine: true\n"


def test_a_directory_given_as_a_package(cli: Any, tmp_path: Path):
    folder = tmp_path / "a-directory.mlpkg"
    folder.mkdir()
    one_error_line(cli("package", "inspect", str(folder)), "a-directory.mlpkg")


def test_anything_unexpected_is_one_line_and_debug_shows_the_traceback():
    """The safety net under every command: an exception no command expected is still one line."""
    app = build_app()

    @app.command("boom")
    def boom() -> None:
        raise LookupError("the index file vanished\nsecond line")

    runner = CliRunner()
    result = runner.invoke(app, ["boom"], env={"SHIPMATE_DEBUG": ""})
    line = one_error_line(result, "the index file vanished", "LookupError", "--debug")
    assert "second line" not in line
    debug = runner.invoke(app, ["--debug", "boom"], env={"SHIPMATE_DEBUG": ""})
    assert isinstance(debug.exception, LookupError)


def test_the_example_config_outside_the_repository(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    example = Path(__file__).resolve().parents[2] / "examples" / "agent" / "agent.filesystem.yaml"
    monkeypatch.chdir(tmp_path)
    result = cli("agent", "--config", str(example), "--environment-id", "e-0123456789", "--check",
                 env={"MLOPS_API_TOKEN": "smt_x"})  # fmt: skip
    one_error_line(result, "plugin.privateConfig", "does not exist", f"relative to {tmp_path}")


def test_an_agent_whose_token_is_revoked_stops(server: LiveServer, tmp_path: Path):
    """Revoked while it runs: the change feed is refused, and after a few tries the agent stops."""
    from shipmate.client import ShipmateClient

    with ShipmateClient(server.base_url, server.admin_token) as admin:
        env_id = admin.create_environment("revoked", "filesystem").id
        info, secret = admin.create_token("agent", env_id, name="soon revoked")
        config = _agent_config(tmp_path, serviceUrl=server.base_url, environmentId=env_id,
                               metrics={"port": 0}, intervals={"feedWait": 1})  # fmt: skip
        agent = subprocess.Popen(
            [*SHIPMATE, "agent", "--config", str(config)],
            env={**os.environ, "MLOPS_API_TOKEN": secret},
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            assert agent.stderr is not None
            for line in agent.stderr:
                if "agent running for environment" in line:
                    break
            admin.revoke_token(info.id)
            code = agent.wait(90)
            rest = agent.stderr.read()
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait(10)
    assert code == 1
    assert "stopping: the service refused the change feed" in rest and "revoked" in rest
    assert "plugin_stop" in rest  # it still stopped cleanly


def test_a_token_on_the_command_line_is_warned_about_and_can_come_from_a_file(tmp_path: Path) -> None:
    """A token typed as ``--token VALUE`` shows in the process list; ``--token @FILE`` does not."""
    secret_file = tmp_path / "token"
    secret_file.write_text("smt_from_a_file\n")
    env = {**os.environ, "SHIPMATE_TOKEN": ""}
    base = [*SHIPMATE, "model", "list", "--url", "http://127.0.0.1:1"]
    typed = subprocess.run(
        [*base, "--token", "smt_typed"], capture_output=True, text=True, env=env, timeout=60
    )
    assert "process list" in typed.stderr and "Traceback" not in typed.stderr
    from_file = subprocess.run(
        [*base, "--token", f"@{secret_file}"], capture_output=True, text=True, env=env, timeout=60
    )
    assert "process list" not in from_file.stderr and "cannot reach" in from_file.stderr
    missing = subprocess.run(
        [*base, "--token", f"@{tmp_path / 'nope'}"], capture_output=True, text=True, env=env, timeout=60
    )
    assert missing.returncode != 0 and "cannot read" in missing.stderr
    from_env = subprocess.run(
        base, capture_output=True, text=True, env={**env, "SHIPMATE_TOKEN": "x"}, timeout=60
    )
    assert "process list" not in from_env.stderr
