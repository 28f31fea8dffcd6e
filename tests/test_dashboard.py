"""The monitoring dashboard in the admin, through Django's test client.

Events are stored through the database sink, as a worker's monitor thread stores them, so the
numbers on the page can be checked against the rows. Staff only; Retry is a permission-gated,
CSRF-protected POST that re-sends a failed task with the arguments its extended result kept.
"""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from html import unescape

import pytest
from django.contrib.auth.models import Permission, User
from django.db.models import Sum
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_taskq import states
from django_taskq.dashboard import results as result_list
from django_taskq.events.store import DatabaseEventSink
from django_taskq.models import (
    DeadLetterMessage,
    QueuedMessage,
    TaskEvent,
    TaskMinute,
    TaskResult,
    WorkerState,
)
from django_taskq.worker import Worker, WorkerOptions
from tests.testapp import tasks

DASHBOARD = "/admin/django_taskq/workerstate/"
RETRY = f"{DASHBOARD}retry/"
RESULTS = "/admin/django_taskq/taskresult/"
ADD, FAIL = "tests.testapp.tasks.add", "tests.testapp.tasks.fail"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def database_queue(settings):
    """The database broker and results (extended), events in the default database."""
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "db://default",
                      "RESULT_BACKEND": "db://default", "RESULT_EXTENDED": True,
                      "EVENTS_DATABASE": "default", "POLL_INTERVAL": 0.01}


def signed_in(*codenames: str, staff: bool = True, superuser: bool = False) -> Client:
    """A client signed in as a user holding only the named django_taskq permissions."""
    name = f"user{User.objects.count()}"
    user = User.objects.create_user(name, password="pw", is_staff=staff,
                                    is_superuser=superuser)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=codenames, content_type__app_label="django_taskq"))
    client = Client()
    client.force_login(user)
    return client


def admin() -> Client:
    return signed_in(superuser=True)


def publish(*events: dict) -> None:
    """Store events the way a worker's monitor does (one batch)."""
    DatabaseEventSink("default").publish(list(events))


def event(kind: str, task_id: str = "", name: str = ADD, host: str = "w1@box", ago: float = 0.0,
          **fields) -> dict:
    return {"type": kind, "uuid": task_id, "name": name, "hostname": host,
            "timestamp": time.time() - ago, **fields}


def worker_event(kind: str, host: str, ago: float = 0.0, **fields) -> dict:
    return {"type": kind, "hostname": host, "timestamp": time.time() - ago, "freq": 2.0,
            "pool": "threads", "concurrency": 4, "queues": ["default", "mail"], "active": 1,
            "processed": 7, "loadavg": [0.5, 0.25, 0.1], "sw_ver": "1.0", **fields}


def text_of(html: str, element_id: str) -> str:
    """The text inside the element with ``element_id`` (tags removed, spaces squeezed)."""
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</(b|td|span|p|pre|table|ul)>', html, re.S)
    assert found, f"no #{element_id} on the page"
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())


