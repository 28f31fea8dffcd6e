"""The Prometheus view: parsed with prometheus_client's own parser, its numbers are the stored
rows (written directly and through the database event sink), on SQLite and PostgreSQL; a source
that fails is reported and the rest still renders. Also the producer's task-sent events
(TASK_SEND_SENT_EVENT), which the same tables keep."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import transaction
from django.db.utils import OperationalError
from django.test import Client
from django.urls import path
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from django_taskq import metrics
from django_taskq.brokers import get_broker
from django_taskq.events.dispatcher import EventDispatcher
from django_taskq.events.models import TaskCounter, TaskEvent, WorkerState
from django_taskq.events.store import DatabaseEventSink
from django_taskq.exceptions import ResultBackendError
from django_taskq.message import Envelope
from tests.conftest import require_alias
from tests.testapp.tasks import add

pytestmark = pytest.mark.django_db(databases="__all__")

urlpatterns = [path("admin/", admin.site.urls), path("metrics", metrics.metrics_view),
               path("staff/metrics", metrics.metrics_view_for_staff)]


@pytest.fixture(params=["sqlite", "postgres"])
def alias(request, settings):
    """The events database (and database broker) on each engine; the view mounted."""
    alias = require_alias(request.param)
    settings.ROOT_URLCONF = __name__
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": f"db://{alias}", "EVENTS_DATABASE": alias}
    return alias


def scrape(path: str = "/metrics", client: Client | None = None) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of one scrape (the response is checked too)."""
    response = (client or Client()).get(path)
    assert response.status_code == 200
    assert response["Content-Type"] == CONTENT_TYPE_LATEST
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def names(samples: dict) -> set[str]:
    return {name for name, _ in samples}


def worker(alias: str, hostname: str, **fields) -> WorkerState:
    fields.setdefault("last_heartbeat", timezone.now())
    return WorkerState.objects.using(alias).create(hostname=hostname, **fields)


def counters(alias: str, task: str, **values: float) -> None:
    TaskCounter.objects.using(alias).bulk_create(
        [TaskCounter(task_name=task, key=key.replace("__", ":"), value=v)
         for key, v in values.items()])


def enqueue(queue: str, count: int = 1) -> None:
    broker = get_broker()
    for n in range(count):
        broker.enqueue(Envelope(queue=queue, body=b"[[], {}, {}]",
                                headers={"id": f"{queue}-{n}", "task": "tests.noop"}))


# -- numbers from rows written directly ---------------------------------------------------------

def test_workers_and_queue_depths(alias):
    worker(alias, "w1@a", queues=["default", "mail"], active=3, processed=40)
    worker(alias, "w2@b", queues=["reports"], active=1, processed=7,
           last_heartbeat=timezone.now() - timedelta(minutes=5))  # missed its heartbeats
    worker(alias, "w3@c", queues=["mail"], active=0, processed=2, stopped_at=timezone.now())
    enqueue("default", 2)
    enqueue("mail", 5)

    samples = scrape()
    assert value(samples, "taskq_workers", state="online") == 1
    assert value(samples, "taskq_workers", state="offline") == 2
    assert value(samples, "taskq_worker_active_tasks", worker="w1@a") == 3
    assert value(samples, "taskq_worker_active_tasks", worker="w2@b") == 0  # offline: none known
    assert value(samples, "taskq_worker_processed_total", worker="w2@b") == 7
    assert value(samples, "taskq_worker_processed_total", worker="w1@a") == 40
    assert value(samples, "taskq_queue_depth", queue="default") == 2
    assert value(samples, "taskq_queue_depth", queue="mail") == 5
    assert value(samples, "taskq_queue_depth", queue="reports") == 0
    assert value(samples, "taskq_dead_letters") == 0
    assert {value(samples, "taskq_scrape_errors", source=s) for s in metrics.SOURCES} == {0}


