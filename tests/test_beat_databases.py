"""Beat on every database: DST ticks, the claim that makes a tick fire once, catch-up, expiry.

The same scheduler steps as tests/test_beat_scheduler.py, with beat's tables, the broker and the
result backend on SQLite, PostgreSQL and MariaDB (time zone handling and the UNIQUE claim are
the database's business as much as ours).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from django_taskq.beat import claims
from django_taskq.beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask, PeriodicTaskRun
from django_taskq.beat.scheduler import Scheduler
from django_taskq.clock import Clock
from django_taskq.models import QueuedMessage
from tests.conftest import require_alias

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")
UTC = timezone.utc


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def alias(request, settings):
    alias = require_alias(request.param)
    url = f"db://{alias}"
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url, "RESULT_BACKEND": url,
                      "BEAT_DATABASE": alias, "BEAT_BACKEND_CLEANUP": False}
    return alias


class Moment:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def crontab_task(alias: str, name: str, tz: str, **fields) -> PeriodicTask:
    cron = CrontabSchedule.objects.using(alias).create(timezone=tz, **fields)
    task = PeriodicTask(name=name, task="tests.testapp.tasks.add", crontab=cron, args=[1, 2],
                        catch_up=PeriodicTask.SKIP)
    task.save(using=alias)
    return task


@pytest.mark.parametrize(("zone", "cron", "day", "fired_at"), [
    ("Europe/Berlin", {"minute": "0", "hour": "2"}, "2026-03-29", "2026-03-29T01:00:00+00:00"),
    ("Europe/Berlin", {"minute": "0", "hour": "2"}, "2026-10-25", "2026-10-25T00:00:00+00:00"),
    ("America/New_York", {"minute": "30", "hour": "1"}, "2026-11-01",
     "2026-11-01T05:30:00+00:00"),
])
def test_dst_days_fire_once(alias, monkeypatch, zone, cron, day, fired_at):
    moment = Moment(datetime.fromisoformat(f"{day}T00:00:00+00:00") - timedelta(hours=6))
    monkeypatch.setattr("django.utils.timezone.now", moment)
    task = crontab_task(alias, "dst", zone, **cron)
    beat = Scheduler(clock=Clock(now=moment))
    for _ in range(29 * 6):  # the evening before and the day, in steps of 10 minutes
        moment.now += timedelta(minutes=10)
        beat.tick()
    runs = list(PeriodicTaskRun.objects.using(alias).filter(periodic_task_id=task.pk))
    assert [run.tick for run in runs] == [datetime.fromisoformat(fired_at)]
    assert QueuedMessage.objects.using(alias).count() == 1


def test_three_schedulers_fire_each_tick_once(alias, monkeypatch):
    moment = Moment(datetime(2026, 6, 1, 12, tzinfo=UTC))
    monkeypatch.setattr("django.utils.timezone.now", moment)
    every = IntervalSchedule.objects.using(alias).create(every=10, period="seconds")
    task = PeriodicTask(name="tens", task="tests.testapp.tasks.add", interval=every, args=[1, 2],
                        catch_up=PeriodicTask.ALL, anchor=datetime(2026, 1, 1, tzinfo=UTC))
    task.save(using=alias)
    beats = [Scheduler(clock=Clock(now=moment)) for _ in range(3)]
    for step in range(30):
        moment.now += timedelta(seconds=7)
        beats[step % 3].tick()
        beats[(step + 1) % 3].tick()
    ticks = list(PeriodicTaskRun.objects.using(alias).filter(periodic_task_id=task.pk)
                 .order_by("tick").values_list("tick", flat=True))
    assert ticks == [datetime(2026, 6, 1, 12, 0, 10, tzinfo=UTC) + timedelta(seconds=10 * i)
                     for i in range(len(ticks))]
    assert len(ticks) == 21  # 12:00:10 .. 12:03:30
    ids = list(QueuedMessage.objects.using(alias).values_list("message_id", flat=True))
    assert sorted(ids) == sorted(claims.tick_task_id("tens", tick) for tick in ticks)
    stored = PeriodicTask.objects.using(alias).get(pk=task.pk)
    assert stored.total_run_count == 21


def test_the_claim_and_the_message_roll_back_together(alias, monkeypatch):
    moment = Moment(datetime(2026, 6, 1, 12, tzinfo=UTC))
    monkeypatch.setattr("django.utils.timezone.now", moment)
    task = crontab_task(alias, "minutely", "UTC", minute="*")

    def broken(task, now, task_id=None):
        claims.send_task("tests.testapp.tasks.add", [1, 2], task_id=task_id)  # the message...
        raise RuntimeError("...and then a failure in the same step (test)")

    monkeypatch.setattr(claims, "send_run", broken)
    moment.now += timedelta(minutes=1, seconds=1)
    Scheduler(clock=Clock(now=moment)).tick()
    assert not PeriodicTaskRun.objects.using(alias).exists()
    assert not QueuedMessage.objects.using(alias).exists()
    assert PeriodicTask.objects.using(alias).get(pk=task.pk).total_run_count == 0


def test_on_postgresql_an_edit_wakes_a_sleeping_beat(settings):
    """With a 60 s sync interval only the NOTIFY sent on commit can wake beat in time."""
    alias = require_alias("postgres")
    url = f"db://{alias}"
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url, "RESULT_BACKEND": url,
                      "BEAT_DATABASE": alias, "BEAT_BACKEND_CLEANUP": False,
                      "BEAT_SYNC_INTERVAL": 60.0}
    import time

    from django.utils import timezone as django_time

    from django_taskq.beat.models import BeatInstance, ClockedSchedule
    from django_taskq.beat.service import BeatService

    beat = BeatService()
    beat.start_thread()
    try:
        deadline = time.monotonic() + 10
        while not BeatInstance.objects.using(alias).exists():
            assert time.monotonic() < deadline, "beat did not start"
            time.sleep(0.05)
        time.sleep(0.3)  # beat is asleep now, for up to BEAT_MAX_LOOP_INTERVAL
        at = django_time.now() + timedelta(seconds=1)
        clocked = ClockedSchedule.objects.using(alias).create(clocked_time=at)
        task = PeriodicTask(name="soon", task="tests.testapp.tasks.add", args=[1, 2],
                            clocked=clocked, one_off=True)
        task.save(using=alias)
        deadline = time.monotonic() + 15
        while not QueuedMessage.objects.using(alias).exists():
            assert time.monotonic() < deadline, "the edit did not wake beat"
            time.sleep(0.05)
    finally:
        beat.stop()
        beat.join(timeout=10)
    assert beat.scheduler.listens
