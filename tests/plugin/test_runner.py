"""``bosun-plugin-runner``: every flag, and every kind of bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from shipmate.plugin.actions import Action
from shipmate.plugin.status import ActionStatusInfo

TOKEN = "tok-0123456789abcdefSECRETPART"


def read_status(path: Path) -> dict:
    raw = yaml.safe_load(path.read_text())
    ActionStatusInfo.from_dict(raw)  # always a valid status file
    return raw


def test_list_actions_prints_all_eleven_in_order(run_in_process, capsys) -> None:
    assert run_in_process(["--list-actions"]) == 0
    assert capsys.readouterr().out.splitlines() == [a.value for a in Action]


def test_list_plugins(run_in_process, capsys) -> None:
    assert run_in_process(["--list-plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "filesystem_plugin,filesystem" in lines
    assert "test_plugin,bosun_test_plugin,test" in lines
    assert any(line.endswith(",kubernetes") and "k8s" in line for line in lines)


@pytest.mark.parametrize("action", [a.value for a in Action])
def test_gen_config_runs_as_is_against_the_test_plugin(
    action, run_in_process, capsys, tmp_path, test_plugin_config
) -> None:
    assert run_in_process(["--gen-config", action]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# Sample action config for " + action)
    config = tmp_path / "sample.yaml"
    artifact = tmp_path / "model-A.mlpkg"
    artifact.write_bytes(b"model")
    config.write_text(text.replace("/tmp/model-A.mlpkg", str(artifact)))
    private = test_plugin_config()
    status = tmp_path / "status.yaml"
    for setup in ("plugin_start", "deployment_start"):  # what the agent would have done first
        setup_config = tmp_path / f"{setup}.yaml"
        run_in_process(["--gen-config", str(setup_config), "--action", setup])
        setup_config.write_text(setup_config.read_text().replace("/tmp/model-A.mlpkg", str(artifact)))
        args = ["--plugin", "test", "--private-config", str(private), "--status-file", str(status)]
        assert run_in_process([*args, "--config", str(setup_config), "--action", setup]) == 0
    argv = ["--plugin", "test", "--config", str(config), "--private-config", str(private)]
    code = run_in_process([*argv, "--action", action, "--status-file", str(status), "--exit-codes"])
    assert (code, read_status(status)["status"]) == (0, "passing")


def test_gen_config_errors(run_in_process, capsys) -> None:
    assert run_in_process(["--gen-config"]) == 1
    assert "--gen-config needs an action" in capsys.readouterr().err
    assert run_in_process(["--gen-config", "-", "--action", "bogus"]) == 1
    assert "Action is not supported: bogus" in capsys.readouterr().err


def run_filesystem(run_in_process, tmp_path, config_dict, filesystem_config, *extra: str) -> tuple[int, Path]:
    config = tmp_path / "action.yaml"
    config.write_text(yaml.safe_dump(config_dict))
    status = tmp_path / "status.yaml"
    argv = ["--plugin", "filesystem", "--config", str(config), "--private-config", str(filesystem_config)]
    return run_in_process([*argv, "--status-file", str(status), *extra]), status


def test_filesystem_start_writes_status_and_shows_it(
    run_in_process, capsys, tmp_path, filesystem_config, make_action_config, model_artifact
) -> None:
    config = make_action_config(artifact=str(model_artifact))
    code, status = run_filesystem(
        run_in_process, tmp_path, config, filesystem_config, "--action", "deployment_start", "--show-status"
    )
    assert code == 0
    written = read_status(status)
    assert written["status"] == "passing" and written["state"] == "ready"
    assert written["data"]["predictionUrl"] == "http://127.0.0.1:8080/dep-1/predict"
    assert isinstance(written["duration"], float) and isinstance(written["timestamp"], int)
    out = capsys.readouterr().out
    assert out.startswith("\n-- action status --\n") and "status: passing" in out
    assert (tmp_path / "deployments" / "deployment_dep-1" / "model_A.mlpkg").is_file()


def test_exit_codes_follow_the_status(
    run_in_process, tmp_path, filesystem_config, make_action_config
) -> None:
    config = make_action_config()  # no model on disk: deployment_status fails
    code, status = run_filesystem(
        run_in_process, tmp_path, config, filesystem_config, "--action", "deployment_status"
    )
    assert code == 0 and read_status(status)["status"] == "failing"
    code, _ = run_filesystem(
        run_in_process, tmp_path, config, filesystem_config, "--action", "deployment_status", "--exit-codes"
    )
    assert code == 1
    code, _ = run_filesystem(
        run_in_process, tmp_path, config, filesystem_config, "--action", "deployment_stop", "--exit-codes"
    )
    assert code == 0


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unknown_action", "Action is not supported: deploy_everything"),
        ("missing_flag", "missing required argument(s): --config"),
        ("malformed_yaml", "malformed YAML at line 3"),
        ("missing_deployment_info", "deploymentInfo in"),
        ("plugin_file_missing", "plugin 'nowhere/plugin' not found"),
        ("class_missing", "has no plugin class 'Nope'"),
        ("two_classes", "more than one plugin class in module two_plugins: A, B"),
        ("bad_log_level", "--log-level 'LOUD'"),
        ("unknown_flag", "unrecognized arguments: --frobnicate"),
    ],
)
def test_bad_input_one_line_nonzero_and_failing_status(
    case, expected, run_in_process, capsys, tmp_path, make_action_config, test_plugin_config, write_plugin
) -> None:
    config = tmp_path / "action.yaml"
    config.write_text(yaml.safe_dump(make_action_config()))
    status = tmp_path / "status.yaml"
    argv = ["--plugin", "test", "--config", str(config), "--private-config", str(test_plugin_config())]
    argv += ["--action", "deployment_start", "--status-file", str(status)]
    if case == "unknown_action":
        argv[argv.index("deployment_start")] = "deploy_everything"
    elif case == "missing_flag":
        index = argv.index("--config")
        del argv[index : index + 2]
    elif case == "malformed_yaml":
        config.write_text("pluginConfig:\n  a: 1\n  b: c: d\npeInfo: {}\n")
    elif case == "missing_deployment_info":
        config.write_text(yaml.safe_dump(make_action_config(with_deployment=False)))
    elif case == "plugin_file_missing":
        argv[1] = "nowhere/plugin"
    elif case == "class_missing":
        argv[1] = "shipmate.plugins.test_plugin:Nope"
    elif case == "two_classes":
        source = (
            "from shipmate.plugin.testing import *\nfrom shipmate.plugins.test_plugin import TestPlugin\n"
        )
        source += "class A(TestPlugin): pass\nclass B(TestPlugin): pass\n"
        argv[1] = str(write_plugin("two_plugins.py", source))
    elif case == "bad_log_level":
        argv += ["--log-level", "LOUD"]
    elif case == "unknown_flag":
        argv += ["--frobnicate"]
    code = run_in_process(argv)
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err
    written = read_status(status)
    assert written["status"] == "failing" and written["state"] == "errored"
    assert expected.split(" in")[0] in written["msg"].replace("\n", " ")


def test_unwritable_status_file_is_refused_before_acting(
    run_in_process, capsys, tmp_path, make_action_config, test_plugin_config
) -> None:
    config = tmp_path / "action.yaml"
    config.write_text(yaml.safe_dump(make_action_config()))
    private = test_plugin_config()
    status = tmp_path / "no-such-dir" / "status.yaml"
    argv = ["--plugin", "test", "--config", str(config), "--private-config", str(private)]
    code = run_in_process([*argv, "--action", "deployment_start", "--status-file", str(status)])
    assert code == 1
    assert "status file" in capsys.readouterr().err
    assert not (tmp_path / "test-plugin").exists()  # the action did not run


def test_token_is_masked_in_status_and_logs(tmp_path, make_action_config, write_plugin, runner) -> None:
    plugin = write_plugin(
        "leaky.py",
        "from shipmate.plugins.test_plugin import TestPlugin\n"
        "import logging\n"
        "class Leaky(TestPlugin):\n"
        "    def plugin_start(self):\n"
        "        token = self.plugin_config['mlopsApiToken']\n"
        "        logging.getLogger('leaky').warning('using token %s', token)\n"
        "        raise RuntimeError('bad token ' + token)\n",
    )
    config = tmp_path / "action.yaml"
    config.write_text(yaml.safe_dump(make_action_config()))
    status = tmp_path / "status.yaml"
    logfile = tmp_path / "runner.log"
    env = {**os.environ, "MLOPS_API_TOKEN": TOKEN}
    result = subprocess.run(
        [
            *runner,
            "--plugin",
            str(plugin),
            "--config",
            str(config),
            "--action",
            "plugin_start",
            "--status-file",
            str(status),
            "--logfile",
            str(logfile),
            "--log-level",
            "debug",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    written = status.read_text()
    assert "failing" in written and "bad token tok-01234567" in written
    logs = logfile.read_text()
    assert "using token tok-01234567*******" in logs
    for text in (written, logs, result.stdout, result.stderr):
        assert TOKEN not in text


def test_dry_run_reaches_the_plugin(run_in_process, tmp_path, make_action_config, write_plugin) -> None:
    plugin = write_plugin(
        "dry.py",
        "from shipmate.plugin import ActionStatus, ActionStatusInfo\n"
        "from shipmate.plugins.test_plugin import TestPlugin\n"
        "class Dry(TestPlugin):\n"
        "    def plugin_stop(self):\n"
        "        return ActionStatusInfo(ActionStatus.OK, msg=f'dry_run={self.dry_run}')\n",
    )
    config = tmp_path / "action.yaml"
    config.write_text(yaml.safe_dump(make_action_config()))
    status = tmp_path / "status.yaml"
    argv = [
        "--plugin",
        str(plugin),
        "--config",
        str(config),
        "--action",
        "plugin_stop",
        "--status-file",
        str(status),
    ]
    assert run_in_process([*argv, "--dry-run"]) == 0
    assert read_status(status)["msg"] == "dry_run=True"


def test_sigterm_during_an_action_still_writes_a_status(
    tmp_path, make_action_config, test_plugin_config, runner
):
    config = tmp_path / "action.yaml"
    config.write_text(yaml.safe_dump(make_action_config(artifact="/dev/null")))
    status = tmp_path / "status.yaml"
    private = test_plugin_config(hang_actions=["deployment_start"], hang_sec=120)
    process = subprocess.Popen(
        [
            *runner,
            "--plugin",
            "test",
            "--config",
            str(config),
            "--private-config",
            str(private),
            "--action",
            "deployment_start",
            "--status-file",
            str(status),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _handles_sigterm(process.pid):  # the runner installs its handler just before the action
            assert process.poll() is None and time.monotonic() < deadline, (
                "the runner never reached the action"
            )
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130
    written = read_status(status)
    assert written["status"] == "failing" and "interrupted" in written["msg"]


def _handles_sigterm(pid: int) -> bool:
    """True once process ``pid`` catches SIGTERM (read from /proc)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    except OSError:
        return False
    return False


