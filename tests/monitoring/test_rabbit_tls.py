"""RabbitMQ over TLS: DataRobot's ``MLOPS_RABBITMQ_SSL_*`` settings reach the connection, of the
prediction server's spooler and of the monitoring agent's RABBITMQ_SPOOL channels.

The certificates are made here with ``openssl``; a TLS listener on 127.0.0.1 stands in for a
broker's TLS port (the test broker listens without TLS) and checks the handshake: the producer,
or the agent's reader, checks the listener's certificate against the CA file and presents its
client certificate."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipmate.monitoring.agent.config import ConfigError, RabbitChannel, from_environment, load
from shipmate.monitoring.agent.main import reader_for
from shipmate.monitoring.rabbit_spool import RabbitSpool, connection_parameters
from shipmate.monitoring.settings import SettingsError, parse, tls_context
from shipmate.monitoring.spool import SpoolError, open_spool

EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by the CA."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", *EC_KEY, "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))  # fmt: skip
    for name, extension in (
        ("server", "subjectAltName=IP:127.0.0.1"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        _openssl("req", *EC_KEY, "-subj", f"/CN={name}",
                 "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))  # fmt: skip
        (d / f"{name}.ext").write_text(extension + "\n")
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
                 "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
                 "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.pem"))  # fmt: skip
    return d


def _env(pki: Path, port: int = 5671, **extra: str) -> dict[str, str]:
    return {
        "MLOPS_SPOOLER_TYPE": "RABBITMQ",
        "MLOPS_RABBITMQ_QUEUE_URL": f"amqps://guest:guest@127.0.0.1:{port}/%2F",
        "MLOPS_RABBITMQ_QUEUE_NAME": "q",
        "MLOPS_RABBITMQ_SSL_CA_CERTIFICATE_PATH": str(pki / "ca.pem"),
        "MLOPS_RABBITMQ_SSL_CERTIFICATE_PATH": str(pki / "client.pem"),
        "MLOPS_RABBITMQ_SSL_KEYFILE_PATH": str(pki / "client.key"),
        **extra,
    }


def test_the_tls_variables_are_read_and_loaded(pki: Path) -> None:
    settings = parse(_env(pki, MLOPS_RABBITMQ_SSL_TLS_VERSION="TLSv1_2"))
    assert settings.rabbitmq_ssl_ca_certificate == pki / "ca.pem"
    assert settings.rabbitmq_ssl_tls_version is ssl.TLSVersion.TLSv1_2
    context = tls_context(settings)
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "test-ca"),),)]
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version is context.maximum_version is ssl.TLSVersion.TLSv1_2
    params = connection_parameters(settings.rabbitmq_queue_url or "", context)
    assert params.ssl_options.context is context and params.ssl_options.server_hostname == "127.0.0.1"
    # the settings string's keys are the variables' suffixes, as for every other setting
    string = (
        f"spooler_type=RABBITMQ;queue_url=amqps://h/%2F;queue_name=q;ssl_ca_certificate_path={pki}/ca.pem"
    )
    assert parse({}, string).rabbitmq_ssl_ca_certificate == pki / "ca.pem"


def test_a_missing_or_wrong_file_stops_start_up_naming_the_variable(pki: Path) -> None:
    with pytest.raises(
        SettingsError, match=r"SSL_CA_CERTIFICATE_PATH: cannot load .*/absent.pem: No such file"
    ):
        parse(_env(pki, MLOPS_RABBITMQ_SSL_CA_CERTIFICATE_PATH=str(pki / "absent.pem")))
    with pytest.raises(SettingsError, match=r"SSL_KEYFILE_PATH: cannot load .*client.pem with .*server.key"):
        parse(_env(pki, MLOPS_RABBITMQ_SSL_KEYFILE_PATH=str(pki / "server.key")))  # not the certificate's key


def _tls_listener(pki: Path, seen: list[object]) -> tuple[socket.socket, threading.Thread]:
    """A listener that completes one TLS handshake (asking for a client certificate), notes the
    client's certificate subject (or the error), and hangs up: it speaks no AMQP."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    server.load_cert_chain(str(pki / "server.pem"), str(pki / "server.key"))
    server.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        conn, _ = listener.accept()
        try:
            with server.wrap_socket(conn, server_side=True) as tls:
                seen.append(tls.getpeercert()["subject"])
        except (ssl.SSLError, OSError) as exc:
            seen.append(exc)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return listener, thread


