"""The monitoring dashboard and ``/metrics`` of the example project, while its tasks flow.

The example project runs as in tests/test_beat_browser.py (``runserver`` and ``taskworker
--beat`` on a fresh SQLite file, whose beat sends ``stock-check`` every 2 seconds), and
``manage.py demo`` sends its tasks: adds, a chord, a mail, a ``refund`` that fails, a ``charge``
that is retried twice. Headless Chromium then reads the dashboard and checks its cards, tables
and charts against the SQLite file, opens task pages, retries the failed refund; ``/metrics`` is
checked against the stored counters.

Beat keeps tasks flowing while the pages are read, so a page is compared with the rows only
when they did not change while it was served (:func:`steady`): then the page showed exactly
them. Screenshots go to the test's tmp_path (TASKQ_TEST_SCREENSHOTS copies them).
"""

from __future__ import annotations

import re
import sqlite3
import time
import urllib.request
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import pytest

from tests import test_beat_browser
from tests.browser import Browser
from tests.test_beat_browser import PASSWORD, STARTUP, USER, Example, example_env, manage, wait_for

pytestmark = pytest.mark.subprocess

#: The fixtures: the example project's processes on a fresh SQLite file, a browser on it.
example, browser = test_beat_browser.example, test_beat_browser.browser

DASHBOARD = "/admin/django_taskq/workerstate/"
ADD, REFUND, CHARGE = "shop.tasks.add", "shop.tasks.refund", "shop.tasks.charge"
#: The per-minute columns, as the dashboard's charts and tables name them.
COUNTS = ("received", "started", "succeeded", "failed", "retried", "rejected", "revoked")
#: Seconds to find a moment when no row changes while a page is served.
STEADY = 15.0


@dataclass(frozen=True)
class Stored:
    """What the workers stored, read in one transaction of the SQLite file."""

    minutes: dict[tuple[str, str], dict[str, int]]  # (HH:MM, task) -> counts
    counters: dict[tuple[str, str], float]  # (task, state) -> total
    workers: dict[str, tuple[int, int]]  # hostname -> (processed, active)
    messages: dict[tuple[str, str], int]  # (queue, state) -> messages

    def total(self, column: str, task: str | None = None) -> int:
        return sum(counts[column] for (_, name), counts in self.minutes.items()
                   if task in (None, name))

    def per_minute(self, *columns: str) -> dict[str, int]:
        """HH:MM -> the sum of ``columns`` over every task, for the minutes with any."""
        found: dict[str, int] = {}
        for (minute, _), counts in self.minutes.items():
            found[minute] = found.get(minute, 0) + sum(counts[c] for c in columns)
        return {minute: n for minute, n in found.items() if n}


def stored(example: Example) -> Stored:
    with closing(sqlite3.connect(f"file:{example.database}?mode=ro", uri=True,
                                 timeout=10, isolation_level=None)) as db:
        db.execute("BEGIN")  # one snapshot for every SELECT below
        minutes = {(str(row[0])[11:16], row[1]): dict(zip(COUNTS, row[2:], strict=True))
                   for row in db.execute(f"SELECT minute, task_name, {', '.join(COUNTS)}"
                                         " FROM taskq_taskminute")}
        counters = {(task, key.removeprefix("state:")): value for task, key, value in
                    db.execute("SELECT task_name, key, value FROM taskq_taskcounter"
                               " WHERE key LIKE 'state:%'")}
        workers = {host: (processed, active) for host, processed, active in
                   db.execute("SELECT hostname, processed, active FROM taskq_worker")}
        messages = {(queue, state): n for queue, state, n in db.execute(
            "SELECT queue, state, COUNT(*) FROM taskq_message GROUP BY queue, state")}
        db.execute("ROLLBACK")
    return Stored(minutes, counters, workers, messages)


def query(example: Example, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"file:{example.database}?mode=ro", uri=True,
                                 timeout=10)) as db:
        return list(db.execute(sql, params))


