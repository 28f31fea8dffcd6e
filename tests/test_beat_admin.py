"""Beat's admin pages through Django's test client: the periodic task list (words, next run in its
zones, last task's state in one query, the no-beat warning), the edit form's rules and its
preview, the actions and row buttons behind their own permissions, and the schedule and beat
pages."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_taskq.beat.forms import JSON_LIMIT, CrontabScheduleForm, PeriodicTaskForm
from django_taskq.brokers import get_broker
from django_taskq.models import (
    BeatInstance,
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTaskRun,
    SolarSchedule,
    TaskResult,
)

pytestmark = pytest.mark.django_db

ADD = "tests.testapp.tasks.add"
BASE = "/admin/django_taskq/periodictask/"
BERLIN = ZoneInfo("Europe/Berlin")


def every(minutes: int = 15) -> IntervalSchedule:
    return IntervalSchedule.objects.get_or_create(every=minutes, period="minutes")[0]


def nightly_berlin() -> CrontabSchedule:
    return CrontabSchedule.objects.create(minute="0", hour="2", day_of_week="mon-fri",
                                          timezone="Europe/Berlin")


def sunrise_berlin() -> SolarSchedule:
    return SolarSchedule.objects.create(event="sunrise", latitude=Decimal("52.52"),
                                        longitude=Decimal("13.405"))


def periodic(name: str = "every15", **fields) -> PeriodicTask:
    if not any(key in fields for key in ("interval", "crontab", "solar", "clocked")):
        fields["interval"] = every()
    fields.setdefault("task", ADD)
    fields.setdefault("args", [2, 3])
    return PeriodicTask.objects.create(name=name, **fields)


def shown(moment, zone) -> str:
    local = moment.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


def listed(moment, zone) -> str:
    """How the list shows ``moment`` in ``zone``: its date and time, named by the zone."""
    local = moment.astimezone(zone)
    return (f'<span title="{zone.key}"><span class="nowrap">{local:%Y-%m-%d}</span> '
            f'<span class="nowrap">{local:%H:%M:%S} {local.tzname()}</span></span>')


def staff(client: Client, username: str, *codenames: str) -> User:
    """Log in a staff user holding only the named django_taskq permissions."""
    user = User.objects.create_user(username, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=codenames, content_type__app_label="django_taskq"))
    client.force_login(user)
    return user


def action(client: Client, name: str, *tasks: PeriodicTask):
    return client.post(BASE, {"action": name, "index": "0",
                              "_selected_action": [str(task.pk) for task in tasks]})


def logged(task: PeriodicTask, text: str) -> int:
    return LogEntry.objects.filter(object_id=str(task.pk),
                                   change_message__contains=text).count()


@pytest.fixture
def queue(taskq_memory, taskq_sent):
    """A fresh memory broker; yields what was sent."""
    return taskq_sent


# -- the list ------------------------------------------------------------------------------------

def test_list_shows_schedules_in_words_next_runs_in_their_zones_and_last_states(admin_client):
    interval = periodic("every15", last_task_id="t-done")
    cron = periodic("nightly", crontab=nightly_berlin(), last_task_id="t-gone")
    sun = periodic("sunrise", solar=sunrise_berlin())
    done = TaskResult.objects.create(task_id="t-done", task_name=ADD, state="SUCCESS")

    page = admin_client.get(BASE).content.decode()

    assert "every 15 minutes" in page
    assert "At 02:00, Monday through Friday, Europe/Berlin" in page
    assert "sunrise at 52.5200, 13.4050" in page
    assert f'{listed(interval.next_run_at, ZoneInfo("UTC"))}</td>' in page
    assert f'{listed(cron.next_run_at, BERLIN)}<br>{listed(cron.next_run_at, ZoneInfo("UTC"))}' \
        in page
    assert cron.next_run_at.astimezone(BERLIN).hour == 2
    assert listed(sun.next_run_at, ZoneInfo("UTC")) in page
    assert f'<a href="/admin/django_taskq/taskresult/{done.pk}/change/" title="t-done">SUCCESS</a>' \
        in page
    assert '<span title="t-gone">no result stored</span>' in page


def test_list_shows_the_next_run_in_the_viewers_zone_when_it_reads_differently(admin_client,
                                                                                settings):
    settings.TIME_ZONE = "America/New_York"
    task = periodic()
    page = admin_client.get(BASE).content.decode()
    assert f'{listed(task.next_run_at, ZoneInfo("UTC"))}<br>' \
           f'{listed(task.next_run_at, ZoneInfo("America/New_York"))}' in page


def test_list_reads_the_last_states_with_the_page_not_per_row(admin_client):
    def queries_for_page() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(BASE).status_code == 200
        return len(captured)

    for n in range(2):
        periodic(f"t{n}", last_task_id=f"id{n}")
        TaskResult.objects.create(task_id=f"id{n}", state="SUCCESS")
    few = queries_for_page()
    for n in range(2, 8):
        periodic(f"t{n}", crontab=nightly_berlin(), last_task_id=f"id{n}")
        TaskResult.objects.create(task_id=f"id{n}", state="FAILURE")
    assert queries_for_page() == few


def test_filters_and_search(admin_client):
    periodic("mail digest", description="sends the digest")
    periodic("other", enabled=False)
    assert b"mail digest" in admin_client.get(BASE, {"q": "digest"}).content
    assert b"other" not in admin_client.get(BASE, {"q": "digest"}).content
    disabled = admin_client.get(BASE, {"enabled__exact": "0"}).content
    assert b"other" in disabled and b"mail digest" not in disabled
    for lookup in ("one_off__exact=0", "task=" + ADD, "source__exact=admin",
                   "catch_up__exact=latest"):
        assert admin_client.get(f"{BASE}?{lookup}").status_code == 200


def test_no_beat_warning_shows_until_a_beat_ticks(admin_client):
    def warning() -> str | None:
        page = admin_client.get(BASE).content.decode()
        start = page.find('id="beat-warning"')
        return None if start < 0 else page[start:page.find("</li>", start)]

    assert warning() is None  # nothing enabled: nothing to warn about
    periodic()
    assert "No beat has ticked yet" in warning() and "manage.py taskbeat" in warning()
    stale = timezone.now() - timedelta(minutes=5)
    BeatInstance.objects.create(ident="b1", host="h", pid=1, started_at=stale, last_tick_at=stale)
    assert f"No beat has ticked since {shown(stale, ZoneInfo('UTC'))}" in warning()
    assert "taskworker --beat" in warning()
    BeatInstance.objects.create(ident="b2", host="h", pid=2, started_at=stale,
                                last_tick_at=timezone.now() - timedelta(seconds=5))
    assert warning() is None


def test_declared_rows_say_what_beat_resets(admin_client):
    declared = periodic("declared", source=PeriodicTask.SETTINGS)
    mine = periodic("mine")
    note = "Declared in code (BEAT_SCHEDULE / add_periodic_task)"
    assert note in admin_client.get(f"{BASE}{declared.pk}/change/").content.decode()
    assert note not in admin_client.get(f"{BASE}{mine.pk}/change/").content.decode()


def test_change_page_shows_the_next_five_runs(admin_client):
    task = periodic("nightly", crontab=nightly_berlin())
    response = admin_client.get(f"{BASE}{task.pk}/change/")
    table = response.context["upcoming"]
    assert table.zones == ["Europe/Berlin", "UTC"] and len(table.rows) == 5
    assert table.rows[0] == [shown(task.next_run_at, BERLIN),
                             shown(task.next_run_at, ZoneInfo("UTC"))]
    assert all(row[0].split()[1] == "02:00:00" for row in table.rows)
    page = response.content.decode()
    assert 'id="upcoming-runs"' in page and 'name="_preview"' in page
    assert f'formaction="{BASE}{task.pk}/run/">Run now</button>' in page
    assert f'formaction="{BASE}{task.pk}/disable/">Disable</button>' in page
    assert '<form id="periodic-task-row-action" method="post" hidden>' in page


# -- the form ------------------------------------------------------------------------------------

def form_data(**changes) -> dict:
    data = {"name": "digest", "task": ADD, "interval": str(every().pk), "args": "[2, 3]",
            "kwargs": "{}", "headers": "{}", "catch_up": "latest", "enabled": "on",
            "queue": "", "description": ""}
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def errors_of(**changes) -> dict:
    form = PeriodicTaskForm(data=form_data(**changes))
    assert not form.is_valid()
    return {field: " ".join(messages) for field, messages in form.errors.items()}


def test_arguments_that_do_not_fit_the_task_are_refused():
    errors = errors_of(args="[1]")
    assert "These arguments do not fit the task" in errors["args"]
    assert "missing a required argument: 'y'" in errors["args"]


def test_a_valid_form_saves():
    form = PeriodicTaskForm(data=form_data(catch_up="all", catch_up_window="600"))
    assert form.is_valid(), form.errors
    task = form.save()
    assert task.args == [2, 3] and task.kwargs == {} and task.next_run_at is not None


def test_task_must_be_registered_and_the_error_lists_the_known_names():
    error = errors_of(task="shop.tasks.retired")["task"]
    assert "No task called 'shop.tasks.retired' is registered" in error
    assert ADD in error and "tests.echo" in error
    assert "Did you mean 'tests.testapp.tasks.add'?" in errors_of(task="tests.testapp.tasks.ad")["task"]
    form = PeriodicTaskForm(data=form_data(task="shop.tasks.retired"))
    assert '<option value="shop.tasks.retired" selected>' in str(form["task"])  # still shown


def test_editing_a_row_whose_task_is_gone_shows_it_and_refuses_to_save_it(admin_client):
    task = periodic(task="shop.tasks.retired")
    page = admin_client.get(f"{BASE}{task.pk}/change/").content.decode()
    assert '<option value="shop.tasks.retired" selected>shop.tasks.retired (not registered)' \
        in page
    response = admin_client.post(f"{BASE}{task.pk}/change/",
                                 form_data(name=task.name, task="shop.tasks.retired"))
    assert response.status_code == 200
    assert ADD in " ".join(response.context["adminform"].form.errors["task"])
    assert admin_client.post(f"{BASE}{task.pk}/change/", form_data(name=task.name)) \
        .status_code == 302
    task.refresh_from_db()
    assert task.task == ADD


@pytest.mark.parametrize("field, value, message", [
    ("args", '{"x": 1}', "args must be a JSON list"),
    ("args", '"text"', "args must be a JSON list"),
    ("kwargs", "[1, 2]", "kwargs must be a JSON object"),
    ("headers", "[]", "headers must be a JSON object"),
    ("args", json.dumps(["x" * JSON_LIMIT]), "the limit is 65,536 bytes (64 KiB)"),
    ("kwargs", json.dumps({"blob": "x" * JSON_LIMIT}), "kwargs is 65,"),
    ("priority", "10", "less than or equal to 9"),
    ("catch_up_window", "0", "greater than or equal to 1"),
    ("expire_seconds", "0", "greater than or equal to 1"),
])
def test_field_rules(field, value, message):
    assert message in errors_of(**{field: value})[field]


def test_empty_json_fields_mean_no_arguments():
    form = PeriodicTaskForm(data=form_data(task="tests.echo", args="", kwargs="", headers=""))
    assert form.is_valid(), form.errors
    assert (form.cleaned_data["args"], form.cleaned_data["kwargs"]) == ([], {})


@pytest.mark.parametrize("schedules, got", [
    ({"interval": ""}, "got none"),
    ({"crontab": "CRON"}, "got interval and crontab"),
])
def test_exactly_one_schedule(schedules, got):
    if "crontab" in schedules:
        schedules = {"crontab": str(nightly_berlin().pk)}
    errors = errors_of(**schedules)
    assert errors["__all__"] == ("Choose exactly one schedule: interval, crontab, solar or "
                                 f"clocked ({got}).")
    assert "onstraint" not in json.dumps(errors)  # said once, not again by the CHECK constraint


def test_expires_and_expire_seconds_not_both():
    later = (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    assert "not both" in errors_of(expires=later, expire_seconds="60")["__all__"]


def test_expires_must_come_after_the_start_time():
    start = timezone.now() + timedelta(days=2)
    errors = errors_of(start_time=start.strftime("%Y-%m-%d %H:%M:%S"),
                       expires=(start - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S"))
    assert "the task would never run" in errors["expires"]


def test_clocked_needs_one_off():
    clocked = ClockedSchedule.objects.create(clocked_time=timezone.now() + timedelta(hours=1))
    errors = errors_of(interval="", clocked=str(clocked.pk))
    assert "A clocked schedule runs once: tick one-off" in errors["one_off"]
    form = PeriodicTaskForm(data=form_data(interval="", clocked=str(clocked.pk), one_off="on"))
    assert form.is_valid(), form.errors


def test_crontab_form_names_the_bad_field_and_offers_zones():
    data = {"minute": "0", "hour": "2", "day_of_week": "mon-fri", "day_of_month": "*",
            "month_of_year": "*", "timezone": "Europe/Berlin"}
    assert CrontabScheduleForm(data=data).is_valid()
    errors = CrontabScheduleForm(data={**data, "minute": "61"}).errors
    assert list(errors) == ["minute"] and "crontab minute='61'" in errors["minute"][0]
    errors = CrontabScheduleForm(data={**data, "timezone": "Mars/Olympus"}).errors
    assert list(errors) == ["timezone"] and "Unknown time zone Mars/Olympus" in errors["timezone"][0]
    form = CrontabScheduleForm()
    names = [value for value, _ in form.fields["timezone"].choices]
    assert names == sorted(names) and "Europe/Berlin" in names
    assert form["timezone"].value() == "UTC"  # tests.settings.TIME_ZONE


# -- the preview ---------------------------------------------------------------------------------

def test_preview_on_the_add_page_shows_five_runs_and_saves_nothing(admin_client):
    crontab = nightly_berlin()
    before = PeriodicTask.objects.count()
    response = admin_client.post(f"{BASE}add/", form_data(interval="", crontab=str(crontab.pk),
                                                          _preview="Preview next runs"))
    assert response.status_code == 200
    preview = response.context["preview"]
    assert preview.zones == ["Europe/Berlin", "UTC"] and len(preview.rows) == 5
    assert all("02:00:00 CE" in row[0] for row in preview.rows)
    page = response.content.decode()
    assert "Preview only: nothing was saved." in page and 'id="preview-runs"' in page
    assert "errornote" not in page  # a preview is not an error
    assert PeriodicTask.objects.count() == before


def test_preview_of_an_unsaved_interval_says_runs_count_from_the_save(admin_client):
    response = admin_client.post(f"{BASE}add/", form_data(_preview="1"))
    assert len(response.context["preview"].rows) == 5
    assert "count from the moment the task is saved" in response.content.decode()


def test_preview_on_the_change_page_saves_nothing(admin_client):
    task = periodic()
    changed_at, logs = task.date_changed, LogEntry.objects.count()
    response = admin_client.post(f"{BASE}{task.pk}/change/", form_data(
        name=task.name, interval="", crontab=str(nightly_berlin().pk), _preview="1"))
    assert response.status_code == 200 and len(response.context["preview"].rows) == 5
    task.refresh_from_db()
    assert task.interval_id is not None and task.crontab_id is None
    assert task.date_changed == changed_at and LogEntry.objects.count() == logs


def test_preview_of_an_invalid_form_shows_the_errors_not_runs(admin_client):
    response = admin_client.post(f"{BASE}add/", form_data(args='{"x": 1}', _preview="1"))
    assert "preview" not in response.context
    assert "args must be a JSON list" in response.content.decode()
    assert PeriodicTask.objects.count() == 0


def test_preview_of_a_disabled_task_shows_its_runs_if_enabled(admin_client):
    response = admin_client.post(f"{BASE}add/", form_data(enabled=None, _preview="1"))
    assert len(response.context["preview"].rows) == 5
    assert "Disabled: beat sends none of these" in response.content.decode()


# -- actions, row buttons and permissions -------------------------------------------------------

def test_run_now_sends_a_run_records_its_id_and_logs(admin_client, queue):
    task = periodic()
    response = action(admin_client, "run_selected", task)
    assert response.status_code == 302
    assert queue.names() == [ADD] and queue[0].args == (2, 3)
    assert queue[0].headers["periodic_task_name"] == "every15"
    assert get_broker().size("default") == 1
    task.refresh_from_db()
    assert task.last_task_id == queue[0].id and task.total_run_count == 0
    assert logged(task, f"Ran now: task id {queue[0].id}") == 1
    shown_messages = [str(m) for m in admin_client.get(BASE).context["messages"]]
    assert f"Sent {ADD}[{queue[0].id}]" in shown_messages


def test_enable_and_disable_actions_recompute_the_next_run_and_log(admin_client):
    task = periodic()
    action(admin_client, "disable_selected", task)
    task.refresh_from_db()
    assert not task.enabled and task.next_run_at is None and logged(task, "Disabled") == 1
    action(admin_client, "enable_selected", task)
    task.refresh_from_db()
    assert task.enabled and task.next_run_at is not None and logged(task, "Enabled") == 1


def test_row_buttons_post_to_their_urls(admin_client, queue):
    task = periodic()
    response = admin_client.post(f"{BASE}{task.pk}/run/", {"next": f"{BASE}?q=every"})
    assert response.status_code == 302 and response.url == f"{BASE}?q=every"
    assert len(queue) == 1 and logged(task, "Ran now") == 1
    response = admin_client.post(f"{BASE}{task.pk}/disable/", {"next": "https://evil.example/"})
    assert response.url == BASE
    task.refresh_from_db()
    assert not task.enabled and logged(task, "Disabled") == 1
    page = admin_client.get(BASE).content.decode()
    assert f'formaction="{BASE}{task.pk}/enable/">Enable</button>' in page
    assert f"{BASE}{task.pk}/disable/" not in page
    admin_client.post(f"{BASE}{task.pk}/enable/")
    task.refresh_from_db()
    assert task.enabled and task.next_run_at is not None


def test_row_urls_want_post_and_a_csrf_token(admin_client):
    task = periodic()
    for verb in ("run", "enable", "disable"):
        assert admin_client.get(f"{BASE}{task.pk}/{verb}/").status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(User.objects.get(username="admin"))
    assert strict.post(f"{BASE}{task.pk}/disable/").status_code == 403
    task.refresh_from_db()
    assert task.enabled
    assert admin_client.post(f"{BASE}999999/run/").status_code == 404


def test_a_viewer_gets_no_actions_or_buttons_and_changes_nothing(client, queue):
    staff(client, "viewer", "view_periodictask")
    task = periodic()
    response = client.get(BASE)
    assert response.status_code == 200 and response.context["action_form"] is None
    page = response.content.decode()
    assert "Run now" not in page and "formaction=" not in page and "Preview next runs" not in page
    for name in ("run_selected", "enable_selected", "disable_selected"):
        action(client, name, task)
    for verb in ("run", "enable", "disable"):
        assert client.post(f"{BASE}{task.pk}/{verb}/").status_code == 403
    task.refresh_from_db()
    assert task.enabled and task.last_task_id == "" and len(queue) == 0
    assert LogEntry.objects.count() == 0
    change_page = client.get(f"{BASE}{task.pk}/change/").content.decode()
    assert "Preview next runs" not in change_page and 'id="upcoming-runs"' in change_page


def test_a_runner_may_run_but_not_switch(client, queue):
    staff(client, "runner", "view_periodictask", "run_periodictask")
    task = periodic()
    response = client.get(BASE)
    choices = [value for value, _ in response.context["action_form"].fields["action"].choices]
    assert choices == ["", "run_selected"]
    page = response.content.decode()
    assert "Run now</button>" in page and "Disable</button>" not in page
    action(client, "disable_selected", task)
    assert client.post(f"{BASE}{task.pk}/disable/").status_code == 403
    task.refresh_from_db()
    assert task.enabled and logged(task, "Disabled") == 0
    action(client, "run_selected", task)
    assert client.post(f"{BASE}{task.pk}/run/").status_code == 302
    task.refresh_from_db()
    assert len(queue) == 2 and task.last_task_id == queue[1].id and logged(task, "Ran now") == 2


def test_a_switcher_may_disable_but_not_enable(client):
    staff(client, "switcher", "view_periodictask", "disable_periodictask")
    on, off = periodic("on"), periodic("off", enabled=False)
    page = client.get(BASE).content.decode()
    assert "Disable</button>" in page and "Enable</button>" not in page and "Run now" not in page
    assert client.post(f"{BASE}{off.pk}/enable/").status_code == 403
    assert client.post(f"{BASE}{on.pk}/disable/").status_code == 302
    on.refresh_from_db(), off.refresh_from_db()
    assert not on.enabled and not off.enabled


# -- schedules and beat ----------------------------------------------------------------------------

def test_schedule_pages_list_words_and_the_tasks_using_them(admin_client):
    crontab = nightly_berlin()
    task = periodic("nightly", crontab=crontab)
    periodic("sunrise", solar=sunrise_berlin())
    periodic("every15")
    clocked = ClockedSchedule.objects.create(clocked_time=timezone.now() + timedelta(days=1))
    periodic("once", clocked=clocked, one_off=True)
    pages = {kind: admin_client.get(f"/admin/django_taskq/{kind}schedule/").content.decode()
             for kind in ("interval", "crontab", "solar", "clocked")}
    assert "every 15 minutes" in pages["interval"]
    assert "At 02:00, Monday through Friday, Europe/Berlin" in pages["crontab"]
    assert "sunrise at 52.5200, 13.4050" in pages["solar"]
    assert "once at " in pages["clocked"]
    page = admin_client.get(f"/admin/django_taskq/crontabschedule/{crontab.pk}/change/")
    text = page.content.decode()
    assert "Periodic tasks using this schedule" in text
    assert f'<a href="{BASE}{task.pk}/change/">nightly</a>' in text
    assert listed(task.next_run_at, BERLIN) in text


def test_saving_a_crontab_moves_its_tasks(admin_client):
    crontab = nightly_berlin()
    task = periodic("nightly", crontab=crontab)
    inline = "periodic_tasks"
    response = admin_client.post(f"/admin/django_taskq/crontabschedule/{crontab.pk}/change/", {
        "minute": "30", "hour": "3", "day_of_week": "*", "day_of_month": "*",
        "month_of_year": "*", "timezone": "Asia/Tokyo", f"{inline}-TOTAL_FORMS": "1",
        f"{inline}-INITIAL_FORMS": "1", f"{inline}-MIN_NUM_FORMS": "0",
        f"{inline}-MAX_NUM_FORMS": "1000", f"{inline}-0-id": str(task.pk),
        f"{inline}-0-crontab": str(crontab.pk)})
    assert response.status_code == 302, response.context["adminform"].form.errors
    task.refresh_from_db()
    tokyo = task.next_run_at.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (tokyo.hour, tokyo.minute) == (3, 30)


def test_crontab_page_rejects_a_bad_field(admin_client):
    response = admin_client.post("/admin/django_taskq/crontabschedule/add/", {
        "minute": "*/0", "hour": "*", "day_of_week": "*", "day_of_month": "*",
        "month_of_year": "*", "timezone": "UTC"})
    assert response.status_code == 200 and CrontabSchedule.objects.count() == 0
    assert "crontab minute=" in " ".join(response.context["adminform"].form.errors["minute"])


def test_beat_and_run_pages_are_read_only(admin_client):
    now = timezone.now()
    BeatInstance.objects.create(ident="alive", host="h", pid=1, started_at=now, last_tick_at=now)
    BeatInstance.objects.create(ident="gone", host="h", pid=2, started_at=now,
                                last_tick_at=now - timedelta(minutes=2))
    response = admin_client.get("/admin/django_taskq/beatinstance/")
    alive = {row.ident: response.context["cl"].model_admin.alive(row)
             for row in response.context["cl"].result_list}
    assert alive == {"alive": True, "gone": False}
    task = periodic()
    run = PeriodicTaskRun.objects.create(periodic_task=task, tick=now, task_id="r1",
                                         claimed_by="alive", claimed_at=now, sent_at=now)
    assert b"r1" in admin_client.get("/admin/django_taskq/periodictaskrun/").content
    for page in ("beatinstance", "periodictaskrun"):
        assert admin_client.get(f"/admin/django_taskq/{page}/add/").status_code == 403
    detail = admin_client.get(f"/admin/django_taskq/periodictaskrun/{run.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content


# -- in a real browser ---------------------------------------------------------------------------

@pytest.fixture
def browser(transactional_db, tmp_path):
    """Headless Chromium on a live server (tests/browser.py; skips without Chromium)."""
    from tests.browser import browsing, live_server

    with live_server() as url, browsing(url, tmp_path) as opened:
        User.objects.create_superuser("root", password="pw-root")
        opened.login("root", "pw-root")
        yield opened


def press(browser, css: str) -> None:
    """Click what ``css`` selects and wait for the page it leads to."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    pressed = browser.find(css)
    pressed.click()
    WebDriverWait(browser.driver, 10).until(expected_conditions.staleness_of(pressed))


