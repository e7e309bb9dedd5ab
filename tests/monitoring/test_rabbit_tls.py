"""RabbitMQ over TLS: DataRobot's ``MLOPS_RABBITMQ_SSL_*`` settings reach the connection.

The certificates are made here with ``openssl``; a TLS listener on 127.0.0.1 stands in for a
broker's TLS port (the test broker listens without TLS) and checks the handshake: the producer
checks the listener's certificate against the CA file and presents its client certificate."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from shipmate.monitoring.rabbit_spool import RabbitSpool, connection_parameters
from shipmate.monitoring.settings import SettingsError, parse, tls_context
from shipmate.monitoring.spool import open_spool

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


def test_the_producer_connects_with_tls_checking_the_broker_and_showing_its_certificate(pki: Path) -> None:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    server.load_cert_chain(str(pki / "server.pem"), str(pki / "server.key"))
    server.verify_mode = ssl.CERT_REQUIRED
    seen: list[object] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def accept() -> None:
            conn, _ = listener.accept()
            try:
                with server.wrap_socket(conn, server_side=True) as tls:
                    seen.append(tls.getpeercert()["subject"])  # then hang up: no AMQP here
            except (ssl.SSLError, OSError) as exc:
                seen.append(exc)

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        spool = open_spool(parse(_env(pki, port)))
        assert isinstance(spool, RabbitSpool) and spool.tls is not None
        assert spool.write(b'{"v": 2}')  # buffered: the listener speaks TLS but not AMQP
        thread.join(10)
        spool._disconnect()
    assert seen == [((("commonName", "client"),),)]
    assert spool.buffered == 1 and spool.published == 0
