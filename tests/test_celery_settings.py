"""Celery's settings in Django settings: honoured as TASKQ keys, or reported by a check."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_taskq import celery_settings
from django_taskq.celery_settings.names import django_names, old_name
from django_taskq.checks import check_celery_settings, check_settings
from django_taskq.conf import get_settings, reset_settings

DOCS = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def notes(**django_settings):
    """(id, message, hint) of every Celery check message under these settings."""
    with override_settings(**django_settings):
        return [(m.id, m.msg, m.hint) for m in check_celery_settings()]


def ids(**django_settings):
    return sorted(id_ for id_, _, _ in notes(**django_settings))


def honoured(**django_settings):
    """The settings built with these Django settings (and an empty TASKQ unless given)."""
    django_settings.setdefault("TASKQ", {})
    with override_settings(**django_settings):
        assert check_celery_settings() == []  # honoured settings are silent
        return get_settings()


# -- every Celery setting has a place ---------------------------------------------------------

def test_every_celery_setting_is_honoured_or_explained():
    defaults = pytest.importorskip("celery.app.defaults")
    ours = set(celery_settings.HONOURED) | set(celery_settings.EXPLAINED)
    assert ours == set(defaults.SETTING_KEYS)
    assert not set(celery_settings.HONOURED) & set(celery_settings.EXPLAINED)


def test_pre_4_names_are_celerys():
    defaults = pytest.importorskip("celery.app.defaults")
    for old, new in defaults._TO_NEW_KEY.items():
        assert old_name(new) == old
        if old.startswith(("CELERY", "BROKER_")):
            assert celery_settings.SETTINGS[old] == new
    assert celery_settings.SETTINGS["CELERY_TASK_ALWAYS_EAGER"] == "task_always_eager"


def test_generic_bare_names_are_left_alone():
    """S3_BUCKET could be anyone's; only the CELERY_ form of such a setting is read."""
    assert django_names("s3_bucket") == ["CELERY_S3_BUCKET"]
    assert ids(S3_BUCKET="media", TASKQ={}) == []


def test_docs_table_names_every_celery_setting():
    text = DOCS.read_text()
    missing = [name for name in [*celery_settings.HONOURED, *celery_settings.EXPLAINED]
               if f"`{name}`" not in text]
    assert missing == []


