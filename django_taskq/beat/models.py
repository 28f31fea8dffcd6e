"""Beat's tables: schedules, periodic tasks, the claim of each tick, and beat liveness.

The names and fields follow django-celery-beat's (so its users find their way and its rows can be
imported), with what it lacks: a stored ``next_run_at`` (beat asks the database what is due, it
never filters schedules out by a time-window heuristic), a catch-up policy per task, and
:class:`PeriodicTaskRun`, whose UNIQUE ``(periodic task, tick)`` makes every tick fire once
whatever the number of beat processes.
"""

from __future__ import annotations

import zoneinfo
from datetime import timedelta
from typing import Any

import django
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .. import schedules
from ..exceptions import ConfigurationError
from .wakeup import notify_change

#: Django 5.1 renamed CheckConstraint's ``check`` to ``condition`` (6.0 removed ``check``).
CHECK_KEYWORD = "condition" if django.VERSION >= (5, 1) else "check"


def default_timezone() -> str:
    """A new crontab's zone: the project's TIME_ZONE."""
    return str(getattr(settings, "TIME_ZONE", None) or "UTC")


def _validate_zone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"Unknown time zone {name!r}: use an IANA name such as "
                              f"'Europe/Berlin' or 'UTC'.") from exc


def _as_validation_error(exc: ConfigurationError) -> ValidationError:
    return ValidationError(str(exc))


class ScheduleRow(models.Model):
    """A schedule: saving a change moves the next run of every periodic task that uses it (an
    unchanged save keeps their pending runs)."""

    class Meta:
        abstract = True

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any, *args: Any,
                **kwargs: Any) -> Any:  # Django 6.1 adds fetch_mode
        instance = super().from_db(db, field_names, values, *args, **kwargs)
        instance._as_loaded = instance.fields_state()
        return instance

    @classmethod
    def find_or_create(cls, alias: str, **fields: Any) -> Any:
        """The oldest row with these fields, or a new one (checked first). Crontab and clocked
        rows have no UNIQUE constraint (the admin may hold equal ones, and beats starting
        together may each make one), so ``get_or_create`` could meet two."""
        from django.db import IntegrityError, transaction

        rows = cls.objects.using(alias).filter(**fields).order_by("pk")  # type: ignore[attr-defined]
        found = rows.first()
        if found is not None:
            return found
        made = cls(**fields)
        # Uniqueness was just looked up in ``alias`` (full_clean would ask the default one).
        made.full_clean(validate_unique=False, validate_constraints=False)
        try:
            with transaction.atomic(using=alias):
                made.save(using=alias)
        except IntegrityError:  # interval and solar rows are UNIQUE: another beat made it first
            return rows.first()
        return made

    def fields_state(self) -> tuple[Any, ...]:
        return tuple(getattr(self, field.attname) for field in self._meta.concrete_fields
                     if not field.primary_key)

    def save(self, *args: Any, **kwargs: Any) -> None:
        changed = getattr(self, "_as_loaded", None) != self.fields_state()
        super().save(*args, **kwargs)
        self._as_loaded = self.fields_state()
        if not changed:
            return
        from .timing import reschedule

        reschedule(PeriodicTask.objects.using(self._state.db).filter(
            **{str(self._meta.model_name).removesuffix("schedule"): self}))
        notify_change(self._state.db or "default")


class IntervalSchedule(ScheduleRow):
    """Every N days, hours, minutes or seconds."""

    DAYS, HOURS, MINUTES, SECONDS = "days", "hours", "minutes", "seconds"
    PERIODS = [(DAYS, "days"), (HOURS, "hours"), (MINUTES, "minutes"), (SECONDS, "seconds")]

    every = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    period = models.CharField(max_length=24, choices=PERIODS)

    class Meta:
        db_table = "taskq_beat_interval"
        verbose_name = "interval schedule"
        ordering = ["period", "every"]
        constraints = [models.UniqueConstraint(fields=["every", "period"],
                                               name="taskq_beat_interval_unique")]

    def schedule(self) -> schedules.schedule:
        return schedules.schedule(timedelta(**{self.period: self.every}))

    def __str__(self) -> str:
        return self.schedule().describe() if self.every else "interval"


