"""Crontab schedules: wall-clock times in a time zone (Celery's ``crontab``), safe across DST."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter

from django_taskq.schedules.base import BaseSchedule
from django_taskq.schedules.cronfield import check_expression, normalise
from django_taskq.schedules.wallclock import search_start, utc_ticks
from django_taskq.schedules.words import cron_words
from django_taskq.schedules.zone import default_zone, explicit_zone_name, zone_named

FieldValue = str | int | Iterable[int]  # as Celery takes


class crontab(BaseSchedule):  # noqa: N801 - Celery's name
    """Ticks at the wall-clock times that match the five cron fields, in a time zone.

    The fields take what Celery's take: strings (``'*/15'``, ``'mon-fri'``, ``'1,3,5'``,
    ``'9-17'``), ints, and iterables of ints. ``day_of_week`` counts from Sunday = 0 (7 is
    Sunday too) and takes day names. As in Celery, a day must match ``day_of_month`` AND
    ``day_of_week`` when both are restricted (classic cron uses OR).

    ``tz`` is an IANA name or a ``ZoneInfo``; None follows Django's ``settings.TIME_ZONE``, read
    each time the schedule is evaluated. ``nowfun`` and ``app`` are Celery's and ignored.

    Across DST changes: a wall time the clocks skip runs as far after the gap as it was into
    it (02:30 -> 03:30); a wall time that happens twice runs once, at its first occurrence,
    except in a schedule whose hour field is ``*`` (every hour), which runs in both.

    Raises:
        ScheduleError: a field croniter refuses, or an unknown time zone.
    """

    __slots__ = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year", "tz_name")
    kind: ClassVar[str] = "crontab"
    minute: str
    hour: str
    day_of_week: str
    day_of_month: str
    month_of_year: str
    tz_name: str | None

    def __init__(self, minute: FieldValue = "*", hour: FieldValue = "*",
                 day_of_week: FieldValue = "*", day_of_month: FieldValue = "*",
                 month_of_year: FieldValue = "*", nowfun: Any = None, app: Any = None,
                 tz: str | ZoneInfo | None = None) -> None:
        given = {"minute": minute, "hour": hour, "day_of_week": day_of_week,
                 "day_of_month": day_of_month, "month_of_year": month_of_year}
        self._set(**{name: normalise(name, value) for name, value in given.items()})
        check_expression(self.expression)
        self._set(tz_name=explicit_zone_name(tz))

    @property
    def expression(self) -> str:
        """The five fields as one cron expression: ``m h dom mon dow``."""
        return " ".join((self.minute, self.hour, self.day_of_month, self.month_of_year,
                         self.day_of_week))

    @property
    def tz(self) -> ZoneInfo:
        """The zone in effect: ``tz_name``'s, else Django's TIME_ZONE now."""
        return default_zone() if self.tz_name is None else zone_named(self.tz_name)

    def describe(self) -> str:
        return cron_words(self.expression, str(self.tz.key))

    def _ticks_after(self, moment: datetime, anchor: datetime | None) -> Iterator[datetime]:
        zone = self.tz
        walls = self._walls(search_start(moment, zone))
        return utc_ticks(walls, zone, moment, both_folds=self._every_hour())

    def _every_hour(self) -> bool:
        """Whether the hour field means every hour, however it is spelled (``*``, ``0-23``,
        ``*/1``, ``0-23/1``, a list of all 24)."""
        hours = croniter(self.expression, day_or=False).expanded[1]
        return hours == ["*"] or set(hours) == set(range(24))

    def _walls(self, start: datetime) -> Iterator[datetime]:
        """Matching naive wall times after the naive ``start``, until croniter finds no more."""
        cron = croniter(self.expression, start, day_or=False)
        while True:
            try:
                wall = cron.get_next(datetime)
            except (CroniterError, OverflowError, ValueError):  # no match left (31 Feb), year 9999
                return
            yield wall

    def _arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "minute": self.minute, "hour": self.hour, "day_of_week": self.day_of_week,
            "day_of_month": self.day_of_month, "month_of_year": self.month_of_year,
        }
        if self.tz_name is not None:
            arguments["tz"] = self.tz_name
        return arguments
