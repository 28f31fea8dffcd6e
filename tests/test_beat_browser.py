"""Beat's admin in a real browser, on the example project served by real processes.

``manage.py runserver`` and ``manage.py taskworker --beat`` run the example project on a fresh
SQLite file (EXAMPLE_DB_PATH); headless Chromium (tests/browser.py) signs in through the login
form, finds the schedules declared in its settings, adds a crontab and a periodic task on it
(previewing its runs first), presses the row's "Run now" and follows the task's state to its
result. Every step is saved as a screenshot under the test's tmp_path (TASKQ_TEST_SCREENSHOTS
copies them). The test's own database is not used: the rows the processes write are read back
through the pages, or straight from the SQLite file.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser import WAIT, Browser, browsing, require_browser

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
ADMIN = "/admin/django_taskq/"
TASKS = f"{ADMIN}periodictask/"
CRONTABS = f"{ADMIN}crontabschedule/"
USER, PASSWORD = "admin", "pw-admin-browser"
#: Seconds for the server to answer and for a run to reach SUCCESS.
STARTUP, RUN_TIMEOUT = 30.0, 20.0
#: How the example settings' nightly-report crontab reads (0 2 * * mon-fri, Europe/Berlin).
NIGHTLY_WORDS = "At 02:00, Monday through Friday, Europe/Berlin"


def example_env(database: Path) -> dict[str, str]:
    """The example project's environment: its own settings on ``database``; the TASKQ_* and
    Django settings variables of this run (CI's services) are left out, so its settings.py
    alone decides."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("TASKQ_") and name != "DJANGO_SETTINGS_MODULE"}
    env.update(EXAMPLE_DB_PATH=str(database), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1",
               DJANGO_SETTINGS_MODULE="example_project.settings")
    return env


def manage(env: dict[str, str], *args: str) -> None:
    """Run ``manage.py <args>`` to its end; fail with its output."""
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=EXAMPLE, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}{done.stderr}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Process:
    """A ``manage.py`` command running in the background, its output in ``log``."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@dataclass
class Example:
    """The running example project: its URL, its database file and its processes."""

    url: str
    database: Path
    processes: list[Process]

    def outputs(self) -> str:
        return "\n".join(f"--- {p.name} (exit {p.proc.poll()}):\n{p.output()}"
                         for p in self.processes)

    def count(self, sql: str, *params: object) -> int:
        """``SELECT COUNT(*) ...`` on the project's database, read-only."""
        with closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True,
                                     timeout=10)) as db:
            return int(db.execute(sql, params).fetchone()[0])


def wait_for(condition: Callable[[], object], what: str, timeout: float,
             example: Example) -> None:
    """Poll ``condition`` every 0.2 s; fail with the processes' output after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        for process in example.processes:
            assert process.proc.poll() is None, f"{process.name} exited\n{example.outputs()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{example.outputs()}"
        time.sleep(0.2)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture
def example(tmp_path: Path) -> Iterator[Example]:
    """The example project migrated on a fresh file, with a superuser, served by runserver,
    worked off by ``taskworker --beat``; both killed at the end (their output printed, which
    pytest shows when the test fails)."""
    require_browser()  # before starting anything: skip (fail in CI) without a browser
    env = example_env(tmp_path / "example.sqlite3")
    manage(env, "migrate", "--noinput", "--verbosity", "0")
    manage({**env, "DJANGO_SUPERUSER_USERNAME": USER, "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
            "DJANGO_SUPERUSER_EMAIL": "admin@example.com"}, "createsuperuser", "--noinput")
    port = free_port()
    running = Example(f"http://127.0.0.1:{port}", tmp_path / "example.sqlite3", [])
    commands = {"runserver": ("runserver", f"127.0.0.1:{port}", "--noreload"),
                "taskworker": ("taskworker", "--pool", "solo", "--queues", "default,mail",
                               "--beat", "--loglevel", "INFO")}
    try:
        for name, args in commands.items():
            log = tmp_path / f"{name}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen([sys.executable, "manage.py", *args], cwd=EXAMPLE,
                                        env=env, stdout=out, stderr=subprocess.STDOUT)
            running.processes.append(Process(name, proc, log))
        wait_for(lambda: answers(f"{running.url}/admin/login/"), "runserver to answer",
                 STARTUP, running)
        yield running
    finally:
        for process in running.processes:
            process.stop()
        print(running.outputs())


@pytest.fixture
def browser(example: Example, tmp_path: Path) -> Iterator[Browser]:
    with browsing(example.url, tmp_path) as opened:
        yield opened


def click(browser: Browser, element: Any) -> None:
    """Click ``element`` and wait for the page it leads to (until then, the old page's
    messages are still there to be read)."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    element.click()
    WebDriverWait(browser.driver, WAIT).until(expected_conditions.staleness_of(element))


def press(browser: Browser, css: str) -> None:
    """Click what ``css`` selects and wait for the page it leads to."""
    click(browser, browser.find(css))


def row(browser: Browser, name: str) -> Any:
    """The change list row whose name link reads ``name``."""
    from selenium.webdriver.common.by import By

    browser.find("#result_list")
    return browser.driver.find_element(
        By.XPATH, "//table[@id='result_list']//tr[th[contains(@class, 'field-name')]"
                  f"/a[normalize-space()='{name}']]")


