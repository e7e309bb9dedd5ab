"""The external-command form: private action config, token only in the environment, process groups,
and every way a command can fail turned into a ``failing`` result with a message that says so."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from shipmate.agent.drivers import CommandDriver, base_plugin_config
from shipmate.agent.ports import ActionRequest, EnvironmentDescription
from shipmate.plugin.actions import Action
from shipmate.plugin.info import DeploymentInfo
from shipmate.plugin.status import ActionStatus

TOKEN = "agent-secret-token-0123456789abcdef"
ENV = EnvironmentDescription(id="e-1", name="test env", created_on="2026-01-01T00:00:00+00:00")

FAKE_RUNNER = textwrap.dedent(
    """
    import argparse, json, os, stat, subprocess, sys, time
    p = argparse.ArgumentParser()
    p.add_argument("--mode"); p.add_argument("--record")
    p.add_argument("--config"); p.add_argument("--action"); p.add_argument("--status-file")
    a = p.parse_args()
    with open(a.record, "w") as f:
        json.dump({"argv": sys.argv, "token": os.environ.get("MLOPS_API_TOKEN"),
                   "mode": oct(stat.S_IMODE(os.stat(a.config).st_mode)),
                   "config": open(a.config).read(), "pgid": os.getpgid(0), "pid": os.getpid()}, f)
    if a.mode == "ok":
        text = "status: passing\\nstate: ready\\nmsg: fine\\ndata: {predictionUrl: u}\\n"
        open(a.status_file, "w").write(text)
    elif a.mode == "malformed":
        open(a.status_file, "w").write("status: [passing\\n")
    elif a.mode == "badfield":
        open(a.status_file, "w").write("status: splendid\\n")
    elif a.mode == "crash":
        print("Traceback: something broke with token " + os.environ["MLOPS_API_TOKEN"], file=sys.stderr)
        sys.exit(3)
    elif a.mode == "hang":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        with open(a.record + ".child", "w") as f:
            f.write(str(child.pid))
        time.sleep(3600)
    """
)


@pytest.fixture
def runner(tmp_path) -> Path:
    path = tmp_path / "fake_runner.py"
    path.write_text(FAKE_RUNNER)
    return path


def driver_for(tmp_path, words):
    config = base_plugin_config(ENV, "http://127.0.0.1:9", {}, command=" ".join(words))
    return CommandDriver(list(words), config, ENV, tmp_path / "actions", TOKEN)


INFO = DeploymentInfo("d-1", "m-1", "dedicated", key_value_config={"a": 1})


def with_(info: DeploymentInfo, **changes: object) -> DeploymentInfo:
    return DeploymentInfo.from_dict({**info.to_dict(), **changes})


def run(tmp_path, runner, mode, action="deployment_start", timeout=30.0):
    record = tmp_path / f"record-{mode}.json"
    driver = driver_for(tmp_path, [sys.executable, str(runner), "--mode", mode, "--record", str(record)])
    result = driver.run(ActionRequest(Action(action), deployment_info=INFO, timeout=timeout))
    return result, record


def test_passing_command_and_what_it_received(tmp_path, runner):
    import json

    result, record = run(tmp_path, runner, "ok")
    assert result.status is ActionStatus.OK and result.data == {"predictionUrl": "u"}
    seen = json.loads(record.read_text())
    assert seen["token"] == TOKEN  # in the environment ...
    assert not any(TOKEN in arg for arg in seen["argv"])  # ... never on the command line
    assert TOKEN not in seen["config"]  # nor in the file
    assert seen["mode"] == "0o600"
    assert seen["pgid"] == seen["pid"]  # its own process group
    config = yaml.safe_load(seen["config"])
    assert (
        config["deploymentInfo"]["id"] == "d-1"
        and config["deploymentInfo"]["modelExecutionType"] == "dedicated"
    )
    assert config["peInfo"]["id"] == "e-1"
    assert config["pluginConfig"]["MLOPS_BOSUN_MONITORING_URL"] == "http://127.0.0.1:9"
    assert config["pluginConfig"]["MLOPS_BOSUN_PRED_ENV_ID"] == "e-1"
    flags = seen["argv"][-6::2]
    assert flags == ["--config", "--action", "--status-file"] and seen["argv"][-3] == "deployment_start"
    assert not list((tmp_path / "actions").iterdir())  # nothing left behind


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("missing", "status file was not written"),
        ("malformed", "not valid YAML"),
        ("badfield", "field 'status'"),
        ("crash", "exited with code 3"),
    ],
)
def test_bad_status_files_are_failing_results_not_crashes(tmp_path, runner, mode, words):
    result, _ = run(tmp_path, runner, mode)
    assert result.status is ActionStatus.ERROR
    assert words in result.msg
    assert TOKEN not in result.msg


def test_crash_output_is_quoted_with_the_token_masked(tmp_path, runner):
    result, _ = run(tmp_path, runner, "crash")
    assert "last output: Traceback: something broke" in result.msg
    assert TOKEN[:12] + "*******" in result.msg


def test_timeout_kills_the_whole_process_group(tmp_path, runner):
    started = time.monotonic()
    result, record = run(tmp_path, runner, "hang", timeout=1.5)
    assert time.monotonic() - started < 30
    assert result.status is ActionStatus.ERROR
    assert "timed out after 1.5s" in result.msg and "process group was killed" in result.msg
    child = int(Path(str(record) + ".child").read_text())

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        # a zombie is gone for our purposes (its parent, the runner, was killed too)
        with open(f"/proc/{child}/stat") as handle:
            return handle.read().split()[2] == "Z"

    deadline = time.monotonic() + 10
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(), "the runner's child survived the timeout"


def test_command_that_cannot_start(tmp_path):
    driver = driver_for(tmp_path, [str(tmp_path / "no-such-runner")])
    result = driver.run(ActionRequest(Action.PLUGIN_START, timeout=5))
    assert result.status is ActionStatus.ERROR and "cannot run" in result.msg


def test_private_file_mode_is_set_from_the_start(tmp_path, runner):
    # the directory holding configs is private too
    run(tmp_path, runner, "ok")
    assert stat.S_IMODE((tmp_path / "actions").stat().st_mode) == 0o700


def lifecycle(tmp_path, words, artifact):
    base = tmp_path / "fs"
    base.mkdir(exist_ok=True)
    driver = driver_for(tmp_path, words)
    info = with_(INFO, modelArtifact=str(artifact))
    results = {}
    for action, section, pe in [
        ("plugin_start", None, ()),
        ("deployment_start", info, ()),
        ("deployment_status", info, ()),
        ("pe_status", None, (info,)),
        ("deployment_list", None, ()),
        ("deployment_replace_model", with_(info, newModelId="m-2"), ()),
        ("deployment_relaunch", info, ()),
        ("deployment_stop", info, ()),
        ("plugin_stop", None, ()),
    ]:
        results[action] = driver.run(
            ActionRequest(Action(action), deployment_info=section, pe_deployments=pe, timeout=120)
        )
    return base, results


def _private_config(tmp_path) -> Path:
    path = tmp_path / "plugin.filesystem.conf.yaml"
    path.write_text(
        f"baseDir: {tmp_path / 'fs'}\ndeploymentDirPrefix: deployment_\ndeploymentInfoFile: config.yml\n"
        "deploymentPredictionBaseUrl: http://127.0.0.1:8080\n"
    )
    return path


@pytest.mark.slow
def test_shipmate_runner_as_the_command(tmp_path):
    runner = shutil.which("bosun-plugin-runner")
    if runner is None:
        pytest.skip("Shipmate's bosun-plugin-runner is not on PATH (pip install -e .)")
    artifact = tmp_path / "model_m-1.mlpkg"
    artifact.write_bytes(b"not really a model")
    words = [runner, "--plugin", "filesystem", "--private-config", str(_private_config(tmp_path))]
    base, results = lifecycle(tmp_path, words, artifact)
    assert {a: r.status.value for a, r in results.items()} == dict.fromkeys(results, "passing")
    assert results["deployment_start"].data["predictionUrl"].endswith("/d-1/predict")
    assert "d-1" in results["pe_status"].data["deploymentsStatus"]
    assert not (base / "deployment_d-1").exists()


@pytest.mark.slow
def test_datarobot_published_runner_as_the_command(tmp_path, bosun_runner):
    artifact = tmp_path / "model_m-1.mlpkg"
    artifact.write_bytes(b"not really a model")
    words = [str(bosun_runner), "--plugin", "filesystem", "--private-config", str(_private_config(tmp_path))]
    base, results = lifecycle(tmp_path, words, artifact)
    assert {a: r.status.value for a, r in results.items()} == dict.fromkeys(results, "passing"), {
        a: r.msg for a, r in results.items()
    }
    assert results["deployment_start"].state.value == "ready"
    assert results["deployment_status"].data["currentModelId"] == "m-1"
    assert "d-1" in results["pe_status"].data["deploymentsStatus"]
    assert results["deployment_stop"].state.value == "stopped"
    assert not (base / "deployment_d-1").exists()


def test_close_kills_commands_still_running(tmp_path, runner):
    import threading

    record = tmp_path / "record-hang.json"
    driver = driver_for(tmp_path, [sys.executable, str(runner), "--mode", "hang", "--record", str(record)])
    results = []
    thread = threading.Thread(
        target=lambda: results.append(
            driver.run(ActionRequest(Action.DEPLOYMENT_START, deployment_info=INFO, timeout=600))
        )
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not Path(str(record) + ".child").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.close()
    thread.join(30)
    assert not thread.is_alive()
    assert results and results[0].status is ActionStatus.ERROR


def test_plugin_config_layers_environment_then_agent_file():
    env = EnvironmentDescription(id="e-9", plugin_config={"dockerNetwork": "svc", "a": 1})
    config = base_plugin_config(env, "http://127.0.0.1:9", {"a": 2}, command=None)
    assert config["dockerNetwork"] == "svc" and config["a"] == 2
    assert config["MLOPS_BOSUN_PRED_ENV_ID"] == "e-9" and "command" not in config
