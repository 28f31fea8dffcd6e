"""The five fields of a crontab: what Celery accepts, normalised to cron text and checked."""

from __future__ import annotations

import re
from collections.abc import Iterable

from croniter import CroniterError, croniter

from django_taskq.schedules.base import ScheduleError

#: Field name -> (position in "m h dom mon dow", what to write instead).
FIELDS = {
    "minute": (0, "0-59, e.g. '0', '*/15', '0,30' or '10-20'"),
    "hour": (1, "0-23, e.g. '2', '*/3', '9-17' or '8,12,18'"),
    "day_of_month": (2, "1-31, e.g. '1', '1,15' or '1-7'"),
    "month_of_year": (3, "1-12, e.g. '1', '*/3' or '6-8'"),
    "day_of_week": (4, "0-7 or sun-sat (0 and 7 are Sunday), e.g. 'mon-fri', '0,6' or 'sun'"),
}
_DAY_NAMES = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_WORD = re.compile(r"[a-z]+")


def _day_abbreviation(match: re.Match[str]) -> str:
    """``monday`` -> ``mon`` (Celery accepts full day names; croniter wants three letters)."""
    word = match.group(0)
    return word[:3] if word in _DAY_NAMES else word


def _text(name: str, value: object) -> str:
    """A field given as a string, an int or an iterable of ints, as cron text."""
    if isinstance(value, str):
        text = re.sub(r"\s+", "", value)
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, Iterable):
        items = list(value)
        if not items or not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
            raise ScheduleError(f"crontab {name}={value!r}: give a non-empty list of whole numbers")
        text = ",".join(str(i) for i in sorted(set(items)))
    else:
        raise ScheduleError(f"crontab {name}={value!r}: give a string, a number or a list of numbers")
    if name == "day_of_week":
        text = _WORD.sub(_day_abbreviation, text.lower())
    return text


def normalise(name: str, value: object) -> str:
    """The cron text of field ``name`` given ``value``, checked by croniter.

    Raises:
        ScheduleError: naming the field, the bad value and what to use.
    """
    position, hint = FIELDS[name]
    text = _text(name, value)
    parts = ["*"] * 5
    parts[position] = text
    if not text or not croniter.is_valid(" ".join(parts)):
        raise ScheduleError(f"crontab {name}={text!r}: not a valid cron field; use {hint}")
    return text


def check_expression(expression: str) -> None:
    """Raise ScheduleError if croniter refuses the whole ``m h dom mon dow`` expression."""
    try:
        croniter(expression, day_or=False)
    except (CroniterError, ValueError, TypeError) as exc:
        raise ScheduleError(f"crontab {expression!r}: {exc}") from None
