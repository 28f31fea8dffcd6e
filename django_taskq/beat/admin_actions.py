"""Run now, enable and disable: admin actions and per-row POST buttons, each behind its own
permission (``run_periodictask``, ``enable_periodictask``, ``disable_periodictask``).

Every one writes the admin history. Run now sends one run at once (``claims.send_run``) and
records its task id; enable and disable save the row, so that its next run is computed again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.http import url_has_allowed_host_and_scheme

from ..exceptions import TaskqError
from .claims import send_run
from .models import PeriodicTask

if TYPE_CHECKING:  # generic in django-stubs only
    ModelAdmin = admin.ModelAdmin[PeriodicTask]
else:
    ModelAdmin = admin.ModelAdmin

#: The verbs, in the order their buttons are shown.
VERBS = ("run", "enable", "disable")
#: The form (in the change list and change form templates) the row buttons submit.
ROW_FORM = "periodic-task-row-action"


class PeriodicTaskActions(ModelAdmin):
    """The actions and row buttons of the periodic task admin."""

    actions = ["run_selected", "enable_selected", "disable_selected"]

    def has_verb_permission(self, request: HttpRequest, verb: str) -> bool:
        """Whether the user holds ``<verb>_periodictask``."""
        return bool(request.user.has_perm(f"{self.opts.app_label}.{verb}_{self.opts.model_name}"))

    def has_run_permission(self, request: HttpRequest) -> bool:
        return self.has_verb_permission(request, "run")

    def has_enable_permission(self, request: HttpRequest) -> bool:
        return self.has_verb_permission(request, "enable")

    def has_disable_permission(self, request: HttpRequest) -> bool:
        return self.has_verb_permission(request, "disable")

    @admin.action(permissions=["run"], description="Run selected periodic tasks now")
    def run_selected(self, request: HttpRequest, queryset: Any) -> None:
        for task in queryset:
            self.run_now(request, task)

    @admin.action(permissions=["enable"], description="Enable selected periodic tasks")
    def enable_selected(self, request: HttpRequest, queryset: Any) -> None:
        self.switch(request, queryset, enabled=True)

    @admin.action(permissions=["disable"], description="Disable selected periodic tasks")
    def disable_selected(self, request: HttpRequest, queryset: Any) -> None:
        self.switch(request, queryset, enabled=False)

    def run_now(self, request: HttpRequest, task: PeriodicTask) -> None:
        """Send one run of ``task`` now and remember its task id (beat's counters are beat's)."""
        try:
            task_id = send_run(task, timezone.now())
        except (TaskqError, TypeError, ValueError) as exc:  # broker down, arguments that misfit
            self.message_user(request, f"{task.name}: {task.task} was not sent: {exc}",
                              messages.ERROR)
            return
        # An UPDATE of the one column: a save() would write back counters beat moved meanwhile.
        PeriodicTask.objects.using(task._state.db).filter(pk=task.pk).update(
            last_task_id=task_id)
        task.last_task_id = task_id
        self.log_change(request, task, f"Ran now: task id {task_id}")
        self.message_user(request, f"Sent {task.task}[{task_id}]", messages.SUCCESS)

    def switch(self, request: HttpRequest, tasks: Iterable[PeriodicTask], enabled: bool) -> None:
        """Enable or disable ``tasks``; saving computes each one's next run again."""
        verb = "Enabled" if enabled else "Disabled"
        changed, unchanged = 0, 0
        for task in tasks:
            if task.enabled == enabled:
                unchanged += 1
                continue
            task.enabled = enabled
            task.save(update_fields=["enabled", "date_changed"])
            self.log_change(request, task, verb)
            changed += 1
        already = f" ({unchanged} already {verb.lower()})" if unchanged else ""
        self.message_user(request, f"{verb} {changed} periodic task(s){already}.",
                          messages.SUCCESS if changed else messages.INFO)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        own = [path(f"<path:object_id>/{verb}/", wrap(self.row_action_view), {"verb": verb},
                    name=self._url_name(verb)) for verb in VERBS]
        return [*own, *super().get_urls()]

    def _url_name(self, verb: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{verb}"

    def row_action_view(self, request: HttpRequest, object_id: str, verb: str) -> HttpResponse:
        """POST ``<pk>/run/``, ``<pk>/enable/`` or ``<pk>/disable/`` (the admin's CSRF check
        applies); back to ``next`` or the list."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_verb_permission(request, verb):
            raise PermissionDenied
        task = self.get_object(request, unquote(object_id))
        if task is None:
            raise Http404(f"No periodic task with id {object_id!r}")
        if verb == "run":
            self.run_now(request, task)
        else:
            self.switch(request, [task], enabled=verb == "enable")
        return HttpResponseRedirect(self._next_url(request))

    def _next_url(self, request: HttpRequest) -> str:
        wanted = request.POST.get("next", "")
        if wanted and url_has_allowed_host_and_scheme(wanted, {request.get_host()},
                                                      require_https=request.is_secure()):
            return wanted
        return reverse(f"{self.admin_site.name}:{self.opts.app_label}_"
                       f"{self.opts.model_name}_changelist")

    def row_buttons(self, request: HttpRequest, task: PeriodicTask) -> list[tuple[str, str]]:
        """(url, label) of the buttons this user may press for ``task``."""
        labels = {"run": "Run now", "enable": "Enable", "disable": "Disable"}
        shown = [verb for verb in VERBS if self.has_verb_permission(request, verb)
                 and not (verb == "enable" and task.enabled)
                 and not (verb == "disable" and not task.enabled)]
        return [(reverse(f"{self.admin_site.name}:{self._url_name(verb)}", args=[task.pk]),
                 labels[verb]) for verb in shown]

    def get_list_display(self, request: HttpRequest) -> Any:
        shown = list(super().get_list_display(request))
        if not any(self.has_verb_permission(request, verb) for verb in VERBS):
            return shown
        return [*shown[:1], self._buttons_column(request), *shown[1:]]  # buttons by the name

    def _buttons_column(self, request: HttpRequest) -> Callable[[PeriodicTask], str]:
        """A list column bound to this request: the buttons differ by user and by row."""

        @admin.display(description="actions")
        def buttons(task: PeriodicTask) -> str:
            return format_html_join(
                " ", '<button type="submit" class="button" form="{}" formaction="{}">{}</button>',
                ((ROW_FORM, url, label) for url, label in self.row_buttons(request, task)))

        return buttons