def test_crash_fault_ends_the_process_without_status(
    tmp_path, make_action_config, test_plugin_config, runner
):
    config = tmp_path / "action.yaml"
    config.write_text(yaml.safe_dump(make_action_config()))
    status = tmp_path / "status.yaml"
    private = test_plugin_config(crash_actions=["pe_status"], crash_exit_code=70)
    result = subprocess.run(
        [
            *runner,
            "--plugin",
            "test",
            "--config",
            str(config),
            "--private-config",
            str(private),
            "--action",
            "pe_status",
            "--status-file",
            str(status),
        ],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 70
    assert not status.exists()


def test_shipmate_plugin_run_is_the_same_runner(tmp_path, capsys, run_in_process) -> None:
    """(``run_in_process`` restores the logging the runner configures, which later tests would inherit.)"""
    from typer.testing import CliRunner

    from shipmate.cli.plugin import plugin_app

    result = CliRunner().invoke(plugin_app, ["run", "--list-actions"])
    assert result.exit_code == 0
    assert result.output.splitlines() == [a.value for a in Action]
    result = CliRunner().invoke(plugin_app, ["run", "--action", "nope"])
    assert result.exit_code == 1


def test_module_entry_point_runs(runner) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shipmate.plugin.runner", "--list-actions"], capture_output=True
    )
    assert result.returncode == 0 and b"deployment_relaunch" in result.stdout


