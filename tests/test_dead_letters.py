"""Dead letters on every broker: list, get, requeue and purge; ``manage.py taskq dead``; admin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from django_taskq import deadletters
from django_taskq.brokers import get_broker
from django_taskq.brokers.database import DatabaseBroker
from django_taskq.models import DeadLetterMessage
from tests.helpers import envelope

LEASE = 30.0
ROOT = Path(__file__).resolve().parent.parent
UNKNOWN = "0123456789abcdef"  # well formed on every broker, names nothing
needs_fake_clock = pytest.mark.needs_fake_clock


def reserve(broker, n=10, wait=5.0):
    """Up to ``n`` deliveries from "default"; waits up to ``wait`` for the first (RabbitMQ
    pushes them asynchronously)."""
    deadline = time.monotonic() + wait
    got = []
    while True:
        got += broker.reserve(["default"], max_messages=n - len(got), lease=LEASE, worker="w",
                              timeout=0.05)
        if len(got) >= n or time.monotonic() > deadline:
            return got


def bury(broker, reason="bad: it broke", **options):
    """Enqueue a message, reserve it and dead-letter it; returns the envelope sent."""
    sent = envelope(**options)
    broker.enqueue(sent)
    [delivery] = reserve(broker, n=1)
    broker.dead_letter(delivery, reason)
    return sent


def ids_of(broker):
    return [letter.id for letter in broker.dead_letter_list(1000)]


# -- the broker methods ---------------------------------------------------------------------

def test_dead_letter_lifecycle(broker):
    sent = bury(broker, "bad: it broke\nsecond line", args=(2, 3), kwargs={"k": "v"})
    [letter] = broker.dead_letter_list()
    assert letter.id and letter.message_id == sent.message_id
    assert letter.reason == "bad: it broke\nsecond line"
    assert letter.attempts == 1
    assert letter.envelope.queue == "default" and letter.envelope.body == sent.body
    assert broker.dead_letter_count() == 1

    got = broker.dead_letter_get(letter.id)
    assert got is not None
    assert (got.id, got.message_id, got.reason, got.envelope.body) == (
        letter.id, sent.message_id, letter.reason, sent.body)

    assert broker.dead_letter_requeue([letter.id]) == 1
    assert broker.dead_letter_list() == [] and broker.dead_letter_count() == 0
    assert broker.dead_letter_get(letter.id) is None
    [again] = reserve(broker, n=1)
    assert again.message_id == sent.message_id and again.envelope.body == sent.body
    assert again.attempts == 1  # a fresh delivery
    assert not any(key.startswith("x-taskq") for key in again.envelope.headers)

    broker.dead_letter(again, "bad: twice")
    [second] = broker.dead_letter_list()
    assert second.reason == "bad: twice"
    assert broker.dead_letter_purge([second.id]) == 1
    assert broker.dead_letter_count() == 0
    assert reserve(broker, wait=0.3) == []  # purged is gone, not requeued


def test_unknown_ids_are_skipped(broker):
    bury(broker)
    for name in (UNKNOWN, "nope", ""):
        assert broker.dead_letter_get(name) is None
        assert broker.dead_letter_requeue([name]) == 0
        assert broker.dead_letter_purge([name]) == 0
    assert broker.dead_letter_requeue([]) == 0  # no ids is not "all"
    assert broker.dead_letter_purge([]) == 0
    assert broker.dead_letter_count() == 1


def test_only_the_named_letters_go_and_the_others_keep_their_ids(broker):
    first, second, third = (bury(broker, f"bad: {n}") for n in range(3))
    letters = broker.dead_letter_list()
    assert [d.message_id for d in letters] == [
        first.message_id, second.message_id, third.message_id]
    assert broker.dead_letter_requeue([letters[1].id, UNKNOWN]) == 1
    assert ids_of(broker) == [letters[0].id, letters[2].id]
    [back] = reserve(broker, n=1)
    assert back.message_id == second.message_id
    assert broker.dead_letter_purge([letters[2].id]) == 1
    assert [d.message_id for d in broker.dead_letter_list()] == [first.message_id]


def test_list_pages_with_limit_and_offset(broker):
    sent = [bury(broker, f"bad: {n}") for n in range(4)]
    page = broker.dead_letter_list(2, 1)
    assert [d.message_id for d in page] == [sent[1].message_id, sent[2].message_id]
    assert broker.dead_letter_list(10, 3)[0].message_id == sent[3].message_id
    assert broker.dead_letter_list(10, 4) == []


def test_requeue_all_and_purge_all(broker):
    sent = {bury(broker).message_id for _ in range(3)}
    assert broker.dead_letter_requeue(None) == 3
    assert broker.dead_letter_count() == 0
    back = reserve(broker, n=3)
    assert {d.message_id for d in back} == sent and {d.attempts for d in back} == {1}
    for delivery in back:
        broker.dead_letter(delivery, "bad: again")
    assert broker.dead_letter_purge(None) == 3
    assert broker.dead_letter_list() == []


def test_requeue_keeps_priority_and_queue(broker):
    sent = envelope(queue="other", priority=9)
    broker.enqueue(sent)
    [delivery] = broker.reserve(["other"], max_messages=1, lease=LEASE, worker="w", timeout=5)
    broker.dead_letter(delivery, "bad")
    [letter] = broker.dead_letter_list()
    assert letter.envelope.queue == "other"
    assert broker.dead_letter_requeue([letter.id]) == 1
    [back] = broker.reserve(["other"], max_messages=1, lease=LEASE, worker="w", timeout=5)
    assert (back.message_id, back.envelope.priority, back.attempts) == (
        sent.message_id, 9, 1)
    broker.ack(back)


@needs_fake_clock
def test_worker_lost_letter_comes_back_with_its_count_reset(broker, clock):
    sent = envelope()
    broker.enqueue(sent)
    for _ in range(3):
        assert len(reserve(broker, n=1)) == 1
        clock.advance(LEASE + 1)
        broker.recover()
    [letter] = broker.dead_letter_list()
    assert letter.attempts == 3 and "worker lost" in letter.reason
    assert broker.dead_letter_requeue([letter.id]) == 1
    [back] = reserve(broker, n=1)
    assert (back.message_id, back.attempts) == (sent.message_id, 1)


def test_dead_letters_know_when_they_died(broker, broker_kind, clock):
    bury(broker)
    [letter] = broker.dead_letter_list()
    if broker_kind in ("memory", "redis"):  # on the broker's clock
        assert letter.dead_at is not None and abs((letter.dead_at - clock()).total_seconds()) < 1
    else:
        assert letter.dead_at is not None


@pytest.mark.parametrize("broker_kind", ["sqlite", "postgres", "mariadb"])
def test_database_requeue_is_one_transaction(broker, broker_kind, monkeypatch):
    assert isinstance(broker, DatabaseBroker)
    bury(broker)
    [letter] = broker.dead_letter_list()

    def broken(*args, **kwargs):
        raise RuntimeError("insert failed")

    monkeypatch.setattr(type(broker._rows()), "bulk_create", broken)
    with pytest.raises(RuntimeError):
        broker.dead_letter_requeue([letter.id])
    monkeypatch.undo()
    assert ids_of(broker) == [letter.id]  # the delete was rolled back with the insert


# -- the service module ---------------------------------------------------------------------

def test_queue_filter_reads_past_other_queues(broker, monkeypatch):
    monkeypatch.setattr(deadletters, "PAGE", 2)
    for queue in ("a", "a", "a", "b", "a", "b"):
        sent = envelope(queue=queue)
        broker.enqueue(sent)
        [delivery] = broker.reserve([queue], max_messages=1, lease=LEASE, worker="w", timeout=5)
        broker.dead_letter(delivery, f"bad: {queue}")
    only_b = deadletters.list_letters(broker, queue="b")
    assert [d.reason for d in only_b] == ["bad: b", "bad: b"]
    assert len(deadletters.list_letters(broker, queue="a", limit=3)) == 3
    assert deadletters.list_letters(broker, queue="zzz") == []


def test_body_is_decoded_only_when_json():
    from django_taskq.brokers.base import DeadLetter

    sent = envelope(args=(1, "x"), kwargs={"k": [1]})
    body = deadletters.body_of(DeadLetter(sent, "bad", 1))
    assert body.decoded and body.args == [1, "x"] and body.kwargs == {"k": [1]}
    pickled = DeadLetter(envelope().__class__(queue="q", body=b"\x80\x04K\x01.", headers={},
                                              content_type="application/x-python-serialize"),
                         "bad", 1)
    shown = deadletters.body_of(pickled)
    assert not shown.decoded and shown.raw == repr(b"\x80\x04K\x01.")


# -- manage.py taskq dead -------------------------------------------------------------------

def taskq(*args):
    out, err = StringIO(), StringIO()
    call_command("taskq", *args, stdout=out, stderr=err)
    return out.getvalue()


def test_command_lists_shows_and_requeues(configured):
    broker = get_broker()
    sent = bury(broker, "bad: " + "long reason " * 20, args=(7, 8), kwargs={"key": "val"})
    [letter] = broker.dead_letter_list()

    listing = taskq("dead", "list")
    header, row = listing.splitlines()[:2]
    assert header.split() == ["ID", "TASK", "QUEUE", "ATTEMPTS", "DIED", "REASON"]
    assert row.split()[:4] == [letter.id, "tests.testapp.tasks.add", "default", "1"]
    assert "long reason" in row and row.endswith("…") and len(row) < 200
    assert "1 shown, 1 dead letter(s) in all." in listing

    shown = taskq("dead", "show", letter.id)
    assert f"task id:      {sent.message_id}" in shown
    assert ("long reason " * 20).strip() in shown  # in full
    assert "args:\n  [\n    7,\n    8\n  ]\n" in shown  # decoded
    assert '"key": "val"' in shown and '"task": "tests.testapp.tasks.add"' in shown

    assert "Requeued 1 dead letter(s)." in taskq("dead", "requeue", letter.id)
    assert taskq("dead", "list").strip() == "No dead letters."
    [back] = reserve(broker, n=1)
    assert (back.message_id, back.attempts) == (sent.message_id, 1)


def test_command_list_filters_by_queue_and_limits(configured):
    broker = get_broker()
    for _ in range(3):
        bury(broker)
    listing = taskq("dead", "list", "--limit", "2")
    assert len(listing.strip().splitlines()) == 1 + 2 + 2  # header, rows, blank, footer
    assert "2 shown, 3 dead letter(s) in all." in listing
    assert "No dead letters from queue 'other' (of 3 in all)." in taskq(
        "dead", "list", "--queue", "other")
    with pytest.raises(CommandError, match="positive whole number"):
        taskq("dead", "list", "--limit", "0")


def test_command_refuses_unknown_ids_and_missing_ids(configured):
    broker = get_broker()
    bury(broker)
    [letter] = broker.dead_letter_list()
    with pytest.raises(CommandError, match=f"unknown dead letter id\\(s\\): {UNKNOWN}$"):
        taskq("dead", "requeue", letter.id, UNKNOWN)
    with pytest.raises(CommandError, match="unknown dead letter id"):
        taskq("dead", "show", UNKNOWN)
    with pytest.raises(CommandError, match="or --all"):
        taskq("dead", "requeue")
    with pytest.raises(CommandError, match="not both"):
        taskq("dead", "requeue", letter.id, "--all")
    with pytest.raises(CommandError, match="or --all"):
        taskq("dead", "purge", "--yes")
    assert ids_of(broker) == [letter.id]  # nothing was requeued on the way


def test_command_purge_needs_yes(configured):
    broker = get_broker()
    bury(broker)
    bury(broker)
    first, second = ids_of(broker)
    with pytest.raises(CommandError, match="pass --yes"):
        taskq("dead", "purge", first)
    with pytest.raises(CommandError, match="pass --yes"):
        taskq("dead", "purge", "--all")
    assert ids_of(broker) == [first, second]
    assert "Purged 1 dead letter(s)." in taskq("dead", "purge", first, "--yes")
    assert ids_of(broker) == [second]
    assert "Purged 1 dead letter(s)." in taskq("dead", "purge", "--all", "--noinput")
    assert broker.dead_letter_count() == 0
    assert reserve(broker, wait=0.3) == []


def test_command_requeue_all(configured):
    broker = get_broker()
    sent = {bury(broker).message_id for _ in range(2)}
    assert "Requeued 2 dead letter(s)." in taskq("dead", "requeue", "--all")
    assert {d.message_id for d in reserve(broker, n=2)} == sent


def manage(*args, **env):
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
                   "TASKQ_TEST_OVERRIDES": json.dumps({"BROKER_URL": "memory://"}), **env}
    return subprocess.run([sys.executable, "-m", "django", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=60, check=False)


def test_command_exit_codes():
    listed = manage("taskq", "dead", "list")
    assert (listed.returncode, listed.stdout.strip()) == (0, "No dead letters.")
    unknown = manage("taskq", "dead", "requeue", UNKNOWN)
    assert unknown.returncode == 1 and f"unknown dead letter id(s): {UNKNOWN}" in unknown.stderr
    usage = manage("taskq", "dead")
    assert usage.returncode == 2 and "<action>" in usage.stderr
    neither = manage("taskq", "dead", "requeue")
    assert neither.returncode == 2 and "or --all" in neither.stderr
    refused = manage("taskq", "dead", "purge", "--all")
    assert refused.returncode == 1 and "pass --yes" in refused.stderr


# -- admin ----------------------------------------------------------------------------------

def staff(username, *perms):
    user = User.objects.create_user(username, password="pw", is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename,
                                                         content_type__app_label="django_taskq"))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db(transaction=True)
def test_admin_action_needs_the_requeue_permission():
    broker = DatabaseBroker(alias="default")
    sent = bury(broker)
    [row] = DeadLetterMessage.objects.all()
    url = reverse("admin:django_taskq_deadlettermessage_changelist")
    post = {"action": "requeue_selected", "_selected_action": [row.pk]}

    viewer = staff("viewer", "view_deadlettermessage")
    assert "requeue_selected" not in viewer.get(url).content.decode()
    viewer.post(url, post)
    assert DeadLetterMessage.objects.filter(pk=row.pk).exists()  # not run
    assert broker.size("default") == 0

    operator = staff("operator", "view_deadlettermessage", "requeue_deadlettermessage")
    page = operator.get(url).content.decode()
    assert "requeue_selected" in page and "Requeue selected dead letters" in page
    response = operator.post(url, post, follow=True)
    assert "Requeued 1 dead letter(s)." in response.content.decode()
    assert not DeadLetterMessage.objects.exists()
    [back] = reserve(broker, n=1)
    assert (back.message_id, back.attempts) == (sent.message_id, 1)


@pytest.mark.django_db(transaction=True)
def test_admin_action_refuses_a_letter_refused_for_its_signature_with_a_message():
    broker = DatabaseBroker(alias="default")
    bury(broker, "signature refused: bad signature")
    [row] = DeadLetterMessage.objects.all()
    operator = staff("operator", "view_deadlettermessage", "requeue_deadlettermessage")
    url = reverse("admin:django_taskq_deadlettermessage_changelist")
    response = operator.post(url, {"action": "requeue_selected", "_selected_action": [row.pk]},
                             follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Nothing requeued" in page and "signature" in page
    assert DeadLetterMessage.objects.filter(pk=row.pk).exists()  # kept, not laundered
    assert broker.size("default") == 0


def test_admin_broker_page(configured):
    broker = get_broker()
    sent = bury(broker, "bad: shown on the page")
    [letter] = broker.dead_letter_list()
    url = reverse("admin:django_taskq_deadlettermessage_broker")

    assert staff("nobody").get(url).status_code == 403
    viewer = staff("viewer", "view_deadlettermessage")
    page = viewer.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert letter.id in html and sent.message_id in html and "bad: shown on the page" in html
    assert 'name="letter_id"' not in html  # no requeue controls without the permission
    assert viewer.post(url, {"letter_id": letter.id}).status_code == 403
    assert broker.dead_letter_count() == 1

    operator = staff("operator", "view_deadlettermessage", "requeue_deadlettermessage")
    assert 'name="letter_id"' in operator.get(url).content.decode()
    response = operator.post(url, {"letter_id": letter.id}, follow=True)
    assert "Requeued 1 dead letter(s)." in response.content.decode()
    assert broker.dead_letter_count() == 0
    [back] = reserve(broker, n=1)
    assert (back.message_id, back.attempts) == (sent.message_id, 1)


def test_admin_broker_page_posts_need_csrf(configured):
    broker = get_broker()
    bury(broker)
    [letter] = broker.dead_letter_list()
    user = User.objects.create_superuser("root", password="pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    url = reverse("admin:django_taskq_deadlettermessage_broker")
    assert client.post(url, {"requeue_all": "1"}).status_code == 403
    assert client.post(url, {"letter_id": letter.id}).status_code == 403
    assert broker.dead_letter_count() == 1
    changelist = client.get(reverse("admin:django_taskq_deadlettermessage_changelist"))
    assert url in changelist.content.decode()  # linked from the dead letter list