def steady(example: Example, serve: Callable[[], Any]) -> tuple[Any, Stored]:
    """``serve()`` (a page load) at a moment when the stored rows did not change meanwhile,
    and those rows: what it returned was computed from exactly them (the counts only grow)."""
    deadline = time.monotonic() + STEADY
    while True:
        before = stored(example)
        served = serve()
        after = stored(example)
        if before == after:
            return served, after
        assert time.monotonic() < deadline, "the stored rows never stood still for a page"
        time.sleep(0.05)


def texts(browser: Browser, css: str, attribute: str = "") -> list[str]:
    return [str(e.get_attribute(attribute) if attribute else e.text)
            for e in browser.find_all(css)]


def legend(browser: Browser, chart: str) -> dict[str, int]:
    """A chart's legend: series label -> total ("failed 3" -> {"failed": 3})."""
    items = (text.rsplit(" ", 1) for text in texts(browser, f"#{chart} .legend-item"))
    return {label: int(total) for label, total in items}


def bars(browser: Browser, chart: str, series: str) -> dict[str, int]:
    """HH:MM -> ``series``' value in that minute's bar tooltip ("00:31 — succeeded 5 · ..."),
    for the bars where it is not 0."""
    found = {}
    for tip in texts(browser, f"#{chart} g.bin > title", "textContent"):
        minute, values = tip.split(" — ", 1)
        value = re.search(rf"(?:^| · ){re.escape(series)} ([\d.]+)(?: · |$)", values)
        assert value, tip
        if float(value.group(1)):
            found[minute] = int(float(value.group(1)))
    return found


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as {(sample name, sorted labels): value}, read by prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        body = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body) for sample in family.samples}


def run_demo(example: Example) -> tuple[str, str]:
    """``manage.py demo`` to its end, then until its events and the worker's count are stored;
    the ids of its failed refund and of its charge (retried twice, then succeeded)."""
    manage(example_env(example.database), "demo")
    refund_id, charge_id = (query(example, "SELECT task_id FROM taskq_result WHERE task_name"
                                           " = ? AND state = ?", name, state)[0][0]
                            for name, state in ((REFUND, "FAILURE"), (CHARGE, "SUCCESS")))

    # The events behind the demo's results are stored within a flush (0.25 s), the worker's
    # processed count with its next heartbeat (EVENTS_HEARTBEAT, 2 s).
    def stored_too() -> bool:
        rows = stored(example)
        return (rows.total("failed", REFUND) == 1 and rows.total("succeeded", CHARGE) == 1
                and all(processed > 100 for processed, _ in rows.workers.values()))

    wait_for(stored_too, "the demo's events", STARTUP, example)
    return refund_id, charge_id


def check_cards_workers_queues(browser: Browser, rows: Stored) -> str:
    """The dashboard's cards and its workers and queues tables; the worker's hostname."""
    from selenium.webdriver.common.by import By

    (host, (processed, active)), = rows.workers.items()
    assert processed > 100 and active in (0, 1)  # 100 adds of the demo alone
    assert browser.text("#n-online") == "1"
    assert browser.text("#n-active") == str(active)
    assert browser.text("#n-failed") == str(rows.total("failed")) == "1"
    assert browser.text("#n-finished") == str(sum(rows.total(c) for c in COUNTS[2:]))

    worker = browser.find("#workers tr.online")
    cells = [cell.text for cell in worker.find_elements(By.TAG_NAME, "td")]
    assert cells[:5] == [host, "online", "solo × 1", str(active), str(processed)]
    assert cells[6] == "default, mail"

    for queue in ("default", "mail"):  # the example's queues, each consumed by the worker
        row = f'#queues tr[data-queue="{queue}"]'
        waiting, delayed, reserved = (int(browser.text(f"{row} td.{c}"))
                                      for c in ("waiting", "delayed", "reserved"))
        assert waiting + delayed == rows.messages.get((queue, "ready"), 0)
        assert reserved == rows.messages.get((queue, "reserved"), 0)
        assert browser.text(f"{row} td:nth-child(5)") == "1"
    return host