def row_cells(html: str, selector_attr: str) -> list[str]:
    """The cell texts of the table row carrying ``selector_attr`` (e.g. data-queue="default")."""
    found = re.search(rf"<tr {selector_attr}>(.*?)</tr>", html, re.S)
    assert found, f"no row {selector_attr}"
    return [" ".join(re.sub(r"<[^>]+>", " ", cell).split())
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", found.group(1), re.S)]


def work_off(*queues: str) -> None:
    Worker(WorkerOptions.from_settings(pool="solo", queues=queues or ("default",))).run(
        until_empty=True)


# -- access -----------------------------------------------------------------------------------

def test_the_dashboard_is_for_staff_with_the_view_permission():
    assert Client().get(DASHBOARD).status_code == 302  # to the login page
    assert signed_in("view_workerstate", staff=False).get(DASHBOARD).status_code == 302
    assert signed_in().get(DASHBOARD).status_code == 403
    page = signed_in("view_workerstate").get(DASHBOARD)
    assert page.status_code == 200 and b"Monitoring" in page.content
    assert b'class="button retry"' not in page.content
    assert signed_in().get(f"{DASHBOARD}task/abc/").status_code == 403


def test_arguments_and_tracebacks_need_the_view_permission_on_results():
    """Failures and a task's page show arguments, results and tracebacks: a user who may see
    workers but not task results sees neither."""
    workers_only = signed_in("view_workerstate")
    page = workers_only.get(DASHBOARD).content.decode()
    assert 'id="failures-hidden"' in page and 'id="failures"' not in page
    assert workers_only.get(f"{DASHBOARD}task/abc/").status_code == 403
    reader = signed_in("view_workerstate", "view_taskresult")
    assert 'id="failures-hidden"' not in reader.get(DASHBOARD).content.decode()
    assert reader.get(f"{DASHBOARD}task/abc/").status_code == 404  # allowed; nothing stored


def test_the_admin_index_and_the_results_list_lead_to_the_dashboard():
    client = admin()
    assert DASHBOARD in client.get("/admin/").content.decode()
    assert DASHBOARD in client.get(RESULTS).content.decode()


# -- numbers -----------------------------------------------------------------------------------

def stored_activity() -> None:
    """Two workers (one gone), tasks that succeeded, failed and one still running."""
    publish(worker_event("worker-online", "w1@box"), worker_event("worker-online", "w2@box"),
            worker_event("worker-offline", "w2@box"))
    batch = []
    for n in range(5):
        batch += [event("task-received", f"ok-{n}", ago=30), event("task-started", f"ok-{n}", ago=29),
                  event("task-succeeded", f"ok-{n}", ago=28, runtime=0.5)]
    for n in range(2):
        batch += [event("task-received", f"bad-{n}", FAIL, ago=20),
                  event("task-started", f"bad-{n}", FAIL, ago=19),
                  event("task-failed", f"bad-{n}", FAIL, ago=18, exception="ValueError('x')",
                        traceback="Traceback...\nValueError: x")]
    batch += [event("task-received", "slow-1", ago=5), event("task-started", "slow-1", ago=4)]
    # Started on the worker that went offline: lost, not running.
    batch += [event("task-started", "lost-1", host="w2@box", ago=3)]
    publish(*batch)


def test_the_numbers_on_the_page_are_the_stored_ones():
    stored_activity()
    now = timezone.now()
    QueuedMessage.objects.bulk_create(
        [QueuedMessage(queue="default", message_id=f"m{n}", task_name=ADD, body=b"[]")
         for n in range(3)]
        + [QueuedMessage(queue="default", message_id="later", task_name=ADD, body=b"[]",
                         available_at=now + timedelta(hours=1)),
           QueuedMessage(queue="mail", message_id="held", task_name=ADD, body=b"[]",
                         state=QueuedMessage.RESERVED, locked_until=now + timedelta(minutes=1))])
    DeadLetterMessage.objects.create(queue="default", message_id="dead", task_name=ADD,
                                     body=b"[]", reason="gave up")

    html = admin().get(DASHBOARD).content.decode()

    minutes = TaskMinute.objects.aggregate(**{c: Sum(c) for c in ("succeeded", "failed")})
    assert (minutes["succeeded"], minutes["failed"]) == (5, 2)
    assert text_of(html, "n-online") == "1"  # w2 said worker-offline
    assert text_of(html, "n-active") == "1"  # w1's heartbeat: one running
    assert text_of(html, "n-finished") == "7"
    assert text_of(html, "n-failed") == "2"
    assert text_of(html, "n-dead") == "1"
    assert row_cells(html, 'data-queue="default"')[:5] == ["default", "3", "1", "0", "1"]
    assert row_cells(html, 'data-queue="mail"')[:5] == ["mail", "0", "0", "1", "1"]
    totals = row_cells(html, f'data-task-name="{ADD}"')
    assert totals[:5] == [ADD, "6", "7", "5", "0"] and totals[6] == "0.500 s"
    assert row_cells(html, f'data-task-name="{FAIL}"')[:5] == [FAIL, "2", "2", "0", "2"]
    # The charts' legends give each series' total over the window.
    assert re.search(r'id="chart-tasks".*?succeeded <b>5</b>.*?failed <b>2</b>', html, re.S)
    assert re.search(r'id="chart-failures".*?failed <b>2</b>', html, re.S)
    running = re.search(r'<table id="running".*?</table>', html, re.S).group(0)
    assert "slow-1" in running and "ok-0" not in running and "lost-1" not in running
    assert "offline" in row_cells(html, 'class="offline"')[1]


def test_a_long_window_bins_minutes_and_keeps_the_totals():
    stored_activity()
    html = admin().get(f"{DASHBOARD}?hours=24").content.decode()
    assert "per minute, mean of 9-minute bins" in html  # 24 × 60 + 1 minutes in ≤ 180 bars
    assert re.search(r'id="chart-tasks".*?succeeded <b>5</b>.*?failed <b>2</b>', html, re.S)
    assert len(re.findall(r'<g class="bin">', html)) == 2 * 161


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_other_brokers_show_their_queue_sizes(kind, settings, request):
    from django_taskq.brokers import get_broker
    from django_taskq.exceptions import BrokerError

    url = "memory://" if kind == "memory" else request.getfixturevalue("redis_url")
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url}
    publish(worker_event("worker-online", "w1@box"))
    for n in range(4):
        tasks.add.apply_async((n, n), queue="mail")
    tasks.add.apply_async((9, 9), queue="mail", countdown=3600)
    get_broker().reserve(["mail"], max_messages=1, lease=60, worker="w1@box")
    html = admin().get(DASHBOARD).content.decode()
    # waiting (due), delayed, reserved, consumers
    assert row_cells(html, 'data-queue="mail"')[:5] == ["mail", "3", "1", "1", "1"]
    assert text_of(html, "n-dead") == "0"

    def broken(queues):
        raise BrokerError("broker down for the test")

    get_broker().queue_counts = broken
    html = admin().get(DASHBOARD).content.decode()
    assert row_cells(html, 'data-queue="mail"') == ["mail", "–", "–", "–", "1",
                                                    "broker down for the test"]


