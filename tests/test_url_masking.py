"""Broker, result and control URLs never show their password: mask() itself, the repr of the
engines built from them, configuration errors and the checks that report them, errors from a
dead Redis or RabbitMQ, log records, the banner, the remote ``conf`` reply, command errors and
the admin's dead-letter page."""

from __future__ import annotations

import logging
import traceback

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from django_taskq import checks
from django_taskq.brokers import broker_from_url
from django_taskq.control import control_store_from_url
from django_taskq.exceptions import ConfigurationError, TaskqError
from django_taskq.results import backend_from_url
from django_taskq.service_url import has_password, mask, mask_text, parse
from tests.testapp import tasks

SECRET = "s3cr3t-pw"


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:s3cr3t-pw@h:6379/0", "redis://:****@h:6379/0"),
    ("rediss://bob:s3cr3t-pw@h/0?ssl_cert_reqs=required", "rediss://bob:****@h/0?ssl_cert_reqs=required"),
    ("amqp://guest:s3cr3t-pw@rabbit:5672//", "amqp://guest:****@rabbit:5672//"),
    ("redis://:s3cr3t/pw@odd@h:1/0?socket_timeout=3", "redis://:****@h:1/0?socket_timeout=3"),
    ("redis://h/0?password=s3cr3t-pw&db=1", "redis://h/0?password=****&db=1"),
    ("amqps://u:s3cr3t-pw@h/v?ssl_keyfile=/k.pem&sasl_password=s3cr3t-pw",
     "amqps://u:****@h/v?ssl_keyfile=/k.pem&sasl_password=****"),
    ("sentinel://:s3cr3t-pw@h1:26379;sentinel://:s3cr3t-pw@h2:26379",
     "sentinel://:****@h1:26379;sentinel://:****@h2:26379"),
    ("redis://:pa;ss-s3cr3t@h:6379/0", "redis://:****@h:6379/0"),  # ";" in a password
    ("redis://bob@h/0", "redis://bob@h/0"),  # a user name alone is no secret
    ("db://default", "db://default"),
    ("memory://", "memory://"),
])
def test_mask_hides_passwords_in_every_place_a_url_holds_one(url, shown):
    assert mask(url) == shown
    assert has_password(url) == (shown != url)


def test_text_and_the_parsed_url_show_only_masked_urls():
    text = "BROKER_URL 'redis://:s3cr3t-pw@h/0' failed; then amqp://u:s3cr3t-pw@r// too"
    assert mask_text(text) == "BROKER_URL 'redis://:****@h/0' failed; then amqp://u:****@r// too"
    parsed = parse("redis://:s3cr3t-pw@h/0?password=s3cr3t-pw", setting="BROKER_URL")
    assert SECRET not in repr(parsed) and SECRET not in str(parsed)
    assert parsed.masked == "redis://:****@h/0?password=****"
    with pytest.raises(ConfigurationError) as caught:  # not a URL, yet user:password@host
        parse("bob:s3cr3t-pw@h", setting="BROKER_URL")
    assert SECRET not in str(caught.value) and "****@h" in str(caught.value)


@pytest.mark.parametrize("url", ["redis://:s3cr3t-pw@127.0.0.1:1/0",
                                 "amqp://guest:s3cr3t-pw@127.0.0.1:1//"])
def test_engines_built_from_a_url_keep_its_password_out_of_their_repr(url):
    engines = [broker_from_url(url)]
    if url.startswith("redis"):
        engines += [backend_from_url(url), control_store_from_url(url)]
    for engine in engines:  # built, never connected
        try:
            assert SECRET not in repr(engine) and SECRET not in repr(vars(engine))
        finally:
            engine.close()


@pytest.mark.parametrize("url", ["redis://:s3cr3t-pw@127.0.0.1:1/0",
                                 "amqp://guest:s3cr3t-pw@127.0.0.1:1//?connect_timeout=2"])
def test_a_dead_broker_error_never_shows_the_password(url):
    broker = broker_from_url(url)
    try:
        with pytest.raises(TaskqError) as caught:
            broker.size("default")
    finally:
        broker.close()
    told = "".join(traceback.format_exception(caught.value))  # the causes' messages too
    assert "unreachable" in str(caught.value)
    assert SECRET not in told and SECRET not in repr(caught.value)