def check_charts_and_totals(browser: Browser, rows: Stored) -> None:
    """Both charts' legends and bars, and the per-task table, against the per-minute rows."""
    succeeded, failed = rows.total("succeeded"), rows.total("failed")
    other = sum(rows.total(c) for c in ("retried", "rejected", "revoked"))
    assert succeeded > 100 and rows.total("retried") == 2  # charge: busy twice
    assert legend(browser, "chart-tasks") == {
        "succeeded": succeeded, "failed": failed, "retried, rejected, revoked": other}
    assert legend(browser, "chart-failures") == {"failed": failed,
                                                 "retried": rows.total("retried")}
    assert bars(browser, "chart-tasks", "succeeded") == rows.per_minute("succeeded")
    assert bars(browser, "chart-failures", "failed") == rows.per_minute("failed")
    for task in (ADD, REFUND, CHARGE, "shop.tasks.stock_check"):
        shown = browser.text(f'#task-totals tr[data-task-name="{task}"]').split()
        assert shown[1:6] == [str(rows.total(c, task)) for c in COUNTS[:5]], task


def check_metrics(example: Example, host: str) -> None:
    """``/metrics`` against the stored counters, the worker's row and the queues."""
    metrics, rows = steady(example, lambda: scrape(example.url))
    tasks_total = {(dict(labels)["task"], dict(labels)["state"]): value
                   for (name, labels), value in metrics.items() if name == "taskq_tasks_total"}
    assert tasks_total == rows.counters
    assert tasks_total[(ADD, "SUCCESS")] == rows.total("succeeded", ADD) > 100
    assert tasks_total[(REFUND, "FAILURE")] == 1
    assert metrics[("taskq_workers", (("state", "online"),))] == 1
    assert metrics[("taskq_worker_processed_total", (("worker", host),))] == \
        rows.workers[host][0]
    for queue in ("default", "mail"):
        assert metrics[("taskq_queue_depth", (("queue", queue),))] == \
            rows.messages.get((queue, "ready"), 0)


def test_the_example_dashboard_and_metrics_show_the_stored_numbers(example, browser):
    from selenium.webdriver.common.by import By

    browser.login(USER, PASSWORD)
    refund_id, charge_id = run_demo(example)

    _, rows = steady(example, lambda: browser.open(DASHBOARD))
    browser.shot("example-dashboard-01-overview")
    host = check_cards_workers_queues(browser, rows)
    check_charts_and_totals(browser, rows)
    failure = browser.find(f'#failures tr[data-task-id="{refund_id}"]')
    assert REFUND in failure.text and "ValueError: order 42 was never paid" in failure.text
    assert failure.find_elements(By.CSS_SELECTOR, "input.retry")  # RESULT_EXTENDED is on

    failure.find_element(By.CSS_SELECTOR, f'a[href$="/task/{refund_id}/"]').click()
    browser.find("#story-events")
    browser.shot("example-dashboard-02-refund-story")
    assert browser.text("#story-state") == "FAILURE"
    assert texts(browser, "#story-events td.event-type") == [
        "task-received", "task-started", "task-failed"]
    assert host in browser.text("#story-events")

    browser.open(f"{DASHBOARD}task/{charge_id}/")
    browser.shot("example-dashboard-03-charge-story")
    kinds = [row[0] for row in query(example, "SELECT type FROM taskq_event WHERE task_id = ?"
                                     " ORDER BY timestamp, id", charge_id)]
    assert texts(browser, "#story-events td.event-type") == kinds
    assert kinds.count("task-retried") == 2 and kinds[-1] == "task-succeeded"
    assert {"task-received", "task-started"} <= set(kinds)
    assert browser.text("#story-state") == "SUCCESS"

    check_metrics(example, host)

    # Retry from the dashboard: the refund is sent again, as a new task, and fails again.
    browser.open(DASHBOARD)
    browser.find(f'#failures tr[data-task-id="{refund_id}"] input.retry').click()
    sent = browser.text("ul.messagelist li.success")
    assert sent.startswith(f"Sent task {refund_id} again as ")
    new_id = sent.rsplit(" ", 1)[1].rstrip(".")
    wait_for(lambda: query(example, "SELECT 1 FROM taskq_result WHERE task_id = ? AND"
                                    " state = 'FAILURE'", new_id), "the retried refund",
             STARTUP, example)
    browser.open(DASHBOARD)
    browser.shot("example-dashboard-04-retried")
    assert browser.find_all(f'#failures tr[data-task-id="{new_id}"]')
