"""One test per system check id, plus the environment overrides."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from django_taskq.checks import check_settings
from django_taskq.conf import get_settings, reset_settings


def ids(settings_value, settings):
    settings.TASKQ = settings_value
    return sorted(m.id for m in check_settings())


def test_default_settings_pass(settings):
    assert ids({}, settings) == []


def test_e001_taskq_not_a_dict(settings):
    assert ids(["db://"], settings) == ["django_taskq.E001"]


@pytest.mark.parametrize("key, value", [
    ("WORKER_CONCURRENCY", 0), ("WORKER_POOL", "gevent-ish"), ("LEASE_TIMEOUT", -1),
    ("ACCEPT_CONTENT", "json"), ("TASK_ALWAYS_EAGER", "yes"), ("MAX_DELIVERIES", 1.5),
    ("HEARTBEAT_INTERVAL", 90),
])
def test_e002_bad_value(settings, key, value):
    assert ids({key: value}, settings) == ["django_taskq.E002"]


@pytest.mark.parametrize("url", ["rabbit://x", "nonsense", "db://nope",
                                 "db://default?poll_interval=soon",
                                 "redis://127.0.0.1:6379/0?socket_timeout=never",
                                 "redis://127.0.0.1:6379/0?prefix=",
                                 "amqp://guest@127.0.0.1//?queue_type=fast"])
def test_e003_bad_broker_url(settings, url):
    assert ids({"BROKER_URL": url}, settings) == ["django_taskq.E003"]


@pytest.mark.parametrize("url", ["cassandra://", "redis://127.0.0.1:6379/0?socket_timeout=x"])
def test_e004_bad_result_backend(settings, url):
    assert ids({"RESULT_BACKEND": url}, settings) == ["django_taskq.E004"]


def test_redis_urls_pass_the_checks_without_connecting(settings):
    """A check must not need the server: the URL of a stopped Redis is still well-formed."""
    url = "redis://127.0.0.1:1/0"
    assert ids({"BROKER_URL": url, "RESULT_BACKEND": url}, settings) == []


def test_e005_unknown_serializer(settings):
    assert ids({"TASK_SERIALIZER": "xml"}, settings) == ["django_taskq.E005"]


def test_w001_unknown_key_warns_but_settings_still_work(settings):
    assert ids({"BROKER_URLS": "db://"}, settings) == ["django_taskq.W001"]
    assert get_settings().BROKER_URL == "db://default"


def test_w002_pickle_accepted(settings):
    assert ids({"ACCEPT_CONTENT": ["json", "pickle"]}, settings) == ["django_taskq.W002"]


def test_messages_say_how_to_fix(settings):
    settings.TASKQ = {"BROKER_URL": "rabbit://x"}
    [message] = check_settings()
    assert "not supported" in message.msg and "db://" in message.msg
    assert "TASKQ_BROKER_URL" in message.hint


@pytest.mark.django_db(databases="__all__")  # Django 6 checks every database too
def test_manage_py_check_fails_on_errors(settings):
    settings.TASKQ = {"WORKER_POOL": "nope"}
    with pytest.raises(SystemCheckError, match="django_taskq.E002"):
        call_command("check")


def test_environment_overrides_settings(settings, monkeypatch):
    settings.TASKQ = {"BROKER_URL": "memory://", "RESULT_BACKEND": "memory://"}
    monkeypatch.setenv("TASKQ_BROKER_URL", "db://default")
    monkeypatch.setenv("TASKQ_RESULT_BACKEND", "memory://other")
    reset_settings()
    current = get_settings()
    assert current.BROKER_URL == "db://default"
    assert current.RESULT_BACKEND == "memory://other"
    assert current.sources["BROKER_URL"] == "environment"
    monkeypatch.setenv("TASKQ_BROKER_URL", "kafka://x")
    assert ids({}, settings) == ["django_taskq.E003"]
