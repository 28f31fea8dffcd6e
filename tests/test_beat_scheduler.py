"""Beat's scheduler step on a fake clock: ticks, catch-up, edits, one-offs, expiry, DST, claims.

No test sleeps: a scheduler is driven with ``tick()`` while the clock is moved by hand.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from django_taskq import states
from django_taskq.beat import claims
from django_taskq.beat.models import (
    BeatInstance,
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTaskRun,
)
from django_taskq.beat.scheduler import Scheduler
from django_taskq.brokers import get_broker
from django_taskq.clock import Clock as TaskqClock
from django_taskq.exceptions import BrokerConnectionError
from django_taskq.models import QueuedMessage
from django_taskq.results import get_backend

pytestmark = pytest.mark.django_db(transaction=True)
REAL_SEND_RUN = claims.send_run

UTC = timezone.utc


class Now:
    """A settable wall clock for a Scheduler."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = moment

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def db_broker(settings):
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "db://default",
                      "RESULT_BACKEND": "db://default", "BEAT_BACKEND_CLEANUP": False}


@pytest.fixture
def now():
    return Now(datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC))


def scheduler(now: Now, **kwargs) -> Scheduler:
    return Scheduler(clock=TaskqClock(now=now), **kwargs)


def interval_task(name="every-minute", every=1, period="minutes", **fields) -> PeriodicTask:
    schedule, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
    fields.setdefault("anchor", datetime(2026, 1, 1, tzinfo=UTC))
    return PeriodicTask.objects.create(name=name, task="tests.testapp.tasks.add",
                                       interval=schedule, args=[2, 3], **fields)


def crontab_task(name, tz, catch_up=PeriodicTask.SKIP, **cron) -> PeriodicTask:
    schedule = CrontabSchedule.objects.create(timezone=tz, **cron)
    return PeriodicTask.objects.create(name=name, task="tests.testapp.tasks.add",
                                       crontab=schedule, args=[1, 1], catch_up=catch_up)


def sent_ids() -> list[str]:
    return list(QueuedMessage.objects.order_by("id").values_list("message_id", flat=True))


def reload(task: PeriodicTask) -> PeriodicTask:
    return PeriodicTask.objects.get(pk=task.pk)