# -- honoured -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, value, key, expected", [
    ("CELERY_BROKER_URL", "redis://127.0.0.1:6379/3", "BROKER_URL", "redis://127.0.0.1:6379/3"),
    ("BROKER_URL", "amqp://guest@127.0.0.1//", "BROKER_URL", "amqp://guest@127.0.0.1//"),
    ("CELERY_BROKER_URL", "pyamqp://guest@127.0.0.1//", "BROKER_URL", "pyamqp://guest@127.0.0.1//"),
    ("CELERY_BROKER_URL", "django://", "BROKER_URL", "db://default"),
    ("CELERY_RESULT_BACKEND", "django-db", "RESULT_BACKEND", "db://default"),
    ("CELERY_RESULT_BACKEND", "rediss://h:6380/1?ssl_cert_reqs=CERT_REQUIRED", "RESULT_BACKEND",
     "rediss://h:6380/1?ssl_cert_reqs=required"),
    ("CELERY_TASK_ALWAYS_EAGER", True, "TASK_ALWAYS_EAGER", True),
    ("CELERY_ALWAYS_EAGER", True, "TASK_ALWAYS_EAGER", True),
    ("CELERY_EAGER_PROPAGATES_EXCEPTIONS", True, "TASK_EAGER_PROPAGATES", True),
    ("CELERY_TASK_STORE_EAGER_RESULT", True, "TASK_STORE_EAGER_RESULT", True),
    ("CELERY_TASK_DEFAULT_QUEUE", "celery", "DEFAULT_QUEUE", "celery"),
    ("CELERY_DEFAULT_QUEUE", "celery", "DEFAULT_QUEUE", "celery"),
    ("CELERY_TASK_SERIALIZER", "application/x-msgpack", "TASK_SERIALIZER", "msgpack"),
    ("CELERY_ACCEPT_CONTENT", ["application/json", "yaml"], "ACCEPT_CONTENT", ("json", "yaml")),
    ("CELERY_TASK_RESULT_EXPIRES", timedelta(hours=1), "RESULT_EXPIRES", 3600.0),
    ("CELERY_RESULT_EXPIRES", 600, "RESULT_EXPIRES", 600.0),
    ("CELERYD_CONCURRENCY", 0, "WORKER_CONCURRENCY", None),
    ("CELERY_WORKER_CONCURRENCY", 3, "WORKER_CONCURRENCY", 3),
    ("CELERYD_POOL", "processes", "WORKER_POOL", "prefork"),
    ("CELERY_WORKER_POOL", "gevent", "WORKER_POOL", "gevent"),
    ("CELERYD_POOL", "eventlet", "WORKER_POOL", "eventlet"),
    ("CELERY_WORKER_PREFETCH_MULTIPLIER", 1, "WORKER_PREFETCH_MULTIPLIER", 1),
    ("CELERYD_TASK_TIME_LIMIT", 30, "WORKER_TIME_LIMIT", 30.0),
    ("CELERY_TASK_SOFT_TIME_LIMIT", timedelta(seconds=10), "WORKER_SOFT_TIME_LIMIT", 10.0),
    ("CELERYD_MAX_TASKS_PER_CHILD", 100, "WORKER_MAX_TASKS_PER_CHILD", 100),
    ("CELERY_WORKER_MAX_MEMORY_PER_CHILD", 0, "WORKER_MAX_MEMORY_PER_CHILD", None),
    ("CELERY_TRACK_STARTED", True, "TASK_TRACK_STARTED", True),
    ("CELERY_TASK_ROUTES", {"feeds.*": {"queue": "feeds"}}, "TASK_ROUTES",
     ({"feeds.*": {"queue": "feeds"}},)),
    ("CELERY_ANNOTATIONS", {"*": {"rate_limit": "10/s"}}, "TASK_ANNOTATIONS",
     ({"*": {"rate_limit": "10/s"}},)),
    ("CELERY_TASK_DEFAULT_PRIORITY", 5, "TASK_DEFAULT_PRIORITY", 5),
    ("CELERY_RESULT_EXTENDED", True, "RESULT_EXTENDED", True),
    ("CELERY_TASK_PUBLISH_RETRY", False, "TASK_PUBLISH_RETRY", False),
    ("CELERY_TASK_IGNORE_RESULT", True, "TASK_IGNORE_RESULT", True),
    ("CELERY_WORKER_SEND_TASK_EVENTS", False, "EVENTS", False),
    ("CELERY_SEND_EVENTS", False, "EVENTS", False),
    ("CELERY_TASK_SEND_SENT_EVENT", True, "TASK_SEND_SENT_EVENT", True),
    ("CELERY_SEND_TASK_SENT_EVENT", True, "TASK_SEND_SENT_EVENT", True),
    ("CELERY_TASK_COMPRESSION", "gzip", "TASK_COMPRESSION", "gzip"),
    ("CELERY_MESSAGE_COMPRESSION", "bzip2", "TASK_COMPRESSION", "bzip2"),
    ("CELERY_RESULT_COMPRESSION", "application/x-lzma", "RESULT_COMPRESSION",
     "application/x-lzma"),
])
def test_honoured(name, value, key, expected):
    assert getattr(honoured(**{name: value}), key) == expected


def test_publish_retry_policy_fills_in_celerys_defaults():
    policy = honoured(CELERY_TASK_PUBLISH_RETRY_POLICY={"max_retries": 5}).TASK_PUBLISH_RETRY_POLICY
    assert policy["max_retries"] == 5 and policy["interval_max"] == 1.0


def test_imports_and_include_make_one_list():
    current = honoured(CELERY_IMPORTS=["shop.jobs"], CELERY_INCLUDE=("mail.jobs",))
    assert current.IMPORTS == ("shop.jobs", "mail.jobs")


def test_override_settings_resets_the_cached_settings():
    reset_settings()
    assert get_settings().TASK_ALWAYS_EAGER is False
    with override_settings(CELERY_TASK_ALWAYS_EAGER=True):
        assert get_settings().TASK_ALWAYS_EAGER is True
    assert get_settings().TASK_ALWAYS_EAGER is False


