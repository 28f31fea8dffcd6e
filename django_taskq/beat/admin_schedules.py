"""The schedule admins (interval, crontab, solar, clocked): each lists its schedule in words, how
many periodic tasks use it, and on its page those tasks, read-only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import Count
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from ..exceptions import ConfigurationError
from .admin_display import next_run_html
from .forms import CrontabScheduleForm
from .models import SCHEDULE_FIELDS, PeriodicTask

if TYPE_CHECKING:  # generic in django-stubs only
    ModelAdmin = admin.ModelAdmin[Any]
    TabularInline = admin.TabularInline[PeriodicTask, Any]
else:
    ModelAdmin = admin.ModelAdmin
    TabularInline = admin.TabularInline


class UsingScheduleInline(TabularInline):
    """The periodic tasks that run on this schedule (change them on their own pages)."""

    model = PeriodicTask
    verbose_name = "periodic task using this schedule"
    verbose_name_plural = "Periodic tasks using this schedule"
    fields = ("task_name", "enabled", "next_run")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related(*SCHEDULE_FIELDS)

    @admin.display(description="name")
    def task_name(self, task: PeriodicTask) -> str:
        url = reverse(f"{self.admin_site.name}:{task._meta.app_label}_periodictask_change",
                      args=[task.pk])
        return format_html('<a href="{}">{}</a>', url, task.name)

    @admin.display(description="next run")
    def next_run(self, task: PeriodicTask) -> str:
        return next_run_html(task)


def _inline(fk: str) -> type[UsingScheduleInline]:
    return type(f"{fk.title()}TasksInline", (UsingScheduleInline,), {"fk_name": fk})


class ScheduleAdmin(ModelAdmin):
    """What every schedule admin shows: its words and how many tasks use it."""

    list_display: Any = ("description", "used_by")

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).annotate(tasks_using=Count("periodic_tasks"))

    @admin.display(description="schedule")
    def description(self, row: Any) -> str:
        try:
            return str(row.schedule().describe())
        except ConfigurationError as exc:
            return f"(unusable: {exc})"

    @admin.display(description="periodic tasks", ordering="tasks_using")
    def used_by(self, row: Any) -> int:
        return int(getattr(row, "tasks_using", 0))


class IntervalScheduleAdmin(ScheduleAdmin):
    list_display = ("description", "every", "period", "used_by")
    list_filter = ("period",)
    inlines = [_inline("interval")]


class CrontabScheduleAdmin(ScheduleAdmin):
    form = CrontabScheduleForm
    list_display = ("description", "minute", "hour", "day_of_month", "month_of_year",
                    "day_of_week", "timezone", "used_by")
    list_filter = ("timezone",)
    inlines = [_inline("crontab")]


class SolarScheduleAdmin(ScheduleAdmin):
    list_display = ("description", "event", "latitude", "longitude", "used_by")
    list_filter = ("event",)
    inlines = [_inline("solar")]


class ClockedScheduleAdmin(ScheduleAdmin):
    list_display = ("description", "clocked_time", "used_by")
    date_hierarchy = "clocked_time"
    inlines = [_inline("clocked")]
