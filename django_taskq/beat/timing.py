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
from ..schedules import BaseSchedule

if TYPE_CHECKING:
    from .models import PeriodicTask

#: Seconds: how late a tick may be and still be "on time" under the ``skip`` policy (the default
#: window of ``skip``), so that a beat busy for a moment does not skip a run.
ON_TIME = 60.0
#: Seconds: the default window of the ``all`` policy (one hour of missed runs).
ALL_WINDOW = 3600.0
#: The most ticks one due task fires in one go (``all``): a clock jump never floods the queue.
MAX_CATCH_UP = 1000
#: Spans (seconds) searched backwards for the latest tick: each holds few ticks when the one
#: before held none, so no search walks a long list.
_SPANS = (60.0, 3600.0, 86400.0, 32 * 86400.0, 367 * 86400.0, 4 * 367 * 86400.0)
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
    """The ticks to fire now, oldest first: from the stored next run up to ``now``, as the
    catch-up policy allows (``skip`` and ``latest``: the latest only; ``all``: every one)."""
    first = task.next_run_at
    if first is None or first > now:
        return []
    limit = window(task)
    oldest = first if limit is None else max(first, now - timedelta(seconds=limit))
    if task.catch_up == task.ALL:
        return latest_ticks(task, schedule, oldest, now)
    latest = latest_tick(task, schedule, first, now)
    return [latest] if latest >= oldest else []


def latest_ticks(task: PeriodicTask, schedule: BaseSchedule, oldest: datetime,
                 now: datetime) -> list[datetime]:
    """The latest MAX_CATCH_UP ticks from ``oldest`` to ``now``: the search start moves closer
    to ``now`` while the span holds more ticks than one search returns."""
    start = oldest - _JUST_BEFORE
    while True:
        ticks = schedule.ticks_between(start, now, anchor=_anchor(task), limit=10 * MAX_CATCH_UP)
        if len(ticks) < 10 * MAX_CATCH_UP:
            return ticks[-MAX_CATCH_UP:]
        start = max(start, ticks[-MAX_CATCH_UP] - _JUST_BEFORE, start + (now - start) / 2)


def latest_tick(task: PeriodicTask, schedule: BaseSchedule, first: datetime,
                now: datetime) -> datetime:
    """The last tick at or before ``now`` (``first`` is one), searched backwards in spans."""
    for span in _SPANS:
        start = now - timedelta(seconds=span)
        if start <= first:
            break
        ticks = schedule.ticks_between(start, now, anchor=_anchor(task), limit=10 * MAX_CATCH_UP)
        if ticks:
            return ticks[-1]
    ticks = schedule.ticks_between(first, now, anchor=_anchor(task), limit=10 * MAX_CATCH_UP)
    return ticks[-1] if ticks else first


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
            next_run_at=task.next_run_at)
        moved += 1
    return moved
