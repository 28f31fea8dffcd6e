"""Review of issue 12 (monitoring): defects found, each with the test that shows it."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from django_taskq.events import store
from django_taskq.events.dispatcher import EventDispatcher
from tests.conftest import require_alias


def _event(kind, ts, **fields):
    return {"type": kind, "timestamp": ts, "hostname": fields.pop("hostname", "w1"), "pid": 1,
            "clock": 1, "utcoffset": 0, **fields}


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def events_alias(request):
    return require_alias(request.param)


MINUTE = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc).timestamp()


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_an_odd_event_never_blocks_the_events_after_it(events_alias):
    """A NUL in an exception (PostgreSQL refuses it in text and jsonb), a lone surrogate, a
    NaN runtime, a name past the column: each stored as well as it can be, never a batch that
    fails on every flush forever."""
    from django_taskq.events.models import TaskCounter, TaskEvent

    dispatcher = EventDispatcher("w1", [store.DatabaseEventSink(events_alias)])
    dispatcher.send("task-failed", uuid="nul", name="t.nul", exception="ValueError: a\x00b",
                    traceback="Traceback\nValueError: a\x00b", runtime=0.1)
    dispatcher.send("task-failed", uuid="sur", name="t.sur", exception="ValueError: \udcff",
                    traceback="", runtime=0.1)
    dispatcher.send("task-succeeded", uuid="nan", name="t.nan", result="1",
                    runtime=float("nan"))
    dispatcher.send("task-succeeded", uuid="long", name="t." + "x" * 300, result="1",
                    runtime=0.1)
    dispatcher.send("task-succeeded", uuid="ok", name="t.ok", result="1", runtime=0.1)
    dispatcher.flush()
    events = TaskEvent.objects.using(events_alias)
    assert set(events.values_list("task_id", flat=True)) == {"nul", "sur", "nan", "long", "ok"}
    assert "a\\x00b" in events.get(task_id="nul").fields["exception"]
    counters = TaskCounter.objects.using(events_alias)
    assert counters.get(task_name="t.ok", key="state:SUCCESS").value == 1
    assert counters.get(task_name="t.nul", key="state:FAILURE").value == 1


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_an_event_the_database_refuses_is_dropped_alone(events_alias, caplog):
    """A heartbeat whose ``active`` the column refuses (negative): the task event beside it
    is stored, and the refused one does not come back at the next flush."""
    from django_taskq.events.models import TaskEvent, WorkerState

    dispatcher = EventDispatcher("w1", [store.DatabaseEventSink(events_alias)])
    dispatcher.send("worker-heartbeat", freq=2.0, active=-1, processed=1)
    dispatcher.send("task-succeeded", uuid="ok", name="t.ok", result="1", runtime=0.1)
    dispatcher.flush()
    assert list(TaskEvent.objects.using(events_alias).values_list("task_id", flat=True)) == ["ok"]
    assert not WorkerState.objects.using(events_alias).exists()
    assert "dropped" in caplog.text
    dispatcher.send("worker-heartbeat", freq=2.0, active=1, processed=2)
    dispatcher.flush()
    assert WorkerState.objects.using(events_alias).get(hostname="w1").active == 1
    assert not any(box.pending for box in dispatcher._outboxes)


@pytest.mark.django_db(transaction=True)
def test_a_batch_refused_whole_is_kept(monkeypatch):
    """Nothing of the batch can be stored (say a table is missing): it is kept, as before."""
    from django.db import ProgrammingError

    sink = store.DatabaseEventSink("default")

    def missing(rows):
        raise ProgrammingError('relation "taskq_event" does not exist')

    monkeypatch.setattr(sink, "_insert", missing)
    dispatcher = EventDispatcher("w1", [sink])
    for uuid in ("a", "b"):
        dispatcher.send("task-succeeded", uuid=uuid, name="t.ok", result="1", runtime=0.1)
    dispatcher.flush()
    assert len(dispatcher._outboxes[0].pending) == 2


# -- remote control ---------------------------------------------------------------------------

@pytest.fixture
def idle_worker(settings):
    """A threads worker of 2 slots on queues a and b whose loop does not run (yet)."""
    from django_taskq.worker import Worker, WorkerOptions

    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "memory://", "RESULT_BACKEND": "memory://"}
    worker = Worker(WorkerOptions.from_settings(pool="threads", concurrency=2,
                                                queues=("a", "b")), monitor=False)
    worker.pool.start()
    yield worker
    worker.heartbeat.stop()
    worker.pool.stop()


def test_commands_read_in_one_poll_are_checked_against_each_other(idle_worker):
    """Two shrinks of a 2-slot pool, both read before the loop applies the first: the second
    is refused (it left a pool of 0 slots: a worker online that never runs a task); two
    cancels of its two queues likewise (it consumed nothing); an add twice adds once."""
    from django_taskq.worker.remote import RemoteControl

    remote = RemoteControl(idle_worker)
    assert remote.run("pool_shrink", {"n": 1}) == {"ok": "pool will shrink"}
    assert "cannot shrink a pool of 1 by 1" in remote.run("pool_shrink", {"n": 1})["error"]
    assert "ok" in remote.run("cancel_consumer", {"queue": "a"})
    assert "only queue" in remote.run("cancel_consumer", {"queue": "b"})["error"]
    assert "not consuming" in remote.run("cancel_consumer", {"queue": "a"})["error"]
    assert "ok" in remote.run("add_consumer", {"queue": "c"})
    assert "already" in remote.run("add_consumer", {"queue": "c"})["ok"]
    assert "ok" in remote.run("pool_grow", {"n": 3})
    idle_worker.apply_changes()
    assert (idle_worker.pool_size(), idle_worker.options.queues) == (4, ("b", "c"))
    assert idle_worker.planned == {}  # from now on the worker's own state tells


def test_a_reply_that_cannot_be_posted_does_not_skip_the_next_commands(idle_worker,
                                                                        monkeypatch):
    from django_taskq.worker.remote import RemoteControl

    store = idle_worker.control_store()
    remote = RemoteControl(idle_worker)
    sent = []

    def flaky(command_id, hostname, reply):
        if not sent:
            sent.append(None)
            raise ConnectionError("store down for a moment")
        sent.append(command_id)

    monkeypatch.setattr(store, "send_reply", flaky)
    for command_id, name in (("1", "ping"), ("2", "pool_grow"), ("3", "ping")):
        store.broadcast({"id": command_id, "name": name, "arguments": {}, "destination": None,
                         "reply": True, "expires_at": 4e9})
    assert remote.poll() == 3
    assert sent == [None, "2", "3"]
    idle_worker.apply_changes()
    assert idle_worker.pool_size() == 3


# -- dashboard --------------------------------------------------------------------------------

def _admin_client():
    from django.contrib.auth.models import User
    from django.test import Client

    user = User.objects.create_superuser(f"rev{User.objects.count()}", password="pw")
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db(transaction=True)
def test_a_failure_without_a_task_id_does_not_break_the_dashboard(settings):
    """A message with no id that the worker rejects sends task-failed with uuid None; with
    results outside the database the failures table lists it from the events, and the link
    to its story (whose URL needs an id) made the whole page fail (NoReverseMatch)."""
    import time

    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "memory://",
                      "RESULT_BACKEND": "memory://", "EVENTS_DATABASE": "default"}
    store.DatabaseEventSink("default").publish([
        {"type": "task-failed", "uuid": None, "name": "", "hostname": "w1",
         "timestamp": time.time(), "exception": "BadMessage: <b>not JSON</b>", "traceback": ""},
        {"type": "task-started", "uuid": "", "name": "t.x", "hostname": "w1",
         "timestamp": time.time()},
    ])
    page = _admin_client().get("/admin/django_taskq/workerstate/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "BadMessage: &lt;b&gt;not JSON&lt;/b&gt;" in html


# -- the database mailbox ---------------------------------------------------------------------

def _command(name):
    import time

    return {"id": name, "name": "ping", "arguments": {}, "destination": None, "reply": False,
            "expires_at": time.time() + 60}


@pytest.mark.django_db(transaction=True, databases="__all__")
@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_a_command_committed_after_a_later_one_is_still_read(kind):
    """Command A's row takes its id first but commits last (its sender was in a transaction,
    ATOMIC_REQUESTS say); a worker that read B meanwhile went past A's id for good."""
    import threading

    from django.db import connections, transaction

    from django_taskq.control.database import DatabaseControlStore

    alias = require_alias(kind)
    store = DatabaseControlStore(alias)
    cursor, _ = store.read_commands(None)
    inserted, commit = threading.Event(), threading.Event()

    def sender_in_a_transaction():
        try:
            with transaction.atomic(using=alias):
                store.broadcast(_command("A"))
                inserted.set()
                commit.wait(10)
        finally:
            connections[alias].close()

    sender = threading.Thread(target=sender_in_a_transaction)
    sender.start()
    assert inserted.wait(10)
    store.broadcast(_command("B"))
    cursor, first = store.read_commands(cursor)
    commit.set()
    sender.join(10)
    cursor, second = store.read_commands(cursor)
    assert [c["id"] for c in first] == ["B"] and [c["id"] for c in second] == ["A"]
    assert store.read_commands(cursor)[1] == []  # each read once


