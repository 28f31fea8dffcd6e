"""How beat's admin pages show a periodic task: its schedule in words and its runs in time zones.

A run is shown in the zone its schedule is read in (a crontab's zone; UTC for the others), in UTC,
and in the zone of the person looking (``django.utils.timezone``'s current zone), each once.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.safestring import SafeString, mark_safe

from ..exceptions import ConfigurationError
from .timing import upcoming

if TYPE_CHECKING:
    from datetime import tzinfo

    from .models import PeriodicTask

UTC = ZoneInfo("UTC")
#: Runs shown by the preview and on a periodic task's page.
PREVIEW_RUNS = 5


def schedule_words(task: PeriodicTask) -> str:
    """The schedule's ``describe()``, or what is wrong with it."""
    try:
        return task.schedule().describe()
    except ConfigurationError as exc:
        return f"(no usable schedule: {exc})"


def schedule_zone(task: PeriodicTask) -> tzinfo:
    """The zone the task's schedule is read in: a crontab's zone, UTC for the other kinds."""
    try:
        schedule = task.schedule()
    except ConfigurationError:
        return UTC
    zone: tzinfo = getattr(schedule, "tz", UTC)
    return zone


def zone_name(zone: tzinfo) -> str:
    """``Europe/Berlin``: the IANA name of ``zone``."""
    return str(getattr(zone, "key", None) or zone)


def moment_in(moment: datetime, zone: tzinfo) -> str:
    """``2026-12-01 02:00:00 CET``: ``moment`` on the clocks of ``zone``."""
    local = moment.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


def moment_views(moment: datetime, *zones: tzinfo) -> list[tuple[str, str]]:
    """(zone name, ``moment`` there) for each zone, skipping a zone whose clocks read the same
    as one already shown."""
    shown: dict[str, str] = {}
    for zone in zones:
        text = moment_in(moment, zone)
        if text not in shown.values():
            shown[zone_name(zone)] = text
    return list(shown.items())


def next_run_html(task: PeriodicTask) -> SafeString | str:
    """The stored next run in the schedule's zone, and in the viewer's when it reads
    differently ("-" when none: disabled, or no run left); each names its zone on hover."""
    if task.next_run_at is None:
        return "-" if task.enabled else "- (disabled)"
    views = moment_views(task.next_run_at, schedule_zone(task), current_zone())
    # Date and time may wrap apart (a narrow list column), never inside themselves.
    return format_html_join(
        mark_safe("<br>"), '<span title="{}"><span class="nowrap">{}</span> '
                           '<span class="nowrap">{}</span></span>',
        ((zone, *text.split(" ", 1)) for zone, text in views))


def current_zone() -> tzinfo:
    """The zone of the person looking (Django's current time zone)."""
    return timezone.get_current_timezone()


@dataclass(frozen=True)
class RunTable:
    """Runs for a template: a header per zone, and each run as a row of texts."""

    zones: list[str]
    rows: list[list[str]]
    note: str = ""


def run_table(task: PeriodicTask, now: datetime | None = None,
              count: int = PREVIEW_RUNS) -> RunTable:
    """The next ``count`` runs of ``task`` (saved or not) in its schedule's zone, UTC and the
    viewer's zone. A disabled task shows the runs it would have if it were enabled."""
    now = now or timezone.now()
    candidate = task
    note = ""
    if not task.enabled:
        candidate = copy.copy(task)
        candidate.enabled = True
        note = "Disabled: beat sends none of these until it is enabled."
    runs = upcoming(candidate, now, count=count)
    if not runs:
        note = "No run ahead: the schedule has no tick left (or the task expires first)."
    zones = {zone_name(zone): zone for zone in (schedule_zone(task), UTC, current_zone())}
    rows = [[moment_in(run, zone) for zone in zones.values()] for run in runs]
    return RunTable(list(zones), rows, note)

