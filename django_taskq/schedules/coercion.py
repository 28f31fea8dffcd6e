"""What a Celery ``beat_schedule`` entry's "schedule" may be, turned into a schedule."""

from __future__ import annotations

from datetime import timedelta

from django_taskq.schedules.base import BaseSchedule, ScheduleError
from django_taskq.schedules.interval import schedule


def as_schedule(value: object) -> BaseSchedule:
    """``value`` as a schedule: a schedule as it is; a timedelta or seconds as ``schedule(value)``.

    Raises:
        ScheduleError: ``value`` is none of these, or not a positive whole number of seconds.
    """
    if isinstance(value, BaseSchedule):
        return value
    if isinstance(value, (timedelta, int, float)) and not isinstance(value, bool):
        return schedule(value)
    raise ScheduleError(
        "schedule must be crontab(...), solar(...), clocked(...), a timedelta or a number of "
        f"seconds; got {value!r}"
    )
