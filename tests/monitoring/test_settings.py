"""Monitoring settings: DataRobot's variables and settings string, table-tested."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shipmate.monitoring.settings import SettingsError, SpoolerType, mask_url, parse

DRUM_DEFAULT = "spooler_type=FILESYSTEM;directory=/tmp/ta;max_files=5;file_max_size=10485760"
RABBIT = "spooler_type=RABBITMQ;queue_url=amqps://guest:guest@127.0.0.1:5671/%2F;queue_name=q"


@pytest.mark.parametrize(
    ("env", "given", "expected"),
    [
        ({}, None, {"enabled": False}),
        (
            {},
            DRUM_DEFAULT,
            {"enabled": True, "directory": Path("/tmp/ta"), "max_files": 5, "file_max_size": 10485760},
        ),
        ({"PREDICTION_API_MONITORING_SETTINGS": DRUM_DEFAULT}, None, {"enabled": True, "max_files": 5}),
        ({"PORTABLE_PREDICTION_API_MONITORING_SETTINGS": DRUM_DEFAULT}, None, {"enabled": True}),
        ({"MONITOR_SETTINGS": DRUM_DEFAULT}, None, {"directory": Path("/tmp/ta")}),
        ({"MLOPS_SPOOLER_CONFIG": DRUM_DEFAULT}, None, {"enabled": True}),
        # the environment overrides the settings string, as in DataRobot's library
        ({"MLOPS_FILESYSTEM_MAX_NUM_FILES": "7"}, DRUM_DEFAULT, {"max_files": 7}),
        # keys are case-insensitive suffixes of the variable names
        ({}, "SPOOLER_TYPE=filesystem;Filesystem_Directory=/d", {"directory": Path("/d")}),
        ({}, "spooler_type=FILESYSTEM;MLOPS_FILESYSTEM_DIRECTORY=/d", {"directory": Path("/d")}),
        # deprecated names and aliases
        (
            {"MLOPS_OUTPUT_TYPE": "OUTPUT_DIR", "MLOPS_SPOOLER_DIR_PATH": "/old"},
            None,
            {"spooler_type": SpoolerType.FILESYSTEM, "directory": Path("/old")},
        ),
        (
            {
                "MLOPS_SPOOLER_TYPE": "rabbit_mq",
                "MLOPS_RABBITMQ_URL": "amqp://g:g@127.0.0.1:5672/%2f",
                "MLOPS_RABBITMQ_QUEUE_NAME": "q",
            },
            None,
            {"spooler_type": SpoolerType.RABBITMQ, "rabbitmq_queue_url": "amqp://g:g@127.0.0.1:5672/%2f"},
        ),
        ({}, "spooler_type=RABBITMQ;queue_url=amqp://127.0.0.1;queue_name=q", {"rabbitmq_queue_name": "q"}),
        ({"MLOPS_SPOOLER_TYPE": "STDOUT"}, None, {"enabled": True, "spooler_type": SpoolerType.STDOUT}),
        ({"MLOPS_SPOOLER_TYPE": "NONE"}, None, {"enabled": True, "spooler_type": SpoolerType.NONE}),
        # other delimiters
        (
            {"MLOPS_SPOOLER_CONFIG_RECORD_DELIMITER": ",", "MLOPS_SPOOLER_CONFIG_KEY_VALUE_SEPARATOR": ":"},
            "spooler_type:FILESYSTEM,directory:/x",
            {"directory": Path("/x")},
        ),
        # ids, association id, sampling and Shipmate's flush settings
        (
            {"MLOPS_DEPLOYMENT_ID": "d1", "MLOPS_MODEL_ID": "m1"},
            DRUM_DEFAULT,
            {"deployment_id": "d1", "model_id": "m1"},
        ),
        (
            {},
            DRUM_DEFAULT + ";association_id_column_name=id;auto_sampling_percentage=10",
            {"association_id_column": "id", "sample_percentage": 10.0},
        ),
        ({}, DRUM_DEFAULT + ";flush_rows=500;flush_seconds=0.5", {"flush_rows": 500, "flush_seconds": 0.5}),
        # the switches
        ({"PREDICTION_API_MONITORING_ENABLED": "false"}, DRUM_DEFAULT, {"enabled": False}),
        (
            {"PREDICTION_API_MONITORING_ENABLED": "true", "MLOPS_FILESYSTEM_DIRECTORY": "/s"},
            None,
            {"enabled": True, "directory": Path("/s")},
        ),
    ],
)
def test_settings(env: dict[str, str], given: str | None, expected: dict[str, Any]) -> None:
    settings = parse(env, given)
    for name, value in expected.items():
        assert getattr(settings, name) == value, name


@pytest.mark.parametrize(
    ("env", "given", "message"),
    [
        (
            {},
            "spooler_type=KAFKA",
            "KAFKA is not supported yet; supported: FILESYSTEM, RABBITMQ, STDOUT, NONE",
        ),
        ({"MLOPS_SPOOLER_TYPE": "SQS"}, None, "MLOPS_SPOOLER_TYPE: spooler type SQS is not supported yet"),
        ({}, "spooler_type=PUBSUB", "PUBSUB is not supported yet"),
        ({}, "spooler_type=CARRIER_PIGEON", "'CARRIER_PIGEON' is not a spooler type; supported"),
        ({}, DRUM_DEFAULT + ";colour=blue", "unknown key 'colour'"),
        (
            {},
            DRUM_DEFAULT + ";max_files=many",
            "key 'max_files' (MLOPS_FILESYSTEM_MAX_NUM_FILES): 'many' is not",
        ),
        ({}, DRUM_DEFAULT + ";max_files=0", "must be at least 1"),
        ({}, "spooler_type=FILESYSTEM;directory=relative/dir", "must be an absolute path"),
        ({}, "spooler_type=FILESYSTEM", "FILESYSTEM spooler needs a directory"),
        ({}, "spooler_type=RABBITMQ;queue_name=q", "needs MLOPS_RABBITMQ_QUEUE_URL"),
        ({}, "spooler_type=RABBITMQ;queue_url=http://x;queue_name=q", "amqp:// or amqps://"),
        ({}, "spooler_type", "is not key=value"),
        ({}, DRUM_DEFAULT + ";kafka_topic_name=t", "KAFKA is not supported yet"),
        (
            {},
            RABBIT + ";ssl_ca_certificate_path=/nowhere/ca.pem",
            "MLOPS_RABBITMQ_SSL_CA_CERTIFICATE_PATH: cannot load /nowhere/ca.pem: No such file",
        ),
        ({}, RABBIT + ";ssl_ca_certificate_path=ca.pem", "must be an absolute path"),
        ({}, RABBIT + ";ssl_tls_version=SSLv3", "'SSLv3' is not a TLS version"),
        ({}, RABBIT + ";ssl_keyfile_path=/k.pem", "set MLOPS_RABBITMQ_SSL_CERTIFICATE_PATH too"),
        ({"MLOPS_SPOOLER_TYPO": "x"}, DRUM_DEFAULT, "unknown variable MLOPS_SPOOLER_TYPO"),
        ({"MLOPS_RABBITMQ_SSL_CA_CERTIFICATE_PATH": "/c"}, RABBIT, "SSL_CA_CERTIFICATE_PATH: cannot load /c"),
        (
            {"MLOPS_FILESYSTEM_MAX_FILE_SIZE": "-3"},
            DRUM_DEFAULT,
            "MLOPS_FILESYSTEM_MAX_FILE_SIZE: -3 must be",
        ),
        ({}, DRUM_DEFAULT + ";auto_sampling_percentage=5", "needs MLOPS_ASSOCIATION_ID_COLUMN_NAME"),
        ({}, DRUM_DEFAULT + ";auto_sampling_percentage=500", "percentage from 0 to 100"),
        (
            {"PREDICTION_API_MONITORING_ENABLED": "perhaps"},
            None,
            "PREDICTION_API_MONITORING_ENABLED: 'perhaps'",
        ),
        ({}, DRUM_DEFAULT + ";data_format=BYTE_ARRAY", "only JSON records"),
    ],
)
def test_wrong_settings_name_the_key(env: dict[str, str], given: str | None, message: str) -> None:
    with pytest.raises(SettingsError, match=_literal(message)):
        parse(env, given)


def test_datarobot_settings_that_do_not_apply_are_accepted_with_a_warning() -> None:
    settings = parse({"MLOPS_ASYNC_REPORTING": "true"}, DRUM_DEFAULT + ";acknowledgement_deadline=600")
    assert settings.enabled
    assert any("ACKNOWLEDGEMENT_DEADLINE" in w for w in settings.warnings)
    assert any("MLOPS_ASYNC_REPORTING" in w for w in settings.warnings)


def test_another_spoolers_variables_are_ignored_with_a_warning() -> None:
    settings = parse({"MLOPS_KAFKA_TOPIC_NAME": "t"}, DRUM_DEFAULT)
    assert settings.spooler_type is SpoolerType.FILESYSTEM
    assert any(
        "MLOPS_KAFKA_TOPIC_NAME is ignored: spooler type KAFKA is not supported yet" in w
        for w in settings.warnings
    )


def test_deprecated_names_warn() -> None:
    settings = parse({"MLOPS_SPOOLER_MAX_FILES": "3"}, DRUM_DEFAULT)
    assert settings.max_files == 3
    assert any("deprecated" in w for w in settings.warnings)


def test_the_description_masks_the_queue_password() -> None:
    settings = parse({}, "spooler_type=RABBITMQ;queue_url=amqp://guest:s3cret@127.0.0.1:5672/;queue_name=q")
    assert "s3cret" not in settings.describe()
    assert mask_url("amqp://u:p@h/") == "amqp://u:***@h/"


def _literal(text: str) -> str:
    import re

    return re.escape(text)
