"""Schedules declared in code: ``TASKQ["BEAT_SCHEDULE"]`` (Celery's ``beat_schedule``),
``app.add_periodic_task(...)``, and the built-in housekeeping entry.

Beat upserts them as periodic task rows (``source = settings``) when it starts. The rule for a
row declared in code: its task, schedule, arguments and options are set from code at every beat
start (edits to them in the admin last until then); ``enabled`` is the admin's to keep, so a
declared entry can be switched off in the admin. A declared row that disappears from code is
disabled, not deleted (its history stays).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from .. import schedules
from ..exceptions import ConfigurationError

logger = logging.getLogger("django_taskq.beat")

#: The name of the built-in result cleanup entry (Celery's is ``celery.backend_cleanup``).
CLEANUP_ENTRY = "taskq.backend_cleanup"
CLEANUP_TASK = "django_taskq.backend_cleanup"
#: Options of a beat entry that a periodic task row stores.
STORED_OPTIONS = ("queue", "priority", "expires", "headers")
#: Options a Celery beat entry may carry that mean nothing for a periodic send; dropped quietly.
ROUTING_OPTIONS = ("exchange", "routing_key")


@dataclass(frozen=True)
class Entry:
    """One declared periodic task, checked."""

    name: str
    task: str
    schedule: schedules.BaseSchedule
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


#: Entries from ``add_periodic_task`` calls in this process, by name.
_added: dict[str, Entry] = {}
#: ``add_periodic_task`` calls that were refused, by name: what was wrong (check E012).
refused: dict[str, str] = {}


def _task_name(task: Any) -> str:
    name = task if isinstance(task, str) else getattr(task, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a beat entry's task must be a task or its registered name, "
                                 f"not {task!r}")
    return name


def make_entry(name: str, spec: Mapping[str, Any]) -> Entry:
    """Check one ``beat_schedule`` entry; ConfigurationError names the entry and the fix."""
    unknown = set(spec) - {"task", "schedule", "args", "kwargs", "options", "relative"}
    if unknown:
        raise ConfigurationError(f"beat entry {name!r} has unknown keys {sorted(unknown)}: an "
                                 "entry has task, schedule, args, kwargs, options.")
    if "task" not in spec or "schedule" not in spec:
        raise ConfigurationError(f"beat entry {name!r} needs 'task' and 'schedule'.")
    args, kwargs = spec.get("args") or (), spec.get("kwargs") or {}
    options = dict(spec.get("options") or {})
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, Mapping):
        raise ConfigurationError(f"beat entry {name!r}: args must be a list or tuple and "
                                 "kwargs a dict.")
    for key in ROUTING_OPTIONS:
        options.pop(key, None)
    if isinstance(options.get("expires"), timedelta):
        options["expires"] = options["expires"].total_seconds()
    _check_option_values(name, options)
    ignored = set(options) - set(STORED_OPTIONS)
    if ignored:
        raise ConfigurationError(f"beat entry {name!r}: options {sorted(ignored)} are not kept "
                                 f"for periodic sends; use {', '.join(STORED_OPTIONS)}.")
    try:
        schedule = schedules.as_schedule(spec["schedule"])
    except ConfigurationError as exc:
        raise ConfigurationError(f"beat entry {name!r}: {exc}") from exc
    return Entry(name, _task_name(spec["task"]), schedule, tuple(args), dict(kwargs), options)


def _check_option_values(name: str, options: Mapping[str, Any]) -> None:
    priority, expires = options.get("priority"), options.get("expires")
    if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)
                                 or not 0 <= priority <= 9):
        raise ConfigurationError(f"beat entry {name!r}: priority must be a whole number from 0 "
                                 f"to 9, not {priority!r}.")
    if isinstance(expires, datetime) and expires.utcoffset() is None:
        raise ConfigurationError(f"beat entry {name!r}: expires {expires!r} is naive: give an "
                                 "aware datetime (e.g. with tzinfo=timezone.utc).")
    if expires is not None and not isinstance(expires, datetime) and (
            not isinstance(expires, (int, float)) or isinstance(expires, bool) or expires < 1):
        raise ConfigurationError(f"beat entry {name!r}: expires must be a number of seconds (at "
                                 f"least 1), a timedelta or an aware datetime, not {expires!r}.")
    headers = options.get("headers")
    if headers is not None and not isinstance(headers, Mapping):
        raise ConfigurationError(f"beat entry {name!r}: headers must be a dict.")


def add_periodic_task(schedule: Any, sig: Any, args: Sequence[Any] = (),
                      kwargs: Mapping[str, Any] | None = None, name: str | None = None,
                      **options: Any) -> Entry:
    """Celery's ``app.add_periodic_task(schedule, sig, args=(), kwargs=(), name=None, **opts)``.

    ``sig`` is a task, its name, or a signature-like object (``name``, ``args``, ``kwargs``,
    ``options`` attributes); without ``name`` the entry is named after the task and its
    arguments, as Celery does.
    """
    task = _task_name(sig if isinstance(sig, str) else getattr(sig, "name", sig))
    if isinstance(getattr(sig, "options", None), Mapping):  # a signature: its call comes along
        args = tuple(sig.args or ()) + tuple(args)
        kwargs = {**(sig.kwargs or {}), **(kwargs or {})}
        options = {**sig.options, **options}
    kwargs = dict(kwargs or {})
    called = [*map(repr, args), *(f"{key}={value!r}" for key, value in kwargs.items())]
    label = name or f"{task}({', '.join(called)})"
    try:
        entry = make_entry(label, {"task": task, "schedule": schedule, "args": args,
                                   "kwargs": kwargs, "options": options})
    except ConfigurationError as exc:
        refused[label] = str(exc)  # a receiver's error is only logged: the checks say it too
        raise
    _added[label] = entry
    return entry


def declared_entries() -> dict[str, Entry]:
    """Every entry declared in code, checked: settings, then add_periodic_task, then built-ins."""
    from ..conf import get_settings

    conf = get_settings()
    entries = {name: make_entry(name, spec) for name, spec in conf.BEAT_SCHEDULE.items()}
    entries.update(_added)
    if conf.BEAT_BACKEND_CLEANUP and CLEANUP_ENTRY not in entries:
        entries[CLEANUP_ENTRY] = Entry(CLEANUP_ENTRY, CLEANUP_TASK,
                                       schedules.crontab(minute=0, hour=4))
    return entries


def schedule_row(schedule: schedules.BaseSchedule, alias: str) -> tuple[str, Any]:
    """The schedule row (found or created) for ``schedule``: (foreign key name, row)."""
    from .models import ClockedSchedule, CrontabSchedule, IntervalSchedule, SolarSchedule

    if isinstance(schedule, schedules.crontab):
        return "crontab", CrontabSchedule.find_or_create(alias, minute=schedule.minute,
                                          hour=schedule.hour, day_of_week=schedule.day_of_week,
                                          day_of_month=schedule.day_of_month,
                                          month_of_year=schedule.month_of_year,
                                          timezone=schedule.tz.key)
    if isinstance(schedule, schedules.solar):
        return "solar", SolarSchedule.find_or_create(alias, event=schedule.event,
                                        latitude=Decimal(str(round(schedule.lat, 6))),
                                        longitude=Decimal(str(round(schedule.lon, 6))))
    if isinstance(schedule, schedules.clocked):
        return "clocked", ClockedSchedule.find_or_create(alias, clocked_time=schedule.clocked_time)
    if isinstance(schedule, schedules.schedule):
        every, period = interval_fields(schedule.run_every)
        return "interval", IntervalSchedule.find_or_create(alias, every=every, period=period)
    raise ConfigurationError(f"beat cannot store a {type(schedule).__name__} schedule")


def interval_fields(run_every: timedelta) -> tuple[int, str]:
    """The largest whole unit of an interval: 7200 s is (2, "hours")."""
    seconds = int(run_every.total_seconds())
    for period, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds % size == 0:
            return seconds // size, period
    return seconds, "seconds"


def _row_values(entry: Entry, alias: str) -> dict[str, Any]:
    from .models import SCHEDULE_FIELDS

    kind, row = schedule_row(entry.schedule, alias)
    values: dict[str, Any] = {name: None for name in SCHEDULE_FIELDS}
    values[kind] = row
    expires = entry.options.get("expires")
    values.update(
        task=entry.task, args=list(entry.args), kwargs=dict(entry.kwargs),
        queue=entry.options.get("queue") or "", priority=entry.options.get("priority"),
        headers=dict(entry.options.get("headers") or {}),
        expire_seconds=int(expires) if isinstance(expires, (int, float)) else None,
        expires=expires if isinstance(expires, datetime) else None,
        one_off=kind == "clocked")
    return values


def sync(alias: str) -> list[str]:
    """Upsert the declared entries as periodic task rows; returns their names.

    Raises:
        BeatStoreError: the database failed (beat tries again).
    """
    from django.utils import timezone

    from ..engines import database_errors
    from ..exceptions import BeatStoreError
    from .models import PeriodicTask

    entries = declared_entries()
    with database_errors(alias, "beat: upsert the schedules declared in code", BeatStoreError):
        for entry in entries.values():
            _upsert(entry, alias)
        gone = PeriodicTask.objects.using(alias).filter(
            source=PeriodicTask.SETTINGS, enabled=True).exclude(name__in=entries)
        for row in gone:
            logger.warning("Periodic task %r is no longer declared in code: disabled", row.name)
            row.enabled = False
            row.removed_from_code_at = timezone.now()
            row.save(using=alias)
    return list(entries)


def _upsert(entry: Entry, alias: str) -> None:
    """One declared entry: created, or its code-owned fields set; a beat starting at the same
    moment may create it first (then this one updates it)."""
    from django.core.exceptions import ValidationError
    from django.db import IntegrityError, transaction

    from .models import PeriodicTask

    for _attempt in range(2):
        values = _row_values(entry, alias)
        row = PeriodicTask.objects.using(alias).filter(name=entry.name).first()
        if row is None:
            row = PeriodicTask(name=entry.name, source=PeriodicTask.SETTINGS, **values)
        else:
            if row.source != PeriodicTask.SETTINGS:
                logger.warning("Periodic task %r was made in the admin; the entry of that name "
                               "declared in code now owns it", entry.name)
            row.source = PeriodicTask.SETTINGS
            for key, value in values.items():
                setattr(row, key, value)
            if row.removed_from_code_at is not None:  # disabled by a beat without it: back on
                row.enabled, row.removed_from_code_at = True, None
        try:
            row.full_clean(exclude=["anchor"], validate_unique=False)
        except ValidationError as exc:
            raise ConfigurationError(f"beat entry {entry.name!r}: {exc}") from exc
        try:
            with transaction.atomic(using=alias):
                row.save(using=alias)
            return
        except IntegrityError:
            continue  # another beat created it just now: update that row
    raise ConfigurationError(f"beat entry {entry.name!r} could not be stored")