def test_honoured_values_pass_the_taskq_checks():
    with override_settings(TASKQ={}, CELERY_BROKER_URL="redis://127.0.0.1:1/0",
                           CELERY_RESULT_BACKEND="django-db", CELERY_ACCEPT_CONTENT=["json"]):
        assert check_settings() == []


# -- precedence ---------------------------------------------------------------------------------

def test_taskq_key_wins_silently_when_the_values_agree():
    current = honoured(TASKQ={"WORKER_TIME_LIMIT": 60.0}, CELERY_TASK_TIME_LIMIT=60)
    assert current.WORKER_TIME_LIMIT == 60.0


def test_w012_taskq_key_wins_over_a_different_celery_value():
    settings = {"TASKQ": {"BROKER_URL": "memory://"}, "CELERY_BROKER_URL": "redis://h:6379/0"}
    [(id_, message, hint)] = notes(**settings)
    assert id_ == "django_taskq.W012"
    assert "CELERY_BROKER_URL" in message and "TASKQ['BROKER_URL']" in message
    with override_settings(**settings):
        assert get_settings().BROKER_URL == "memory://"


def test_w012_even_when_the_overridden_celery_value_is_unusable():
    found = notes(TASKQ={"RESULT_BACKEND": "memory://"}, CELERY_RESULT_BACKEND="rpc://")
    assert [id_ for id_, _, _ in found] == ["django_taskq.W012"]


def test_w012_new_celery_name_wins_over_the_old_one():
    settings = {"TASKQ": {}, "CELERY_TASK_ALWAYS_EAGER": True, "CELERY_ALWAYS_EAGER": False}
    [(id_, message, _)] = notes(**settings)
    assert id_ == "django_taskq.W012"
    assert "CELERY_ALWAYS_EAGER" in message and "CELERY_TASK_ALWAYS_EAGER is used" in message
    with override_settings(**settings):
        assert get_settings().TASK_ALWAYS_EAGER is True


def test_environment_override_wins_over_a_celery_setting(monkeypatch):
    monkeypatch.setenv("TASKQ_BROKER_URL", "memory://env")
    with override_settings(TASKQ={}, CELERY_BROKER_URL="zookeeper://"):
        assert get_settings().BROKER_URL == "memory://env"  # the bad Celery value is not used


# -- one test per check id ----------------------------------------------------------------------

def test_e010_bad_value_names_the_celery_setting():
    [(id_, message, hint)] = notes(TASKQ={}, CELERY_TASK_ALWAYS_EAGER="yes")
    assert id_ == "django_taskq.E010"
    assert message == "CELERY_TASK_ALWAYS_EAGER = 'yes' is not valid."
    assert hint == "CELERY_TASK_ALWAYS_EAGER must be True or False."
    assert "TASK_ALWAYS_EAGER'" not in message + hint
    with override_settings(TASKQ={}, CELERY_TASK_ALWAYS_EAGER="yes"):
        with pytest.raises(celery_settings.CelerySettingError, match="CELERY_TASK_ALWAYS_EAGER"):
            get_settings()
        assert check_settings() == []  # reported once, by the Celery check


@pytest.mark.django_db(databases="__all__")  # Django 6 checks every database too
def test_e010_stops_manage_py_check():
    with override_settings(TASKQ={}, CELERYD_POOL="greenlets"):
        with pytest.raises(SystemCheckError, match="django_taskq.E010.*CELERYD_POOL"):
            call_command("check")


@pytest.mark.parametrize("name, value, in_hint", [
    ("CELERYD_PREFETCH_MULTIPLIER", -1, "at least 1"),
    ("CELERY_TASK_TIME_LIMIT", 0, "positive"),
    ("CELERY_TASK_SERIALIZER", "xml", "json"),
    ("CELERY_ACCEPT_CONTENT", "json", "list"),
    ("CELERY_WORKER_POOL", "custom", "prefork"),
    ("CELERY_BROKER_URL", "zookeeper://", "no zookeeper broker"),
    ("CELERY_BROKER_URL", "sqla+postgresql://u@h/db", "db://<alias>"),
    ("CELERY_BROKER_URL", "redis://a:6379;redis://b:6379", "one broker URL"),
])
def test_e010_more_bad_values(name, value, in_hint):
    [(id_, message, hint)] = notes(TASKQ={}, **{name: value})
    assert id_ == "django_taskq.E010" and message.startswith(f"{name} = ")
    assert in_hint in hint