def test_the_database_cursor_keeps_few_holes_and_only_recent_ones():
    from django_taskq.control.mailboxes import HOLE_SPAN, HOLES, _next_cursor, _parse_cursor

    assert _next_cursor(10, [], [12, 14]) == "14:11,13"
    assert _next_cursor(14, [11, 13], [13]) == "14:11"
    top, holes = _parse_cursor(_next_cursor(0, [], [10**9]))
    assert top == 10**9 and len(holes) == HOLES and min(holes) > top - HOLE_SPAN


@pytest.mark.django_db(transaction=True)
def test_waiting_for_replies_inside_a_transaction_is_refused_with_the_fix():
    """Inside a transaction no worker sees the command before the commit: the caller waited
    its timeout for nothing (None, "no worker answered") and the workers ran it afterwards."""
    from django.db import transaction

    from django_taskq.control.database import DatabaseControlStore
    from django_taskq.control.remote import Control
    from django_taskq.exceptions import ControlStoreError
    from django_taskq.models import ControlCommand

    control = Control(DatabaseControlStore("default"))
    with transaction.atomic(), pytest.raises(ControlStoreError, match="non_atomic_requests"):
        control.inspect(timeout=0.1).ping()
    assert not ControlCommand.objects.exists()
    with transaction.atomic():
        control.pool_grow()  # no reply wanted: it goes when the transaction commits
    assert ControlCommand.objects.get().name == "pool_grow"