@pytest.mark.parametrize(("url", "setting"), [
    ("redis://:s3cr3t-pw@h/0?socket_timeout=soon", "BROKER_URL"),
    ("redis://:s3cr3t-pw@h/0?prefix=", "BROKER_URL"),
    ("redis://:s3cr3t-pw@h/0?poll_interval=-1", "BROKER_URL"),
    ("db://bob:s3cr3t-pw@nosuchalias", "BROKER_URL"),
    ("amqp://guest:s3cr3t-pw@h//?queue_type=odd", "BROKER_URL"),
    ("redis://:s3cr3t-pw@h/0?socket_connect_timeout=x", "RESULT_BACKEND"),
])
def test_configuration_errors_and_their_checks_show_the_url_masked(url, setting, settings):
    build = broker_from_url if setting == "BROKER_URL" else backend_from_url
    with pytest.raises(ConfigurationError) as caught:
        build(url).close()
    assert SECRET not in str(caught.value) and ":****@" in str(caught.value)
    settings.TASKQ = {**settings.TASKQ, setting: url}
    found = [m for m in checks.check_settings() if m.id in ("django_taskq.E003",
                                                            "django_taskq.E004")]
    assert found and all(SECRET not in f"{m.msg} {m.hint}" for m in found)


def test_a_control_url_error_and_its_check_are_masked(settings):
    settings.TASKQ = {**settings.TASKQ, "CONTROL_URL": "redis://:s3cr3t-pw@h/0?prefix="}
    [message] = checks.check_control_url()
    assert message.id == "django_taskq.E006" and SECRET not in message.msg
    assert ":****@" in message.msg


def test_settings_values_in_checks_are_masked(settings):
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": ["redis://:s3cr3t-pw@h/0"]}
    settings.CELERY_RESULT_BACKEND = ["redis://:s3cr3t-pw@h/1"]
    messages = checks.check_settings() + checks.check_celery_settings()
    assert "django_taskq.E002" in {m.id for m in messages}
    assert any(m.msg.startswith("CELERY_RESULT_BACKEND = [") for m in messages)
    assert all(SECRET not in f"{m.msg} {m.hint}" for m in messages)
    assert any(":****@" in m.msg for m in messages)


def test_a_dead_broker_during_a_send_logs_and_raises_without_the_password(settings, caplog):
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "redis://:s3cr3t-pw@127.0.0.1:1/0",
                      "RESULT_BACKEND": "memory://",
                      "TASK_PUBLISH_RETRY_POLICY": {"max_retries": 1, "interval_start": 0,
                                                    "interval_step": 0, "interval_max": 0}}
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TaskqError) as caught:
        tasks.add.delay(1, 2)
    assert SECRET not in "".join(traceback.format_exception(caught.value))
    assert caplog.records, "the retry was logged"
    assert all(SECRET not in record.getMessage() for record in caplog.records)


@pytest.fixture
def memory_with_password(settings):
    """memory:// URLs that carry a password (memory brokers are named by what follows @)."""
    url = "memory://bob:s3cr3t-pw@masking"
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url, "RESULT_BACKEND": url,
                      "CONTROL_URL": f"{url}?password={SECRET}",
                      "SIGNING_KEYS": ["k" * 40]}
    return url


def test_the_banner_and_the_remote_conf_reply_are_masked(memory_with_password):
    from django_taskq.worker import Worker, WorkerOptions
    from django_taskq.worker.banner import banner
    from django_taskq.worker.remote import HANDLERS

    worker = Worker(WorkerOptions.from_settings(pool="solo"))
    try:
        shown = banner(worker)
        assert SECRET not in shown and "memory://bob:****@masking" in shown
        conf = HANDLERS["conf"](worker, {})
    finally:
        worker.heartbeat.stop()
    assert conf["BROKER_URL"] == "memory://bob:****@masking"
    assert conf["CONTROL_URL"] == "memory://bob:****@masking?password=****"
    assert conf["SIGNING_KEYS"] == "****" and "k" * 40 not in repr(conf)
    assert SECRET not in repr(conf)


def test_command_errors_show_the_url_masked(settings):
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "redis://:s3cr3t-pw@h/0?socket_timeout=x"}
    with pytest.raises(CommandError) as caught:
        call_command("taskworker", "--pool", "solo")
    assert SECRET not in str(caught.value) and ":****@" in str(caught.value)


@pytest.mark.django_db
def test_the_admin_dead_letter_page_shows_the_broker_masked(memory_with_password):
    User.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(User.objects.get(username="root"))
    page = client.get("/admin/django_taskq/deadlettermessage/broker/").content.decode()
    assert SECRET not in page and "memory://bob:****@masking" in page


@pytest.mark.django_db
def test_admin_and_dashboard_pages_on_a_dead_broker_show_no_password(settings):
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "redis://:s3cr3t-pw@127.0.0.1:1/0",
                      "RESULT_BACKEND": "db://default", "EVENTS_DATABASE": "default"}
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw"))
    pages = [client.get("/admin/django_taskq/deadlettermessage/broker/"),
             client.get("/admin/django_taskq/workerstate/")]
    assert [page.status_code for page in pages] == [200, 200]
    texts = [page.content.decode() for page in pages]
    assert "unreachable" in texts[0] and "redis://:****@127.0.0.1:1/0" in texts[0]
    assert not [text for text in texts if SECRET in text]