def test_e003_hint_names_the_celery_setting_a_bad_url_came_from():
    with override_settings(TASKQ={}, CELERY_BROKER_URL="redis://h:6379/0?socket_timeout=never"):
        [message] = check_settings()
    assert message.id == "django_taskq.E003"
    assert "CELERY_BROKER_URL" in message.hint


def test_w011_no_effect_says_why():
    [(id_, message, hint)] = notes(CELERY_TASK_ACKS_LATE=True)
    assert id_ == "django_taskq.W011"
    assert message == "CELERY_TASK_ACKS_LATE has no effect in django_taskq."
    assert "always acknowledges after the task ran" in hint


@pytest.mark.parametrize("name, value, in_hint", [
    ("CELERY_RESULT_BACKEND", "db+postgresql://u@h/app", "db://<alias>"),
    ("CELERY_RESULT_BACKEND", "mongodb://h/", "no mongodb result backend"),
    ("CELERY_WORKER_PREFETCH_MULTIPLIER", 0, "Unlimited prefetch"),
    ("CELERY_RESULT_EXPIRES", None, "RESULT_EXPIRES"),
    ("CELERY_TIMEZONE", "Europe/Paris", "TIME_ZONE"),
    ("CELERY_ENABLE_UTC", True, "USE_TZ"),
    ("CELERY_WORKER_HIJACK_ROOT_LOGGER", False, "root logger"),
    ("CELERY_REDIRECT_STDOUTS", False, "stdout"),
    ("CELERY_TASK_REJECT_ON_WORKER_LOST", True, "MAX_DELIVERIES"),
    ("BROKER_TRANSPORT_OPTIONS", {"visibility_timeout": 3600}, "LEASE_TIMEOUT"),
    ("CELERY_RESULT_DBURI", "postgresql://u@h/app", "db://<alias>"),
    ("CELERY_EVENT_EXCHANGE", "myev", "celeryev"),
    ("CELERY_EVENT_SERIALIZER", "pickle", "JSON"),
    ("CELERY_EVENT_QUEUE_TTL", 5.0, "TASKQ['EVENTS_EXPIRES']"),
    ("CELERY_EVENT_QUEUE_EXPIRES", 60.0, "event receivers"),
    ("CELERY_EVENT_QUEUE_PREFIX", "myev", "their own Celery configuration"),
    ("CELERY_EVENT_QUEUE_DURABLE", True, "Flower"),
    ("CELERY_EVENT_QUEUE_EXCLUSIVE", True, "Flower"),
])
def test_w011_more(name, value, in_hint):
    [(id_, message, hint)] = notes(TASKQ={}, **{name: value})
    assert id_ == "django_taskq.W011" and message.startswith(name)
    assert in_hint in hint