class CrontabSchedule(ScheduleRow):
    """Celery's five cron fields, evaluated in an IANA time zone."""

    minute = models.CharField(max_length=240, default="*")
    hour = models.CharField(max_length=96, default="*")
    day_of_week = models.CharField(max_length=64, default="*",
                                   help_text="0-6 or sun-sat (0 and 7 are Sunday), ranges, lists")
    day_of_month = models.CharField(max_length=124, default="*")
    month_of_year = models.CharField(max_length=64, default="*")
    timezone = models.CharField(max_length=64, default=default_timezone,
                                validators=[_validate_zone],
                                help_text="IANA time zone the fields are read in")

    class Meta:
        db_table = "taskq_beat_crontab"
        verbose_name = "crontab schedule"
        ordering = ["month_of_year", "day_of_month", "day_of_week", "hour", "minute", "timezone"]

    def schedule(self) -> schedules.crontab:
        return schedules.crontab(minute=self.minute, hour=self.hour, day_of_week=self.day_of_week,
                                 day_of_month=self.day_of_month,
                                 month_of_year=self.month_of_year, tz=self.timezone)

    def clean(self) -> None:
        try:
            self.schedule()
        except ConfigurationError as exc:
            raise _as_validation_error(exc) from exc

    def __str__(self) -> str:
        try:
            return self.schedule().describe()
        except ConfigurationError:
            return (f"{self.minute} {self.hour} {self.day_of_month} {self.month_of_year} "
                    f"{self.day_of_week} ({self.timezone})")


class SolarSchedule(ScheduleRow):
    """A solar event (sunrise, sunset, dawn and dusk variants, solar noon) at a place."""

    EVENTS = [(event, event.replace("_", " ")) for event in schedules.SOLAR_EVENTS]

    event = models.CharField(max_length=24, choices=EVENTS)
    latitude = models.DecimalField(max_digits=9, decimal_places=6,
                                   validators=[MinValueValidator(-90), MaxValueValidator(90)])
    longitude = models.DecimalField(max_digits=9, decimal_places=6,
                                    validators=[MinValueValidator(-180), MaxValueValidator(180)])

    class Meta:
        db_table = "taskq_beat_solar"
        verbose_name = "solar schedule"
        ordering = ["event", "latitude", "longitude"]
        constraints = [models.UniqueConstraint(fields=["event", "latitude", "longitude"],
                                               name="taskq_beat_solar_unique")]

    def schedule(self) -> schedules.solar:
        return schedules.solar(self.event, float(self.latitude), float(self.longitude))

    def __str__(self) -> str:
        return f"{self.event.replace('_', ' ')} at {self.latitude}, {self.longitude}"


class ClockedSchedule(ScheduleRow):
    """One moment (a one-off task)."""

    clocked_time = models.DateTimeField()

    class Meta:
        db_table = "taskq_beat_clocked"
        verbose_name = "clocked schedule"
        ordering = ["clocked_time"]

    def schedule(self) -> schedules.clocked:
        return schedules.clocked(self.clocked_time)

    def __str__(self) -> str:
        return self.schedule().describe() if self.clocked_time else "clocked"


#: The schedule foreign keys of a periodic task: exactly one is set.
SCHEDULE_FIELDS = ("interval", "crontab", "solar", "clocked")
#: The fields of a periodic task that decide its next run.
TIMING_FIELDS = ("interval_id", "crontab_id", "solar_id", "clocked_id", "enabled", "start_time",
                 "expires", "anchor")


def _exactly_one_schedule() -> Q:
    condition = Q()
    for chosen in SCHEDULE_FIELDS:
        term = Q(**{f"{name}__isnull": name != chosen for name in SCHEDULE_FIELDS})
        condition = term if not condition else condition | term
    return condition


def one_schedule_constraint() -> models.CheckConstraint:
    """The database's guard: a periodic task has exactly one schedule (also in migration 0005)."""
    keyword: dict[str, Any] = {CHECK_KEYWORD: _exactly_one_schedule()}
    return models.CheckConstraint(name="taskq_beat_one_schedule", **keyword)


