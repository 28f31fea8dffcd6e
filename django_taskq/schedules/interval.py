"""Interval schedules: a tick every ``run_every``, counted from an anchor (Celery's ``schedule``)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, ClassVar

from django_taskq.schedules.base import UTC, BaseSchedule, ScheduleError, whole_utc_second
from django_taskq.schedules.words import interval_words

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def seconds_of(run_every: object) -> int:
    """``run_every`` (a timedelta or a number of seconds) as a whole number of seconds >= 1.

    Raises:
        ScheduleError: it is not a positive whole number of seconds.
    """
    if isinstance(run_every, timedelta):
        seconds: float = run_every.total_seconds()
        whole = run_every.microseconds == 0
    elif isinstance(run_every, (int, float)) and not isinstance(run_every, bool):
        seconds = float(run_every)
        whole = math.isfinite(seconds) and seconds == int(seconds)
    else:
        raise ScheduleError(f"schedule run_every={run_every!r}: use a timedelta or a number of seconds")
    if not whole or seconds < 1:
        raise ScheduleError(
            f"schedule run_every={run_every!r}: use a whole number of seconds >= 1 "
            "(ticks are whole seconds so that every process agrees on them)"
        )
    return int(seconds)


class schedule(BaseSchedule):  # noqa: N801 - Celery's name
    """A tick every ``run_every``: ticks are ``anchor + k * run_every`` for every integer k.

    The signature is Celery's; ``relative``, ``nowfun`` and ``app`` are accepted so Celery
    settings load unchanged, and ignored: ticks never depend on when a process started (the
    anchor, passed to :meth:`next_after`, fixes them; None means the Unix epoch, so a
    15-minute schedule ticks at :00, :15, :30 and :45 of every UTC hour).

    Raises:
        ScheduleError: ``run_every`` is not a positive whole number of seconds.
    """

    __slots__ = ("run_every",)
    kind: ClassVar[str] = "interval"
    run_every: timedelta

    def __init__(self, run_every: timedelta | float | int, relative: bool = False,
                 nowfun: Any = None, app: Any = None) -> None:
        self._set(run_every=timedelta(seconds=seconds_of(run_every)))

    @property
    def seconds(self) -> float:
        """``run_every`` in seconds."""
        return self.run_every.total_seconds()

    def describe(self) -> str:
        return interval_words(int(self.seconds))

    def _ticks_after(self, moment: datetime, anchor: datetime | None) -> Iterator[datetime]:
        start = EPOCH if anchor is None else whole_utc_second(anchor)
        steps = (moment - start) // self.run_every + 1
        try:
            tick = start + steps * self.run_every
            while True:
                yield tick
                tick += self.run_every
        except OverflowError:  # past datetime.max: no more ticks
            return

    def _arguments(self) -> dict[str, Any]:
        return {"run_every": int(self.seconds)}
