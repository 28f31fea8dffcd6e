"""Events: the dispatcher (stamping, task events off, failing sinks), Celery's fields from a
worker's runs, and the database sink's rows and counters on every database."""

from __future__ import annotations

import logging
import math
import threading
from datetime import datetime, timedelta, timezone

import pytest

from django_taskq import task
from django_taskq.events import store
from django_taskq.events.dispatcher import MAX_PENDING, EventDispatcher
from tests.conftest import require_alias


class Capture:
    def __init__(self, fail: int = 0) -> None:
        self.batches: list[list[dict]] = []
        self.fail = fail

    def publish(self, events):
        if self.fail:
            self.fail -= 1
            raise ConnectionError("sink down")
        self.batches.append(list(events))

    def close(self):
        pass

    @property
    def events(self):
        return [event for batch in self.batches for event in batch]

    def types(self):
        return [event["type"] for event in self.events]


@task(name="events.add")
def add(x, y):
    return x + y


@task(name="events.boom")
def boom():
    raise KeyError("gone")


@task(name="events.again", bind=True, max_retries=1, default_retry_delay=0)
def again(self):
    if self.request.retries == 0:
        raise self.retry(exc=ValueError("once more"))
    return "done"


# -- the dispatcher ----------------------------------------------------------------------------

def test_send_stamps_celery_common_fields_and_a_lamport_clock():
    sink = Capture()
    events = EventDispatcher("w1@host", [sink], clock=lambda: 1000.5)
    events.send("task-received", uuid="a", name="t")
    events.send("worker-heartbeat", active=0)
    assert events.flush() == 2
    first, second = sink.events
    assert first == {"uuid": "a", "name": "t", "type": "task-received", "hostname": "w1@host",
                     "timestamp": 1000.5, "utcoffset": first["utcoffset"],
                     "pid": first["pid"], "clock": 1}
    assert second["clock"] == 2 and isinstance(first["pid"], int)
    assert events.flush() == 0 and len(sink.batches) == 1  # nothing new: no empty batch


def test_task_events_off_keeps_the_workers_events():
    sink = Capture()
    events = EventDispatcher("w", [sink], task_events=False)
    events.send("task-succeeded", uuid="a")
    events.send("worker-online")
    events.flush()
    assert sink.types() == ["worker-online"]


def test_no_sink_means_nothing_is_kept():
    events = EventDispatcher("w", [])
    events.send("task-received", uuid="a")
    assert not events.enabled and events.flush() == 0


def test_a_failing_sink_gets_its_batch_again_and_the_others_are_not_held_back(caplog):
    down, up = Capture(fail=2), Capture()
    events = EventDispatcher("w", [down, up])
    events.send("task-received", uuid="a")
    with caplog.at_level(logging.WARNING, "django_taskq.events.dispatcher"):
        events.flush()
        events.send("task-started", uuid="a")
        events.flush()
    assert up.types() == ["task-received", "task-started"] and down.batches == []
    assert "keeping 1 event(s) for the next try" in caplog.text
    events.send("task-succeeded", uuid="a")
    events.flush()
    assert down.types() == ["task-received", "task-started", "task-succeeded"]


def test_a_backlog_past_its_cap_drops_the_oldest_and_says_so(caplog, monkeypatch):
    monkeypatch.setattr("django_taskq.events.dispatcher.MAX_PENDING", 3)
    from django_taskq.events import dispatcher

    sink = Capture(fail=1)
    events = dispatcher.EventDispatcher("w", [sink])
    for n in range(3):
        events.send("task-received", uuid=str(n))
    events.flush()
    events.send("task-received", uuid="3")
    with caplog.at_level(logging.WARNING, "django_taskq.events.dispatcher"):
        events.flush()
    assert [e["uuid"] for e in sink.events] == ["1", "2", "3"]
    assert "1 event(s) dropped" in caplog.text
    assert MAX_PENDING >= 10_000  # the real cap holds minutes of a busy worker's events


