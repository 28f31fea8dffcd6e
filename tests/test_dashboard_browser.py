"""The monitoring dashboard in a real browser while a real worker runs tasks.

A worker (threads pool, in a thread of this process) works off tasks on the database broker,
some of which fail and one of which is still running; its monitor thread stores the events
(EVENTS_DATABASE) as in production. An hour of earlier traffic from a worker that has since
gone offline is stored through the same sink first, so the charts have a shape. Headless
Chromium (tests/browser.py) signs in, reads the dashboard's cards, tables and charts and checks
them against the stored rows, opens a failed task's story and retries it. Screenshots go to the
test's tmp_path (TASKQ_TEST_SCREENSHOTS copies them; docs/img/monitoring-dashboard.png is one).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth.models import User
from django.db.models import Sum

from django_taskq.events.store import DatabaseEventSink
from django_taskq.models import TaskEvent, TaskMinute, TaskResult, WorkerState
from django_taskq.worker import Worker, WorkerOptions
from tests.browser import WAIT, Browser, browsing, live_server
from tests.testapp import tasks

DASHBOARD = "/admin/django_taskq/workerstate/"
HOST = "browser@dashboard"
ADD, FAIL = "tests.testapp.tasks.add", "tests.testapp.tasks.fail"
#: Seconds the running task sleeps: long enough to be seen running, short for the test.
SLEEP = 6.0


@pytest.fixture(autouse=True)
def database_queue(settings):
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "db://default",
                      "RESULT_BACKEND": "db://default", "RESULT_EXTENDED": True,
                      "EVENTS_DATABASE": "default", "EVENTS_HEARTBEAT": 0.5,
                      "POLL_INTERVAL": 0.05}


@pytest.fixture
def browser(transactional_db, tmp_path) -> Iterator[Browser]:
    with live_server() as url, browsing(url, tmp_path) as opened:
        yield opened


@pytest.fixture
def worker() -> Iterator[Worker]:
    """A real worker (threads pool, two slots) running in a thread until the test ends."""
    running = Worker(WorkerOptions.from_settings(pool="threads", concurrency=2,
                                                 queues=("default",), hostname=HOST))
    thread = threading.Thread(target=running.run, name="dashboard-worker", daemon=True)
    thread.start()
    yield running
    running.request_stop()
    thread.join(timeout=SLEEP + 10)
    assert not thread.is_alive(), "the worker did not stop"


def earlier_traffic() -> None:
    """An hour of traffic from a worker that has gone offline, stored as its monitor would."""
    now, events = time.time(), []
    host = {"hostname": "earlier@dashboard", "freq": 2.0, "pool": "prefork", "concurrency": 4,
            "queues": ["default"], "processed": 900, "active": 0, "loadavg": [0.4, 0.3, 0.2]}
    events.append({"type": "worker-online", "timestamp": now - 3500, **host})
    for minute in range(2, 58):
        stamp = now - minute * 60
        for n in range(5 + (minute * 7) % 11):
            task_id = f"earlier-{minute}-{n}"
            failed = n == 0 and minute % 6 == 0
            events += [{"type": kind, "uuid": task_id, "name": FAIL if failed else ADD,
                        "hostname": host["hostname"], "timestamp": stamp + n,
                        **({"runtime": 0.02 + n / 100} if kind == "task-succeeded" else {})}
                       for kind in ("task-received", "task-started",
                                    "task-failed" if failed else "task-succeeded")]
    events.append({"type": "worker-offline", "timestamp": now - 100, **host})
    DatabaseEventSink("default").publish(events)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def minute_sum(column: str, task_name: str | None = None) -> int:
    rows = TaskMinute.objects.all() if task_name is None else \
        TaskMinute.objects.filter(task_name=task_name)
    return int(rows.aggregate(total=Sum(column))["total"] or 0)


def test_the_dashboard_shows_a_live_worker_its_tasks_and_failures(browser, worker, tmp_path):
    from selenium.webdriver.common.by import By

    earlier_traffic()
    added = [tasks.add.delay(n, n) for n in range(12)]
    failed = [tasks.fail.delay(f"broken {n}") for n in range(3)]
    sleeper = tasks.record_and_sleep.delay(str(tmp_path / "slept"), SLEEP)
    ids = [r.id for r in (*added, *failed)]
    wait_until(lambda: TaskResult.objects.filter(task_id__in=ids, state__in=(
        "SUCCESS", "FAILURE")).count() == len(ids), "the tasks' results")
    wait_until(lambda: TaskEvent.objects.filter(task_id=sleeper.id, type="task-started").exists()
               and WorkerState.objects.get(hostname=HOST).active == 1, "the sleeper running")
    wait_until(lambda: minute_sum("failed", FAIL) >= 3 + 9, "the failures counted")

    User.objects.create_superuser("root", password="pw-root")
    browser.login("root", "pw-root")
    browser.open(DASHBOARD)
    browser.shot("dashboard-01-overview")

    assert browser.text("#n-online") == "1"
    assert browser.text("#n-active") == "1"
    assert browser.text("#n-failed") == str(minute_sum("failed"))
    assert browser.text("#n-finished") == str(minute_sum("succeeded") + minute_sum("failed"))
    live = browser.find("#workers tr.online")
    assert HOST in live.text and "threads × 2" in live.text and "online" in live.text
    assert "earlier@dashboard" in browser.text("#workers tr.offline")
    assert sleeper.id in browser.text("#running")
    failures = browser.text("#failures")
    assert all(r.id[:11] in failures for r in failed) and "broken" in failures
    add_row = browser.find(f'#task-totals tr[data-task-name="{ADD}"]').text.split()
    assert add_row[1:5] == [str(minute_sum(c, ADD)) for c in
                            ("received", "started", "succeeded", "failed")]
    # A bar for every minute with traffic; a failure every sixth minute before, three now.
    for chart, least in (("#chart-tasks", 50), ("#chart-failures", 10)):
        bars = browser.find_all(f"{chart} svg g.bin rect:not(.hit)")
        assert len(bars) >= least, f"{chart} draws {len(bars)} bars"
    assert f"failed {minute_sum('failed')}" in browser.text("#chart-failures figcaption")

    # A failed task's story: its events on this worker, in order; then Retry.
    browser.driver.find_element(By.CSS_SELECTOR, f'a[href$="/task/{failed[0].id}/"]').click()
    browser.find("#story-events")
    browser.shot("dashboard-02-story")
    kinds = [cell.text for cell in browser.find_all("#story-events td.event-type")]
    assert kinds == ["task-received", "task-started", "task-failed"]
    assert HOST in browser.text("#story-events")
    assert browser.text("#story-state") == "FAILURE"
    assert browser.text("#story-traceback").endswith("ValueError: broken 0")
    browser.find("input.retry").click()
    browser.find("ul.messagelist li.success")
    sent = browser.text("ul.messagelist li.success")
    browser.shot("dashboard-03-retried")
    assert sent.startswith(f"Sent task {failed[0].id} again as ")
    new_id = sent.rsplit(" ", 1)[1].rstrip(".")
    wait_until(lambda: TaskResult.objects.filter(task_id=new_id, state="FAILURE").exists(),
               "the retried task's run", timeout=WAIT)

    # The results list as the dashboard's task link opens it (filtered by name), then searched
    # by the beginning of one failed task's id, as a person would type it.
    browser.open(DASHBOARD)
    browser.find(f'#task-totals tr[data-task-name="{FAIL}"] a').click()
    browser.find("#result_list")
    rows = browser.find_all("#result_list tbody tr")
    assert len(rows) == TaskResult.objects.filter(task_name=FAIL).count() >= 4
    assert all(FAIL in row.text and "FAILURE" in row.text for row in rows)
    box = browser.find("#searchbar")
    box.send_keys(failed[1].id[:13])
    box.submit()
    wait_until(lambda: len(browser.find_all("#result_list tbody tr")) == 1, "the search")
    browser.shot("dashboard-04-results-search")
    assert failed[1].id in browser.text("#result_list")
