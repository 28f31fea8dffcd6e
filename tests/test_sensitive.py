"""A sensitive task's arguments, and those of a call given argsrepr/kwargsrepr, reach the task
and nothing else: no log record, no stored event, no extended result, no admin or dashboard
page, no inspect reply, no dead letter listing (sensitive.py)."""

from __future__ import annotations

import json
import logging
from html import escape

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from django_taskq import task
from django_taskq.brokers import get_broker
from django_taskq.message import SENSITIVE, SendOptions, build_envelope, retry_envelope
from django_taskq.models import TaskEvent, TaskResult
from django_taskq.result import AsyncResult
from django_taskq.worker.job import prepare
from django_taskq.worker.remote import HANDLERS

SECRET = "hunter2-c0rrect-h0rse"
ran: list[str] = []


@task(name="tests.sensitive.login", sensitive=True)
def login(user, password, *, otp=None):
    ran.append(password)
    return "ok"


@task(name="tests.sensitive.rotate", sensitive=True, bind=True)
def rotate(self, token):
    if self.request.retries == 0:
        raise self.retry(args=(token + "-next",), countdown=0)
    ran.append(token)
    return "ok"


@task(name="tests.sensitive.plain")
def plain(user, password):
    ran.append(password)
    return "ok"


@pytest.fixture
def extended(configured, settings):
    settings.TASKQ = {**settings.TASKQ, "RESULT_EXTENDED": True, "EVENTS_DATABASE": "default",
                      "TASK_SEND_SENT_EVENT": True}
    ran.clear()
    return configured


def celery_style(name: str, *args) -> str:
    """A message as a Celery producer sends it: argsrepr the real repr, no marker."""
    envelope = build_envelope(name, args, {}, f"celery-{name}", SendOptions(queue="default"))
    assert SECRET in envelope.headers["argsrepr"]
    get_broker().enqueue(envelope)
    return envelope.message_id


def admin() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw"))
    return client


@pytest.mark.parametrize("broker_kind", ["sqlite", "redis"])
def test_hidden_arguments_reach_the_task_and_nothing_else(extended, make_worker, caplog):
    caplog.set_level(logging.DEBUG)
    ids = [login.delay("bob", SECRET, otp=SECRET).id,
           plain.apply_async(("bob", SECRET), argsrepr="('bob', '...')").id,
           celery_style("tests.sensitive.login", "bob", SECRET)]
    make_worker().run(until_empty=True)
    assert ran == [SECRET] * 3  # the task had the real values

    assert not [r.getMessage() for r in caplog.records if SECRET in r.getMessage()]
    events = list(TaskEvent.objects.filter(task_id__in=ids).values_list("type", "fields"))
    assert {"task-sent", "task-received", "task-succeeded"} <= {kind for kind, _ in events}
    assert SECRET not in json.dumps([fields for _, fields in events])
    received = {e.task_id: e.fields for e in TaskEvent.objects.filter(type="task-received")}
    assert received[ids[0]]["args"] == SENSITIVE and received[ids[2]]["kwargs"] == SENSITIVE
    assert received[ids[1]]["args"] == "('bob', '...')"

    stored = [AsyncResult(i) for i in ids]
    assert [(r.args, r.kwargs) for r in stored] == [
        (SENSITIVE, SENSITIVE), ("('bob', '...')", "{}"), (SENSITIVE, SENSITIVE)]
    client = admin()
    pages = [client.get("/admin/django_taskq/workerstate/"),
             *(client.get(f"/admin/django_taskq/workerstate/task/{i}/") for i in ids)]
    if extended.startswith("db://"):
        rows = TaskResult.objects.filter(task_id__in=ids)
        assert SECRET not in repr(list(rows.values_list("task_args", "task_kwargs")))
        assert rows.get(task_id=ids[0]).task_args == json.dumps(SENSITIVE)
        pages += [client.get("/admin/django_taskq/taskresult/"),
                  *(client.get(f"/admin/django_taskq/taskresult/{row.pk}/change/")
                    for row in rows)]
    assert all(page.status_code == 200 for page in pages)
    assert not [p for p in pages if SECRET in p.content.decode()]
    assert escape(SENSITIVE) in pages[1].content.decode()  # the story page shows the repr