@pytest.mark.django_db(transaction=True)
def test_the_control_store_prunes_its_own_mailbox(settings):
    """Commands and replies live in the control store's alias; only the events' prune (in
    EVENTS_DATABASE, and not at all when it is None) deleted them: every inspect() added rows
    for ever."""
    import time

    from django_taskq.control.database import DatabaseControlStore
    from django_taskq.models import ControlCommand, ControlReply

    settings.TASKQ = {**settings.TASKQ, "EVENTS_DATABASE": None}
    now = [time.time()]
    store = DatabaseControlStore("default", now=lambda: now[0])
    store.broadcast({**_command("old"), "expires_at": now[0] + 60})
    store.send_reply("old", "w1", {"ok": "pong"})
    store.broadcast({**_command("new"), "expires_at": now[0] + 7200})
    now[0] += 3700
    store.prune()
    assert list(ControlCommand.objects.values_list("command_id", flat=True)) == ["new"]
    assert not ControlReply.objects.exists()


def test_inspect_shows_the_arguments_themselves_as_celery_does(idle_worker):
    """Celery's ``inspect().active()``/``reserved()`` give a request's args as a list and its
    kwargs as a dict (their reprs only with ``safe=True``); a value JSON cannot carry goes as
    the repr."""
    from datetime import date

    from django_taskq.context import Request
    from django_taskq.worker.job import Job
    from django_taskq.worker.remote import RemoteControl

    def job(key, *args, **kwargs):
        request = Request(id=f"id{key}", task="t.x", args=args, kwargs=kwargs, hostname="h")
        return Job(key=key, task_name="t.x", request=request, ignore_result=False,
                   result_serializer="json")

    idle_worker.prefetched.extend([(None, job(1, 2, 3, to="a")),
                                   (None, job(2, date(2026, 1, 2)))])
    remote = RemoteControl(idle_worker)
    plain, odd = remote.run("reserved", {"safe": None})
    assert (plain["args"], plain["kwargs"]) == ([2, 3], {"to": "a"})
    assert odd["args"] == "(datetime.date(2026, 1, 2),)"
    safe = remote.run("reserved", {"safe": True})[0]
    assert (safe["args"], safe["kwargs"]) == ("(2, 3)", "{'to': 'a'}")


# -- a sink that does not answer --------------------------------------------------------------

def test_a_sink_that_fails_slowly_is_tried_less_often(monkeypatch):
    """Each try at a broker that does not answer waits out a 3 s timeout, on the monitor
    thread that also heart-beats and answers remote control (whose callers wait 1 s): tries
    are put off, doubling, while the other sinks go on; ``close`` tries once more."""
    from django_taskq.events import dispatcher as module

    now = [100.0]
    monkeypatch.setattr(module, "_monotonic", lambda: now[0])

    class Hung:
        tries = 0
        batches: list = []

        def publish(self, events):
            self.tries += 1
            if now[0] < 200:
                now[0] += 3.0  # its timeout
                raise ConnectionError("no answer")
            self.batches.append(list(events))

        def close(self):
            pass

    hung, up = Hung(), type("Up", (), {"publish": lambda self, e: None, "close": lambda self: None})()
    events = EventDispatcher("w", [hung, up])
    events.send("worker-heartbeat")
    events.flush()
    events.send("worker-heartbeat")
    events.flush()  # put off: not tried
    assert hung.tries == 1
    now[0] += module.RETRY_FIRST
    events.flush()  # tried again, fails again: put off twice as long
    assert hung.tries == 2
    now[0] += module.RETRY_FIRST
    events.flush()
    assert hung.tries == 2
    now[0] = 300.0
    events.send("worker-offline")
    events.close()
    assert [e["type"] for e in hung.batches[0]] == ["worker-heartbeat"] * 2 + ["worker-offline"]