def test_an_action_imports_only_what_it_needs(
    tmp_path, filesystem_config, make_action_config, model_artifact
):
    """A structural guard on start-up cost (no timing): heavy modules stay out of a filesystem action."""
    config = tmp_path / "action.yaml"
    config.write_text(yaml.safe_dump(make_action_config(artifact=str(model_artifact))))
    status = tmp_path / "status.yaml"
    argv = ["--plugin", "filesystem", "--config", str(config), "--private-config", str(filesystem_config)]
    argv += ["--action", "deployment_start", "--status-file", str(status)]
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "from shipmate.plugin.runner import main\n"
        f"code = main({argv!r})\n"
        "print(code, ','.join(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    exit_code, modules = result.stdout.split()
    assert exit_code == "0", result.stderr
    assert read_status(status)["status"] == "passing"
    loaded = set(modules.split(","))  # what the runner itself imported
    heavy = {"logging", "pydantic", "typer", "rich", "click", "dataclasses", "inspect", "uuid"}
    # not shutil (nor the bz2 and lzma it imports): argparse imports it for the terminal width, so
    # every argparse program pays it; it was hidden before only when site's .pth files loaded it
    heavy |= {"typing", "threading", "queue"}
    assert loaded & heavy == set()
    # hashlib only because a deployment's info file records its package's SHA-256 (the one
    # checksum of shipmate.common.deployments_dir); an action that hashes nothing never loads it
    assert "hashlib" in loaded
    listed = subprocess.run(
        [sys.executable, "-c", code.replace("deployment_start", "deployment_list")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.stdout.split()[0] == "0", listed.stderr
    assert set(listed.stdout.split()[1].split(",")) & (heavy | {"hashlib"}) == set()
    assert "yaml" in loaded and "shipmate.plugins.filesystem" in loaded
    assert not any(
        name.startswith(("shipmate.plugins.docker", "shipmate.plugins.kubernetes")) for name in loaded
    )