def test_w011_celerys_environment_variable(monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://h:6379/0")
    [(id_, message, hint)] = notes()
    assert id_ == "django_taskq.W011" and "CELERY_BROKER_URL" in message
    assert "TASKQ_BROKER_URL" in hint
    assert notes(CELERY_BROKER_URL="redis://h:6379/0", TASKQ={}) == []  # settings.py reads it


def test_w013_unknown_celery_setting():
    [(id_, message, hint)] = notes(CELERY_TASK_ALWAYS_EAGR=True)
    assert id_ == "django_taskq.W013"
    assert message == "CELERY_TASK_ALWAYS_EAGR is not a Celery setting: a typo?"
    assert "Did you mean CELERY_TASK_ALWAYS_EAGER?" in hint


def test_celerys_memcached_backend_says_to_declare_it_in_caches():
    [(id_, message, hint)] = notes(TASKQ={}, CELERY_RESULT_BACKEND="cache+memcached://10.0.0.5:11211/")
    assert id_ == "django_taskq.W011" and message.startswith("CELERY_RESULT_BACKEND")
    assert "'LOCATION': '10.0.0.5:11211'" in hint and "'cache://results'" in hint


@pytest.mark.parametrize("name, value", [
    ("CELERY_SECURITY_KEY", "/k.pem"), ("CELERY_SECURITY_CERTIFICATE", "/c.pem"),
    ("CELERY_TASK_SERIALIZER", "auth"), ("CELERY_ACCEPT_CONTENT", ["auth"]),
])
def test_celerys_auth_signing_is_refused_naming_ours(name, value):
    [(id_, message, hint)] = notes(TASKQ={}, **{name: value})
    assert id_ == "django_taskq.W011" and message.startswith(name)
    assert "signs the body only" in hint and "TASKQ['SIGNING_KEYS']" in hint
    assert "docs/security.md" in hint


def test_an_unknown_celery_compression_is_an_error_naming_the_known_ones():
    [(id_, message, hint)] = notes(TASKQ={}, CELERY_TASK_COMPRESSION="snappy")
    assert id_ == "django_taskq.E010"
    assert "snappy" in message + hint and "zlib (gzip)" in message + hint


@pytest.mark.parametrize("name, value, in_hint", [
    ("CELERYBEAT_SCHEDULER", "django_celery_beat.schedulers:DatabaseScheduler",
     "DatabaseScheduler is built in"),
    ("CELERY_BEAT_SCHEDULE_FILENAME", "celerybeat-schedule", "schedules live in the database"),
    ("CELERY_BEAT_CRON_STARTING_DEADLINE", 60, "catch-up policy"),
    ("CELERY_BEAT_ENABLE_REMOTE_CONTROL", True, "Beat instances page shows each beat's last tick"),
])
def test_beat_settings_that_are_not_needed_say_what_replaces_them(name, value, in_hint):
    [(id_, message, hint)] = notes(TASKQ={}, **{name: value})
    assert id_ == "django_taskq.W011" and message.startswith(name)
    assert in_hint in hint


def test_beat_schedule_and_loop_interval_are_honoured():
    schedule = {"hourly": {"task": "tests.echo", "schedule": 3600}}
    with override_settings(TASKQ={}, CELERY_BEAT_SCHEDULE=schedule,
                           CELERY_BEAT_MAX_LOOP_INTERVAL=5):
        assert get_settings().BEAT_SCHEDULE == schedule
        assert get_settings().BEAT_MAX_LOOP_INTERVAL == 5.0


def test_django_cache_results_are_the_cache_store_on_the_cache_backend_alias():
    with override_settings(TASKQ={}, CELERY_RESULT_BACKEND="django-cache"):
        assert get_settings().RESULT_BACKEND == "cache://default"
    with override_settings(TASKQ={}, CELERY_RESULT_BACKEND="django-cache",
                           CELERY_CACHE_BACKEND="results"):
        assert get_settings().RESULT_BACKEND == "cache://results"


def test_celerys_rpc_backend_and_result_persistent_are_translated():
    with override_settings(TASKQ={}, CELERY_RESULT_BACKEND="rpc://",
                           CELERY_RESULT_PERSISTENT=True):
        assert (get_settings().RESULT_BACKEND, get_settings().RESULT_PERSISTENT) == \
            ("rpc://", True)


def test_passwords_are_masked_in_messages():
    [(_, message, _)] = notes(TASKQ={"BROKER_URL": "memory://"},
                              CELERY_BROKER_URL="amqp://app:s3cret@rabbit//")
    assert "s3cret" not in message and "****" in message


def test_celerys_event_switches_are_honoured_and_the_taskq_key_wins():
    with override_settings(TASKQ={"EVENTS": True}, CELERY_WORKER_SEND_TASK_EVENTS=False):
        [message] = check_celery_settings()
        assert message.id == "django_taskq.W012" and get_settings().EVENTS is True
    reset_settings()
    with override_settings(TASKQ={}, CELERY_SEND_EVENTS=True, CELERY_SEND_TASK_SENT_EVENT=True):
        assert check_celery_settings() == []
        assert get_settings().EVENTS is True and get_settings().TASK_SEND_SENT_EVENT is True


def test_a_celery_event_switch_that_is_not_a_bool_is_refused():
    [(id_, message, hint)] = notes(TASKQ={}, CELERY_WORKER_SEND_TASK_EVENTS="yes")
    assert id_ == "django_taskq.E010" and "CELERY_WORKER_SEND_TASK_EVENTS" in message
    assert "True or False" in hint
