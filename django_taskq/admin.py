"""Admin pages: task results, queued messages and dead letters, read-only; the monitoring
dashboard (the workers' entry: dashboard/).

The writes are requeueing dead letters, for users with ``django_taskq.requeue_deadlettermessage``
(an action on the dead letter table (database broker), and the "dead letters in the broker"
page, which reads whichever broker BROKER_URL names: Redis and RabbitMQ keep no rows here), and
the dashboard's Retry of a failed task, for users with ``django_taskq.retry_taskresult``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from . import deadletters, sensitive
from .admin_base import ReadOnlyAdmin
from .conf import get_settings
from .dashboard import results, views
from .exceptions import TaskqError
from .models import DeadLetterMessage, QueuedMessage, TaskResult, WorkerState
from .service_url import mask, mask_text

#: Dead letters shown on the broker page.
BROKER_PAGE_LIMIT = 200
#: Characters of a dead letter's reason shown in lists (its own page shows all of it).
REASON_CHARS = 80


def story_url(task_id: str) -> str:
    """The dashboard's page for one task: its events, result and workflow."""
    return reverse("admin:django_taskq_workerstate_story", args=[task_id])


@admin.register(TaskResult)
class TaskResultAdmin(ReadOnlyAdmin):
    """Searchable by id, name, state and worker, filtered by date, with a million rows: the
    filters, search and counts of dashboard/results.py stay on taskq_result's indexes."""

    list_display = ("task_id", "task_name", "state", "worker", "retries", "date_created",
                    "date_done", "story_link")
    list_filter = (results.StateFilter, results.TaskNameFilter, results.WorkerFilter,
                   results.CreatedFilter)
    search_fields = ("task_id", "task_name", "worker")  # shows the box; see get_search_results
    search_help_text = ("A task id (or its beginning), a task name or part of one, a worker's "
                        "hostname or part of one, or a state.")
    show_full_result_count = False
    paginator = results.CappedPaginator
    fields = ("task_id", "task_name", "state", "result", "traceback", "worker", "retries",
              "date_created", "date_started", "date_done")
    #: Extended results (RESULT_EXTENDED), shown when the row has them, encoded as stored.
    extended_fields = ("queue", "task_args", "task_kwargs")
    readonly_fields = (*fields, *extended_fields, "story_link")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        present = [name for name in self.extended_fields if getattr(obj, name, None)]
        return (*self.fields, *present, "story_link")

    def get_search_results(self, request: HttpRequest, queryset: Any,
                           search_term: str) -> tuple[Any, bool]:
        return results.search(queryset, search_term), False

    @admin.display(description="story")
    def story_link(self, obj: TaskResult) -> str:
        return format_html('<a href="{}">events and workflow</a>', story_url(obj.task_id))


@admin.register(WorkerState)
class MonitoringAdmin(ReadOnlyAdmin):
    """The workers' entry in the admin opens the monitoring dashboard (dashboard/views.py),
    with a page per task and the Retry action beside it."""

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        return views.dashboard(self, request)

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        return [path("task/<path:task_id>/", wrap(self.story_view), name=f"{name}_story"),
                path("retry/", wrap(self.retry_view), name=f"{name}_retry"),
                *super().get_urls()]

    def story_view(self, request: HttpRequest, task_id: str) -> HttpResponse:
        return views.story(self, request, task_id)

    def retry_view(self, request: HttpRequest) -> HttpResponse:
        return views.retry_view(self, request)


class MessageAdmin(ReadOnlyAdmin):
    search_fields = ("message_id", "task_name")
    list_filter: ClassVar[tuple[str, ...]] = ("queue", "task_name")
    exclude = ("body", "headers", "properties")

    @admin.display(description="body")
    def body_text(self, obj: Any) -> str:
        """The body, or only the argument reprs when they are hidden (sensitive.py)."""
        headers = obj.headers if isinstance(obj.headers, dict) else {}
        if sensitive.hidden(obj.task_name, headers):
            argsrepr, kwargsrepr = sensitive.reprs(obj.task_name, headers, (), {})
            return f"arguments hidden: args {argsrepr}, kwargs {kwargsrepr}"
        return str(obj.body_preview())


