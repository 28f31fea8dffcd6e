"""The admin pages in a real browser: task results, queued messages, dead letters and requeue.

Headless Chromium (tests/browser.py) signs in through the login form and uses the pages as a
person would; every page is saved as a screenshot in the test's tmp_path. The rows come from
real work on the database broker and result backend: a worker run, a delayed call, a message
for a task nobody registered. Not marked network_broker or subprocess: every Django leg runs
these, since the admin changes between Django versions.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission, User

from django_taskq import send_task, states
from django_taskq.brokers.database import DatabaseBroker
from django_taskq.models import DeadLetterMessage, QueuedMessage, TaskResult
from django_taskq.worker import Worker, WorkerOptions
from tests.browser import Browser, browsing, live_server
from tests.testapp import tasks

RESULTS = "/admin/django_taskq/taskresult/"
QUEUED = "/admin/django_taskq/queuedmessage/"
DEAD = "/admin/django_taskq/deadlettermessage/"
MISSING_TASK = "shop.tasks.retired"


@pytest.fixture
def browser(transactional_db, tmp_path):
    """Headless Chromium on a live server of the test database (see tests/browser.py)."""
    with live_server() as url, browsing(url, tmp_path) as opened:
        yield opened


@pytest.fixture(autouse=True)
def database_queue(settings):
    """The database broker and result backend, with extended results."""
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "db://default",
                      "RESULT_BACKEND": "db://default", "RESULT_EXTENDED": True,
                      "POLL_INTERVAL": 0.01}


def work_off(*queues: str) -> None:
    """A real worker run (solo pool) until ``queues`` are empty."""
    Worker(WorkerOptions.from_settings(pool="solo", queues=queues)).run(until_empty=True)


def superuser(browser: Browser) -> None:
    User.objects.create_superuser("root", password="pw-root")
    browser.login("root", "pw-root")


def staff(browser: Browser, username: str, *codenames: str) -> None:
    """Sign in as a staff user holding only the named django_taskq permissions."""
    user = User.objects.create_user(username, password=f"pw-{username}", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=codenames, content_type__app_label="django_taskq"))
    browser.login(username, f"pw-{username}")


def open_row(browser: Browser, link_text: str) -> None:
    """Follow a changelist row's link to its detail page."""
    from selenium.webdriver.common.by import By

    browser.driver.find_element(By.LINK_TEXT, link_text).click()
    browser.find("#content-main fieldset")


def field(browser: Browser, name: str) -> str:
    """The shown value of a read-only field on a detail page ("" when the row is absent)."""
    rows = browser.find_all(f".field-{name} .readonly")
    return str(rows[0].text) if rows else ""


def run_action(browser: Browser, action: str, *pks: int) -> str:
    """Tick the rows, choose the action, press Go; the message the admin answers with."""
    from selenium.webdriver.support.ui import Select

    for pk in pks:
        browser.find(f"input.action-select[value='{pk}']").click()
    Select(browser.find("select[name=action]")).select_by_value(action)
    browser.find("button[name=index]").click()
    return browser.text("ul.messagelist")


def test_task_results_list_and_extended_detail(browser):
    done = tasks.echo.apply_async((1, "two"), {"three": 3}, queue="other")
    broken = tasks.fail.delay("refund 42 was never paid")
    work_off("default", "other")
    assert (done.state, broken.state) == (states.SUCCESS, states.FAILURE)

    superuser(browser)
    browser.shot("01-admin-index")
    browser.open(RESULTS)
    listing = browser.text("#result_list")
    browser.shot("02-task-results")
    for result, state in ((done, "SUCCESS"), (broken, "FAILURE")):
        [row] = [line for line in listing.splitlines() if result.id in line]
        assert state in row and result.name in row

    open_row(browser, done.id)
    browser.shot("03-task-result-extended")
    assert field(browser, "state") == "SUCCESS"
    assert field(browser, "queue") == "other"
    # Shown as stored: the JSON the result serializer wrote.
    assert json.loads(field(browser, "task_args")) == [1, "two"]
    assert json.loads(field(browser, "task_kwargs")) == {"three": 3}
    assert json.loads(field(browser, "result")) == {"args": [1, "two"], "kwargs": {"three": 3}}

    browser.open(f"{RESULTS}{TaskResult.objects.get(task_id=broken.id).pk}/change/")
    browser.shot("04-task-result-failure")
    assert "refund 42 was never paid" in field(browser, "result")
    assert "ValueError" in field(browser, "traceback")
    assert json.loads(field(browser, "task_args")) == ["refund 42 was never paid"]