def test_the_producer_connects_with_tls_checking_the_broker_and_showing_its_certificate(pki: Path) -> None:
    seen: list[object] = []
    listener, thread = _tls_listener(pki, seen)
    with listener:
        spool = open_spool(parse(_env(pki, listener.getsockname()[1])))
        assert isinstance(spool, RabbitSpool) and spool.tls is not None
        assert spool.write(b'{"v": 2}')  # buffered: the listener speaks TLS but not AMQP
        thread.join(10)
        spool._disconnect()
    assert seen == [((("commonName", "client"),),)]
    assert spool.buffered == 1 and spool.published == 0


# ---- the monitoring agent's RABBITMQ_SPOOL channels -------------------------------------------


def _agent_file(path: Path, *details: dict[str, Any]) -> Path:
    channels = [
        {"type": "RABBITMQ_SPOOL", "details": {"name": f"mq{i}", "queueName": "q", **d}}
        for i, d in enumerate(details)
    ]
    path.write_text(
        yaml.safe_dump({"mlopsUrl": "http://127.0.0.1:1", "apiToken": "t", "channelConfigs": channels})
    )
    return path


def _camel(pki: Path, port: int = 5671) -> dict[str, Any]:
    return {
        "queueUrl": f"amqps://guest:guest@127.0.0.1:{port}/%2F",
        "sslCaCertificatePath": str(pki / "ca.pem"),
        "sslCertificatePath": str(pki / "client.pem"),
        "sslKeyfilePath": str(pki / "client.key"),
    }


def _checks_the_test_ca(context: ssl.SSLContext | None) -> bool:
    return (
        context is not None
        and [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "test-ca"),),)]
        and context.verify_mode is ssl.CERT_REQUIRED
        and context.check_hostname
    )


def test_agent_channels_take_the_tls_keys_in_both_spellings(pki: Path, tmp_path: Path) -> None:
    snake = {
        "rabbitmq_queue_url": "amqps://guest:guest@127.0.0.1:5671/%2F",
        "rabbitmq_ssl_ca_certificate_path": str(pki / "ca.pem"),
        "rabbitmq_ssl_tls_version": 1.2,  # YAML reads 1.2 as a number
    }
    plain = {"queueUrl": "amqp://guest:guest@127.0.0.1:5672/%2F"}
    config = load(
        _agent_file(tmp_path / "agent.yaml", {**_camel(pki), "sslTlsVersion": "TLSv1.3"}, snake, plain)
    )
    camel_channel, snake_channel, plain_channel = config.channels
    assert isinstance(camel_channel, RabbitChannel) and _checks_the_test_ca(camel_channel.tls)
    assert camel_channel.tls is not None and camel_channel.tls.minimum_version is ssl.TLSVersion.TLSv1_3
    assert isinstance(snake_channel, RabbitChannel) and _checks_the_test_ca(snake_channel.tls)
    assert snake_channel.tls is not None and snake_channel.tls.maximum_version is ssl.TLSVersion.TLSv1_2
    assert isinstance(plain_channel, RabbitChannel) and plain_channel.tls is None