@pytest.mark.parametrize("broker_kind", ["sqlite", "redis"])
def test_inspect_and_dead_letters_show_only_the_reprs(extended, make_worker, capsys):
    login.delay("bob", SECRET)
    plain.apply_async(("bob", SECRET), argsrepr="('bob', '...')", kwargsrepr="{}")
    celery_style("tests.sensitive.login", "bob", SECRET)
    if extended.startswith("db://"):  # the queued rows, on the database broker's admin page
        client = admin()
        from django_taskq.models import QueuedMessage

        pages = [client.get(f"/admin/django_taskq/queuedmessage/{row.pk}/change/")
                 for row in QueuedMessage.objects.all()]
        assert len(pages) == 3 and not [p for p in pages if SECRET in p.content.decode()]
    worker, broker = make_worker(), get_broker()
    deliveries = broker.reserve(["default"], max_messages=3, lease=60, worker="t")
    assert len(deliveries) == 3
    for key, delivery in enumerate(deliveries):
        job, _ = prepare(key, delivery.envelope, accept=("json",), hostname="w",
                         result_serializer="json")
        worker.prefetched.append((delivery, job))
        worker.running[key] = (delivery, job)
    replies = [HANDLERS[name](worker, {"safe": safe}) for name in ("active", "reserved")
               for safe in (False, True)]
    assert all(len(reply) == 3 for reply in replies)
    assert SECRET not in json.dumps(replies)
    assert {r["args"] for r in replies[0]} == {SENSITIVE, "('bob', '...')"}

    worker.prefetched.clear()
    worker.running.clear()
    for delivery in deliveries:
        broker.dead_letter(delivery, "refused for the test")
    call_command("taskq", "dead", "list")
    from django_taskq import deadletters

    for letter in deadletters.list_letters():
        call_command("taskq", "dead", "show", letter.id)
    shown = capsys.readouterr().out
    assert SECRET not in shown and "args (hidden):" in shown and SENSITIVE in shown
    if extended.startswith("db://"):
        from django_taskq.models import DeadLetterMessage

        pages = [client.get(f"/admin/django_taskq/deadlettermessage/{row.pk}/change/")
                 for row in DeadLetterMessage.objects.all()]
        assert len(pages) == 3 and not [p for p in pages if SECRET in p.content.decode()]
        assert all("arguments hidden" in p.content.decode() for p in pages)


def test_a_retry_with_new_arguments_keeps_the_senders_argsrepr():
    options = SendOptions(queue="default", argsrepr="(...)", kwargsrepr="{...}")
    first = build_envelope("tests.sensitive.plain", ("bob", "old"), {}, "r1", options)
    again = retry_envelope(first, eta=None, args=("bob", SECRET))
    assert (again.headers["argsrepr"], again.headers["kwargsrepr"]) == ("(...)", "{...}")
    plain_call = build_envelope("tests.sensitive.plain", ("bob", "x"), {}, "r2",
                                SendOptions(queue="default"))
    assert retry_envelope(plain_call, eta=None, args=("bob", "y")).headers["argsrepr"] == \
        "('bob', 'y')"  # an argsrepr nobody chose follows the new arguments


@pytest.mark.parametrize("broker_kind", ["sqlite", "redis"])
def test_a_sensitive_tasks_retry_hides_new_arguments_sent_without_reprs(extended, make_worker,
                                                                          monkeypatch):
    from django_taskq import producer

    sealed, real_seal_all = [], producer.seal_all
    monkeypatch.setattr(producer, "seal_all",
                        lambda envelopes: sealed.extend(envelopes) or real_seal_all(envelopes))
    task_id = celery_style("tests.sensitive.rotate", SECRET)  # real reprs, as Celery sends
    make_worker().run(until_empty=True)
    assert AsyncResult(task_id).get(timeout=5) == "ok" and ran == [SECRET + "-next"]
    [retry] = [e for e in sealed if e.message_id == task_id]
    assert (retry.headers["argsrepr"], retry.headers["kwargsrepr"]) == (SENSITIVE, SENSITIVE)
