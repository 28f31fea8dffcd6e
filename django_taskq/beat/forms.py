"""The admin's forms for periodic tasks and crontab schedules: every rule checked before saving.

A periodic task names a registered task, takes JSON arguments of bounded size, runs on exactly
one schedule, and may be previewed: a form posted with ``_preview`` validates every field, then
refuses to save with a note, and carries the runs it would have (``preview``) for the page.
"""

from __future__ import annotations

import copy
import difflib
import json
import zoneinfo
from typing import TYPE_CHECKING, Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.models import construct_instance

from ..calloptions import check_arguments
from ..registry import registry
from ..schedules.base import ScheduleError
from ..schedules.cronfield import FIELDS as CRON_FIELDS
from ..schedules.cronfield import normalise
from .admin_display import RunTable, run_table
from .models import SCHEDULE_FIELDS, CrontabSchedule, PeriodicTask, default_timezone

if TYPE_CHECKING:  # generic in django-stubs only
    TaskModelForm = forms.ModelForm[PeriodicTask]
    CrontabModelForm = forms.ModelForm[CrontabSchedule]
else:
    TaskModelForm = CrontabModelForm = forms.ModelForm

#: The most bytes args, kwargs or headers may take as JSON (they travel in every message).
JSON_LIMIT = 64 * 1024
#: The submit button that asks for a preview instead of a save.
PREVIEW = "_preview"
PREVIEW_NOTE = "Preview only: nothing was saved."
#: The JSON fields: the Python type each must hold, and how to say it.
JSON_SHAPES = {"args": (list, "a JSON list, e.g. [2, 3]"),
               "kwargs": (dict, 'a JSON object, e.g. {"to": "a@example.com"}'),
               "headers": (dict, 'a JSON object, e.g. {"tenant": "acme"}')}


def known_names() -> list[str]:
    """The task names this process has registered, sorted."""
    return registry.keys()


def unknown_task_message(name: str) -> str:
    """The error for a task name nobody registered: the closest names, then every known one."""
    names = known_names()
    if not names:
        return (f"No task called {name!r} is registered in this process, nor any other: is the "
                f"app with the tasks in INSTALLED_APPS?")
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (f"No task called {name!r} is registered in this process.{hint} "
            f"Known tasks: {', '.join(names)}.")


def task_choices(current: str | None) -> list[tuple[str, str]]:
    """The registered names, and the row's own name when it is not one (so that it shows)."""
    names = known_names()
    choices = [("", "---------")] + [(name, name) for name in names]
    if current and current not in names:
        choices.append((current, f"{current} (not registered)"))
    return choices


def json_value(name: str, value: Any) -> Any:
    """``value`` of JSON field ``name`` checked: its shape, and its size as JSON."""
    kind, wanted = JSON_SHAPES[name]
    if value in (None, ""):
        return kind()
    if not isinstance(value, kind):
        raise ValidationError(f"{name} must be {wanted}, not {type(value).__name__} "
                              f"{json.dumps(value)[:60]}")
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > JSON_LIMIT:
        raise ValidationError(
            f"{name} is {size:,} bytes as JSON; the limit is {JSON_LIMIT:,} bytes "
            f"({JSON_LIMIT // 1024} KiB), as it travels in every message: pass a reference "
            f"(an id, a path) and let the task load the data.")
    return value


