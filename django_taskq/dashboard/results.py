"""The task results list with a million rows: filters, search and counts that stay on indexes.

Django's own field filters list their choices with ``SELECT DISTINCT`` over the whole table and
``date_hierarchy`` scans it for the dates it offers; these filters take their choices from small
tables instead (the task states, the task names the counters and this process know, the known
workers) and filter on the indexed columns. The paginator counts at most ``COUNT_CAP`` rows.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from .. import states

#: Rows counted at most for the list's pages ("more than …" beyond).
COUNT_CAP = 10_000
#: Task names or hostnames a search matches at most (by part of the name).
MATCHES = 100
STATE_CHOICES = sorted({*states.ALL_STATES, states.REJECTED, states.IGNORED})


if TYPE_CHECKING:  # generic in django-stubs only
    BasePaginator = Paginator[Any]
else:
    BasePaginator = Paginator


class CappedPaginator(BasePaginator):
    """Counts the first ``COUNT_CAP + 1`` rows only: ``SELECT COUNT(*)`` over a million rows
    on every page load is what makes admin lists slow."""

    @cached_property
    def count(self) -> int:
        objects: Any = self.object_list
        # Unordered: any COUNT_CAP + 1 matching rows do, so no sort feeds the count.
        return int(objects.order_by()[:COUNT_CAP + 1].count())

    @property
    def capped(self) -> bool:
        """Whether there are more rows than were counted."""
        return self.count > COUNT_CAP


def known_task_names() -> list[str]:
    """Task names this process registered, and those the stored counters have seen."""
    from ..events.models import TaskCounter
    from ..registry import registry
    from .sources import events_alias

    names = {name for name in registry if not name.startswith("celery.")}
    alias = events_alias()
    if alias is not None:
        names.update(TaskCounter.objects.using(alias).values_list("task_name", flat=True)
                     .distinct()[:1000])
    return sorted(n for n in names if n)


def known_workers() -> list[str]:
    """Hostnames of the workers the events know."""
    from ..events.models import WorkerState
    from .sources import events_alias

    alias = events_alias()
    if alias is None:
        return []
    return list(WorkerState.objects.using(alias).order_by("hostname")
                .values_list("hostname", flat=True)[:500])


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(state, state) for state in STATE_CHOICES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(state=self.value()) if self.value() else queryset


class TaskNameFilter(admin.SimpleListFilter):
    title = "task name"
    parameter_name = "task_name"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in known_task_names()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(task_name=self.value()) if self.value() else queryset


class WorkerFilter(admin.SimpleListFilter):
    title = "worker"
    parameter_name = "worker"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in known_workers()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(worker=self.value()) if self.value() else queryset


#: The created-date filter's choices: parameter value → (label, age).
CREATED_CHOICES = {
    "15m": ("Last 15 minutes", timedelta(minutes=15)),
    "1h": ("Last hour", timedelta(hours=1)),
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "older": ("Older than 7 days", timedelta(days=7)),
}


class CreatedFilter(admin.SimpleListFilter):
    """Date ranges on the (-date_created) index (``date_hierarchy`` would scan the table)."""

    title = "created"
    parameter_name = "created"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _) in CREATED_CHOICES.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        choice = CREATED_CHOICES.get(self.value() or "")
        if choice is None:
            return queryset
        cutoff = timezone.now() - choice[1]
        if self.value() == "older":
            return queryset.filter(date_created__lt=cutoff)
        return queryset.filter(date_created__gte=cutoff)


def search(queryset: QuerySet[Any], term: str) -> QuerySet[Any]:
    """Results matching ``term``: a task id or its beginning, a state, a task name or a worker
    hostname (whole, or a part of a known one). Each branch is an indexed equality (or, for
    the id, an indexed prefix), so the search never scans the table for ``LIKE '%…%'``."""
    term = term.strip()
    if not term:
        return queryset
    lowered = term.lower()
    names = [n for n in known_task_names() if lowered in n.lower()][:MATCHES]
    hosts = [h for h in known_workers() if lowered in h.lower()][:MATCHES]
    wanted = (Q(task_id=term) | Q(task_id__startswith=term) | Q(task_name__in=[term, *names])
              | Q(worker__in=[term, *hosts]))
    if term.upper() in STATE_CHOICES:
        wanted |= Q(state=term.upper())
    return queryset.filter(wanted)