def shown(browser: Browser, css: str) -> str:
    """The text of what ``css`` selects on the page as it is now ("" when nothing does)."""
    found = browser.find_all(css)
    return str(found[0].text) if found else ""


def type_into(browser: Browser, css: str, text: str) -> None:
    field = browser.find(css)
    field.clear()
    field.send_keys(text)


def choose(browser: Browser, css: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(browser.find(css)).select_by_value(value)


def pk_in(href: str) -> str:
    """The object id in an admin change URL."""
    found = re.search(r"/(\d+)/change/", href)
    assert found, href
    return found.group(1)


def test_a_crontab_task_is_added_previewed_run_now_and_its_result_shown(example, browser):
    from selenium.webdriver.common.by import By

    browser.login(USER, PASSWORD)
    browser.shot("beat-browser-01-admin-index")

    # taskworker --beat writes the declared rows when its beat starts, then its liveness.
    def declared_and_beat_alive() -> bool:
        browser.open(TASKS)
        listing = shown(browser, "#result_list")
        return "nightly-report" in listing and not browser.find_all("#beat-warning")

    wait_for(declared_and_beat_alive, "the declared rows and a live beat", STARTUP, example)
    browser.shot("beat-browser-02-declared-tasks")
    assert "every 2 seconds" in row(browser, "stock-check").text
    assert NIGHTLY_WORDS in row(browser, "nightly-report").text

    browser.open(f"{CRONTABS}add/")
    type_into(browser, "#id_minute", "*/15")
    type_into(browser, "#id_hour", "9-17")
    type_into(browser, "#id_day_of_week", "mon-fri")
    choose(browser, "#id_timezone", "Europe/Berlin")
    browser.shot("beat-browser-03-crontab-form")
    press(browser, "input[name=_save]")
    added = browser.find("ul.messagelist li.success a")
    crontab = pk_in(added.get_attribute("href"))
    browser.shot("beat-browser-04-crontabs")
    assert "Europe/Berlin" in added.text

    browser.open(f"{TASKS}add/")
    type_into(browser, "#id_name", "browser add")
    choose(browser, "#id_task", "shop.tasks.add")
    choose(browser, "#id_crontab", crontab)
    type_into(browser, "#id_args", "[20, 22]")
    press(browser, "input[name=_preview]")
    browser.shot("beat-browser-05-preview")
    assert "Preview only: nothing was saved." in browser.text("#preview-runs")
    runs = [str(cell.text) for cell in browser.find_all("#preview-runs tbody tr td:nth-child(2)")]
    assert len(runs) == 5, runs
    for run in runs:  # the first zone shown is the schedule's: every quarter, 09:00 to 17:45
        assert re.fullmatch(r"\d{4}-\d\d-\d\d (09|1[0-7]):(00|15|30|45):00 CES?T", run), runs
    assert example.count("SELECT COUNT(*) FROM taskq_beat_periodictask WHERE name = ?",
                         "browser add") == 0
    press(browser, "input[name=_save]")
    assert "was added successfully" in browser.text("ul.messagelist li.success")
    task = pk_in(row(browser, "browser add").find_element(By.CSS_SELECTOR, "th a")
                 .get_attribute("href"))

    click(browser, row(browser, "browser add").find_element(
        By.XPATH, ".//button[normalize-space()='Run now']"))
    sent = re.search(r"Sent shop\.tasks\.add\[([\w-]+)\]",
                     browser.text("ul.messagelist li.success"))
    assert sent, browser.text("ul.messagelist")
    task_id = sent.group(1)
    browser.shot("beat-browser-06-run-now-sent")

    def succeeded() -> bool:
        browser.open(TASKS)
        return shown(browser, f"#result_list tr:has(a[href$='/{task}/change/']) "
                              "td.field-last_state") == "SUCCESS"

    wait_for(succeeded, "the run's SUCCESS in the list", RUN_TIMEOUT, example)
    browser.shot("beat-browser-07-run-now-success")
    # At 1280 pixels the list is wider than its box: the state and the buttons are off to the
    # right. A second picture with the table scrolled there shows them.
    browser.driver.execute_script("document.querySelector('#changelist .results').scrollLeft"
                                  " = 100000")
    browser.shot("beat-browser-08-run-now-success-scrolled")
    assert not browser.find_all("#beat-warning")
    press(browser, f"#result_list tr:has(a[href$='/{task}/change/']) td.field-last_state a")
    browser.shot("beat-browser-09-task-result")
    # Beat may have sent the crontab's own tick meanwhile (a quarter hour in Berlin's working
    # hours): the link then leads to that run, with the same arguments and result.
    assert browser.text(".field-task_name .readonly") == "shop.tasks.add"
    assert browser.text(".field-state .readonly") == "SUCCESS"
    assert browser.text(".field-result .readonly") == "42"

    browser.open(f"{TASKS}{task}/history/")
    browser.shot("beat-browser-10-history")
    assert f"Ran now: task id {task_id}" in browser.text("#change-history")
