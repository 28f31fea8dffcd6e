"""Beat's admin pages, registered here: periodic tasks (``admin_periodic``, with the actions of
``admin_actions``), the four schedule kinds (``admin_schedules``), and read-only lists of the
claimed runs and of the beat processes.

``django_taskq/admin.py`` imports this module, so the admin's autodiscovery registers them.
"""

from __future__ import annotations

from django.contrib import admin

from ..admin_base import ReadOnlyAdmin
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


class PeriodicTaskRunAdmin(ReadOnlyAdmin):
    list_display = ("periodic_task", "tick", "task_id", "claimed_by", "claimed_at", "sent_at")
    list_filter = ("periodic_task", "claimed_by")
    list_select_related = ("periodic_task",)
    search_fields = ("task_id", "periodic_task__name")
    date_hierarchy = "tick"


class BeatInstanceAdmin(ReadOnlyAdmin):
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