def test_a_due_tick_is_sent_once_with_the_tick_id_and_beat_header(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    task = interval_task()
    assert task.next_run_at == datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    now.set(datetime(2026, 6, 1, 12, 1, 0, 500000, tzinfo=UTC))
    beat = scheduler(now)
    beat.tick()
    tick = datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    assert sent_ids() == [claims.tick_task_id("every-minute", tick)]
    message = QueuedMessage.objects.get()
    assert message.headers["periodic_task_name"] == "every-minute"
    assert message.task_name == "tests.testapp.tasks.add"
    task = reload(task)
    assert (task.total_run_count, task.last_task_id) == (1, sent_ids()[0])
    assert task.next_run_at == datetime(2026, 6, 1, 12, 2, tzinfo=UTC)
    assert get_backend().get(sent_ids()[0]).state == states.PENDING
    # A second beat at the same moment, and the first again: nothing more.
    scheduler(now).tick()
    beat.tick()
    assert len(sent_ids()) == 1


def test_two_beats_that_see_the_same_due_row_send_one_message(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    task = interval_task()
    now.set(task.next_run_at + timedelta(seconds=1))
    first, second = scheduler(now), scheduler(now)
    seen_by_first, seen_by_second = reload(task), reload(task)  # both read it before either sent
    first._run_due(seen_by_first, now.now)
    second._run_due(seen_by_second, now.now)
    assert len(sent_ids()) == 1
    assert PeriodicTaskRun.objects.count() == 1
    assert reload(task).total_run_count == 1


def test_sleep_lasts_until_the_next_run_capped_by_the_sync_interval(db_broker, now, settings,
                                                                     monkeypatch):
    settings.TASKQ = {**settings.TASKQ, "BEAT_SYNC_INTERVAL": 30.0}
    monkeypatch.setattr("django.utils.timezone.now", now)
    interval_task()
    now.set(datetime(2026, 6, 1, 12, 0, 50, tzinfo=UTC))
    assert scheduler(now).tick() == pytest.approx(10.0)
    now.set(datetime(2026, 6, 1, 12, 0, 10, tzinfo=UTC))
    assert scheduler(now).tick() == pytest.approx(30.0)


@pytest.mark.parametrize(("policy", "window", "expected"), [
    (PeriodicTask.LATEST, None, ["12:09"]),
    (PeriodicTask.ALL, 300, ["12:05", "12:06", "12:07", "12:08", "12:09"]),
    (PeriodicTask.ALL, None, [f"12:0{m}" for m in range(1, 10)]),
    (PeriodicTask.SKIP, None, ["12:09"]),  # 30 s late: on time
])
def test_catch_up_after_downtime_follows_the_policy(db_broker, now, monkeypatch, policy, window,
                                                   expected):
    monkeypatch.setattr("django.utils.timezone.now", now)
    task = interval_task(catch_up=policy, catch_up_window=window)
    now.set(datetime(2026, 6, 1, 12, 9, 30, tzinfo=UTC))  # beat was down from 12:00 to now
    scheduler(now).tick()
    ticks = [run.tick.strftime("%H:%M") for run in PeriodicTaskRun.objects.order_by("tick")]
    assert ticks == expected
    assert len(sent_ids()) == len(expected)
    assert reload(task).next_run_at == datetime(2026, 6, 1, 12, 10, tzinfo=UTC)


def test_skip_drops_a_run_that_is_no_longer_on_time(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    task = interval_task(every=10, catch_up=PeriodicTask.SKIP)
    now.set(datetime(2026, 6, 1, 12, 12, tzinfo=UTC))  # the 12:10 run is 2 minutes late
    scheduler(now).tick()
    assert sent_ids() == []
    assert reload(task).next_run_at == datetime(2026, 6, 1, 12, 20, tzinfo=UTC)
    now.set(datetime(2026, 6, 1, 12, 20, 5, tzinfo=UTC))
    scheduler(now).tick()
    assert len(sent_ids()) == 1


def test_a_clock_jump_forward_does_not_flood_the_queue(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    latest = interval_task("latest", every=1, period="seconds")
    every = interval_task("all", every=1, period="seconds", catch_up=PeriodicTask.ALL)
    now.advance(days=365)
    scheduler(now).tick()
    assert PeriodicTaskRun.objects.filter(periodic_task=latest).count() == 1
    # "all" keeps its default window (one hour) and never more than MAX_CATCH_UP at once.
    assert PeriodicTaskRun.objects.filter(periodic_task=every).count() == 1000
    assert reload(latest).next_run_at == now.now + timedelta(seconds=1)


def test_edits_disable_and_enable_take_effect_at_the_next_step(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    task = interval_task(every=1, period="hours")
    assert task.next_run_at == datetime(2026, 6, 1, 13, tzinfo=UTC)
    task.interval = IntervalSchedule.objects.create(every=5, period="minutes")
    task.save()
    assert reload(task).next_run_at == datetime(2026, 6, 1, 12, 5, tzinfo=UTC)
    task.enabled = False
    task.save()
    assert reload(task).next_run_at is None
    now.set(datetime(2026, 6, 1, 12, 30, tzinfo=UTC))
    scheduler(now).tick()
    assert sent_ids() == []
    task.enabled = True
    task.save()  # no catch-up for the time it was disabled
    assert reload(task).next_run_at == datetime(2026, 6, 1, 12, 35, tzinfo=UTC)
    now.set(datetime(2026, 6, 1, 12, 35, tzinfo=UTC))
    scheduler(now).tick()
    assert len(sent_ids()) == 1


def test_editing_a_shared_schedule_moves_every_task_using_it(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    cron = CrontabSchedule.objects.create(minute="0", hour="3", timezone="UTC")
    one = PeriodicTask.objects.create(name="one", task="tests.testapp.tasks.add", crontab=cron)
    two = PeriodicTask.objects.create(name="two", task="tests.testapp.tasks.add", crontab=cron)
    cron.hour = "14"
    cron.save()
    expected = datetime(2026, 6, 1, 14, tzinfo=UTC)
    assert reload(one).next_run_at == expected == reload(two).next_run_at


def test_describing_a_task_keeps_its_pending_run(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    task = interval_task()
    now.advance(minutes=10)
    task = reload(task)
    task.description = "edited while beat was down"
    task.save()
    assert reload(task).next_run_at == datetime(2026, 6, 1, 12, 1, tzinfo=UTC)


def test_one_off_runs_once_then_disables(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    task = interval_task(one_off=True)
    now.advance(minutes=1)
    scheduler(now).tick()
    now.advance(minutes=5)
    scheduler(now).tick()
    task = reload(task)
    assert len(sent_ids()) == 1
    assert (task.enabled, task.next_run_at, task.total_run_count) == (False, None, 1)


def test_clocked_runs_at_its_moment_once(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    at = datetime(2026, 6, 1, 15, 30, tzinfo=UTC)
    task = PeriodicTask.objects.create(name="once", task="tests.testapp.tasks.add", one_off=True,
                                       args=[1, 2],
                                       clocked=ClockedSchedule.objects.create(clocked_time=at))
    assert task.next_run_at == at
    now.set(at - timedelta(seconds=1))
    scheduler(now).tick()
    assert sent_ids() == []
    now.set(at + timedelta(seconds=2))
    scheduler(now).tick()
    scheduler(now).tick()
    assert sent_ids() == [claims.tick_task_id("once", at)]
    assert reload(task).enabled is False


def test_start_time_defers_and_anchors_an_interval(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    start = datetime(2026, 6, 1, 12, 7, 30, tzinfo=UTC)
    task = interval_task(every=10, start_time=start)
    assert task.next_run_at == start
    now.set(start + timedelta(seconds=1))
    scheduler(now).tick()
    assert reload(task).next_run_at == start + timedelta(minutes=10)


def test_expiry_stops_runs_and_messages_carry_their_own_expiry(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    ends = datetime(2026, 6, 1, 12, 2, 30, tzinfo=UTC)
    task = interval_task(expires=ends)
    short = interval_task("short-lived", expire_seconds=20)
    now.set(datetime(2026, 6, 1, 12, 1, 1, tzinfo=UTC))
    scheduler(now).tick()
    expires = {m.message_id: m.headers["expires"] for m in QueuedMessage.objects.all()}
    tick = datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    assert expires[claims.tick_task_id("short-lived", tick)].startswith("2026-06-01T12:01:21")
    assert expires[claims.tick_task_id("every-minute", tick)].startswith("2026-06-01T12:02:30")
    now.set(datetime(2026, 6, 1, 12, 2, 1, tzinfo=UTC))
    scheduler(now).tick()
    task = reload(task)
    assert (task.enabled, task.next_run_at) == (False, None)  # 12:03 is past its expiry
    assert reload(short).enabled is True


def test_a_broker_failure_leaves_the_tick_due_and_nothing_claimed(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    task = interval_task()
    now.advance(minutes=1)

    def down(*args, **kwargs):
        raise BrokerConnectionError("broker down (test)")

    monkeypatch.setattr(claims, "send_run", down)
    with pytest.raises(BrokerConnectionError):
        scheduler(now).tick()
    assert PeriodicTaskRun.objects.count() == 0  # claim and message were one transaction
    assert reload(task).next_run_at == datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    monkeypatch.undo()
    monkeypatch.setattr("django.utils.timezone.now", now)
    scheduler(now).tick()
    assert sent_ids() == [claims.tick_task_id("every-minute", datetime(2026, 6, 1, 12, 1,
                                                                       tzinfo=UTC))]


def test_without_a_transactional_broker_an_unsent_claim_is_sent_again_with_its_id(
        now, monkeypatch, settings):
    """Memory broker (like Redis and RabbitMQ): the claim commits before the send."""
    settings.TASKQ = {**settings.TASKQ, "BEAT_CLAIM_TIMEOUT": 30.0}
    monkeypatch.setattr("django.utils.timezone.now", now)
    task = interval_task(every=1, period="hours")
    now.advance(hours=1)

    def crash(*args, **kwargs):
        raise BrokerConnectionError("lost between claim and send (test)")

    monkeypatch.setattr(claims, "send_run", crash)
    with pytest.raises(BrokerConnectionError):
        scheduler(now).tick()
    run = PeriodicTaskRun.objects.get()
    assert run.sent_at is None
    monkeypatch.setattr(claims, "send_run", REAL_SEND_RUN)
    other = scheduler(now)
    other.tick()  # the claim is fresh: nobody takes it over yet, and the tick is not re-claimed
    assert get_broker().size("default") == 0
    assert reload(task).next_run_at == datetime(2026, 6, 1, 14, tzinfo=UTC)
    now.advance(seconds=31)
    other._chores_at = None
    other.tick()
    assert get_broker().size("default") == 1
    run.refresh_from_db()
    assert run.sent_at is not None and run.claimed_by == other.ident
    delivery = get_broker().reserve(["default"], max_messages=1, lease=10, worker="w")[0]
    assert delivery.envelope.message_id == run.task_id == claims.tick_task_id(
        task.name, datetime(2026, 6, 1, 13, tzinfo=UTC))


def _count_runs_over(task: PeriodicTask, now: Now, start: datetime, hours: int) -> int:
    now.set(start)
    beat = scheduler(now)
    for _ in range(hours * 6):
        now.advance(minutes=10)
        beat.tick()
    return PeriodicTaskRun.objects.filter(periodic_task=task).count()


@pytest.mark.parametrize(("day", "utc_hour"), [("2026-03-29", 1), ("2026-10-25", 0)])
def test_two_am_in_berlin_fires_once_on_the_days_clocks_change(db_broker, now, monkeypatch, day,
                                                              utc_hour):
    monkeypatch.setattr("django.utils.timezone.now", now)
    start = datetime.fromisoformat(f"{day}T00:00:00+00:00") - timedelta(hours=3)
    now.set(start)
    task = crontab_task("nightly", "Europe/Berlin", minute="0", hour="2")
    assert _count_runs_over(task, now, start, 24) == 1
    run = PeriodicTaskRun.objects.get()
    assert run.tick == datetime.fromisoformat(f"{day}T0{utc_hour}:00:00+00:00")


def test_half_past_one_fires_once_when_new_york_falls_back(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    start = datetime(2026, 11, 1, 0, tzinfo=UTC)
    now.set(start)
    task = crontab_task("ny", "America/New_York", minute="30", hour="1")
    assert _count_runs_over(task, now, start, 24) == 1
    assert PeriodicTaskRun.objects.get().tick == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)


def test_a_schedule_in_another_zone_than_time_zone(db_broker, now, monkeypatch, settings):
    settings.TIME_ZONE = "America/Los_Angeles"
    monkeypatch.setattr("django.utils.timezone.now", now)
    task = crontab_task("tokyo-morning", "Asia/Tokyo", minute="0", hour="9")
    assert task.next_run_at == datetime(2026, 6, 2, 0, tzinfo=UTC)  # 09:00 JST
    default_zone = crontab_task("la-morning", settings.TIME_ZONE, minute="0", hour="9")
    assert default_zone.next_run_at == datetime(2026, 6, 1, 16, tzinfo=UTC)  # 09:00 PDT


def test_liveness_is_recorded_and_removed_on_stop(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    beat = scheduler(now)
    beat.tick()
    row = BeatInstance.objects.get()
    assert (row.ident, row.last_tick_at) == (beat.ident, now.now)
    now.advance(seconds=5)
    beat.tick()
    assert BeatInstance.objects.get().last_tick_at == now.now - timedelta(seconds=5)  # 10 s cadence
    now.advance(seconds=6)
    beat.tick()
    assert BeatInstance.objects.get().last_tick_at == now.now
    beat.stop()
    assert not BeatInstance.objects.exists()


def test_old_sent_claims_are_pruned(db_broker, now, monkeypatch, settings):
    settings.TASKQ = {**settings.TASKQ, "BEAT_RUN_HISTORY": 3600.0}
    monkeypatch.setattr("django.utils.timezone.now", now)
    interval_task()
    now.advance(minutes=1)
    beat = scheduler(now)
    beat.tick()
    assert PeriodicTaskRun.objects.count() == 1
    now.advance(hours=2)
    beat.prune(now.now)
    assert PeriodicTaskRun.objects.count() == 0


def test_a_running_beat_follows_edits_without_a_restart(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    task = interval_task(every=1, period="hours")
    beat = scheduler(now)
    assert beat.tick() == pytest.approx(1.0)  # nothing due for an hour: sleeps one sync interval
    task.interval = IntervalSchedule.objects.create(every=30, period="seconds")
    task.save()  # as the admin saves it
    now.advance(seconds=30)
    beat.tick()
    assert len(sent_ids()) == 1
    task = reload(task)
    task.enabled = False
    task.save()
    now.advance(seconds=30)
    beat.tick()
    assert len(sent_ids()) == 1


def test_no_run_before_a_start_time_with_a_fraction_of_a_second(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    start = datetime(2026, 6, 1, 12, 30, 0, 500000, tzinfo=UTC)
    cron = CrontabSchedule.objects.create(minute="*", timezone="UTC")
    task = PeriodicTask.objects.create(name="later", task="tests.testapp.tasks.add",
                                       crontab=cron, start_time=start)
    assert task.next_run_at == datetime(2026, 6, 1, 12, 31, tzinfo=UTC)


def test_all_with_a_long_window_sends_the_latest_runs(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    task = interval_task("dense", every=1, period="seconds", catch_up=PeriodicTask.ALL,
                         catch_up_window=2 * 86400)
    now.advance(days=3)
    scheduler(now).tick()
    ticks = list(PeriodicTaskRun.objects.filter(periodic_task=task).order_by("tick")
                 .values_list("tick", flat=True))
    assert len(ticks) == 1000
    assert ticks[-1] == now.now and ticks[0] == now.now - timedelta(seconds=999)


def test_a_task_enabled_by_a_queryset_update_is_scheduled_again(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    task = interval_task()
    task.enabled = False
    task.save()
    PeriodicTask.objects.filter(pk=task.pk).update(enabled=True)  # bypasses save()
    beat = scheduler(now)
    beat.tick()
    assert reload(task).next_run_at == datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    done = ClockedSchedule.objects.create(clocked_time=now.now - timedelta(hours=1))
    over = PeriodicTask.objects.create(name="over", task="tests.testapp.tasks.add", one_off=True,
                                       clocked=done, enabled=False, last_run_at=done.clocked_time)
    PeriodicTask.objects.filter(pk=over.pk).update(enabled=True)
    beat.repair(now.now)
    assert reload(over).enabled is False  # it ran at its moment: no run left


def test_expire_seconds_count_from_the_send(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    interval_task(expire_seconds=20, catch_up=PeriodicTask.LATEST)
    now.set(datetime(2026, 6, 1, 12, 5, 30, tzinfo=UTC))  # the 12:05 run goes out 30 s late
    scheduler(now).tick()
    assert QueuedMessage.objects.get().headers["expires"].startswith("2026-06-01T12:05:50")


@pytest.mark.parametrize("url_fixture", ["redis_url", "amqp_url"])
def test_on_redis_and_rabbitmq_a_tick_lost_between_claim_and_send_is_sent_with_its_id(
        request, now, monkeypatch, settings, url_fixture):
    url = request.getfixturevalue(url_fixture)
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url, "BEAT_CLAIM_TIMEOUT": 30.0,
                      "BEAT_BACKEND_CLEANUP": False}
    monkeypatch.setattr("django.utils.timezone.now", now)
    task = interval_task(every=1, period="hours")
    now.advance(hours=1)

    def lost(*args, **kwargs):
        raise BrokerConnectionError("connection lost between claim and send (test)")

    monkeypatch.setattr(claims, "send_run", lost)
    with pytest.raises(BrokerConnectionError):
        scheduler(now).tick()
    monkeypatch.setattr(claims, "send_run", REAL_SEND_RUN)
    broker = get_broker()
    assert broker.size("default") == 0
    now.advance(seconds=31)
    scheduler(now).tick()  # another beat: the tick is claimed, so it re-sends the claim
    tick = datetime(2026, 6, 1, 13, tzinfo=UTC)
    [delivery] = broker.reserve(["default"], max_messages=10, lease=10, worker="w", timeout=2)
    assert delivery.envelope.message_id == claims.tick_task_id(task.name, tick)
    broker.ack(delivery)
    assert PeriodicTaskRun.objects.get().sent_at is not None
    assert reload(task).total_run_count == 1


def test_a_one_off_task_sends_one_run_whatever_its_policy(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    task = interval_task(one_off=True, catch_up=PeriodicTask.ALL)
    now.advance(minutes=10)
    scheduler(now).tick()
    assert len(sent_ids()) == 1 and reload(task).enabled is False


@pytest.mark.parametrize("policy", [PeriodicTask.LATEST, PeriodicTask.ALL])
def test_catch_up_sends_nothing_after_the_expiry(db_broker, now, monkeypatch, policy):
    monkeypatch.setattr("django.utils.timezone.now", now)
    interval_task(catch_up=policy, expires=datetime(2026, 6, 1, 12, 5, 30, tzinfo=UTC))
    now.advance(minutes=10)
    scheduler(now).tick()
    ticks = [run.tick.strftime("%H:%M") for run in PeriodicTaskRun.objects.order_by("tick")]
    assert ticks == (["12:05"] if policy == PeriodicTask.LATEST
                     else ["12:01", "12:02", "12:03", "12:04", "12:05"])


def test_an_edit_during_a_step_is_not_undone(db_broker, now, monkeypatch):
    """The admin saves (same next run, new schedule) after beat read the row: beat's move of
    the next run must not apply to the edited row."""
    monkeypatch.setattr("django.utils.timezone.now", now)
    task = interval_task(every=1, period="hours")
    now.set(task.next_run_at + timedelta(seconds=1))
    seen_by_beat = reload(task)
    edited = reload(task)
    edited.interval = IntervalSchedule.objects.create(every=30, period="minutes")
    edited.next_run_at = None  # recomputed by save(); the same value is possible
    edited.save()
    PeriodicTask.objects.filter(pk=task.pk).update(next_run_at=seen_by_beat.next_run_at)
    scheduler(now)._run_due(seen_by_beat, now.now)
    assert reload(task).next_run_at == seen_by_beat.next_run_at  # the edit stands


def test_saving_an_unchanged_schedule_keeps_pending_runs(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    task = crontab_task("nightly", "UTC", minute="0", hour="2")
    pending = datetime(2026, 6, 1, 2, tzinfo=UTC)
    PeriodicTask.objects.filter(pk=task.pk).update(next_run_at=pending)
    cron = CrontabSchedule.objects.get(pk=task.crontab_id)
    cron.save()
    assert reload(task).next_run_at == pending
    cron.hour = "3"
    cron.save()
    assert reload(task).next_run_at == datetime(2026, 6, 2, 3, tzinfo=UTC)


def test_a_clocked_time_saved_a_moment_late_still_runs(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    at = now.now - timedelta(seconds=5)
    task = PeriodicTask.objects.create(name="late", task="tests.testapp.tasks.add", args=[1, 2],
                                       one_off=True,
                                       clocked=ClockedSchedule.objects.create(clocked_time=at))
    assert task.next_run_at == at
    scheduler(now).tick()
    assert sent_ids() == [claims.tick_task_id("late", at)]


def test_a_stored_next_run_that_is_no_tick_is_not_sent(db_broker, now, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", now)
    task = crontab_task("nightly", "UTC", minute="0", hour="2", catch_up=PeriodicTask.LATEST)
    CrontabSchedule.objects.filter(pk=task.crontab_id).update(hour="3")  # bypasses save()
    PeriodicTask.objects.filter(pk=task.pk).update(
        next_run_at=datetime(2026, 6, 2, 2, tzinfo=UTC))
    now.set(datetime(2026, 6, 2, 2, 30, tzinfo=UTC))
    scheduler(now).tick()
    assert sent_ids() == []
    assert reload(task).next_run_at == datetime(2026, 6, 2, 3, tzinfo=UTC)