def test_scheduled_and_in_flight_where_the_broker_can_tell(alias, monkeypatch):
    from django_taskq.brokers.base import Broker
    from django_taskq.brokers.database import DatabaseBroker

    broker = get_broker()
    enqueue("default", 2)
    broker.enqueue(Envelope(queue="default", body=b"[[], {}, {}]", eta=timezone.now()
                            + timedelta(hours=1), headers={"id": "later", "task": "tests.noop"}))
    broker.reserve(["default"], max_messages=1, lease=60, worker="w1@a")
    samples = scrape()
    assert value(samples, "taskq_queue_depth", queue="default") == 2
    assert value(samples, "taskq_queue_scheduled", queue="default") == 1
    assert value(samples, "taskq_queue_in_flight", queue="default") == 1

    # A broker that can tell only the depth: the other two are left out, not reported as 0.
    monkeypatch.setattr(DatabaseBroker, "queue_counts", Broker.queue_counts)
    samples = scrape()
    assert value(samples, "taskq_queue_depth", queue="default") == 2
    assert not {"taskq_queue_scheduled", "taskq_queue_in_flight"} & names(samples)


def test_task_totals_and_a_histogram_accumulated_from_per_bucket_rows(alias):
    counters(alias, "shop.charge", state__SUCCESS=5, state__FAILURE=2, **{
        "runtime__le__0.1": 3, "runtime__le__1.0": 2, "runtime__le__+Inf": 1,
        "runtime__sum": 402.5, "runtime__count": 6})
    counters(alias, "mail.send", state__RETRY=4)

    samples = scrape()
    assert value(samples, "taskq_tasks_total", task="shop.charge", state="SUCCESS") == 5
    assert value(samples, "taskq_tasks_total", task="shop.charge", state="FAILURE") == 2
    assert value(samples, "taskq_tasks_total", task="mail.send", state="RETRY") == 4
    bucket = "taskq_task_runtime_seconds_bucket"
    assert value(samples, bucket, task="shop.charge", le="0.05") == 0
    assert value(samples, bucket, task="shop.charge", le="0.1") == 3
    assert value(samples, bucket, task="shop.charge", le="0.75") == 3
    assert value(samples, bucket, task="shop.charge", le="1.0") == 5
    assert value(samples, bucket, task="shop.charge", le="300.0") == 5
    assert value(samples, bucket, task="shop.charge", le="+Inf") == 6
    assert value(samples, "taskq_task_runtime_seconds_count", task="shop.charge") == 6
    assert value(samples, "taskq_task_runtime_seconds_sum", task="shop.charge") == 402.5
    assert ("taskq_task_runtime_seconds_count", (("task", "mail.send"),)) not in samples


def test_dead_letters_are_counted(alias):
    broker = get_broker()
    enqueue("default", 3)
    for delivery in broker.reserve(["default"], max_messages=2, lease=60, worker="w1@a"):
        broker.dead_letter(delivery, "poisoned")
    assert value(scrape(), "taskq_dead_letters") == 2
    assert value(scrape(), "taskq_queue_depth", queue="default") == 1


# -- numbers from real events ---------------------------------------------------------------