class PeriodicTask(models.Model):
    """A task sent on a schedule (django-celery-beat's PeriodicTask, and what beat needs)."""

    SKIP, LATEST, ALL = "skip", "latest", "all"
    CATCH_UP = [(SKIP, "skip missed runs"), (LATEST, "run the latest missed once"),
                (ALL, "run every missed run")]
    ADMIN, SETTINGS = "admin", "settings"
    SOURCES = [(ADMIN, "admin"), (SETTINGS, "settings or code")]

    name = models.CharField(max_length=200, unique=True)
    task = models.CharField(max_length=255, help_text="registered task name")
    interval = models.ForeignKey(IntervalSchedule, null=True, blank=True,
                                 on_delete=models.PROTECT, related_name="periodic_tasks")
    crontab = models.ForeignKey(CrontabSchedule, null=True, blank=True,
                                on_delete=models.PROTECT, related_name="periodic_tasks")
    solar = models.ForeignKey(SolarSchedule, null=True, blank=True,
                              on_delete=models.PROTECT, related_name="periodic_tasks")
    clocked = models.ForeignKey(ClockedSchedule, null=True, blank=True,
                                on_delete=models.PROTECT, related_name="periodic_tasks")
    args = models.JSONField(default=list, blank=True, help_text="JSON list")
    kwargs = models.JSONField(default=dict, blank=True, help_text="JSON object")
    queue = models.CharField(max_length=200, blank=True, default="",
                             help_text="empty: the task's own routing")
    priority = models.PositiveSmallIntegerField(null=True, blank=True,
                                                validators=[MaxValueValidator(9)])
    headers = models.JSONField(default=dict, blank=True, help_text="JSON object")
    expires = models.DateTimeField(null=True, blank=True,
                                   help_text="no run after this moment (and its messages expire)")
    expire_seconds = models.PositiveIntegerField(null=True, blank=True,
                                                 help_text="each message expires this long "
                                                           "after it is sent")
    start_time = models.DateTimeField(null=True, blank=True, help_text="no run before this")
    enabled = models.BooleanField(default=True)
    one_off = models.BooleanField(default=False, help_text="disable after the first run")
    description = models.TextField(blank=True, default="")
    catch_up = models.CharField(max_length=8, choices=CATCH_UP, default=LATEST,
                                help_text="what beat does with runs missed while it was down")
    catch_up_window = models.PositiveIntegerField(
        null=True, blank=True, help_text="seconds: a missed run older than this is skipped "
                                         "(empty: any age for 'latest', one hour for 'all')")
    source = models.CharField(max_length=10, choices=SOURCES, default=ADMIN, editable=False)
    removed_from_code_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="when beat disabled this declared task because code no longer declares it "
                  "(it is enabled again if the declaration comes back)")
    anchor = models.DateTimeField(default=timezone.now, editable=False,
                                  help_text="interval ticks count from here (or start time)")
    next_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    total_run_count = models.PositiveIntegerField(default=0, editable=False)
    last_task_id = models.CharField(max_length=255, blank=True, default="", editable=False)
    date_changed = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "taskq_beat_periodictask"
        verbose_name = "periodic task"
        ordering = ["name"]
        indexes = [models.Index(fields=["enabled", "next_run_at"], name="taskq_beat_due")]
        constraints = [one_schedule_constraint()]
        permissions = [("run_periodictask", "Can run periodic tasks now"),
                       ("enable_periodictask", "Can enable periodic tasks"),
                       ("disable_periodictask", "Can disable periodic tasks")]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any, *args: Any,
                **kwargs: Any) -> PeriodicTask:  # Django 6.1 adds fetch_mode
        instance: PeriodicTask = super().from_db(db, field_names, values, *args, **kwargs)
        instance._timing_as_loaded = instance.timing_state()
        return instance

    def timing_state(self) -> tuple[Any, ...]:
        """What decides the next run: when it changes, the next run is computed again."""
        return tuple(self.__dict__.get(name) for name in TIMING_FIELDS)

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Compute ``next_run_at`` again when the schedule, start, expiry or switch changed
        (an edit of the description keeps a pending catch-up run)."""
        if getattr(self, "_timing_as_loaded", None) != self.timing_state():
            from .timing import first_run

            self.next_run_at = first_run(self, timezone.now())
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "next_run_at"}
        super().save(*args, **kwargs)
        self._timing_as_loaded = self.timing_state()
        notify_change(self._state.db or "default")

    def schedule_row(self) -> Any:
        """The interval, crontab, solar or clocked row this task runs on (None if unset)."""
        for name in SCHEDULE_FIELDS:
            if getattr(self, f"{name}_id") is not None:
                return getattr(self, name)
        return None

    def schedule(self) -> schedules.BaseSchedule:
        row = self.schedule_row()
        if row is None:
            raise ConfigurationError(f"Periodic task {self.name!r} has no schedule: choose one "
                                     f"interval, crontab, solar or clocked schedule.")
        result: schedules.BaseSchedule = row.schedule()
        return result


class PeriodicTaskRun(models.Model):
    """The claim of one tick: whoever inserts it first sends the tick's task, nobody else.

    ``sent_at`` is set in the same transaction on the database broker; on Redis and RabbitMQ it
    is set once the broker took the message, and a claim left unsent (its beat died) is sent
    again by another beat, with the same task id (derived from the tick).
    """

    periodic_task = models.ForeignKey(PeriodicTask, on_delete=models.CASCADE,
                                      related_name="runs")
    tick = models.DateTimeField()
    task_id = models.CharField(max_length=255)
    claimed_by = models.CharField(max_length=255)
    claimed_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        db_table = "taskq_beat_run"
        verbose_name = "periodic task run"
        ordering = ["-tick"]
        constraints = [models.UniqueConstraint(fields=["periodic_task", "tick"],
                                               name="taskq_beat_one_send_per_tick")]

    def __str__(self) -> str:
        return f"{self.periodic_task_id}@{self.tick.isoformat()}"


class BeatInstance(models.Model):
    """A beat process's liveness: the admin warns when none ticked recently."""

    ident = models.CharField(max_length=255, unique=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    last_tick_at = models.DateTimeField(db_index=True)
    embedded = models.BooleanField(default=False, help_text="runs inside a taskworker")

    class Meta:
        db_table = "taskq_beat_instance"
        verbose_name = "beat instance"
        ordering = ["-last_tick_at"]

    def __str__(self) -> str:
        return self.ident