def test_the_agent_reads_a_channel_over_tls_checking_the_broker_and_showing_its_certificate(
    pki: Path, tmp_path: Path
) -> None:
    seen: list[object] = []
    listener, thread = _tls_listener(pki, seen)
    with listener:
        config = load(_agent_file(tmp_path / "agent.yaml", _camel(pki, listener.getsockname()[1])))
        reader = reader_for(config.channels[0])
        with pytest.raises(SpoolError, match="lost the broker"):  # TLS, then no AMQP: hung up
            reader.read(timeout=0.1)
        reader.close()
        thread.join(10)
    assert seen == [((("commonName", "client"),),)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"sslCaCertificatePath": "{pki}/absent.pem"},
            r"channelConfigs\[0\].details.sslCaCertificatePath: cannot load {pki}/absent.pem: No such file",
        ),
        (
            {"sslKeyfilePath": "{pki}/server.key"},  # not the certificate's key
            r"channelConfigs\[0\].details.sslCertificatePath / channelConfigs\[0\].details.sslKeyfilePath: "
            r"cannot load {pki}/client.pem with {pki}/server.key",
        ),
        (
            {"sslCertificatePath": None},
            r"channelConfigs\[0\].details.sslKeyfilePath is the key of a client certificate: "
            r"set channelConfigs\[0\].details.sslCertificatePath too",
        ),
        (
            {"sslCaCertificatePath": "ca.pem"},
            r"channelConfigs\[0\].details.sslCaCertificatePath: 'ca.pem' must be an absolute",
        ),
        (
            {"sslTlsVersion": "SSLv3"},
            r"channelConfigs\[0\].details.sslTlsVersion: 'SSLv3' is not a TLS version",
        ),
        (
            {"sslCaCertificate": "/ca.pem"},
            r"channelConfigs\[0\].details.sslCaCertificate is not a TLS key",
        ),  # a typo is not ignored
    ],
)
def test_agent_tls_errors_name_the_file_and_the_key(
    pki: Path, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    details = {**_camel(pki), **{k: v if v is None else v.format(pki=pki) for k, v in change.items()}}
    details = {k: v for k, v in details.items() if v is not None}
    path = _agent_file(tmp_path / "agent.yaml", details)
    with pytest.raises(ConfigError, match=f"^{path}: " + message.format(pki=pki)):
        load(path)


def test_shipmate_monitor_stops_on_a_missing_ca_file_in_one_line(pki: Path, tmp_path: Path) -> None:
    path = _agent_file(tmp_path / "agent.yaml", {**_camel(pki), "sslCaCertificatePath": "/nowhere/ca.pem"})
    command = [
        sys.executable,
        "-c",
        "from shipmate.cli.main import main; main()",
        "monitor",
        "--config",
        str(path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert f"{path}: channelConfigs[0].details.sslCaCertificatePath: cannot load /nowhere/ca.pem" in lines[0]


def _agent_env(pki: Path, **extra: str) -> dict[str, str]:
    return {"MLOPS_SERVICE_URL": "http://127.0.0.1:1", "MLOPS_API_TOKEN": "t", **_env(pki), **extra}


def test_the_agent_environment_honours_the_tls_variables(pki: Path) -> None:
    (channel,) = from_environment(_agent_env(pki, MLOPS_RABBITMQ_SSL_TLS_VERSION="TLSv1_2")).channels
    assert isinstance(channel, RabbitChannel) and _checks_the_test_ca(channel.tls)
    assert channel.tls is not None and channel.tls.minimum_version is ssl.TLSVersion.TLSv1_2
    plain = {k: v for k, v in _agent_env(pki).items() if "_SSL_" not in k}
    assert from_environment(plain).channels[0].tls is None  # type: ignore[union-attr]
    with pytest.raises(
        ConfigError,
        match=r"^the environment .*: MLOPS_RABBITMQ_SSL_CA_CERTIFICATE_PATH: cannot load /nowhere/ca.pem",
    ):
        from_environment(_agent_env(pki, MLOPS_RABBITMQ_SSL_CA_CERTIFICATE_PATH="/nowhere/ca.pem"))
    with pytest.raises(
        ConfigError, match=r"MLOPS_RABBITMQ_SSL_KEYFILE_PATH is the key .* set MLOPS_RABBITMQ_SSL_CERT"
    ):
        from_environment(
            {k: v for k, v in _agent_env(pki).items() if k != "MLOPS_RABBITMQ_SSL_CERTIFICATE_PATH"}
        )


def test_the_agent_environment_tls_connection_checks_the_broker(pki: Path) -> None:
    seen: list[object] = []
    listener, thread = _tls_listener(pki, seen)
    with listener:
        env = _agent_env(
            pki, MLOPS_RABBITMQ_QUEUE_URL=f"amqps://guest:guest@127.0.0.1:{listener.getsockname()[1]}/%2F"
        )
        reader = reader_for(from_environment(env).channels[0])
        with pytest.raises(SpoolError):
            reader.read(timeout=0.1)
        reader.close()
        thread.join(10)
    assert seen == [((("commonName", "client"),),)]