# -- a worker's events -------------------------------------------------------------------------

def _capturing_worker(settings, url):
    """A solo worker on memory broker ``url`` whose events go to a Capture it returns too."""
    from django_taskq.worker import Worker, WorkerOptions

    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url, "RESULT_BACKEND": url}
    sink = Capture()
    return Worker(WorkerOptions.from_settings(pool="solo", queues=("default",)),
                  events=EventDispatcher("w", [sink])), sink


def _drain(worker, rounds=60):
    for _ in range(rounds):
        worker.step()
        if not (worker.prefetched or worker.running or len(worker.settler)) \
                and worker.broker.size("default") == 0:
            break


@pytest.mark.django_db(transaction=True)
def test_a_worker_sends_celerys_task_events_in_order(settings):
    from django_taskq.worker import Worker, WorkerOptions

    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "memory://ev", "RESULT_BACKEND": "memory://ev"}
    sink = Capture()
    worker = Worker(WorkerOptions.from_settings(pool="solo", queues=("default",), hostname="w@x"),
                    events=EventDispatcher("w@x", [sink]))
    ok, bad, retried = add.delay(2, 3), boom.delay(), again.delay()
    _drain(worker)
    worker.events.flush()
    by_task: dict[str, list[dict]] = {}
    for event in sink.events:
        by_task.setdefault(event["uuid"], []).append(event)
    assert [e["type"] for e in by_task[ok.id]] == ["task-received", "task-started",
                                                   "task-succeeded"]
    received, _, succeeded = by_task[ok.id]
    assert received["name"] == "events.add" and received["args"] == "(2, 3)"
    assert received["kwargs"] == "{}" and received["retries"] == 0
    assert succeeded["result"] == "5" and succeeded["runtime"] >= 0
    assert all(e["hostname"] == "w@x" for e in sink.events)
    failed = by_task[bad.id][-1]
    assert failed["type"] == "task-failed" and "KeyError" in failed["exception"]
    assert "Traceback" in failed["traceback"]
    assert [e["type"] for e in by_task[retried.id]] == [
        "task-received", "task-started", "task-retried",
        "task-received", "task-started", "task-succeeded"]
    assert by_task[retried.id][3]["retries"] == 1


@pytest.mark.django_db(transaction=True)
def test_revoked_and_rejected_messages_send_their_events(settings):
    from django_taskq import revoke
    from django_taskq.brokers import get_broker
    from django_taskq.message import Envelope

    worker, sink = _capturing_worker(settings, "memory://rv")
    doomed = add.delay(1, 1)
    revoke(doomed.id)
    get_broker().enqueue(Envelope(body=b"{not json", headers={"id": "bad-1", "task": "events.add"},
                                  queue="default", content_type="application/json"))
    get_broker().enqueue(Envelope(body=b"[[], {}, {}]", headers={"id": "bad-2", "task": "no.such"},
                                  queue="default", content_type="application/json"))
    _drain(worker)
    worker.events.flush()
    kinds = {e["uuid"]: e for e in sink.events if e["type"] in ("task-revoked", "task-failed")}
    assert kinds[doomed.id]["type"] == "task-revoked" and kinds[doomed.id]["expired"] is False
    assert kinds["bad-1"]["type"] == "task-failed" and kinds["bad-1"]["exception"]
    assert kinds["bad-1"]["name"] == "events.add"
    # An unknown name is not repeated: it would make a counter (a metrics series) for good.
    assert kinds["bad-2"]["name"] == "" and "no.such" in kinds["bad-2"]["exception"]


# -- the database sink -------------------------------------------------------------------------