def test_events_stored_by_the_sink_are_what_the_view_shows(alias):
    events = EventDispatcher("w9@host", [DatabaseEventSink(alias)])
    events.send("worker-online", freq=2.0, active=0, processed=0, pool="solo", concurrency=1,
                queues=["default", "bulk"])
    for n, runtime in enumerate((0.004, 0.2, 0.2, 12.0)):
        events.send("task-received", uuid=f"t{n}", name="tests.add", args="(1, 2)", kwargs="{}")
        events.send("task-started", uuid=f"t{n}", name="tests.add", pid=1)
        events.send("task-succeeded", uuid=f"t{n}", name="tests.add", result="3",
                    runtime=runtime)
    events.send("task-failed", uuid="f1", name="tests.add", exception="KeyError()",
                traceback="", runtime=400.0)
    events.send("task-revoked", uuid="r1", name="tests.add", terminated=False, signum=None,
                expired=False)
    events.send("worker-heartbeat", freq=2.0, active=2, processed=5, queues=["default", "bulk"])
    events.flush()

    samples = scrape()
    assert value(samples, "taskq_workers", state="online") == 1
    assert value(samples, "taskq_worker_active_tasks", worker="w9@host") == 2
    assert value(samples, "taskq_worker_processed_total", worker="w9@host") == 5
    assert value(samples, "taskq_queue_depth", queue="bulk") == 0
    assert value(samples, "taskq_tasks_total", task="tests.add", state="SUCCESS") == 4
    assert value(samples, "taskq_tasks_total", task="tests.add", state="FAILURE") == 1
    assert value(samples, "taskq_tasks_total", task="tests.add", state="REVOKED") == 1
    bucket = "taskq_task_runtime_seconds_bucket"
    assert value(samples, bucket, task="tests.add", le="0.005") == 1
    assert value(samples, bucket, task="tests.add", le="0.25") == 3
    assert value(samples, bucket, task="tests.add", le="10.0") == 3
    assert value(samples, bucket, task="tests.add", le="30.0") == 4
    assert value(samples, bucket, task="tests.add", le="300.0") == 4
    assert value(samples, bucket, task="tests.add", le="+Inf") == 5
    assert value(samples, "taskq_task_runtime_seconds_sum", task="tests.add") == \
        pytest.approx(0.004 + 0.2 + 0.2 + 12.0 + 400.0)

    events.send("worker-offline", freq=2.0, active=0, processed=6)
    events.flush()
    samples = scrape()
    assert value(samples, "taskq_workers", state="online") == 0
    assert value(samples, "taskq_workers", state="offline") == 1


# -- failures and limits ----------------------------------------------------------------------

@pytest.mark.django_db(databases=["default"])
def test_a_broker_that_is_down_is_reported_and_the_rest_renders(settings):
    settings.ROOT_URLCONF = __name__
    # Nothing listens on port 9 (discard): refused at once.
    settings.TASKQ = {**settings.TASKQ, "EVENTS_DATABASE": "default",
                      "BROKER_URL": "redis://127.0.0.1:9/0?socket_connect_timeout=1"}
    worker("default", "w1@a", queues=["default"], active=1, processed=1)
    counters("default", "tests.add", state__SUCCESS=1)

    samples = scrape()
    assert value(samples, "taskq_scrape_errors", source="broker") == 1
    assert value(samples, "taskq_scrape_errors", source="dead_letters") == 1
    assert value(samples, "taskq_scrape_errors", source="workers") == 0
    assert "taskq_queue_depth" not in names(samples)
    assert "taskq_dead_letters" not in names(samples)
    assert value(samples, "taskq_workers", state="online") == 1
    assert value(samples, "taskq_tasks_total", task="tests.add", state="SUCCESS") == 1


@pytest.mark.django_db(databases=["default"])
def test_a_database_that_fails_is_reported_and_the_broker_part_renders(settings, monkeypatch):
    settings.ROOT_URLCONF = __name__
    settings.TASKQ = {**settings.TASKQ, "EVENTS_DATABASE": "default"}

    def down(*args):
        raise OperationalError("connection refused")

    monkeypatch.setattr(metrics, "_workers", down)
    monkeypatch.setattr(metrics, "_counter_rows", down)
    enqueue("default", 1)
    samples = scrape()
    assert value(samples, "taskq_scrape_errors", source="workers") == 1
    assert value(samples, "taskq_scrape_errors", source="counters") == 1
    assert value(samples, "taskq_scrape_errors", source="broker") == 0
    assert value(samples, "taskq_queue_depth", queue="default") == 1
    assert not {"taskq_workers", "taskq_tasks_total"} & names(samples)


@pytest.mark.django_db(databases=["default"])
def test_without_an_events_database_only_the_broker_is_read(settings):
    settings.ROOT_URLCONF = __name__
    settings.TASKQ = {**settings.TASKQ, "EVENTS_DATABASE": None}
    worker("default", "w1@a", queues=["elsewhere"])
    samples = scrape()
    assert names(samples) == {"taskq_queue_depth", "taskq_queue_scheduled", "taskq_queue_in_flight",
                              "taskq_dead_letters", "taskq_scrape_errors"}
    assert ("taskq_queue_depth", (("queue", "elsewhere"),)) not in samples


