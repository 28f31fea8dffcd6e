"""From a periodic task row to its ticks: the next run, and what is due now under its catch-up policy.

Ticks are moments in UTC, whole seconds, computed only from the row (its schedule, start time and
anchor), never from when a beat happened to look: every beat process computes the same ticks, so
the UNIQUE ``(periodic task, tick)`` claim can make each of them fire once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..exceptions import ConfigurationError
from ..schedules import BaseSchedule, clocked

if TYPE_CHECKING:
    from .models import PeriodicTask

#: Seconds: how late a tick may be and still be "on time" under the ``skip`` policy (the default
#: window of ``skip``), so that a beat busy for a moment does not skip a run.
ON_TIME = 60.0
#: Seconds: the default window of the ``all`` policy (one hour of missed runs).
ALL_WINDOW = 3600.0
#: The most ticks one due task fires in one go (``all``): a clock jump never floods the queue.
MAX_CATCH_UP = 1000
_SECOND = timedelta(seconds=1)
_NONE = timedelta(0)
_JUST_BEFORE = timedelta(microseconds=1)  # ticks are whole seconds: this includes ``oldest``


def _anchor(task: PeriodicTask) -> datetime:
    return task.start_time or task.anchor


def first_run(task: PeriodicTask, now: datetime) -> datetime | None:
    """The first tick after ``now`` (and not before the start time), or None: disabled, expired,
    no schedule or no tick left."""
    if not task.enabled:
        return None
    try:
        schedule = task.schedule()
    except ConfigurationError:
        return None
    if isinstance(schedule, clocked) and task.last_run_at is None and \
            schedule.clocked_time <= now:
        # Saved a moment late (or imported still pending): due now, as the catch-up policy
        # allows, rather than never.
        return _unexpired(task, schedule.clocked_time)
    after = now
    if task.start_time is not None and task.start_time - _SECOND >= now:
        # Ticks are whole seconds: the first allowed one is the start, rounded up.
        start = task.start_time
        rounded_up = start.replace(microsecond=0) + (_SECOND if start.microsecond else _NONE)
        after = rounded_up - _SECOND
    return _unexpired(task, schedule.next_after(after, anchor=_anchor(task)))


def next_run(task: PeriodicTask, schedule: BaseSchedule, now: datetime,
             fired: datetime | None) -> datetime | None:
    """The tick after ``now`` and after the last one fired (a tick is never due twice)."""
    after = now if fired is None or fired < now else fired
    return _unexpired(task, schedule.next_after(after, anchor=_anchor(task)))


def _unexpired(task: PeriodicTask, tick: datetime | None) -> datetime | None:
    if tick is None or (task.expires is not None and tick > task.expires):
        return None
    return tick


def window(task: PeriodicTask) -> float | None:
    """Seconds of missed runs the policy still fires (None: any age)."""
    if task.catch_up_window is not None:
        return float(task.catch_up_window)
    return {task.SKIP: ON_TIME, task.ALL: ALL_WINDOW}.get(task.catch_up)


def due_ticks(task: PeriodicTask, schedule: BaseSchedule, now: datetime) -> list[datetime]:
    """The ticks to fire now, oldest first: the schedule's ticks from the stored next run up to
    ``now`` (never after the task's expiry), as the catch-up policy allows (``skip``, ``latest``
    and any one-off task: the latest only; ``all``: every one, at most MAX_CATCH_UP)."""
    first = task.next_run_at
    if first is None or first > now:
        return []
    end = now if task.expires is None else min(now, task.expires)
    limit = window(task)
    oldest = first if limit is None else max(first, now - timedelta(seconds=limit))
    if end < oldest:
        return []
    # Only real ticks: a stored next run that the schedule no longer has (its row was changed
    # by a queryset update) is not fired.
    ticks = latest_ticks(task, schedule, oldest, end)
    return ticks if task.catch_up == task.ALL and not task.one_off else ticks[-1:]


def latest_ticks(task: PeriodicTask, schedule: BaseSchedule, oldest: datetime,
                 end: datetime) -> list[datetime]:
    """The latest MAX_CATCH_UP ticks from ``oldest`` to ``end``, both included: the search start
    moves closer to ``end`` while the span holds more ticks than one search returns."""
    start = oldest - _JUST_BEFORE
    while True:
        ticks = schedule.ticks_between(start, end, anchor=_anchor(task), limit=10 * MAX_CATCH_UP)
        if len(ticks) < 10 * MAX_CATCH_UP:
            return ticks[-MAX_CATCH_UP:]
        start = max(ticks[-MAX_CATCH_UP] - _JUST_BEFORE, start + (end - start) / 2)


def upcoming(task: PeriodicTask, now: datetime, count: int = 5) -> list[datetime]:
    """The next ``count`` runs from ``now`` (the admin's preview)."""
    runs: list[datetime] = []
    tick = first_run(task, now)
    schedule = task.schedule() if tick is not None else None
    while tick is not None and schedule is not None and len(runs) < count:
        runs.append(tick)
        if task.one_off:
            break
        tick = next_run(task, schedule, tick, tick)
    return runs


def reschedule(tasks: Iterable[PeriodicTask], now: datetime | None = None) -> int:
    """Compute the next run of these tasks again (their schedule row changed); returns how
    many moved."""
    from django.utils import timezone

    moved = 0
    for task in tasks:
        task.next_run_at = first_run(task, now or timezone.now())
        type(task).objects.using(task._state.db).filter(pk=task.pk).update(
            next_run_at=task.next_run_at, date_changed=timezone.now())
        moved += 1
    return moved
