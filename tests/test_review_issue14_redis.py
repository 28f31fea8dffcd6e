"""Review of issue 14's Redis Sentinel and TLS support, as a user coming from Celery meets it:
each test is a bug found by the review (failing before its fix), against a real Sentinel
deployment where one is needed (tests/test_redis_sentinel.py's, one for this module)."""

from __future__ import annotations

import ssl
import threading
import uuid

import pytest

from django_taskq.conf import reset_settings
from django_taskq.results import backend_from_url
from django_taskq.service_url import parse
from django_taskq.use_ssl import with_tls
from django_taskq.worker.remote import conf
from tests.test_redis_sentinel import MASTER, _outcome, deployment, sentinel_settings

pytestmark = pytest.mark.own_server

__all__ = ["deployment", "sentinel_settings"]  # the module's own deployment (module-scoped)


def test_conf_reply_hides_the_sentinel_password_of_the_transport_options(settings):
    """Celery's ``conf`` remote command (Flower's config tab) showed sentinel_kwargs' password."""
    settings.TASKQ = {**settings.TASKQ, "BROKER_TRANSPORT_OPTIONS": {
        "master_name": MASTER, "sentinel_kwargs": {"password": "s3cret-sentinel"}},
        "RESULT_BACKEND_TRANSPORT_OPTIONS": {"sentinel_kwargs": {"username": "u",
                                                                 "password": "an0ther"}}}
    reset_settings()
    try:
        reply = conf(None, {})  # type: ignore[arg-type]
    finally:
        reset_settings()
    text = repr(reply)
    assert "s3cret-sentinel" not in text and "an0ther" not in text
    assert reply["BROKER_TRANSPORT_OPTIONS"]["master_name"] == MASTER
    assert reply["RESULT_BACKEND_TRANSPORT_OPTIONS"]["sentinel_kwargs"]["username"] == "u"


def test_use_ssl_options_set_to_none_are_left_out():
    """Celery's broker_use_ssl dicts often carry ``'ssl_keyfile': None`` (no client
    certificate): that is no option, not a key file named "None"."""
    url = with_tls(parse("redis://127.0.0.1:6379/0", setting="BROKER_URL"),
                   {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_certfile": None,
                    "ssl_keyfile": None, "ssl_ca_certs": "/ca.pem"},
                   "BROKER_URL", "BROKER_USE_SSL")
    assert url.scheme == "rediss"
    assert url.options == {"ssl_cert_reqs": "required", "ssl_ca_certs": "/ca.pem"}


def test_a_waiting_get_rides_out_a_failover(deployment, sentinel_settings):
    """AsyncResult.get(timeout=30) while the master dies: the wait follows the sentinels to
    the new master (as Celery's result consumer reconnects under its retry policy) instead of
    raising BrokerConnectionError in the second or so no master is known."""
    deployment.in_sync()
    backend = backend_from_url(sentinel_settings["RESULT_BACKEND"])
    task_id = f"review-{uuid.uuid4().hex[:8]}"
    got: list[object] = []
    subscribed = threading.Event()

    def waiting() -> None:
        try:
            got.append(backend.wait(task_id, timeout=30, on_interval=subscribed.set))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            got.append(exc)

    waiter = threading.Thread(target=waiting)
    waiter.start()
    assert subscribed.wait(10)
    deployment.failover()
    other = backend_from_url(sentinel_settings["RESULT_BACKEND"])
    other.store(_outcome(task_id, 7))
    waiter.join(30)
    assert not waiter.is_alive()
    assert len(got) == 1 and not isinstance(got[0], BaseException), got
    assert got[0].result == 7  # type: ignore[attr-defined]
    backend.close()
    other.close()