def test_a_broker_that_is_down_is_asked_once_per_page(settings):
    from django_taskq.brokers import get_broker
    from django_taskq.exceptions import BrokerError

    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "memory://"}
    broker, asked = get_broker(), []

    def down(*args):
        asked.append(args)
        raise BrokerError("broker down for the test")

    broker.queue_counts = broker.dead_letter_count = down
    html = admin().get(DASHBOARD).content.decode()
    assert len(asked) == 1  # each call to a broker that is down waits out its timeout
    assert text_of(html, "n-dead") == "–"
    assert "Dead letters: not asked: broker down for the test" in html


def test_a_window_that_is_not_offered_is_named_and_the_default_shown():
    page = admin().get(f"{DASHBOARD}?hours=5", follow=True)
    assert page.status_code == 200
    assert "The window hours=5 is not offered: choose one of 1, 3, 6, 12, 24. Showing 1." in \
        unescape(page.content.decode())


def test_without_stored_events_the_page_says_how_to_store_them(settings):
    settings.TASKQ = {**settings.TASKQ, "EVENTS_DATABASE": None}
    html = admin().get(DASHBOARD).content.decode()
    assert 'TASKQ["EVENTS_DATABASE"]</code> is None' in html


# -- retry -------------------------------------------------------------------------------------

def failed_task(*args) -> str:
    """A real failure: ``tasks.fail`` sent and run by a worker; its task id."""
    sent = tasks.fail.delay(*args)
    work_off()
    assert TaskResult.objects.get(task_id=sent.id).state == states.FAILURE
    return sent.id


def test_retry_sends_the_failed_task_again_with_its_stored_arguments():
    task_id = failed_task("kaput")
    client = signed_in("view_workerstate", "view_taskresult", "retry_taskresult")
    html = client.get(DASHBOARD).content.decode()
    failures = re.search(r'<table id="failures".*?</table>', html, re.S).group(0)
    assert f'data-task-id="{task_id}"' in failures and "kaput" in failures
    assert 'value="Retry"' in failures

    page = client.post(RETRY, {"task_id": task_id, "next": f"{DASHBOARD}?hours=3"})
    assert page.status_code == 302 and page["Location"] == f"{DASHBOARD}?hours=3"
    message = client.get(DASHBOARD).content.decode()
    new_id = re.search(rf"Sent task {task_id} again as <a href=\"[^\"]+\">([\w-]+)</a>",
                       message).group(1)
    assert new_id != task_id
    resent = QueuedMessage.objects.get(message_id=new_id)
    assert (resent.task_name, resent.queue) == (FAIL, "default")
    assert json.loads(bytes(resent.body))[:2] == [["kaput"], {}]
    # A second press (a double click) finds the retry and sends nothing more.
    twice = client.post(RETRY, {"task_id": task_id}, follow=True).content.decode()
    assert f"Not retried: Task {task_id} was retried already, as task {new_id}" in twice
    assert QueuedMessage.objects.filter(task_name=FAIL).count() == 1
    work_off()
    again = TaskResult.objects.get(task_id=new_id)
    assert again.state == states.FAILURE and "kaput" in again.traceback


