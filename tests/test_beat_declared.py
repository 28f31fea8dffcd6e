"""Schedules declared in code: BEAT_SCHEDULE (and CELERY_BEAT_SCHEDULE), add_periodic_task, the
built-in cleanup entry, the upsert rule, and their system checks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from django.core import checks

from django_taskq import Celery
from django_taskq.beat import declared
from django_taskq.beat.checks import check_beat_schedule
from django_taskq.beat.models import PeriodicTask
from django_taskq.beat.service import BeatService
from django_taskq.exceptions import ConfigurationError
from django_taskq.schedules import clocked, crontab, solar
from django_taskq.signals import beat_init

pytestmark = pytest.mark.django_db

CELERY_STYLE = {
    "add-every-30s": {"task": "tests.testapp.tasks.add", "schedule": 30.0, "args": (16, 16)},
    "nightly": {"task": "tests.echo", "schedule": crontab(minute=0, hour=2, day_of_week="mon-fri",
                                                          tz="Europe/Berlin"),
                "kwargs": {"report": True},
                "options": {"queue": "reports", "priority": 7, "expires": 600,
                            "routing_key": "reports"}},
    "hourly": {"task": "tests.echo", "schedule": timedelta(hours=1)},
    "at-dawn": {"task": "tests.echo", "schedule": solar("dawn_civil", 52.52, 13.405)},
}


@pytest.fixture(autouse=True)
def no_added_entries():
    declared._added.clear()
    declared.refused.clear()
    yield
    declared._added.clear()
    declared.refused.clear()


def rows() -> dict[str, PeriodicTask]:
    return {row.name: row for row in PeriodicTask.objects.all()}


def test_a_celery_beat_schedule_moves_over_unchanged(settings):
    settings.TASKQ = {**settings.TASKQ, "BEAT_SCHEDULE": CELERY_STYLE}
    names = declared.sync("default")
    found = rows()
    assert set(names) == set(found) == {*CELERY_STYLE, declared.CLEANUP_ENTRY}
    every = found["add-every-30s"]
    assert (every.interval.every, every.interval.period, every.args) == (30, "seconds", [16, 16])
    nightly = found["nightly"]
    assert str(nightly.crontab) == "At 02:00, Monday through Friday, Europe/Berlin"
    assert (nightly.queue, nightly.priority, nightly.expire_seconds, nightly.kwargs) == (
        "reports", 7, 600, {"report": True})
    assert (found["hourly"].interval.every, found["hourly"].interval.period) == (1, "hours")
    assert found["at-dawn"].solar.event == "dawn_civil"
    assert all(row.source == PeriodicTask.SETTINGS and row.next_run_at for row in found.values())
    cleanup = found[declared.CLEANUP_ENTRY]
    assert (cleanup.task, cleanup.crontab.hour, cleanup.crontab.minute) == (
        declared.CLEANUP_TASK, "4", "0")


def test_celery_beat_schedule_setting_is_honoured(settings):
    settings.CELERY_BEAT_SCHEDULE = {"hourly": CELERY_STYLE["hourly"]}
    declared.sync("default")
    assert rows()["hourly"].task == "tests.echo"


def test_code_owns_the_entry_but_the_admin_keeps_enabled(settings):
    settings.TASKQ = {**settings.TASKQ, "BEAT_SCHEDULE": {"hourly": CELERY_STYLE["hourly"]},
                      "BEAT_BACKEND_CLEANUP": False}
    declared.sync("default")
    row = rows()["hourly"]
    row.enabled = False
    row.args = ["edited in the admin"]
    row.save()
    declared.sync("default")
    row = rows()["hourly"]
    assert (row.enabled, row.args) == (False, [])
    settings.TASKQ = {**settings.TASKQ, "BEAT_SCHEDULE": {}}
    PeriodicTask.objects.filter(name="hourly").update(enabled=True)
    declared.sync("default")
    assert rows()["hourly"].enabled is False  # gone from code: disabled, history kept


def test_an_unchanged_entry_keeps_its_pending_run(settings, monkeypatch):
    settings.TASKQ = {**settings.TASKQ, "BEAT_SCHEDULE": {"hourly": CELERY_STYLE["hourly"]}}
    declared.sync("default")
    pending = datetime(2020, 1, 1, tzinfo=timezone.utc)
    PeriodicTask.objects.filter(name="hourly").update(next_run_at=pending)
    declared.sync("default")  # a restart of beat must not drop a run that is due
    assert rows()["hourly"].next_run_at == pending


def test_add_periodic_task_on_the_celery_app(settings):
    settings.TASKQ = {**settings.TASKQ, "BEAT_BACKEND_CLEANUP": False}
    app = Celery("proj")
    from tests.testapp.tasks import add

    app.add_periodic_task(10.0, add, args=(1, 2), name="add every 10")
    app.add_periodic_task(crontab(minute="*/15"), "tests.echo", kwargs={"x": 1})
    app.add_periodic_task(30.0, add.s(3, 4).set(queue="q"), name="signature")  # Celery's form
    declared.sync("default")
    found = rows()
    assert found["add every 10"].args == [1, 2]
    assert found["tests.echo(x=1)"].crontab.minute == "*/15"
    assert (found["signature"].task, found["signature"].args, found["signature"].queue) == (
        "tests.testapp.tasks.add", [3, 4], "q")


def test_a_clocked_entry_is_one_off(settings):
    at = datetime(2030, 1, 1, 8, tzinfo=timezone.utc)
    settings.TASKQ = {**settings.TASKQ, "BEAT_SCHEDULE": {
        "once": {"task": "tests.echo", "schedule": clocked(at)}}}
    declared.sync("default")
    row = rows()["once"]
    assert (row.clocked.clocked_time, row.one_off, row.next_run_at) == (at, True, at)


@pytest.mark.parametrize(("entry", "words"), [
    ({"task": "tests.echo"}, "needs 'task' and 'schedule'"),
    ({"task": "tests.echo", "schedule": "daily"}, "schedule must be"),
    ({"task": "tests.echo", "schedule": 5, "options": {"countdown": 3}}, "countdown"),
    ({"task": "tests.echo", "schedule": 5, "args": "1, 2"}, "args must be a list"),
    ({"task": "tests.echo", "schedule": 5, "every": 3}, "unknown keys"),
])
def test_a_bad_entry_is_a_check_error_that_names_it(settings, entry, words):
    settings.TASKQ = {**settings.TASKQ, "BEAT_SCHEDULE": {"broken": entry}}
    messages = check_beat_schedule()
    assert [m.id for m in messages] == ["django_taskq.E012"]
    assert "'broken'" in messages[0].msg and words in messages[0].msg
    assert isinstance(messages[0], checks.Error)


def test_an_entry_for_an_unregistered_task_is_a_check_warning(settings):
    settings.TASKQ = {**settings.TASKQ, "BEAT_SCHEDULE": {
        "typo": {"task": "tests.testapp.tasks.ad", "schedule": 60}}}
    messages = check_beat_schedule()
    assert [m.id for m in messages] == ["django_taskq.W015"]
    assert "tests.testapp.tasks.ad" in messages[0].msg


def test_beat_start_upserts_and_sends_beat_init(settings):
    settings.TASKQ = {**settings.TASKQ, "BEAT_SCHEDULE": {"hourly": CELERY_STYLE["hourly"]}}
    seen = []
    beat_init.connect(lambda sender, **kw: seen.append(sender), weak=False, dispatch_uid="t")
    try:
        service = BeatService()
        service.start()
    finally:
        beat_init.disconnect(dispatch_uid="t")
    assert seen == [service]
    assert "hourly" in rows()


def test_backend_cleanup_task_runs_eagerly(settings):
    from django_taskq.tasks import backend_cleanup

    result = backend_cleanup.apply()
    assert result.successful()
    assert set(result.get()) == {"results", "control", "beat_runs"}


def test_beat_database_must_be_an_alias(settings):
    from django_taskq.beat.checks import check_beat_database

    assert check_beat_database() == []
    settings.TASKQ = {**settings.TASKQ, "BEAT_DATABASE": "beats"}
    [message] = check_beat_database()
    assert message.id == "django_taskq.E013" and "'beats'" in message.msg
    assert "default" in message.hint


def test_entry_options_are_checked_and_expires_may_be_a_timedelta(settings):
    settings.TASKQ = {**settings.TASKQ, "BEAT_BACKEND_CLEANUP": False, "BEAT_SCHEDULE": {
        "hourly": {"task": "tests.echo", "schedule": 3600,
                   "options": {"expires": timedelta(minutes=5)}}}}
    declared.sync("default")
    assert rows()["hourly"].expire_seconds == 300
    settings.TASKQ = {**settings.TASKQ, "BEAT_SCHEDULE": {
        "loud": {"task": "tests.echo", "schedule": 60, "options": {"priority": 12}}}}
    [message] = check_beat_schedule()
    assert message.id == "django_taskq.E012" and "priority must be a whole number from 0 to 9" \
        in message.msg


def test_a_bad_entry_stops_taskbeat_with_its_name(settings):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    settings.TASKQ = {**settings.TASKQ, "BEAT_SCHEDULE": {
        "broken": {"task": "tests.echo", "schedule": "daily"}}}
    with pytest.raises(CommandError, match="beat cannot start: beat entry 'broken'"):
        call_command("taskbeat")


def test_an_entry_another_beat_just_created_is_updated(settings, monkeypatch):
    settings.TASKQ = {**settings.TASKQ, "BEAT_BACKEND_CLEANUP": False,
                      "BEAT_SCHEDULE": {"hourly": CELERY_STYLE["hourly"]}}
    declared.sync("default")
    from django.db.models.query import QuerySet

    real_first = QuerySet.first
    looks = []

    def unseen_once(queryset):  # the first look misses the row another beat just made
        if queryset.model is not PeriodicTask:
            return real_first(queryset)
        looks.append(queryset.model)
        return None if len(looks) == 1 else real_first(queryset)

    monkeypatch.setattr(QuerySet, "first", unseen_once)
    declared._upsert(declared.declared_entries()["hourly"], "default")
    assert len(looks) == 2  # the insert hit the UNIQUE name, and the row was updated instead
    assert PeriodicTask.objects.count() == 1


def test_a_refused_add_periodic_task_is_a_check_error(settings):
    app = Celery("proj")
    with pytest.raises(ConfigurationError, match="naive"):
        app.add_periodic_task(60, "tests.echo", name="naive",
                              expires=datetime(2030, 1, 1))
    [message] = check_beat_schedule()
    assert message.id == "django_taskq.E012" and "'naive'" in message.msg


def test_equal_schedule_rows_do_not_stop_beat(settings):
    from django_taskq.beat.models import CrontabSchedule

    for _ in range(2):  # the admin, or beats starting together, made two equal rows
        CrontabSchedule.objects.create(minute="0", hour="4", timezone="UTC")
    names = declared.sync("default")
    assert declared.CLEANUP_ENTRY in names


def test_an_entry_back_in_code_is_enabled_again(settings):
    settings.TASKQ = {**settings.TASKQ, "BEAT_BACKEND_CLEANUP": False,
                      "BEAT_SCHEDULE": {"hourly": CELERY_STYLE["hourly"]}}
    declared.sync("default")
    settings.TASKQ = {**settings.TASKQ, "BEAT_SCHEDULE": {}}  # a beat of the old code starts
    declared.sync("default")
    assert rows()["hourly"].enabled is False
    settings.TASKQ = {**settings.TASKQ, "BEAT_SCHEDULE": {"hourly": CELERY_STYLE["hourly"]}}
    declared.sync("default")
    row = rows()["hourly"]
    assert row.enabled is True and row.removed_from_code_at is None and row.next_run_at
