"""What every schedule is: a value that names its ticks, whole UTC seconds, after any moment.

Ticks are whole seconds in UTC so that two processes (two beat replicas, a beat and the admin)
that ask the same schedule about the same moment agree on the tick exactly: the tick doubles as
the key that makes a periodic run idempotent.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, ClassVar

from django_taskq.exceptions import ConfigurationError

UTC = timezone.utc


class ScheduleError(ConfigurationError):
    """A schedule is built from values it cannot use; the message says which and how to fix it."""


def require_aware(value: datetime, name: str) -> datetime:
    """Return ``value`` if it is an aware datetime.

    Raises:
        ScheduleError: ``value`` is not a datetime, or is naive.
    """
    if not isinstance(value, datetime):
        raise ScheduleError(f"{name} must be an aware datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ScheduleError(
            f"{name} {value.isoformat()} is naive: give it a tzinfo, e.g. "
            "datetime(..., tzinfo=timezone.utc) or django.utils.timezone.now()"
        )
    return value


def whole_utc_second(value: datetime) -> datetime:
    """``value`` (aware) in UTC with its fraction of a second dropped (rounded down)."""
    return value.astimezone(UTC).replace(microsecond=0)


def _rebuild(cls: type[BaseSchedule], kwargs: dict[str, Any]) -> BaseSchedule:
    """Unpickle a schedule by calling its class again (the attributes are read-only)."""
    return cls(**kwargs)


class BaseSchedule(ABC):
    """A read-only value naming when a periodic task runs: interval, crontab, solar or clocked.

    Subclasses implement :meth:`_ticks_after` and :meth:`_arguments`; equality, hashing,
    ``repr`` (which round-trips: ``eval(repr(s)) == s``), pickling and the two public queries
    follow from them.
    """

    __slots__ = ()
    kind: ClassVar[str]

    def next_after(self, moment: datetime, *, anchor: datetime | None = None) -> datetime | None:
        """The first tick strictly after ``moment``.

        Args:
            moment: an aware datetime.
            anchor: where interval schedules count from (None: the Unix epoch); ignored by the
                other kinds.

        Returns:
            An aware datetime in UTC with microsecond 0, or None when there are no more ticks.

        Raises:
            ScheduleError: ``moment`` or ``anchor`` is naive.
        """
        ticks = self._checked_ticks(moment, anchor)
        return next(ticks, None)

    def ticks_between(self, start: datetime, end: datetime, *, anchor: datetime | None = None,
                      limit: int = 1000) -> list[datetime]:
        """The ticks ``t`` with ``start < t <= end``, oldest first: the FIRST ``limit`` of them.

        A beat that slept through many ticks gets the earliest ones; it can ask again from the
        last one it received to see the rest.

        Args:
            start: an aware datetime (exclusive).
            end: an aware datetime (inclusive).
            anchor: as for :meth:`next_after`.
            limit: the most ticks returned (0 returns none).

        Returns:
            Aware UTC datetimes with microsecond 0, strictly increasing.

        Raises:
            ScheduleError: a naive datetime, or a negative ``limit``.
        """
        end = require_aware(end, "end")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ScheduleError(f"ticks_between(limit={limit!r}): use a whole number >= 0")
        ticks = self._checked_ticks(start, anchor)
        return list(itertools.islice(itertools.takewhile(lambda t: t <= end, ticks), limit))

    @abstractmethod
    def describe(self) -> str:
        """Words for the admin, e.g. ``every 15 minutes`` or ``At 02:00, Europe/Berlin``."""

    def _checked_ticks(self, moment: datetime, anchor: datetime | None) -> Iterator[datetime]:
        moment = require_aware(moment, "moment")
        if anchor is not None:
            anchor = require_aware(anchor, "anchor")
        return self._ticks_after(moment.astimezone(UTC), anchor)

    @abstractmethod
    def _ticks_after(self, moment: datetime, anchor: datetime | None) -> Iterator[datetime]:
        """Ticks strictly after ``moment`` (aware, UTC), strictly increasing, whole UTC seconds."""

    @abstractmethod
    def _arguments(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this schedule: its identity for ==, hash and repr."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, BaseSchedule)
        return self._arguments() == other._arguments()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(self._arguments().items())))

    def __repr__(self) -> str:
        words = ", ".join(f"{key}={value!r}" for key, value in self._arguments().items())
        return f"{type(self).__name__}({words})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._arguments()))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only: build a new one instead")

    def _set(self, **values: object) -> None:
        """Set attributes once, in ``__init__`` (the public ``__setattr__`` refuses)."""
        for name, value in values.items():
            object.__setattr__(self, name, value)