@pytest.mark.parametrize("posted, error", [
    ({}, "No task id given: choose a failed task to retry."),
    ({"task_id": "nobody"}, "No stored result for task nobody"),
])
def test_bad_retries_are_refused_with_a_message(posted, error):
    client = signed_in("view_workerstate", "view_taskresult", "retry_taskresult")
    page = client.post(RETRY, posted, follow=True)
    assert page.status_code == 200
    assert f"Not retried: {error}" in page.content.decode()
    assert not QueuedMessage.objects.exists()


def test_only_failures_with_stored_arguments_are_retried(settings):
    ok = tasks.add.delay(1, 2)
    work_off()
    client = admin()
    page = client.post(RETRY, {"task_id": ok.id}, follow=True).content.decode()
    assert f"Not retried: Task {ok.id} is SUCCESS, not FAILURE" in page
    settings.TASKQ = {**settings.TASKQ, "RESULT_EXTENDED": False}
    task_id = failed_task("plain")
    html = client.get(DASHBOARD).content.decode()
    assert "no stored arguments" in row_cells(html, f'data-task-id="{task_id}"')[-1]
    page = client.post(RETRY, {"task_id": task_id}, follow=True).content.decode()
    assert "TASKQ[&#x27;RESULT_EXTENDED&#x27;] = True" in page
    assert not QueuedMessage.objects.exists()


def test_retry_needs_the_permission_a_post_and_a_csrf_token():
    task_id = failed_task("x")
    assert signed_in("view_workerstate", "view_taskresult").post(
        RETRY, {"task_id": task_id}).status_code == 403
    allowed = signed_in("view_workerstate", "view_taskresult", "retry_taskresult")
    assert allowed.get(RETRY).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(User.objects.get(username="user1"))
    assert strict.post(RETRY, {"task_id": task_id}).status_code == 403
    assert not QueuedMessage.objects.exists()


# -- results: search, filters, counts -----------------------------------------------------------

def stored_results() -> None:
    now = timezone.now()
    TaskResult.objects.bulk_create([
        TaskResult(task_id="aaaa-1111", task_name=ADD, state=states.SUCCESS, worker="w1@box"),
        TaskResult(task_id="aaaa-2222", task_name=FAIL, state=states.FAILURE, worker="w2@box"),
        TaskResult(task_id="bbbb-3333", task_name=ADD, state=states.STARTED, worker="w2@box",
                   date_created=now - timedelta(days=9)),
    ])
    publish(worker_event("worker-online", "w2@box"))


def listed(client: Client, query: str) -> set[str]:
    html = client.get(f"{RESULTS}?{query}").content.decode()
    return set(re.findall(r'class="field-task_id"><a [^>]*>([\w-]+)</a>', html))


def test_results_are_searched_by_id_name_worker_and_state():
    stored_results()
    client = admin()
    assert listed(client, "q=aaaa") == {"aaaa-1111", "aaaa-2222"}  # an id's beginning
    assert listed(client, "q=bbbb-3333") == {"bbbb-3333"}
    assert listed(client, "q=tasks.fail") == {"aaaa-2222"}  # part of a registered name
    assert listed(client, "q=w2@") == {"aaaa-2222", "bbbb-3333"}  # part of a known worker
    assert listed(client, "q=started") == {"bbbb-3333"}
    assert listed(client, "q=nothing-like-it") == set()