def test_the_control_store_on_a_tls_sentinel_broker_reads_the_broker_transport_options(
        settings):
    """Celery's way: the master name in broker_transport_options, broker_use_ssl on. The
    control store (rate limits, revocations) shares the broker's URL, with TLS added, and
    lost the broker's transport options: "a sentinel:// URL needs the name of the master"."""
    from django_taskq.control import get_control_store

    settings.TASKQ = {**settings.TASKQ, "CONTROL_URL": None,
                      "BROKER_URL": "sentinel://127.0.0.1:26379/0;sentinel://127.0.0.1:26380",
                      "BROKER_TRANSPORT_OPTIONS": {"master_name": MASTER},
                      "BROKER_USE_SSL": {"ssl_cert_reqs": ssl.CERT_REQUIRED,
                                         "ssl_ca_certs": "/ca.pem"}}
    reset_settings()
    try:
        store = get_control_store()  # builds the client; connects only on first use
        pool = store.client.connection_pool  # type: ignore[attr-defined]
        assert pool.service_name == MASTER
        assert pool.connection_kwargs["ssl_ca_certs"] == "/ca.pem"
    finally:
        reset_settings()


@pytest.mark.parametrize("url", [
    "rediss://127.0.0.1:6380/0?ssl_cert_reqs=CERT_REQUIRED",
    f"sentinel://127.0.0.1:26379/0?master_name={MASTER}&ssl_cert_reqs=CERT_REQUIRED"])
def test_celerys_cert_required_in_a_taskq_url_is_required(url):
    """A Celery URL pasted into TASKQ (not translated from Celery's settings) failed at first
    use with redis-py's bare "Invalid SSL Certificate Requirements Flag" (rediss://) or was
    refused (sentinel://); Celery reads CERT_REQUIRED as required."""
    from django_taskq.redisconn import client_from_url

    client = client_from_url(parse(url, setting="BROKER_URL"), "BROKER_URL")
    assert client.connection_pool.connection_kwargs["ssl_cert_reqs"] == "required"


def test_a_bad_ssl_cert_reqs_is_a_configuration_error():
    from django_taskq.exceptions import ConfigurationError
    from django_taskq.redisconn import client_from_url

    with pytest.raises(ConfigurationError, match="ssl_cert_reqs.*required, optional or none"):
        client_from_url(parse("rediss://:pw@127.0.0.1:6380/0?ssl_cert_reqs=always",
                              setting="BROKER_URL"), "BROKER_URL")


def test_a_bad_transport_option_does_not_print_the_sentinel_password():
    """manage.py check quoted the whole dict, sentinel_kwargs' password included."""
    from django_taskq.conf import find_problems

    problems = find_problems({"BROKER_TRANSPORT_OPTIONS": {
        "master_name": MASTER, "min_other_sentinels": -1,
        "sentinel_kwargs": {"password": "s3cret-sentinel"}}})
    assert len(problems) == 1
    assert "s3cret-sentinel" not in repr(problems) and "min_other_sentinels" in repr(problems)


def test_an_idle_reserve_follows_a_switch_over(deployment, sentinel_settings):
    """An idle worker blocks in BLPOP on the master; demoted (SENTINEL FAILOVER, then
    REPLICAOF), Redis answers the blocked pop "UNBLOCKED ... (master -> replica?)": a bare
    redis ResponseError, which is no ServiceError, so the worker's loop stopped the worker.
    It is a lost master: the pop is made again on the new one, which hands the message over."""
    from django_taskq.brokers import broker_from_url
    from django_taskq.exceptions import BrokerConnectionError
    from tests.helpers import envelope

    deployment.in_sync()
    broker = broker_from_url(sentinel_settings["BROKER_URL"])
    queue = f"idle-{uuid.uuid4().hex[:8]}"
    got: list[object] = []
    errors: list[BaseException] = []
    blocked = threading.Event()

    def idle() -> None:
        while not got and len(errors) < 20:
            try:
                blocked.set()
                got.extend(broker.reserve([queue], max_messages=1, lease=30, worker="w",
                                          timeout=2.0))
            except BrokerConnectionError as exc:  # the worker backs off and tries again
                errors.append(exc)
            except BaseException as exc:  # noqa: BLE001 - the worker would stop
                errors.append(exc)
                return

    thread = threading.Thread(target=idle)
    thread.start()
    assert blocked.wait(5)
    deployment.switch_over()
    sent = envelope(queue)
    other = broker_from_url(sentinel_settings["BROKER_URL"])
    other.enqueue_many([sent])
    thread.join(15)
    assert not [e for e in errors if not isinstance(e, BrokerConnectionError)], errors
    assert [d.envelope.message_id for d in got] == [sent.message_id]  # type: ignore[attr-defined]
    broker.close()
    other.close()