@admin.register(QueuedMessage)
class QueuedMessageAdmin(MessageAdmin):
    list_display = ("message_id", "task_name", "queue", "state", "priority", "available_at",
                    "attempts", "locked_until", "locked_by")
    list_filter = ("state", "queue", "task_name")
    readonly_fields = ("message_id", "task_name", "queue", "state", "priority", "available_at",
                       "attempts", "locked_until", "locked_by", "created_at", "body_text",
                       "content_type", "content_encoding")


@admin.register(DeadLetterMessage)
class DeadLetterAdmin(MessageAdmin):
    list_display = ("message_id", "task_name", "queue", "reason_summary", "attempts", "dead_at")
    readonly_fields = ("message_id", "task_name", "queue", "reason", "priority", "attempts",
                       "created_at", "dead_at", "body_text", "content_type", "content_encoding")
    actions = ["requeue_selected"]

    @admin.display(description="reason", ordering="reason")
    def reason_summary(self, obj: DeadLetterMessage) -> str:
        """The reason on one line, cut short: a traceback would make the row a page long."""
        return Truncator(" ".join(obj.reason.split())).chars(REASON_CHARS)

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        """Whether the user may send dead letters back to their queues."""
        return bool(request.user.has_perm(f"{self.opts.app_label}.requeue_deadlettermessage"))

    @admin.action(permissions=["requeue"], description="Requeue selected dead letters")
    def requeue_selected(self, request: HttpRequest, queryset: Any) -> None:
        # These rows are the database broker's, whatever BROKER_URL names.
        from .brokers.database import DatabaseBroker

        ids = [str(pk) for pk in queryset.values_list("pk", flat=True)]
        try:
            done = deadletters.requeue(ids, DatabaseBroker(alias=queryset.db))
        except TaskqError as exc:  # refused for its signature or size: it says which and why
            self.message_user(request, f"Nothing requeued: {mask_text(str(exc))}", messages.ERROR)
            return
        self.message_user(request, f"Requeued {done} dead letter(s).", messages.SUCCESS)

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_broker"
        return [path("broker/", self.admin_site.admin_view(self.broker_view), name=name),
                *super().get_urls()]

    def broker_view(self, request: HttpRequest) -> HttpResponse:
        """The configured broker's dead letters, with requeue buttons (POST, CSRF-protected)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            if not self.has_requeue_permission(request):
                raise PermissionDenied
            self._requeue_from_broker(request)
            return HttpResponseRedirect(request.path)
        try:
            letters = deadletters.list_letters(limit=BROKER_PAGE_LIMIT)
            total, error = deadletters.count(), ""
        except TaskqError as exc:
            letters, total, error = [], 0, mask_text(str(exc))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts, "title": "Dead letters in the broker",
            "broker_url": mask(get_settings().BROKER_URL), "letters": letters, "total": total,
            "error": error, "can_requeue": self.has_requeue_permission(request),
        }
        return TemplateResponse(request, "admin/django_taskq/deadlettermessage/broker.html",
                                context)

    def _requeue_from_broker(self, request: HttpRequest) -> None:
        ids = None if "requeue_all" in request.POST else request.POST.getlist("letter_id")
        if ids is not None and not ids:
            self.message_user(request, "Select dead letters to requeue.", messages.WARNING)
            return
        try:
            done = deadletters.requeue(ids)
        except TaskqError as exc:
            self.message_user(request, f"Nothing requeued: {mask_text(str(exc))}", messages.ERROR)
            return
        level = messages.SUCCESS if ids is None or done == len(set(ids)) else messages.WARNING
        missed = "" if level == messages.SUCCESS else \
            f" ({len(set(ids or ())) - done} were gone: requeued or purged meanwhile)"
        self.message_user(request, f"Requeued {done} dead letter(s){missed}.", level)


from .beat import admin as beat_admin  # noqa: E402,F401 - registers beat's admin pages
