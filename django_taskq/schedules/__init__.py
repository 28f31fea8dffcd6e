"""When periodic tasks run: pure schedule math, no database.

A schedule answers two questions about aware datetimes: :meth:`BaseSchedule.next_after` (the
first tick strictly after a moment) and :meth:`BaseSchedule.ticks_between`. Ticks are whole
seconds in UTC, so processes that ask the same question agree on the answer exactly.

The classes keep Celery's names and signatures, so a Celery ``beat_schedule`` loads as it is:
:class:`schedule` (an interval), :class:`crontab` (wall-clock times in a time zone, safe across
DST changes), :class:`solar` (sunrise, sunset, ...) and :class:`clocked` (once).
:func:`as_schedule` accepts what a ``beat_schedule`` entry's "schedule" may be.
"""

from django_taskq.schedules.base import BaseSchedule, ScheduleError
from django_taskq.schedules.clocked import clocked
from django_taskq.schedules.coercion import as_schedule
from django_taskq.schedules.cron import crontab
from django_taskq.schedules.interval import schedule
from django_taskq.schedules.solar import SOLAR_EVENTS, solar

__all__ = [
    "SOLAR_EVENTS",
    "BaseSchedule",
    "ScheduleError",
    "as_schedule",
    "clocked",
    "crontab",
    "schedule",
    "solar",
]