class PeriodicTaskForm(TaskModelForm):
    """A periodic task as the admin edits it."""

    task = forms.CharField(max_length=255, widget=forms.Select(),
                           help_text="a task registered in this process")
    priority = forms.IntegerField(required=False, min_value=0, max_value=9,
                                  help_text="0 (lowest) to 9 (highest); empty: the task's own")
    expire_seconds = forms.IntegerField(
        required=False, min_value=1,
        help_text="each message expires this long after it is sent (not with expires)")
    catch_up_window = forms.IntegerField(
        required=False, min_value=1,
        help_text="seconds: a missed run older than this is skipped (empty: any age for "
                  "'latest', one hour for 'all')")

    class Meta:
        model = PeriodicTask
        fields = "__all__"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        posted = self.data.get(self.add_prefix("task")) if self.is_bound else None
        current = posted or self.initial.get("task") or self.instance.task
        task_field = self.fields["task"]
        assert isinstance(task_field.widget, forms.Select)
        task_field.widget.choices = task_choices(current)
        for name in ("args", "kwargs", "headers", "description"):
            if name in self.fields:
                self.fields[name].widget.attrs.update(rows=2, cols=60)
        #: The runs the posted values would have, when a preview was asked for and is valid.
        self.preview: RunTable | None = None
        self._schedule_invalid = False

    def wants_preview(self) -> bool:
        return self.is_bound and PREVIEW in self.data

    def clean_task(self) -> str:
        name = str(self.cleaned_data["task"])
        if name not in registry:
            raise ValidationError(unknown_task_message(name))
        return name

    def clean_args(self) -> Any:
        return json_value("args", self.cleaned_data.get("args"))

    def clean_kwargs(self) -> Any:
        return json_value("kwargs", self.cleaned_data.get("kwargs"))

    def clean_headers(self) -> Any:
        return json_value("headers", self.cleaned_data.get("headers"))

    def clean(self) -> dict[str, Any] | None:
        data = super().clean() or self.cleaned_data
        self._check_arguments(data)
        self._check_schedule(data)
        self._check_expiry(data)
        if data.get("clocked") is not None and not data.get("one_off"):
            self.add_error("one_off", "A clocked schedule runs once: tick one-off (as in "
                                      "django-celery-beat).")
        if self.wants_preview() and not self.errors:
            candidate = construct_instance(self, copy.copy(self.instance))
            self.preview = run_table(candidate)
            self.add_error(None, PREVIEW_NOTE)
        return data

    def _check_arguments(self, data: dict[str, Any]) -> None:
        """The arguments must fit the task's function, as a call of ``delay()`` would check."""
        name, args, kwargs = data.get("task"), data.get("args"), data.get("kwargs")
        if not isinstance(name, str) or name not in registry or not isinstance(args, list) \
                or not isinstance(kwargs, dict):
            return  # reported on its own field
        try:
            check_arguments(registry.get(name), args, kwargs)
        except TypeError as exc:
            self.add_error("args", f"These arguments do not fit the task: {exc}")

    def _check_schedule(self, data: dict[str, Any]) -> None:
        chosen = [name for name in SCHEDULE_FIELDS if data.get(name) is not None]
        self._schedule_invalid = len(chosen) != 1
        if self._schedule_invalid:
            got = " and ".join(chosen) if chosen else "none"
            self.add_error(None, f"Choose exactly one schedule: interval, crontab, solar or "
                                 f"clocked (got {got}).")

    def _check_expiry(self, data: dict[str, Any]) -> None:
        expires, start = data.get("expires"), data.get("start_time")
        if expires is not None and data.get("expire_seconds") is not None:
            self.add_error(None, "Set expires (a moment) or expire seconds (after each run), "
                                 "not both.")
        if expires is not None and start is not None and expires <= start:
            self.add_error("expires", "Expires is not after the start time: the task would "
                                      "never run.")

    def _get_validation_exclusions(self) -> set[str]:
        # A wrong number of schedules is reported once, above: keep the model's CHECK
        # constraint on the same fields from repeating it as "Constraint ... is violated".
        excluded: set[str] = super()._get_validation_exclusions()  # type: ignore[misc]
        if self._schedule_invalid:
            excluded.update(SCHEDULE_FIELDS)
        return excluded


def zone_choices(current: str | None = None) -> list[tuple[str, str]]:
    """Every IANA zone name, sorted (and the row's own, should this system not know it)."""
    names = sorted(zoneinfo.available_timezones())
    if current and current not in names:
        names.append(current)
    return [(name, name) for name in names]


class CrontabScheduleForm(CrontabModelForm):
    """A crontab: each field checked on its own, so the error sits on the field that is wrong."""

    timezone = forms.ChoiceField(
        choices=zone_choices, initial=default_timezone,
        help_text="IANA time zone the fields are read in",
        error_messages={"invalid_choice": "Unknown time zone %(value)s: choose an IANA name "
                                          "such as Europe/Berlin or UTC."})

    class Meta:
        model = CrontabSchedule
        fields = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year", "timezone")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["timezone"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = zone_choices(self.initial.get("timezone"))
        for name in CRON_FIELDS:
            self.fields[name].help_text = self.fields[name].help_text or CRON_FIELDS[name][1]

    def _clean_cron_field(self, name: str) -> str:
        try:
            return normalise(name, self.cleaned_data.get(name, ""))
        except ScheduleError as exc:
            raise ValidationError(str(exc)) from None

    def clean_minute(self) -> str:
        return self._clean_cron_field("minute")

    def clean_hour(self) -> str:
        return self._clean_cron_field("hour")

    def clean_day_of_week(self) -> str:
        return self._clean_cron_field("day_of_week")

    def clean_day_of_month(self) -> str:
        return self._clean_cron_field("day_of_month")

    def clean_month_of_year(self) -> str:
        return self._clean_cron_field("month_of_year")
