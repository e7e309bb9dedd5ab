"""The conformance kit passes on good plugins and names every violation of a bad one."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from shipmate.plugin import ActionStatus, ActionStatusInfo, DeploymentState, PluginBase
from shipmate.plugin.testing import check_plugin

REPO = Path(__file__).resolve().parents[2]


def test_filesystem_plugin_conforms(filesystem_config, tmp_path) -> None:
    report = check_plugin("filesystem", private_config_file=str(filesystem_config), work_dir=tmp_path)
    assert report.passed, report.format()
    assert len(report.steps) == 17
    leftovers = [n for n in os.listdir(tmp_path / "deployments") if not n.startswith(".")]
    assert leftovers == []  # the kit stopped what it started


def test_test_plugin_conforms(test_plugin_config, tmp_path) -> None:
    report = check_plugin("test", private_config_file=str(test_plugin_config()), work_dir=tmp_path)
    assert report.passed, report.format()


class Sloppy(PluginBase):
    """Breaks the contract in several ways the kit must name."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.running: dict[str, str] = {}

    def plugin_start(self):
        return ActionStatusInfo(ActionStatus.OK)

    def plugin_stop(self):
        return None

    def deployment_list(self):
        return ActionStatusInfo(ActionStatus.OK, data={})  # never lists anything

    def deployment_start(self, deployment_info):
        self.running[deployment_info.id] = deployment_info.current_model_id
        return ActionStatusInfo(ActionStatus.OK)  # no state

    def deployment_stop(self, deployment_info):
        del self.running[deployment_info.id]  # KeyError the second time: not idempotent
        return ActionStatusInfo(ActionStatus.OK, state=DeploymentState.STOPPED)

    def deployment_replace_model(self, deployment_info):
        return ActionStatusInfo(ActionStatus.OK, state=DeploymentState.READY)  # forgets the new model

    def pe_status(self):
        return ActionStatusInfo(ActionStatus.OK, data={"deploymentsStatus": ["not", "a", "mapping"]})

    def deployment_status(self, deployment_info):
        return ActionStatusInfo(
            ActionStatus.OK,
            state=DeploymentState.READY,
            data={"currentModelId": self.running.get(deployment_info.id)},
        )


def test_a_sloppy_plugin_gets_every_violation_named(tmp_path) -> None:
    report = check_plugin(Sloppy, work_dir=tmp_path)
    assert not report.passed
    problems = [str(v) for v in report.violations]
    text = "\n".join(problems)
    assert "deployment_start conformance-" in text and "state is null, expected ready" in text
    assert "data does not list deployment conformance-" in text
    assert "after the replacement (deployment_status): data.currentModelId is model-" in text
    assert "again (idempotent) (deployment_stop): raised KeyError" in text
    assert "a stopped deployment is reported passing" in text
    assert "data.deploymentsStatus is not a mapping" in text
    assert "plugin_stop (plugin_stop): returned NoneType, not an ActionStatusInfo" in text
    assert "FAILED" in report.format()
    assert json.loads(json.dumps(report.to_dict()))["passed"] is False


def test_unbuildable_plugin_is_reported_not_raised(tmp_path) -> None:
    report = check_plugin("no_such_plugin_anywhere", work_dir=tmp_path)
    assert not report.passed
    assert "could not be built" in str(report.violations[0])


def test_examples_conform(tmp_path) -> None:
    examples = REPO / "examples"
    sample_config = tmp_path / "sample.yaml"
    sample_config.write_text(f"stateDir: {tmp_path / 'sample_state'}\n")
    report = check_plugin(
        str(examples / "sample_plugin" / "sample_plugin" / "sample_plugin.py"),
        private_config_file=str(sample_config),
        work_dir=tmp_path,
    )
    assert report.passed, report.format()
    catalogue_config = tmp_path / "catalogue.yaml"
    catalogue_config.write_text(f"catalogueFile: {tmp_path / 'catalogue.json'}\n")
    report = check_plugin(
        str(examples / "custom_plugin" / "catalogue_plugin.py"),
        private_config_file=str(catalogue_config),
        work_dir=tmp_path,
    )
    assert report.passed, report.format()


def test_shipmate_plugin_check_cli(filesystem_config, tmp_path) -> None:
    from typer.testing import CliRunner

    from shipmate.cli.plugin import plugin_app

    result = CliRunner().invoke(
        plugin_app, ["check", "--plugin", "filesystem", "--private-config", str(filesystem_config), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["passed"] is True
    result = CliRunner().invoke(plugin_app, ["check", "--plugin", "nowhere_to_be_found"])
    assert result.exit_code == 1 and "FAILED" in result.output


def test_shipmate_plugin_list_cli() -> None:
    from typer.testing import CliRunner

    from shipmate.cli.plugin import plugin_app

    result = CliRunner().invoke(plugin_app, ["list", "--json"])
    assert result.exit_code == 0
    names = [row["name"] for row in json.loads(result.output)]
    assert names[:4] == ["test", "filesystem", "docker", "kubernetes"]


@pytest.mark.slow
def test_through_the_runner_one_process_per_action(test_plugin_config, tmp_path) -> None:
    """What the agent's external-command driver relies on: each action as a runner process."""
    runner = [sys.executable, "-m", "shipmate.plugin.runner"]
    report = check_plugin(
        "test", private_config_file=str(test_plugin_config()), work_dir=tmp_path, runner=runner
    )
    assert report.passed, report.format()
    broken = check_plugin("no_such_plugin_xyz", work_dir=tmp_path, runner=runner)
    assert not broken.passed
    assert "the runner exited 1: bosun-plugin-runner: error: plugin 'no_such_plugin_xyz' not found" in str(
        broken.violations[0]
    )
