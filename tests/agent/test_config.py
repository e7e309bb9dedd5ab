"""The agent's settings: YAML with camelCase keys, environment variables, errors that name the key."""

from __future__ import annotations

import pytest

from shipmate.agent.config import AgentConfigError, load_settings
from shipmate.plugin.actions import Action

GOOD = """
serviceUrl: http://127.0.0.1:8000/
environmentId: e-1
plugin:
  name: kubernetes
  privateConfig: /etc/shipmate/plugin.k8s.conf.yaml
concurrency: 4
timeouts:
  deploymentStart: 600
intervals:
  peStatus: 30
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("SHIPMATE_AGENT_") or name in ("MLOPS_API_TOKEN", "SHIPMATE_TOKEN"):
            monkeypatch.delenv(name)


def write(tmp_path, text):
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path


def test_yaml_keys_are_camel_case_and_reach_the_settings(tmp_path):
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.service_url == "http://127.0.0.1:8000"
    assert settings.environment_id == "e-1"
    assert settings.plugin.name == "kubernetes"
    assert str(settings.plugin.private_config) == "/etc/shipmate/plugin.k8s.conf.yaml"
    assert settings.timeouts.for_action(Action.DEPLOYMENT_START) == 600
    assert settings.timeouts.for_action(Action.DEPLOYMENT_STOP) == settings.timeouts.default
    assert settings.intervals.pe_status == 30
    assert settings.concurrency == 4


def test_every_timeout_key_is_an_action_and_a_typo_is_no_action(tmp_path):
    timeouts = load_settings(write(tmp_path, GOOD)).timeouts
    assert set(type(timeouts).model_fields) - {"default"} <= {a.value for a in Action}
    assert timeouts.for_action(Action.ENDPOINT_STATUS) == timeouts.default  # no key of its own
    assert timeouts.for_action(Action.PE_STATUS) == 120
    with pytest.raises(ValueError, match="deployment_strat"):
        timeouts.for_action("deployment_strat")  # type: ignore[arg-type]


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPMATE_AGENT_CONCURRENCY", "2")
    monkeypatch.setenv("SHIPMATE_AGENT_INTERVALS__RESYNC", "12")
    monkeypatch.setenv("MLOPS_API_TOKEN", "tok-from-the-environment-1234")
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.concurrency == 2
    assert settings.intervals.resync == 12
    assert settings.token_text() == "tok-from-the-environment-1234"
    assert "tok-from" not in repr(settings)


def test_everything_from_the_environment(monkeypatch):
    monkeypatch.setenv("SHIPMATE_AGENT_ENVIRONMENT_ID", "e-7")
    monkeypatch.setenv("SHIPMATE_AGENT_PLUGIN__COMMAND", "/v/bin/bosun-plugin-runner --plugin filesystem")
    monkeypatch.setenv("SHIPMATE_TOKEN", "t-123456789012345")
    settings = load_settings()
    assert settings.environment_id == "e-7"
    assert settings.plugin.is_external
    assert settings.plugin.command_words == ["/v/bin/bosun-plugin-runner", "--plugin", "filesystem"]


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        (GOOD.replace("concurrency: 4", "concurrency: 0"), "concurrency", "greater than or equal to 1"),
        (GOOD.replace("serviceUrl: http://127.0.0.1:8000/", "serviceUrl: ftp://x"), "serviceUrl", "http://"),
        (GOOD.replace("environmentId: e-1\n", ""), "environmentId", "SHIPMATE_AGENT_ENVIRONMENT_ID"),
        (GOOD.replace("  name: kubernetes\n", ""), "plugin", "exactly one of plugin.name"),
        (GOOD + "plugn: {}\n", "plugn", "unknown setting"),
        (GOOD.replace("Start: 600", "Start: -1"), "timeouts.deploymentStart", "greater than 0"),
        (GOOD + "token: <MLOPS_API_TOKEN>\n", "token", "placeholder"),
    ],
)
def test_invalid_settings_name_the_key(tmp_path, text, key, words):
    with pytest.raises(AgentConfigError) as caught:
        load_settings(write(tmp_path, text))
    message = str(caught.value)
    assert f"key '{key}'" in message
    assert words in message
    assert "agent.yaml" in message


def test_malformed_yaml_gives_the_line(tmp_path):
    with pytest.raises(AgentConfigError, match=r"not valid YAML \(line [34]"):
        load_settings(write(tmp_path, "environmentId: e-1\nplugin:\n  name: [unclosed\n"))


def test_missing_file(tmp_path):
    with pytest.raises(AgentConfigError, match="no such file"):
        load_settings(tmp_path / "nope.yaml")


def test_bad_json_in_a_nested_variable_names_it(monkeypatch):
    monkeypatch.setenv("SHIPMATE_AGENT_ENVIRONMENT_ID", "e-1")
    monkeypatch.setenv("SHIPMATE_AGENT_PLUGIN", "{not json")
    with pytest.raises(AgentConfigError, match="SHIPMATE_AGENT_PLUGIN"):
        load_settings()
