"""``rediss://`` against a real TLS-only redis-server the module starts, with a private CA made
by trustme: certificates verified by default, a clear error without the CA, ``ssl_cert_reqs=none``
warned about, client certificates, and Celery's ``broker_use_ssl`` / ``redis_backend_use_ssl``."""

from __future__ import annotations

import logging
import ssl
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from django_taskq.brokers import broker_from_url
from django_taskq.celery_settings import honoured_values
from django_taskq.conf import reset_settings
from django_taskq.exceptions import BrokerConnectionError, ConfigurationError
from django_taskq.outcome import Outcome
from django_taskq.results import backend_from_url
from django_taskq.service_url import parse
from django_taskq.use_ssl import with_tls
from tests.helpers import drain, envelope
from tests.redisserver import RedisServer, free_port, require_redis_server, wait_listening
from tests.testapp import tasks

pytestmark = pytest.mark.own_server

PASSWORD = "tls-s3cret"


def _tls_server(directory: Path, files: SimpleNamespace, *, auth_clients: bool) -> RedisServer:
    directory.mkdir()
    server = RedisServer(directory, tls=True, args=[
        "--tls-cert-file", str(files.cert), "--tls-key-file", str(files.key),
        "--tls-ca-cert-file", str(files.ca), "--requirepass", PASSWORD,
        "--tls-auth-clients", "yes" if auth_clients else "no"])
    server.start()
    return server


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """Two TLS-only servers (one asking for client certificates) and the PEM files."""
    require_redis_server()
    trustme = pytest.importorskip("trustme")
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    files = SimpleNamespace(ca=directory / "ca.pem", cert=directory / "server.pem",
                            key=directory / "server.key", client=directory / "client.pem",
                            client_key=directory / "client.key")
    ca.cert_pem.write_to_path(str(files.ca))
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    server_cert.cert_chain_pems[0].write_to_path(str(files.cert))
    server_cert.private_key_pem.write_to_path(str(files.key))
    client_cert = ca.issue_cert("taskq-client")
    client_cert.cert_chain_pems[0].write_to_path(str(files.client))
    client_cert.private_key_pem.write_to_path(str(files.client_key))
    files.open = _tls_server(directory / "open", files, auth_clients=False)
    files.strict = _tls_server(directory / "strict", files, auth_clients=True)
    files.url = f"rediss://:{PASSWORD}@127.0.0.1:{files.open.port}/0"
    yield files
    files.open.kill()
    files.strict.kill()


@pytest.fixture
def on_tls(tls, settings):
    """BROKER_URL and RESULT_BACKEND on the TLS server, verified with the private CA."""
    url = f"{tls.url}?ssl_ca_certs={tls.ca}"
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url, "RESULT_BACKEND": url}
    reset_settings()
    yield url
    reset_settings()


def _worker():
    from django_taskq.worker import Worker, WorkerOptions

    return Worker(WorkerOptions.from_settings(pool="solo", queues=("default",)))


@pytest.mark.django_db
def test_a_task_runs_end_to_end_over_verified_tls(on_tls):
    worker = _worker()
    try:
        result = tasks.add.delay(20, 22)
        assert drain(worker, result).get(timeout=5) == 42
    finally:
        worker.heartbeat.stop()
    backend = backend_from_url(on_tls)
    assert backend.wait(result.id, timeout=5).result == 42  # the pub/sub wait over TLS too
    backend.close()


def test_without_the_ca_the_error_says_the_certificate_was_not_verified(tls):
    for engine in (broker_from_url(tls.url), backend_from_url(tls.url)):
        with pytest.raises(BrokerConnectionError) as caught:
            if hasattr(engine, "enqueue_many"):
                engine.enqueue_many([envelope()])
            else:
                engine.get("some-task")
        message = str(caught.value)
        assert "certificate was not verified" in message and "ssl_ca_certs" in message
        assert PASSWORD not in message
        engine.close()


def test_ssl_cert_reqs_none_works_but_is_warned_about(tls, caplog):
    url = f"{tls.url}?ssl_cert_reqs=none"
    with caplog.at_level(logging.WARNING, logger="django_taskq"):
        broker = broker_from_url(url)
    assert "ssl_cert_reqs=none" in caplog.text and "not verified" in caplog.text
    assert PASSWORD not in caplog.text
    broker.enqueue_many([envelope("unverified")])
    assert broker.reserve(["unverified"], max_messages=1, lease=5, worker="w")
    broker.close()


def test_a_client_certificate_is_sent_when_the_server_asks_for_one(tls):
    base = f"rediss://:{PASSWORD}@127.0.0.1:{tls.strict.port}/0?ssl_ca_certs={tls.ca}"
    with pytest.raises(BrokerConnectionError):
        broker_from_url(base).enqueue_many([envelope("strict")])
    broker = broker_from_url(f"{base}&ssl_certfile={tls.client}&ssl_keyfile={tls.client_key}")
    broker.enqueue_many([envelope("strict")])
    assert broker.reserve(["strict"], max_messages=1, lease=5, worker="w")
    broker.close()


