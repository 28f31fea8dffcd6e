"""Clocked schedules: one tick at a given moment (django-celery-beat's ``ClockedSchedule``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

from django_taskq.schedules.base import BaseSchedule, require_aware, whole_utc_second


class clocked(BaseSchedule):  # noqa: N801 - named like the other schedules
    """One tick at ``clocked_time`` (aware), rounded down to the whole second; none after it.

    Raises:
        ScheduleError: ``clocked_time`` is naive or not a datetime.
    """

    __slots__ = ("clocked_time",)
    kind: ClassVar[str] = "clocked"
    clocked_time: datetime

    def __init__(self, clocked_time: datetime) -> None:
        self._set(clocked_time=whole_utc_second(require_aware(clocked_time, "clocked_time")))

    def describe(self) -> str:
        return f"once at {self.clocked_time:%Y-%m-%d %H:%M:%S} UTC"

    def _ticks_after(self, moment: datetime, anchor: datetime | None) -> Iterator[datetime]:
        if self.clocked_time > moment:
            yield self.clocked_time

    def _arguments(self) -> dict[str, Any]:
        return {"clocked_time": self.clocked_time}
