"""Issue 13, the review's additions: gaps in the issue's tests filled where they were small."""

from __future__ import annotations

import json
import uuid

import pytest
from django.core.management import call_command

from django_taskq import chain, chord, deadletters, group, serializers, states, task
from django_taskq.brokers import get_broker
from django_taskq.message import SENSITIVE
from django_taskq.outcome import Outcome
from django_taskq.results import backend_from_url
from django_taskq.results.base import COMPRESSED_MAGIC


def _outcome(value, task_id=None):
    payload, content_type, encoding = serializers.dumps(value)
    return Outcome(task_id=task_id or str(uuid.uuid4()), task_name="t", state=states.SUCCESS,
                   payload=payload, content_type=content_type, content_encoding=encoding)


def test_chord_parts_are_compressed_and_a_celery_workers_compressed_part_is_read(
        redis_url, settings):
    """Celery's Redis backend compresses the ``[1, id, state, result]`` chord entries with
    result_compression too: a chord shared with a Celery worker must read its parts."""
    import redis
    from celery.backends.base import compress_payload

    settings.TASKQ = {**settings.TASKQ, "RESULT_COMPRESSION": "zlib"}
    backend = backend_from_url(redis_url)
    client = redis.Redis.from_url(redis_url)
    group_id = str(uuid.uuid4())
    backend.set_chord_size(group_id, 2)
    assert backend.add_chord_part(group_id, 0, _outcome("ours", "p0")) is None
    [ours] = client.zrange(f"celery-taskset-meta-{group_id}.j", 0, -1)
    assert ours.startswith(COMPRESSED_MAGIC + b"application/x-gzip\x00")
    celerys = compress_payload(json.dumps([1, "p1", "SUCCESS", "celery's"]).encode(), "bzip2")
    client.zadd(f"celery-taskset-meta-{group_id}.j", {celerys: 1})
    client.sadd(f"celery-taskset-meta-{group_id}.d", "p1:1")
    parts = backend.add_chord_part(group_id, 0, _outcome("ours", "p0"))  # a redelivery
    assert [(p.task_id, p.value) for p in parts] == [("p0", "ours"), ("p1", "celery's")]
    client.close()
    backend.close()


def test_the_admin_shows_a_dead_letter_too_deep_or_compressed_without_a_500(db, settings):
    """models.body_preview decoded with json.loads: a deep body raised RecursionError (a 500
    on the dead letter's page), a compressed one showed only its size."""
    import zlib

    from django.contrib.auth.models import User
    from django.test import Client

    from django_taskq.models import DeadLetterMessage

    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "db://default"}
    plain = json.dumps([["a-marker-argument"], {}, {}]).encode()
    rows = [DeadLetterMessage.objects.create(
        queue="default", message_id=name, task_name="t", body=body, headers=headers,
        reason="for the test") for name, body, headers in (
            ("deep", b"[" * 100_000 + b"]" * 100_000, {}),
            ("zipped", zlib.compress(plain), {"compression": "application/x-gzip"}))]
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw"))
    deep, zipped = (client.get(f"/admin/django_taskq/deadlettermessage/{row.pk}/change/")
                    for row in rows)
    assert deep.status_code == 200 and zipped.status_code == 200
    assert "bytes of application/json" in deep.content.decode()
    assert "a-marker-argument" in zipped.content.decode()


SECRET = "review-s3cret-pa55"


@task(name="tests.review13.secret", sensitive=True)
def secret(user, password=None):
    return "ok"


@task(name="tests.review13.refuse", sensitive=True)
def refuse(user, password=None):
    raise ValueError("wrong password")


@task(name="tests.review13.collect")
def collect(values):
    return len(values)


def _everything_shown(ids):
    """What events, stored results, the admin's queued messages and dead letters show."""
    from django.contrib.auth.models import User
    from django.test import Client

    from django_taskq.models import QueuedMessage, TaskEvent
    from django_taskq.result import AsyncResult

    client = Client()
    user = User.objects.filter(username="root").first() or \
        User.objects.create_superuser("root", password="pw")
    client.force_login(user)
    pages = [client.get(f"/admin/django_taskq/queuedmessage/{row.pk}/change/").content.decode()
             for row in QueuedMessage.objects.all()]
    events = list(TaskEvent.objects.values_list("fields", flat=True))
    stored = [(AsyncResult(i).args, AsyncResult(i).kwargs) for i in ids]
    return json.dumps([events, repr(stored)]) + "".join(pages)


@pytest.mark.parametrize("broker_kind", ["sqlite"])
def test_a_sensitive_task_called_through_canvas_shows_no_argument(configured, settings,
                                                                   make_worker, capsys):
    """Its own message carries argsrepr <sensitive>; a chain's or chord's message before it
    carries its arguments in the body's embed, which the admin and taskq dead show print."""
    settings.TASKQ = {**settings.TASKQ, "RESULT_EXTENDED": True, "EVENTS_DATABASE": "default",
                      "TASK_SEND_SENT_EVENT": True}
    sent = [secret.s("bob", password=SECRET).delay(),
            chain(collect.si([1]), secret.si("bob", password=SECRET)).apply_async(),
            group(secret.s("bob", password=SECRET), collect.si([1])).apply_async(),
            chord([secret.s("bob", password=SECRET)], collect.s()).apply_async()]
    shown_queued = _everything_shown([])
    make_worker().run(until_empty=True)
    ids = [sent[0].id, sent[1].id, *(r.id for r in sent[2].results), sent[3].id]
    assert all(succeeded(i) for i in ids)
    shown = shown_queued + _everything_shown(ids)
    assert SECRET not in shown, "the admin showed it"

    chain(collect.si([1]), secret.si("bob", password=SECRET),
          collect.si([SECRET]).set(argsrepr="([...],)")).apply_async()
    broker = get_broker()
    [delivery] = broker.reserve(["default"], max_messages=1, lease=60, worker="t")
    broker.dead_letter(delivery, "refused for the test")
    [letter] = deadletters.list_letters()
    call_command("taskq", "dead", "show", letter.id)
    out = capsys.readouterr().out
    assert "embed:" in out and SENSITIVE in out and "([...],)" in out and SECRET not in out