def test_results_are_filtered_by_state_name_worker_and_date():
    stored_results()
    client = admin()
    assert listed(client, "state=FAILURE") == {"aaaa-2222"}
    assert listed(client, f"task_name={ADD}") == {"aaaa-1111", "bbbb-3333"}
    assert listed(client, "worker=w2@box") == {"aaaa-2222", "bbbb-3333"}
    assert listed(client, "created=24h") == {"aaaa-1111", "aaaa-2222"}
    assert listed(client, "created=older") == {"bbbb-3333"}
    filters = client.get(RESULTS).content.decode()
    assert "w2@box" in filters and FAIL in filters  # choices from the workers and tasks known


def test_the_results_list_counts_only_up_to_its_cap(monkeypatch):
    stored_results()
    client = admin()
    assert text_of(client.get(RESULTS).content.decode(), "result-count") == "3 task results"
    monkeypatch.setattr(result_list, "COUNT_CAP", 2)
    assert text_of(client.get(RESULTS).content.decode(),
                   "result-count") == "more than 2 task results"


# -- a task's story ----------------------------------------------------------------------------

def test_a_tasks_page_tells_its_story_and_links_its_workflow():
    publish(event("task-received", "parent", ago=10, root_id="parent", parent_id=None, args="(1, 2)"),
            event("task-started", "parent", ago=9),
            event("task-retried", "parent", ago=8, exception="Retry in 1s"),
            event("task-received", "parent", host="w2@box", ago=7, root_id="parent"),
            event("task-started", "parent", host="w2@box", ago=6),
            event("task-succeeded", "parent", host="w2@box", ago=5, runtime=0.25, result="3"),
            event("task-received", "child", FAIL, ago=4, root_id="parent", parent_id="parent"))
    client = signed_in("view_workerstate", "view_taskresult")
    html = client.get(f"{DASHBOARD}task/parent/").content.decode()
    order = re.findall(r'class="event-type">([\w-]+)<', html)
    assert order == ["task-received", "task-started", "task-retried", "task-received",
                     "task-started", "task-succeeded"]
    assert "w2@box" in html and "Retry in 1s" in html
    children = re.search(r'<ul id="story-children">.*?</ul>', html, re.S).group(0)
    assert f'href="{DASHBOARD}task/child/"' in children and FAIL in children
    child = client.get(f"{DASHBOARD}task/child/").content.decode()
    assert f'id="story-parent" href="{DASHBOARD}task/parent/"' in child
    assert f'id="story-root" href="{DASHBOARD}task/parent/"' in child


def test_a_stored_result_has_a_story_link_and_its_story_shows_the_result():
    task_id = failed_task("told")
    client = admin()
    result = TaskResult.objects.get(task_id=task_id)
    detail = client.get(f"{RESULTS}{result.pk}/change/").content.decode()
    story = reverse("admin:django_taskq_workerstate_story", args=[task_id])
    assert f'href="{story}"' in detail
    html = client.get(story).content.decode()
    assert text_of(html, "story-state") == "FAILURE"
    assert re.findall(r'class="event-type">([\w-]+)<', html) == [
        "task-received", "task-started", "task-failed"]
    assert TaskEvent.objects.filter(task_id=task_id).count() == 3
    assert text_of(html, "story-traceback").endswith("ValueError: told")


def test_an_unknown_task_gets_a_404_that_says_why():
    page = admin().get(f"{DASHBOARD}task/no-such-id/")
    assert page.status_code == 404
    assert "Nothing is stored about task <code>no-such-id</code>" in page.content.decode()


def test_known_workers_feed_the_state_of_the_worker_rows():
    publish(worker_event("worker-online", "old@box", ago=600))
    assert not WorkerState.objects.get(hostname="old@box").online
    html = admin().get(DASHBOARD).content.decode()
    assert "old@box" in row_cells(html, 'class="offline"')[0]


def test_chart_tops_halve_to_whole_tasks_and_run_times_read_as_people_read_them():
    from django_taskq.dashboard.charts import nice_ceiling
    from django_taskq.dashboard.story import seconds

    assert [nice_ceiling(v) for v in (0, 1, 3, 5, 12, 41)] == [2, 2, 4, 10, 20, 100]
    assert all(nice_ceiling(v) % 2 == 0 for v in range(200))
    assert [seconds(v) for v in (6.4e-05, 0.0123, 0.5, 3.2, 250)] == [
        "64 µs", "12.3 ms", "500 ms", "3.2 s", "250 s"]