# -- dead letters from lease recovery ---------------------------------------------------------

def test_a_dead_letter_recorded_again_after_an_outage_sends_one_task_failed(idle_worker,
                                                                             monkeypatch):
    """The heartbeat records a recovered dead letter again (alone, then every round) while
    the result backend is down; its task-failed event went out at every try, so the stored
    FAILURE totals counted one dead letter several times."""
    from django_taskq.brokers.base import DeadLetter
    from django_taskq.exceptions import ResultBackendConnectionError
    from django_taskq.worker import chords
    from tests.helpers import envelope

    class Sink:
        events: list = []

        def publish(self, events):
            self.events.extend(events)

        def close(self):
            pass

    sink = Sink()
    idle_worker.events = EventDispatcher("w1", [sink])
    idle_worker.heartbeat.on_dead = idle_worker._record_dead
    down = [True]

    def record_dead(*args, **kwargs):
        if down[0]:
            raise ResultBackendConnectionError("results down")

    monkeypatch.setattr(chords, "record_dead", record_dead)
    letter = DeadLetter(envelope(), "worker lost 3 times", 3)
    idle_worker.heartbeat.record([letter])  # the batch, then the letter alone: both fail
    down[0] = False
    idle_worker.heartbeat.record(idle_worker.heartbeat._unrecorded)  # the next round
    idle_worker.events.flush()
    assert [e["type"] for e in sink.events] == ["task-failed"]


def test_replies_that_expire_in_the_store_before_the_timeout_are_kept():
    """Redis keeps a reply list 60 s; with a longer timeout the caller re-read it empty at
    the end and returned nothing ("no worker answered")."""
    from django_taskq.control.memory import MemoryControlStore
    from django_taskq.control.remote import Control

    class Expiring(MemoryControlStore):
        reads = 0

        def read_replies(self, command_id):
            self.reads += 1
            if self.reads == 1:
                self.send_reply(command_id, "w1", {"ok": "pong"})
                return super().read_replies(command_id)
            return {}  # expired

    control = Control(Expiring())
    assert control.broadcast("ping", reply=True, timeout=0.2) == [{"w1": {"ok": "pong"}}]


def test_inspect_asks_every_command_the_workers_answer(idle_worker):
    """Workers answer ``revoked`` and ``conf`` (Flower asks them); ``app.control.inspect()``
    had no method for them (AttributeError), unlike Celery's."""
    import threading

    from django_taskq import revoke
    from django_taskq.control.remote import Control
    from django_taskq.worker.remote import RemoteControl

    remote = RemoteControl(idle_worker)
    revoke("gone-1")
    done = threading.Event()

    def serve():
        while not done.wait(0.01):
            remote.poll()

    server = threading.Thread(target=serve)
    server.start()
    try:
        host = idle_worker.options.hostname
        ask = Control().inspect(destination=[host], timeout=10)
        assert ask.revoked() == {host: ["gone-1"]}
        assert ask.conf()[host]["BROKER_URL"] == "memory://"
    finally:
        done.set()
        server.join()


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_beats_after_an_old_namesakes_offline_is_online():
    """A new worker started while the old one with the same hostname drains its tasks (a
    deploy): the old one's worker-offline comes last and marked the row stopped for good,
    though the new one heart-beats on."""
    import time

    from django_taskq.events.models import WorkerState

    sink = store.DatabaseEventSink("default")
    now = time.time()
    sink.publish([_event("worker-online", now - 3, pid=2, freq=2.0)])
    sink.publish([_event("worker-heartbeat", now - 2, pid=1, freq=2.0, active=1)])
    sink.publish([_event("worker-offline", now - 1, pid=1, freq=2.0)])
    assert not WorkerState.objects.get(hostname="w1").online
    sink.publish([_event("worker-heartbeat", now, pid=2, freq=2.0, active=0)])
    row = WorkerState.objects.get(hostname="w1")
    assert row.online and row.pid == 2