def _event(kind, ts, **fields):
    return {"type": kind, "timestamp": ts, "hostname": fields.pop("hostname", "w1"), "pid": 1,
            "clock": 1, "utcoffset": 0, **fields}


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def events_alias(request):
    return require_alias(request.param)


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_the_database_sink_stores_events_workers_and_counts(events_alias):
    from django_taskq.models import TaskCounter, TaskEvent, TaskMinute, WorkerState

    sink = store.DatabaseEventSink(events_alias)
    minute = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc).timestamp()
    sink.publish([
        _event("worker-online", minute, freq=2.0, pool="prefork", concurrency=4,
               queues=["default"], sw_ident="django-taskq", sw_ver="0.1.0"),
        _event("task-received", minute + 1, uuid="a", name="t.add"),
        _event("task-succeeded", minute + 2, uuid="a", name="t.add", runtime=0.004),
        _event("task-failed", minute + 3, uuid="b", name="t.add", runtime=2.0, exception="E"),
        _event("worker-heartbeat", minute + 4, freq=2.0, active=3, processed=7,
               loadavg=[0.5, 0.4, 0.3]),
    ])
    # A second worker adds to the same minute row: counts add up, never overwrite.
    sink.publish([_event("task-succeeded", minute + 30, uuid="c", name="t.add", runtime=0.2,
                         hostname="w2")])
    events = TaskEvent.objects.using(events_alias)
    assert list(events.filter(task_id="a").values_list("type", flat=True)) == [
        "task-received", "task-succeeded"]
    assert not events.filter(type="worker-heartbeat").exists()  # the worker row says it
    stored = events.get(task_id="a", type="task-succeeded")
    assert stored.fields["runtime"] == 0.004 and stored.fields["hostname"] == "w1"
    assert stored.task_name == "t.add" and stored.timestamp.timestamp() == minute + 2
    row = TaskMinute.objects.using(events_alias).get(task_name="t.add")
    assert (row.received, row.succeeded, row.failed) == (1, 2, 1)
    assert row.minute == datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    assert math.isclose(row.runtime_sum, 2.204)
    totals = dict(TaskCounter.objects.using(events_alias).filter(task_name="t.add")
                  .values_list("key", "value"))
    assert totals["state:SUCCESS"] == 2 and totals["state:FAILURE"] == 1
    assert totals["runtime:le:0.005"] == 1 and totals["runtime:le:0.25"] == 1
    assert totals["runtime:le:2.5"] == 1 and totals["runtime:count"] == 3
    worker = WorkerState.objects.using(events_alias).get(hostname="w1")
    assert (worker.active, worker.processed, worker.pool, worker.concurrency) == (3, 7, "prefork", 4)
    assert worker.loadavg == [0.5, 0.4, 0.3] and worker.queues == ["default"]
    sink.publish([_event("worker-offline", minute + 5)])
    worker.refresh_from_db()
    assert worker.stopped_at is not None and not worker.online


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_concurrent_sinks_lose_no_count(events_alias):
    from django.db import connections

    from django_taskq.models import TaskCounter, TaskMinute

    ts = datetime(2026, 11, 30, 13, 0, tzinfo=timezone.utc).timestamp()
    errors = []

    def publish(worker):
        try:
            sink = store.DatabaseEventSink(events_alias)
            for n in range(10):
                sink.publish([_event("task-succeeded", ts + n, uuid=f"{worker}-{n}",
                                     name="t.race", runtime=0.01, hostname=worker)])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=publish, args=(f"w{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert TaskMinute.objects.using(events_alias).get(task_name="t.race").succeeded == 30
    assert TaskCounter.objects.using(events_alias).get(task_name="t.race",
                                                       key="state:SUCCESS").value == 30


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_prune_drops_what_is_older_than_the_window(events_alias):
    from django_taskq.models import TaskEvent, TaskMinute, WorkerState

    now = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    sink = store.DatabaseEventSink(events_alias)
    old, new = (now - timedelta(hours=25)).timestamp(), (now - timedelta(hours=1)).timestamp()
    sink.publish([_event("worker-online", old, hostname="gone"),
                  _event("task-succeeded", old, uuid="o", name="t", runtime=0.1),
                  _event("task-succeeded", new, uuid="n", name="t", runtime=0.1)])
    removed = store.prune(events_alias, 86400, now=now)
    assert removed == 4  # two events (worker-online is one), one minute, one worker
    assert list(TaskEvent.objects.using(events_alias).values_list("task_id", flat=True)) == ["n"]
    assert TaskMinute.objects.using(events_alias).count() == 1
    assert not WorkerState.objects.using(events_alias).exists()


def test_an_events_database_that_is_no_alias_is_refused_with_the_fix(settings):
    from django_taskq.checks import check_events_database
    from django_taskq.events import dispatcher_for
    from django_taskq.exceptions import ConfigurationError

    settings.TASKQ = {**settings.TASKQ, "EVENTS_DATABASE": "monitoring"}
    [error] = check_events_database()
    assert error.id == "django_taskq.E014" and "'monitoring' is not in DATABASES" in error.msg
    assert "None to store no events" in error.hint
    with pytest.raises(ConfigurationError, match="set it to None to store no events"):
        dispatcher_for("w", broker=None)
    settings.TASKQ = {**settings.TASKQ, "EVENTS_DATABASE": None}
    assert check_events_database() == []


@pytest.mark.django_db
def test_a_worker_that_stops_heart_beating_shows_offline():
    from django.utils import timezone

    from django_taskq.models import WorkerState

    now = timezone.now()
    live = WorkerState(hostname="a", freq=2.0, last_heartbeat=now - timedelta(seconds=4))
    quiet = WorkerState(hostname="b", freq=2.0, last_heartbeat=now - timedelta(seconds=6))
    stopped = WorkerState(hostname="c", freq=2.0, last_heartbeat=now, stopped_at=now)
    assert live.online and not quiet.online and not stopped.online


@pytest.mark.django_db(transaction=True)
def test_a_running_worker_registers_heartbeats_and_goes_offline(settings):
    """The real loop: worker-online at start, heart-beats from the monitor thread, and
    worker-offline at shutdown, all in taskq_worker."""
    from django_taskq.models import TaskEvent, WorkerState
    from django_taskq.worker import Worker, WorkerOptions

    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "memory://hb", "RESULT_BACKEND": "memory://hb",
                      "EVENTS_HEARTBEAT": 0.1, "EVENTS_DATABASE": "default"}
    worker = Worker(WorkerOptions.from_settings(pool="solo", queues=("default",), hostname="hb@x"))
    seen = []
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        for _ in range(100):
            row = WorkerState.objects.filter(hostname="hb@x").first()
            if row is not None and row.last_heartbeat > row.started_at:
                seen.append(row)
                break
            threading.Event().wait(0.05)
        add.delay(1, 2)
        for _ in range(100):
            if worker.processed:
                break
            threading.Event().wait(0.05)
    finally:
        worker.request_stop()
        thread.join(10)
    assert seen and seen[0].online and seen[0].pool == "solo"
    row = WorkerState.objects.get(hostname="hb@x")
    assert not row.online and row.stopped_at is not None and row.processed == 1
    assert list(TaskEvent.objects.filter(hostname="hb@x", task_id="").values_list(
        "type", flat=True)) == ["worker-online", "worker-offline"]


@task(name="events.quiet", send_events=False)
def quiet():
    return "shh"


@pytest.mark.django_db(transaction=True)
def test_a_task_with_send_events_false_sends_no_task_events(settings):
    """Celery's task option ``send_events=False``: that task's runs send nothing; others do."""

    worker, sink = _capturing_worker(settings, "memory://se")
    hushed, loud = quiet.delay(), add.delay(1, 1)
    _drain(worker)
    worker.events.flush()
    assert hushed.get(timeout=5) == "shh"
    assert not [e for e in sink.events if e.get("uuid") == hushed.id]
    assert [e["type"] for e in sink.events if e.get("uuid") == loud.id] == [
        "task-received", "task-started", "task-succeeded"]
