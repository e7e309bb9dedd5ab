"""The Docker plugin's configuration: defaults, the private file merged over pluginConfig, clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shipmate.plugin.config import load_private_config
from shipmate.plugin.errors import ConfigError
from shipmate.plugins.docker.config import (
    DEFAULT_PREDICTION_SERVER_IMAGE,
    DEFAULT_PROXY_IMAGE,
    ReadinessVia,
    RestartPolicy,
    parse_config,
)
from shipmate.plugins.docker.plugin import DockerPlugin

SEED_EXAMPLE = {
    "dockerNetwork": "bosun",
    "traefikImage": "traefik:2.3.3",
    "outfacingPredictionURLPrefix": "http://10.10.12.22:81",
    "agentImage": "datarobot/mlops-tracking-agent:latest",
    "rabbitmqImage": "rabbitmq:3-management",
    "ppsBaseImage": "datarobot/datarobot-portable-prediction-api:latest",
    "generatedImagePrefix": "mlops_",
    "containerNamePrefix": "mlops_",
    "traefikPortMapping": {80: 81, 8080: 8081},
    "rabbitmqPortMapping": {15672: 15673, 5672: 5673},
}


def test_defaults_are_usable_without_any_key() -> None:
    config = parse_config({})
    assert config.docker_network == "bosun"
    assert config.traefik_image == DEFAULT_PROXY_IMAGE
    assert config.pps_base_image == DEFAULT_PREDICTION_SERVER_IMAGE
    assert config.container_name_prefix == "mlops_"
    assert config.traefik_port_mapping == {80: 81, 8080: 8081}
    assert config.publish_address == "127.0.0.1"
    assert config.restart_policy is RestartPolicy.UNLESS_STOPPED
    assert config.monitoring_enabled is False
    assert config.outfacing_prediction_url_prefix is None


def test_the_seed_documents_example_is_accepted_as_is() -> None:
    config = parse_config(SEED_EXAMPLE)
    assert config.traefik_image == "traefik:2.3.3"
    assert config.outfacing_prediction_url_prefix == "http://10.10.12.22:81"
    assert config.rabbitmq_port_mapping == {15672: 15673, 5672: 5673}
    assert config.proxy_host_port == 81


def test_private_config_file_wins_over_plugin_config(tmp_path: Path) -> None:
    private = tmp_path / "plugin.docker.conf.yaml"
    private.write_text('dockerNetwork: "private-net"\ntraefikPortMapping:\n    80: 9000\n')
    plugin = DockerPlugin({"dockerNetwork": "from-plugin-config", "containerNamePrefix": "x_"}, str(private))
    assert plugin.config.docker_network == "private-net"
    assert plugin.config.container_name_prefix == "x_"
    assert plugin.config.traefik_port_mapping == {80: 9000}


def test_environment_id_comes_from_pe_info_then_plugin_config() -> None:
    assert DockerPlugin({}, pe_info={"id": "pe-42"}).config.environment_id == "pe-42"
    assert parse_config({"MLOPS_BOSUN_PRED_ENV_ID": "pe-7"}).environment_id == "pe-7"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "traefikPortMapping",
            [80, 81],
            "'traefikPortMapping' must be a mapping of container port to host port",
        ),
        ("traefikPortMapping", {80: 70000}, "70000 is not a port number"),
        ("rabbitmqPortMapping", {"x": 1}, "'x' is not a port number"),
        ("outfacingPredictionURLPrefix", "10.10.12.22:81", "must be an http(s) URL"),
        ("dockerNetwork", "bad network", "must be a Docker network name"),
        ("dockerNetwork", 5, "must be a string, got int"),
        ("traefikImage", "Traefik:2.3.3", "is not a valid image reference"),
        ("ppsBaseImage", "", "must not be empty"),
        ("containerNamePrefix", "bad/prefix", "may only hold letters"),
        ("generatedImagePrefix", "UPPER_", "lower-case image name prefix"),
        ("reverseProxy", "nginx", "'reverseProxy' 'nginx' is not supported: the reverse proxy is Traefik"),
        ("restartPolicy", "sometimes", "must be one of no, on-failure, unless-stopped, always"),
        ("readinessVia", "magic", "must be one of published-port, container-name"),
        ("readinessTimeoutSeconds", 0, "positive number of seconds"),
        ("drainSeconds", "soon", "must be a number"),
        ("stopTimeoutSeconds", -1, "whole number"),
        ("publishAddress", "localhost", "must be an IP address"),
        ("createNetwork", "maybe", "must be true or false"),
    ],
)
def test_bad_values_are_named_with_what_is_wrong(key: str, value: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({key: value})
    assert f"'{key}'" in str(caught.value)
    assert expected in str(caught.value)


def test_monitoring_needs_the_service_url_and_a_token() -> None:
    with pytest.raises(ConfigError, match="'MLOPS_BOSUN_MONITORING_URL' is required"):
        parse_config({"MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING": True})
    config = parse_config(
        {
            "MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING": True,
            "MLOPS_BOSUN_MONITORING_URL": "http://127.0.0.1:8000",
            "mlopsApiToken": "secret-token-value-1234",
        }
    )
    assert config.monitoring_enabled
    assert "secret-token" not in repr(config)


def test_string_ports_and_booleans_from_yaml_are_converted() -> None:
    config = parse_config(
        {"traefikPortMapping": {"80": "8081"}, "createNetwork": "false", "readinessVia": "container-name"}
    )
    assert config.traefik_port_mapping == {80: 8081}
    assert config.create_network is False
    assert config.readiness_via is ReadinessVia.CONTAINER_NAME


def test_private_config_errors_name_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("dockerNetwork: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: malformed YAML at line \d+"):
        load_private_config(str(bad))
    with pytest.raises(ConfigError, match="file not found"):
        load_private_config(str(tmp_path / "missing.yaml"))
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping of settings at the top level, got list"):
        load_private_config(str(listing))
    with pytest.raises(ConfigError, match="'traefikImage'"):
        private = tmp_path / "p.yaml"
        private.write_text("traefikImage: 12\n")
        DockerPlugin({}, str(private))
