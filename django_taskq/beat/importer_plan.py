"""One django-celery-beat periodic task row, mapped to ours: a plan to write, or the reasons not to.

Pure mapping, no writes: what cannot be carried over is said here, row by row. Refused (the
row is not imported): a ``microseconds`` interval, args/kwargs/headers that are not JSON of the
right shape, a crontab field or time zone our crontab refuses, a bad solar or clocked schedule,
no schedule or more than one. Carried over with a note: a priority above 9 (clamped), an
exchange or routing key (dropped), a task not registered here (imported disabled).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

from .. import schedules
from ..exceptions import ConfigurationError
from ..registry import registry
from . import importer_source
from .importer_source import Row, Source

#: django-celery-beat's built-in result cleanup entry (Celery's ``celery.backend_cleanup``).
CELERY_CLEANUP_TASK = "celery.backend_cleanup"
MAX_PRIORITY = 9
INTERVAL_PERIODS = ("days", "hours", "minutes", "seconds")
SCHEDULE_KINDS = ("interval", "crontab", "solar", "clocked")


class Unmappable(Exception):
    """A value of the row has no equivalent here; the message says which and why."""


@dataclass(frozen=True)
class Plan:
    """What one django-celery-beat row becomes here."""

    name: str
    #: "interval", "crontab", "solar" or "clocked", and the fields of that schedule row.
    kind: str
    schedule_fields: Mapping[str, Any]
    #: PeriodicTask fields other than the name and the schedule.
    values: Mapping[str, Any]
    notes: tuple[str, ...] = ()
    #: Whether the task is registered in this process (if not, it is imported disabled).
    registered: bool = True


@dataclass(frozen=True)
class Refusal:
    """A row that is not imported, and why (one reason a line)."""

    name: str
    reasons: tuple[str, ...] = field(default_factory=tuple)


def plan(row: Row, source: Source) -> Plan | Refusal:
    """Map one ``django_celery_beat_periodictask`` row (as read by importer_source)."""
    name = str(row["name"])
    if row["task"] == CELERY_CLEANUP_TASK:
        return Refusal(name, ("django-celery-beat's built-in result cleanup: django_taskq "
                              "has its own entry, taskq.backend_cleanup "
                              "(TASKQ['BEAT_BACKEND_CLEANUP'], on by default)",))
    reasons: list[str] = []
    kind, fields = _attempt(reasons, lambda: schedule_of(row, source)) or ("", {})
    decoded = {column: _attempt(reasons, partial(_json, row, column))
               for column in ("args", "kwargs", "headers")}
    moments = {column: _attempt(reasons, partial(_moment, source, row, column))
               for column in ("expires", "start_time", "last_run_at")}
    if reasons:
        return Refusal(name, tuple(reasons))
    notes, options = _options(row)
    values = {**decoded, **moments, **options}
    # A clocked schedule ticks once: django-celery-beat requires one_off with it.
    values["one_off"] = kind == "clocked" or importer_source.flag(row["one_off"])
    return Plan(name, kind, fields, values, tuple(notes),
                registered=row["task"] in registry)


def _attempt(reasons: list[str], compute: Callable[[], Any]) -> Any:
    """``compute()``, or None with the reason appended when the value cannot be mapped."""
    try:
        return compute()
    except (Unmappable, ConfigurationError, ValueError, TypeError) as exc:
        reasons.append(str(exc))
        return None


def _json(row: Row, column: str) -> Any:
    """args (a list), kwargs or headers (an object) from their JSON text; django-celery-beat
    reads an empty value as ``[]``/``{}`` (``loads(model.args or '[]')``)."""
    text, want = row[column], list if column == "args" else dict
    if text is None or text == "":
        return want()
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise Unmappable(f"{column} is not valid JSON ({exc}): {str(text)[:60]!r}") from None
    if value is None:
        return want()
    if not isinstance(value, want):
        raise Unmappable(f"{column} must be a JSON {'list' if want is list else 'object'}, "
                         f"not {type(value).__name__}: {str(text)[:60]!r}")
    return value


def _moment(source: Source, row: Row, column: str) -> Any:
    try:
        return importer_source.moment(source.alias, row[column])
    except ValueError as exc:
        raise Unmappable(f"{column}: {exc}") from None


def _options(row: Row) -> tuple[list[str], dict[str, Any]]:
    """Queue, priority, expiry, switch, history and description; and the notes they need."""
    notes: list[str] = []
    priority = None if row["priority"] is None else int(row["priority"])
    if priority is not None and priority > MAX_PRIORITY:
        notes.append(f"priority {priority} clamped to {MAX_PRIORITY}: django_taskq "
                     f"priorities are 0-{MAX_PRIORITY}")
        priority = MAX_PRIORITY
    dropped = [f"{column} {row[column]!r}" for column in ("exchange", "routing_key")
               if row[column]]
    if dropped:
        notes.append(f"{' and '.join(dropped)} dropped: django_taskq routes by queue "
                     f"(set the queue instead)")
    enabled = importer_source.flag(row["enabled"])
    if row["task"] not in registry:
        notes.append(f"task {row['task']!r} is not registered in this process: imported "
                     f"DISABLED (enable it once the task's module is loaded)")
        enabled = False
    expire_seconds = row["expire_seconds"]
    return notes, {
        "task": str(row["task"]), "queue": row["queue"] or "", "priority": priority,
        "expire_seconds": None if expire_seconds is None else int(expire_seconds),
        "enabled": enabled, "total_run_count": int(row["total_run_count"] or 0),
        "description": row["description"] or ""}


def schedule_of(row: Row, source: Source) -> tuple[str, dict[str, Any]]:
    """The row's one schedule: its kind and the fields of our schedule row, checked by
    building the schedule.

    Raises:
        Unmappable, ConfigurationError, ValueError: saying what is wrong with it.
    """
    chosen = [kind for kind in SCHEDULE_KINDS if row[f"{kind}_id"] is not None]
    if not chosen:
        raise Unmappable("no schedule: none of interval, crontab, solar, clocked is set")
    if len(chosen) > 1:
        raise Unmappable(f"more than one schedule ({', '.join(chosen)}): a periodic task has "
                         f"exactly one")
    kind = chosen[0]
    found = source.schedules.get(kind, {}).get(row[f"{kind}_id"])
    if found is None:
        raise Unmappable(f"its {kind} schedule (id {row[f'{kind}_id']}) is missing from "
                         f"{importer_source.SCHEDULE_TABLES[kind]}")
    return kind, _BUILDERS[kind](found, source)


def _interval(found: Row, source: Source) -> dict[str, Any]:
    every, period = found["every"], found["period"]
    if period == "microseconds":
        raise Unmappable(f"interval of {every} microseconds: django_taskq ticks are whole "
                         f"seconds (so that every beat agrees on them); use seconds or more")
    if period not in INTERVAL_PERIODS:
        raise Unmappable(f"interval period {period!r}: use one of {', '.join(INTERVAL_PERIODS)}")
    schedules.schedule(timedelta(**{period: int(every)}))
    return {"every": int(every), "period": period}


def _crontab(found: Row, source: Source) -> dict[str, Any]:
    fields = {name: found[name] for name in ("minute", "hour", "day_of_month", "month_of_year",
                                             "day_of_week")}  # cron's order, for the message
    # Before django-celery-beat 0006 there was no timezone column: its default was UTC.
    zone = found["timezone"] if found["timezone"] is not None else "UTC"
    try:
        cron = schedules.crontab(**fields, tz=str(zone))
    except ConfigurationError as exc:
        raise Unmappable(f"crontab {' '.join(map(str, fields.values()))} ({zone}): {exc}") \
            from None
    return {"minute": cron.minute, "hour": cron.hour, "day_of_week": cron.day_of_week,
            "day_of_month": cron.day_of_month, "month_of_year": cron.month_of_year,
            "timezone": cron.tz_name}


def _solar(found: Row, source: Source) -> dict[str, Any]:
    latitude = importer_source.decimal6(found["latitude"])
    longitude = importer_source.decimal6(found["longitude"])
    schedules.solar(str(found["event"]), float(latitude), float(longitude))
    return {"event": found["event"], "latitude": latitude, "longitude": longitude}


def _clocked(found: Row, source: Source) -> dict[str, Any]:
    when = importer_source.moment(source.alias, found["clocked_time"])
    if when is None:
        raise Unmappable("clocked schedule without a time")
    schedules.clocked(when)
    return {"clocked_time": when}


_BUILDERS: dict[str, Callable[[Row, Source], dict[str, Any]]] = {
    "interval": _interval, "crontab": _crontab, "solar": _solar, "clocked": _clocked}
