"""The monitoring agent configured the way DataRobot's agent image is: by variables (no file).

This is how the Docker plugin's agent container and the Kubernetes sidecar are started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shipmate.monitoring.agent.config import ConfigError, FilesystemChannel, RabbitChannel, from_environment

BROKER = "amqp://u:p@rabbit:5672/%2F"


def test_a_rabbitmq_channel_from_the_variables_the_docker_plugin_sets() -> None:
    config = from_environment(
        {
            "MLOPS_SERVICE_URL": "http://127.0.0.1:8000/",
            "MLOPS_API_TOKEN": "smt_agent",
            "MLOPS_SPOOLER_TYPE": "rabbitmq",
            "MLOPS_RABBITMQ_QUEUE_URL": BROKER,
            "MLOPS_RABBITMQ_QUEUE_NAME": "shipmate",
            "MLOPS_AGENT_START_DELAY": "10",  # DataRobot's; ignored
        }
    )
    assert config.channels == (RabbitChannel("rabbitmq", BROKER, "shipmate"),)
    assert (config.mlops_url, config.api_token, config.server_mode) == (
        "http://127.0.0.1:8000",
        "smt_agent",
        False,
    )


def test_the_older_names_and_the_filesystem_default() -> None:
    config = from_environment(
        {
            "MLOPS_SERVICE_URL": "https://shipmate.example.com",
            "MLOPS_API_TOKEN": "smt_agent",
            "MLOPS_OUTPUT_TYPE": "OUTPUT_DIR",
            "MLOPS_AGENT_VERIFY_SSL": "false",
        }
    )
    assert config.channels == (FilesystemChannel("filesystem", Path("/tmp/ta")),)
    assert config.verify_ssl is False
    legacy = from_environment(
        {
            "MLOPS_SERVICE_URL": "https://s.example.com",
            "MLOPS_API_TOKEN": "t",
            "MLOPS_SPOOLER_TYPE": "RABBIT_MQ",
            "MLOPS_RABBITMQ_URL": BROKER,
            "MLOPS_RABBITMQ_QUEUE_NAME": "q",
        }
    )
    assert legacy.channels == (RabbitChannel("rabbitmq", BROKER, "q"),)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"MLOPS_SPOOLER_TYPE": "KAFKA"}, "MLOPS_SPOOLER_TYPE KAFKA is not supported by the agent"),
        ({"MLOPS_SPOOLER_TYPE": "RABBITMQ"}, "MLOPS_RABBITMQ_QUEUE_URL is required with MLOPS_SPOOLER_TYPE"),
        ({"MLOPS_AGENT_SERVER_PORT": "http"}, "MLOPS_AGENT_SERVER_PORT must be a port number"),
        ({"MLOPS_API_TOKEN": ""}, "apiToken is missing"),
        ({"MLOPS_SERVICE_URL": "shipmate:8000"}, "MLOPS_SERVICE_URL must be an http"),
    ],
)
def test_wrong_variables_are_named(change: dict[str, str], message: str) -> None:
    environ = {"MLOPS_SERVICE_URL": "http://127.0.0.1:8000", "MLOPS_API_TOKEN": "smt_agent", **change}
    with pytest.raises(ConfigError, match=message) as caught:
        from_environment(environ)
    assert str(caught.value).startswith("the environment (MLOPS_SERVICE_URL")


def test_shipmate_monitor_without_a_file_reads_the_variables_and_says_what_is_wrong() -> None:
    command = [sys.executable, "-c", "from shipmate.cli.main import main; main()", "monitor"]
    environ = {
        "PATH": "/usr/bin:/bin",
        "MLOPS_SERVICE_URL": "http://127.0.0.1:1",
        "MLOPS_API_TOKEN": "smt_secret-0123456789",
        "MLOPS_SPOOLER_TYPE": "SQS",
    }
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=environ)
    assert done.returncode == 2, done.stderr
    assert "MLOPS_SPOOLER_TYPE SQS is not supported by the agent" in done.stderr
    assert "Traceback" not in done.stderr and "smt_secret" not in done.stderr