@pytest.mark.django_db
def test_broker_use_ssl_and_redis_backend_use_ssl_turn_tls_on(tls, settings):
    plain = f"redis://:{PASSWORD}@127.0.0.1:{tls.strict.port}/0"
    options = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(tls.ca),
               "ssl_certfile": str(tls.client), "ssl_keyfile": str(tls.client_key)}
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": plain, "RESULT_BACKEND": plain,
                      "BROKER_USE_SSL": options, "REDIS_BACKEND_USE_SSL": options}
    reset_settings()
    try:
        worker = _worker()
        try:
            assert drain(worker, tasks.add.delay(1, 2)).get(timeout=5) == 3
        finally:
            worker.heartbeat.stop()
    finally:
        reset_settings()


def test_celery_use_ssl_settings_are_translated(settings, tls):
    settings.CELERY_BROKER_USE_SSL = {"ssl_cert_reqs": ssl.CERT_REQUIRED,
                                      "ssl_ca_certs": str(tls.ca)}
    settings.CELERY_REDIS_BACKEND_USE_SSL = {"ssl_cert_reqs": "CERT_NONE"}
    values = honoured_values({})
    assert values["BROKER_USE_SSL"]["ssl_ca_certs"] == str(tls.ca)
    url = with_tls(parse("redis://h:6379/0?ssl_cert_reqs=optional", setting="BROKER_URL"),
                   values["BROKER_USE_SSL"], "BROKER_URL", "BROKER_USE_SSL")
    assert url.scheme == "rediss"
    assert url.options == {"ssl_cert_reqs": "optional", "ssl_ca_certs": str(tls.ca)}  # URL wins
    backend = with_tls(parse("redis://h/1", setting="RESULT_BACKEND"),
                       values["REDIS_BACKEND_USE_SSL"], "RESULT_BACKEND", "REDIS_BACKEND_USE_SSL")
    assert backend.original == "rediss://h/1?ssl_cert_reqs=none"
    amqp = with_tls(parse("amqp://u:p@h//", setting="BROKER_URL"),
                    {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": "/ca.pem"}, "BROKER_URL",
                    "BROKER_USE_SSL")
    assert amqp.original == "amqps://u:p@h//?cert_reqs=required&ca_certs=%2Fca.pem"
    assert with_tls(parse("amqp://h//", setting="BROKER_URL"), True, "BROKER_URL",
                    "BROKER_USE_SSL").scheme == "amqps"


def test_use_ssl_on_a_url_without_a_tls_form_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="BROKER_USE_SSL.*has no TLS form"):
        with_tls(parse("db://default", setting="BROKER_URL"), True, "BROKER_URL",
                 "BROKER_USE_SSL")


@pytest.fixture(scope="module")
def tls_sentinel(tls):
    """A sentinel (plain TCP) watching the TLS-only server over TLS (tls-replication)."""
    port = free_port()
    conf = tls.open.directory / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tls.open.directory}\n"
        f"tls-replication yes\ntls-cert-file {tls.cert}\ntls-key-file {tls.key}\n"
        f"tls-ca-cert-file {tls.ca}\n"
        f"sentinel monitor tlsmaster 127.0.0.1 {tls.open.port} 1\n"
        f"sentinel auth-pass tlsmaster {PASSWORD}\n")
    proc = subprocess.Popen([require_redis_server(), str(conf), "--sentinel"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        yield f"sentinel://:{PASSWORD}@127.0.0.1:{port}/0?master_name=tlsmaster"
    finally:
        proc.kill()
        proc.wait()


def test_a_sentinel_managed_master_over_tls(tls, tls_sentinel, settings):
    broker = broker_from_url(f"{tls_sentinel}&ssl_ca_certs={tls.ca}")
    backend = backend_from_url(f"{tls_sentinel}&ssl_ca_certs={tls.ca}")
    broker.enqueue_many([envelope("sentinel-tls")])
    [delivery] = broker.reserve(["sentinel-tls"], max_messages=1, lease=5, worker="w")
    backend.store(Outcome(task_id=delivery.message_id, task_name="t", state="SUCCESS",
                          payload=b"7"))
    assert backend.wait(delivery.message_id, timeout=5).result == 7
    broker.close()
    backend.close()
    with pytest.raises(BrokerConnectionError, match="certificate was not verified"):
        broker_from_url(f"{tls_sentinel}&ssl=true").enqueue_many([envelope("sentinel-tls")])
    # Celery's broker_use_ssl on a sentinel:// URL: the master over TLS.
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": tls_sentinel,
                      "BROKER_USE_SSL": {"ssl_cert_reqs": ssl.CERT_REQUIRED,
                                         "ssl_ca_certs": str(tls.ca)}}
    reset_settings()
    try:
        broker = broker_from_url(tls_sentinel)
        broker.enqueue_many([envelope("sentinel-tls")])
        assert broker.reserve(["sentinel-tls"], max_messages=1, lease=5, worker="w")
        broker.close()
    finally:
        reset_settings()
