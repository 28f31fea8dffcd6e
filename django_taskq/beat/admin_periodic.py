"""The periodic task admin: the list (schedule in words, next run in its zones, last task's
state), the edit form with its preview of the next runs, and the no-beat warning.

The last task's state comes from the ``taskq_result`` row of ``last_task_id``, read with the list
itself (a subquery per column, so a page is one query however many rows it shows).
"""

from __future__ import annotations

from datetime import timezone
from typing import Any

from django.contrib import admin
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html

from ..models import TaskResult
from .admin_actions import ROW_FORM, PeriodicTaskActions
from .admin_display import moment_in, next_run_html, run_table, schedule_words
from .admin_liveness import no_beat_warning
from .forms import PREVIEW, PREVIEW_NOTE, PeriodicTaskForm
from .models import SCHEDULE_FIELDS, PeriodicTask

DECLARED_NOTE = ("Declared in code (BEAT_SCHEDULE / add_periodic_task): its task, schedule, "
                 "arguments, queue, priority, headers and expiry are reset from code when beat "
                 "starts; what you set here for enabled, start time, catch-up and description "
                 "is kept.")
#: Said under a preview of an interval task that is not saved yet and has no start time.
ANCHOR_NOTE = ("Interval runs count from the moment the task is saved (or from its start time): "
               "set a start time to pin them to these.")


class PeriodicTaskAdmin(PeriodicTaskActions):
    form = PeriodicTaskForm
    list_display = ("name", "enabled", "last_state", "schedule_text", "next_run", "runs")
    list_filter = ("enabled", "one_off", "task", "source", "catch_up")
    search_fields = ("name", "task", "description")
    readonly_fields = ("source", "next_run", "last_run_at", "total_run_count", "last_state",
                       "date_changed")
    fieldsets = [
        (None, {"fields": ("name", "task", "enabled", "description")}),
        ("Schedule", {"fields": ("interval", "crontab", "solar", "clocked", "start_time",
                                 "expires", "one_off"),
                      "description": "Choose exactly one of interval, crontab, solar, clocked."}),
        ("Arguments", {"fields": ("args", "kwargs")}),
        ("Sending", {"fields": ("queue", "priority", "headers", "expire_seconds")}),
        ("Missed runs", {"fields": ("catch_up", "catch_up_window")}),
    ]
    state_fieldset = ("State", {"fields": readonly_fields})

    def get_queryset(self, request: HttpRequest) -> Any:
        results = TaskResult.objects.filter(task_id=OuterRef("last_task_id"))
        return super().get_queryset(request).select_related(*SCHEDULE_FIELDS).annotate(
            last_task_state=Subquery(results.values("state")[:1]),
            last_task_result=Subquery(results.values("pk")[:1]))

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        return [*self.fieldsets, self.state_fieldset] if obj is not None else self.fieldsets

    @admin.display(description="schedule")
    def schedule_text(self, task: PeriodicTask) -> str:
        return schedule_words(task)

    @admin.display(description="next run", ordering="next_run_at")
    def next_run(self, task: PeriodicTask) -> str:
        return next_run_html(task)

    @admin.display(description="runs", ordering="total_run_count")
    def runs(self, task: PeriodicTask) -> int:
        """Runs beat sent (a "Run now" is not counted)."""
        return task.total_run_count

    @admin.display(description="last run", ordering="last_run_at")
    def last_state(self, task: PeriodicTask) -> str:
        """The state of the last task sent, linked to its result, over when beat sent it."""
        when = moment_in(task.last_run_at, timezone.utc) if task.last_run_at else ""
        if not task.last_task_id:
            return "-"
        state, pk = getattr(task, "last_task_state", None), getattr(task, "last_task_result", None)
        if pk is None:
            return format_html('<span title="{}">no result stored</span><br>{}',
                               task.last_task_id, when)
        url = reverse(f"{self.admin_site.name}:{TaskResult._meta.app_label}_taskresult_change",
                      args=[pk])
        return format_html('<a href="{}" title="{}">{}</a><br>{}', url, task.last_task_id, state,
                           when)

    def changelist_view(self, request: HttpRequest,
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {"beat_warning": no_beat_warning(), "row_form_id": ROW_FORM,
                   **(extra_context or {})}
        return super().changelist_view(request, context)

    def render_change_form(self, request: HttpRequest, context: dict[str, Any],
                           add: bool = False, change: bool = False, form_url: str = "",
                           obj: PeriodicTask | None = None) -> HttpResponse:
        form = context["adminform"].form
        context.update(self._preview_context(form, add))
        if obj is not None and request.method == "GET":
            context["upcoming"] = run_table(obj)
            context["row_buttons"] = self.row_buttons(request, obj)
            context["row_form_id"] = ROW_FORM
        if obj is not None and obj.source == PeriodicTask.SETTINGS:
            context["declared_note"] = DECLARED_NOTE
        context["can_preview"] = (self.has_add_permission(request) if add
                                  else self.has_change_permission(request, obj))
        context["preview_button"] = PREVIEW
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _preview_context(self, form: PeriodicTaskForm, add: bool) -> dict[str, Any]:
        """A valid preview: its runs, and no "please correct the errors" (there are none)."""
        errors = form.errors
        if form.preview is None or set(errors) != {"__all__"} or \
                list(errors["__all__"]) != [PREVIEW_NOTE]:
            return {}
        unanchored = add and form.cleaned_data.get("interval") is not None \
            and form.cleaned_data.get("start_time") is None
        return {"preview": form.preview, "preview_note": PREVIEW_NOTE, "errors": [],
                "anchor_note": ANCHOR_NOTE if unanchored else ""}