def test_row_buttons_and_preview_in_a_browser(browser, taskq_memory):
    """The row buttons submit the page's separate POST form (the ``form`` attribute) with its
    CSRF token; the preview button shows runs and saves nothing."""
    from selenium.webdriver.support.ui import Select

    task = periodic("nightly", crontab=nightly_berlin())
    periodic("sunrise", solar=sunrise_berlin(), source=PeriodicTask.SETTINGS)
    browser.open(BASE)
    assert "No beat has ticked yet" in browser.text("#beat-warning")
    browser.shot("beat-01-periodic-tasks")
    press(browser, f"button[formaction='{BASE}{task.pk}/disable/']")
    assert "Disabled 1 periodic task(s)." in browser.text("ul.messagelist li.success")
    task.refresh_from_db()
    assert not task.enabled and task.next_run_at is None
    press(browser, f"button[formaction='{BASE}{task.pk}/run/']")
    assert f"Sent {ADD}[" in browser.text("ul.messagelist li.success")
    browser.shot("beat-02-after-run-now")

    browser.open(f"{BASE}{task.pk}/change/")
    assert len(browser.find_all("#upcoming-runs tbody tr")) == 5
    browser.shot("beat-03-change-page")

    browser.open(f"{BASE}add/")
    browser.find("#id_name").send_keys("preview me")
    Select(browser.find("#id_task")).select_by_value(ADD)
    Select(browser.find("#id_interval")).select_by_index(0)
    Select(browser.find("#id_crontab")).select_by_index(1)
    browser.find("#id_args").clear()
    browser.find("#id_args").send_keys("[1, 2]")
    press(browser, "input[name=_preview]")
    assert "Preview only: nothing was saved." in browser.text("#preview-runs")
    assert len(browser.find_all("#preview-runs tbody tr")) == 5
    browser.shot("beat-04-preview")
    assert not PeriodicTask.objects.filter(name="preview me").exists()