def test_counter_rows_past_the_limit_leave_the_cut_task_out_whole(alias, monkeypatch):
    monkeypatch.setattr(metrics, "MAX_COUNTER_ROWS", 3)
    counters(alias, "a.first", state__SUCCESS=1, state__FAILURE=1)
    counters(alias, "b.second", state__SUCCESS=2, state__FAILURE=2)
    samples = scrape()
    assert value(samples, "taskq_tasks_total", task="a.first", state="FAILURE") == 1
    assert not [labels for name, labels in samples if ("task", "b.second") in labels]


def test_the_global_registry_is_left_alone(alias):
    from prometheus_client import REGISTRY, generate_latest

    worker(alias, "w1@a")
    before = generate_latest(REGISTRY)
    scrape()
    assert b"taskq_" not in generate_latest(REGISTRY) and b"taskq_" not in before


@pytest.mark.django_db(databases=["default"])
def test_the_staff_view_wants_a_staff_login(settings):
    settings.ROOT_URLCONF = __name__
    client = Client()
    assert client.get("/staff/metrics").status_code == 302  # to the admin login
    staff = User.objects.create_user("ops", password="pw", is_staff=True)
    client.force_login(staff)
    assert "taskq_scrape_errors" in names(scrape("/staff/metrics", client))
    assert client.post("/metrics").status_code == 405


# -- task-sent events (TASK_SEND_SENT_EVENT) ------------------------------------------------

def sent_events(alias: str) -> list[TaskEvent]:
    return list(TaskEvent.objects.using(alias).filter(type="task-sent").order_by("id"))


def test_task_sent_events_are_stored_when_asked(alias, settings):
    settings.TASKQ = {**settings.TASKQ, "TASK_SEND_SENT_EVENT": True}
    result = add.apply_async((1, 2), queue="mail", countdown=60)
    add.apply_many([((3, 4), {}), ((5, 6), {})])

    first, *others = sent_events(alias)
    assert first.task_id == result.id and first.task_name == add.name
    assert first.hostname == f"gen{os.getpid()}@{socket.gethostname()}"
    fields = first.fields
    assert fields["uuid"] == result.id and fields["queue"] == "mail"
    assert fields["args"] == "(1, 2)" and fields["eta"] is not None
    assert {"timestamp", "utcoffset", "pid", "clock"} <= set(fields)
    assert [event.fields["args"] for event in others] == ["(3, 4)", "(5, 6)"]
    assert TaskEvent.objects.using(alias).count() == 3  # nothing else is stored


def test_no_task_sent_events_by_default(alias):
    add.delay(1, 2)
    assert get_broker().size("default") == 1
    assert sent_events(alias) == []


def test_task_sent_events_roll_back_with_the_message(alias, settings):
    settings.TASKQ = {**settings.TASKQ, "TASK_SEND_SENT_EVENT": True}
    with pytest.raises(ZeroDivisionError), transaction.atomic(using=alias):
        add.delay(1, 2)
        1 / 0  # noqa: B018 - the caller's transaction fails after the send
    assert get_broker().size("default") == 0
    assert sent_events(alias) == []


@pytest.mark.django_db(databases=["default"])
def test_a_task_sent_event_that_cannot_be_stored_never_fails_the_send(settings, monkeypatch,
                                                                       caplog):
    settings.TASKQ = {**settings.TASKQ, "TASK_SEND_SENT_EVENT": True,
                      "EVENTS_DATABASE": "default"}

    def down(self, events):
        raise ResultBackendError("database is locked")

    monkeypatch.setattr(DatabaseEventSink, "publish", down)
    add.delay(1, 2)
    assert get_broker().size("default") == 1
    assert "could not store their task-sent events: database is locked" in caplog.text