def test_queued_messages_page_shows_a_waiting_message(browser):
    waiting = tasks.add.apply_async((2, 3), queue="billing", priority=7, countdown=3600)

    superuser(browser)
    browser.open(QUEUED)
    browser.shot("05-queued-messages")
    [row] = [line for line in browser.text("#result_list").splitlines() if waiting.id in line]
    assert "tests.testapp.tasks.add" in row and "billing" in row and "ready" in row

    open_row(browser, waiting.id)
    browser.shot("06-queued-message")
    assert field(browser, "queue") == "billing" and field(browser, "priority") == "7"
    # The decoded body keeps its indentation (django_taskq/templates/.../change_form.html).
    assert json.loads(field(browser, "body_text"))[:2] == [[2, 3], {}]
    assert "\n    2,\n    3\n" in field(browser, "body_text")
    whitespace = browser.find(".field-body_text .readonly").value_of_css_property("white-space")
    assert whitespace == "pre-wrap"


def test_dead_letters_are_listed_and_requeued_by_the_action_and_the_broker_page(browser):
    first = send_task(MISSING_TASK, (1,))
    second = send_task(MISSING_TASK, (2,))
    work_off("default")  # nobody registered the task: both messages are dead-lettered
    letters = {row.message_id: row for row in DeadLetterMessage.objects.all()}
    assert set(letters) == {first.id, second.id}

    superuser(browser)
    browser.open(DEAD)
    browser.shot("07-dead-letters")
    listing = browser.text("#result_list")
    for message_id in (first.id, second.id):
        [row] = [line for line in listing.splitlines() if message_id in line]
        assert MISSING_TASK in row and "not registered" in row and "default" in row

    answer = run_action(browser, "requeue_selected", letters[first.id].pk)
    browser.shot("08-dead-letters-requeued")
    assert "Requeued 1 dead letter(s)." in answer
    assert list(DeadLetterMessage.objects.values_list("message_id", flat=True)) == [second.id]
    back = QueuedMessage.objects.get(message_id=first.id)
    assert (back.queue, back.state, back.attempts) == ("default", QueuedMessage.READY, 0)

    open_row(browser, second.id)
    browser.shot("09-dead-letter")
    assert field(browser, "reason") == letters[second.id].reason  # in full, not cut short
    assert json.loads(field(browser, "body_text"))[0] == [2]

    browser.open(DEAD)
    browser.find("a[href$='/deadlettermessage/broker/']").click()  # the object tools link
    assert "db://default" in browser.text("#content-main")
    browser.shot("10-dead-letters-in-the-broker")
    assert second.id in browser.text("#dead-letters")
    browser.find(f"input[name=letter_id][value='{letters[second.id].pk}']").click()
    browser.find("input[type=submit][value='Requeue selected']").click()
    assert "Requeued 1 dead letter(s)." in browser.text("ul.messagelist")
    browser.shot("11-broker-page-requeued")
    assert "No dead letters." in browser.text("#content-main")
    assert not DeadLetterMessage.objects.exists()
    assert QueuedMessage.objects.get(message_id=second.id).queue == "default"


def test_without_the_requeue_permission_there_is_nothing_to_requeue_with(browser):
    broker = DatabaseBroker(alias="default")
    sent = send_task(MISSING_TASK, (3,))
    [delivery] = broker.reserve(["default"], max_messages=1, lease=30, worker="w", timeout=1)
    broker.dead_letter(delivery, "bad: shown to viewers")

    staff(browser, "viewer", "view_deadlettermessage")
    browser.open(DEAD)
    browser.shot("12-dead-letters-viewer")
    assert sent.id in browser.text("#result_list")
    assert browser.find_all("select[name=action]") == []  # no actions, so no row checkboxes
    assert browser.find_all("input.action-select") == []

    browser.open(f"{DEAD}broker/")
    browser.shot("13-broker-page-viewer")
    assert "bad: shown to viewers" in browser.text("#dead-letters")
    assert browser.find_all("input[name=letter_id]") == []
    assert browser.find_all("input[type=submit]") == []