def succeeded(task_id):
    from django_taskq.result import AsyncResult

    return AsyncResult(task_id).state == states.SUCCESS


@task(name="tests.review13.packed", compression="bzip2", serializer="yaml")
def packed(x):
    return x


@pytest.mark.parametrize("broker_kind", ["memory"])
def test_serializer_and_compression_a_call_over_the_task_over_the_settings(configured,
                                                                           settings):
    settings.TASKQ = {**settings.TASKQ, "TASK_COMPRESSION": "xz", "TASK_SERIALIZER": "msgpack"}

    def sent(result):
        [delivery] = get_broker().reserve(["default"], max_messages=1, lease=10, worker="t")
        assert delivery.envelope.message_id == result.id
        made = delivery.envelope
        return made.content_type, made.headers.get("compression")

    assert sent(collect.delay([1])) == ("application/x-msgpack", "application/x-lzma")
    assert sent(packed.delay(1)) == ("application/x-yaml", "application/x-bz2")
    assert sent(packed.apply_async((1,), serializer="json", compression="zlib")) == \
        ("application/json", "application/x-gzip")
    assert sent(secret.s("bob").set(compression="zlib").delay()) == \
        ("application/x-msgpack", "application/x-gzip")


@pytest.mark.parametrize("broker_kind", ["sqlite"])
def test_an_eager_run_of_a_sensitive_task_stores_only_its_reprs(configured, settings):
    from django_taskq.result import AsyncResult

    settings.TASKQ = {**settings.TASKQ, "TASK_ALWAYS_EAGER": True, "RESULT_EXTENDED": True,
                      "TASK_STORE_EAGER_RESULT": True}
    ran = secret.delay("bob", password=SECRET)
    stored = AsyncResult(ran.id)
    assert stored.state == states.SUCCESS
    assert (stored.args, stored.kwargs) == (SENSITIVE, SENSITIVE)


def test_msgpack_yaml_and_pickle_messages_run_and_their_results_come_back(configured, settings,
                                                                          make_worker):
    """The built-in codecs end to end on each broker: listed in ACCEPT_CONTENT, used per call,
    and RESULT_SERIALIZER for what the worker stores."""
    from tests.helpers import drain
    from tests.testapp import tasks

    settings.TASKQ = {**settings.TASKQ, "ACCEPT_CONTENT": ["json", "msgpack", "yaml", "pickle"],
                      "RESULT_SERIALIZER": "pickle"}
    sent = {name: tasks.add.apply_async((2, index), serializer=name)
            for index, name in enumerate(("msgpack", "yaml", "pickle"))}
    worker = make_worker()
    for result in sent.values():
        drain(worker, result)
    assert {name: result.get(timeout=5) for name, result in sent.items()} == \
        {"msgpack": 2, "yaml": 3, "pickle": 4}


@pytest.mark.parametrize("broker_kind", ["sqlite", "redis"])
def test_the_dashboard_retry_refuses_a_failed_sensitive_task(configured, settings, make_worker):
    """Its stored arguments are the reprs: retrying would send '<sensitive>' as arguments."""
    from django_taskq.dashboard.retry import RetryRefused, retry
    from tests.helpers import drain

    settings.TASKQ = {**settings.TASKQ, "RESULT_EXTENDED": True}
    failed = refuse.delay("bob", password=SECRET)
    drain(make_worker(), failed)
    assert failed.state == states.FAILURE
    with pytest.raises(RetryRefused, match="stored as text \\(hidden: a sensitive task"):
        retry(failed.id)
    assert get_broker().size("default") == 0


@pytest.mark.parametrize("broker_kind", ["sqlite", "postgres"])
def test_a_database_row_nested_past_pythons_limit_is_dead_lettered_not_fatal(configured,
                                                                             make_worker):
    """SQLite and PostgreSQL take JSON 999 levels deep; json.loads raised RecursionError out of
    the database broker's reserve, at every delivery (a poison row stopped every worker)."""
    from django.db import connections

    from django_taskq.models import QueuedMessage
    from django_taskq.result import AsyncResult
    from tests.helpers import dead_letters, drain
    from tests.testapp import tasks

    hostile = tasks.add.delay(1, 1)
    alias = get_broker().alias
    row = QueuedMessage.objects.using(alias).get(message_id=hostile.id)
    with connections[alias].cursor() as cursor:
        cursor.execute(f"UPDATE {QueuedMessage._meta.db_table} SET headers = %s WHERE id = %s",
                       ["[" * 999 + "]" * 999, row.pk])
    good = tasks.add.delay(2, 2)
    drain(make_worker(), good)
    assert AsyncResult(good.id).get(timeout=5) == 4
    [(_, reason)] = dead_letters(get_broker())
    assert "no 'task' header" in reason
