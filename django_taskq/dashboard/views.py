"""The dashboard's pages, served by the workers' ModelAdmin (admin.py mounts them).

Staff only (``admin_view``), and reading needs the view permission on workers; what shows a
task's arguments, result or traceback (recent failures, a task's page) also needs the view
permission on task results; retrying a failed task is a CSRF-protected POST that needs
``django_taskq.retry_taskresult``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme

from ..exceptions import TaskqError
from ..service_url import mask_text
from . import activity, charts, fleet, retry
from . import story as stories
from .sources import events_alias, results_alias

#: The chart windows offered (hours); the first is the default.
WINDOWS = (1, 3, 6, 12, 24)
RETRY_PERMISSION = "django_taskq.retry_taskresult"
READ_TASKS_PERMISSION = "django_taskq.view_taskresult"
TEMPLATES = "admin/django_taskq/dashboard/"


def can_retry(request: HttpRequest) -> bool:
    """Whether the user may send failed tasks again."""
    return bool(request.user.has_perm(RETRY_PERMISSION))


def can_read_tasks(request: HttpRequest) -> bool:
    """Whether the user may see tasks' arguments, results and tracebacks."""
    return bool(request.user.has_perm(READ_TASKS_PERMISSION))


def _window(request: HttpRequest) -> int:
    raw = request.GET.get("hours", "")
    if raw and raw not in {str(h) for h in WINDOWS}:
        messages.warning(request, f"The window hours={raw} is not offered: choose one of "
                                  f"{', '.join(map(str, WINDOWS))}. Showing {WINDOWS[0]}.")
        return WINDOWS[0]
    return int(raw) if raw else WINDOWS[0]


def _url(model_admin: Any, name: str, *args: str) -> str:
    opts = model_admin.opts
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{name}", args=args,
                   current_app=model_admin.admin_site.name)


def dashboard(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """The monitoring page: workers, queues, charts, running tasks, recent failures."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    hours = _window(request)
    now = timezone.now()
    since = now - timedelta(hours=hours)
    alias, results = events_alias(), results_alias()
    context: dict[str, Any] = {
        **model_admin.admin_site.each_context(request), "opts": model_admin.opts,
        "title": "Monitoring", "hours": hours, "windows": WINDOWS, "now": now,
        "events_alias": alias, "can_retry": can_retry(request),
        "retry_url": _url(model_admin, "retry"), "can_read_tasks": can_read_tasks(request),
    }
    workers = fleet.workers(alias) if alias is not None else []
    queues = fleet.queue_depths(workers)
    # A broker that failed for the queues is not asked again (a second timeout) for its dead
    # letters, as a metrics scrape does.
    down = next((q.error for q in queues if q.error), "")
    context.update(workers=workers, online=sum(w.online for w in workers),
                   active=sum(w.active for w in workers if w.online), queues=queues,
                   dead=fleet.DeadLetters(None, f"not asked: {down}") if down
                   else fleet.dead_letters(),
                   failures=activity.failures(results, alias, since)
                   if context["can_read_tasks"] else [])
    if alias is not None:
        context.update(_activity(alias, since, now, workers))
    return TemplateResponse(request, f"{TEMPLATES}dashboard.html", context)


def _activity(alias: str, since: datetime, now: datetime,
              workers: list[fleet.WorkerRow]) -> dict[str, Any]:
    minutes = activity.minutes(alias, since, now)
    times = [m.minute for m in minutes]

    def values(*columns: str) -> list[int]:
        return [sum(m.counts[c] for c in columns) for m in minutes]

    throughput = charts.stacked_bars(times, [
        charts.Series("succeeded", "#3a9a52", values("succeeded")),
        charts.Series("failed", "#c0392b", values("failed")),
        charts.Series("retried, rejected, revoked", "#9b9b9b",
                      values("retried", "rejected", "revoked")),
    ], title="Tasks per minute", chart_id="chart-tasks")
    failed = charts.stacked_bars(times, [
        charts.Series("failed", "#c0392b", values("failed")),
        charts.Series("retried", "#e59866", values("retried")),
    ], title="Failures per minute", chart_id="chart-failures")
    totals = activity.task_totals(alias, since)
    offline = {w.hostname for w in workers if not w.online}
    return {"chart_tasks": throughput, "chart_failures": failed, "task_totals": totals,
            "finished": sum(m.finished for m in minutes),
            "failed": sum(m.counts["failed"] for m in minutes),
            "received": sum(m.counts["received"] for m in minutes),
            "running": activity.running(alias, since, offline)}


def story(model_admin: Any, request: HttpRequest, task_id: str) -> HttpResponse:
    """One task's events in time order, its result, parents and children."""
    if not model_admin.has_view_permission(request) or not can_read_tasks(request):
        raise PermissionDenied
    results = results_alias()
    told = stories.story(task_id, events_alias(), results)
    first = told.steps[0].when if told.steps else None
    steps = [(step, (step.when - first).total_seconds() if first else 0.0) for step in told.steps]
    result_url = ""
    if told.result is not None:
        result_url = reverse("admin:django_taskq_taskresult_change", args=[told.result.pk],
                             current_app=model_admin.admin_site.name)
    context = {
        **model_admin.admin_site.each_context(request), "opts": model_admin.opts,
        "title": f"Task {task_id}", "story": told, "steps": steps, "result_url": result_url,
        "dashboard_url": _url(model_admin, "changelist"), "can_retry": can_retry(request),
        "retry_url": _url(model_admin, "retry"),
        "events_alias": events_alias(), "results_alias": results,
    }
    return TemplateResponse(request, f"{TEMPLATES}story.html", context,
                            status=200 if told.known else 404)


def retry_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """POST ``task_id``: send that failed task again; back to ``next`` (or the dashboard)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"], "Retry is a POST (the dashboard's Retry button).")
    if not model_admin.has_view_permission(request) or not can_retry(request):
        raise PermissionDenied
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()},
                                           require_https=request.is_secure()):
        target = _url(model_admin, "changelist")
    try:
        new_id = retry.retry(request.POST.get("task_id", ""))
    except TaskqError as exc:  # RetryRefused, or the backend or broker failing
        messages.error(request, f"Not retried: {mask_text(str(exc))}")
    else:
        task_id = request.POST["task_id"].strip()
        messages.success(request, format_html(
            'Sent task {} again as <a href="{}">{}</a>.', task_id,
            _url(model_admin, "story", new_id), new_id))
    return HttpResponseRedirect(target)
