"""Beat's admin pages, registered here: periodic tasks (``admin_periodic``, with the actions of
``admin_actions``), the four schedule kinds (``admin_schedules``), and read-only lists of the
claimed runs and of the beat processes.

``django_taskq/admin.py`` imports this module, so the admin's autodiscovery registers them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest

from .admin_liveness import is_alive
from .admin_periodic import PeriodicTaskAdmin
from .admin_schedules import (
    ClockedScheduleAdmin,
    CrontabScheduleAdmin,
    IntervalScheduleAdmin,
    SolarScheduleAdmin,
)
from .models import (
    BeatInstance,
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTaskRun,
    SolarSchedule,
)

if TYPE_CHECKING:  # generic in django-stubs only
    ModelAdmin = admin.ModelAdmin[Any]
else:
    ModelAdmin = admin.ModelAdmin


class BeatReadOnlyAdmin(ModelAdmin):
    """Rows beat writes; shown, never added or edited by hand (stale ones may be deleted)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PeriodicTaskRunAdmin(BeatReadOnlyAdmin):
    list_display = ("periodic_task", "tick", "task_id", "claimed_by", "claimed_at", "sent_at")
    list_filter = ("periodic_task", "claimed_by")
    list_select_related = ("periodic_task",)
    search_fields = ("task_id", "periodic_task__name")
    date_hierarchy = "tick"


class BeatInstanceAdmin(BeatReadOnlyAdmin):
    list_display = ("ident", "host", "pid", "embedded", "started_at", "last_tick_at", "alive")
    list_filter = ("embedded", "host")

    @admin.display(description="alive", boolean=True, ordering="last_tick_at")
    def alive(self, beat: BeatInstance) -> bool:
        """Ticked recently (within a minute, by default)."""
        return is_alive(beat.last_tick_at)


admin.site.register(PeriodicTask, PeriodicTaskAdmin)
admin.site.register(IntervalSchedule, IntervalScheduleAdmin)
admin.site.register(CrontabSchedule, CrontabScheduleAdmin)
admin.site.register(SolarSchedule, SolarScheduleAdmin)
admin.site.register(ClockedSchedule, ClockedScheduleAdmin)
admin.site.register(PeriodicTaskRun, PeriodicTaskRunAdmin)
admin.site.register(BeatInstance, BeatInstanceAdmin)