def test_every_beat_page_opens_in_a_browser(browser, taskq_memory):
    """The schedule pages (each with its inline of the tasks using it), beat instances and
    claimed runs, as a superuser sees them."""
    from django_taskq.beat.models import BeatInstance, ClockedSchedule, PeriodicTaskRun

    cron = nightly_berlin()
    task = periodic("nightly", crontab=cron)
    periodic("every15")
    periodic("sunrise", solar=sunrise_berlin())
    at = datetime(2030, 1, 1, 8, tzinfo=BERLIN)
    periodic("once", clocked=ClockedSchedule.objects.create(clocked_time=at), one_off=True)
    now = timezone.now()
    BeatInstance.objects.create(ident="beat1@host#abc", host="host", pid=1, started_at=now,
                                last_tick_at=now)
    PeriodicTaskRun.objects.create(periodic_task=task, tick=now, task_id="t-1",
                                   claimed_by="beat1@host#abc", claimed_at=now, sent_at=now)
    pages = {"intervalschedule": "every 15 minutes",
             "crontabschedule": "At 02:00, Monday through Friday, Europe/Berlin",
             "solarschedule": "sunrise", "clockedschedule": "2030",
             "beatinstance": "beat1@host#abc", "periodictaskrun": "t-1"}
    for model, shown in pages.items():
        browser.open(f"/admin/django_taskq/{model}/")
        assert shown in browser.text("#result_list"), model
        browser.shot(f"beat-page-{model}")
    browser.open(f"/admin/django_taskq/crontabschedule/{cron.pk}/change/")
    assert "nightly" in browser.text("body")  # the inline of the tasks using it
    browser.shot("beat-page-crontab-change")
