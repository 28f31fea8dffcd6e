"""One task's story: its events in time order, its result, and its place in a workflow.

Events are read by the (task_id, timestamp) index. The workflow comes from what was stored:
``parent_id``/``root_id`` in its task-received (or task-sent) event; children are tasks whose
received/sent event names it as parent, looked for from its first event to ``CHILD_WINDOW``
after its last (a chain's next step is sent when its parent settles), so the search scans a
time range of the event index, never the whole table; the saved group holding it, among the
groups saved within ``GROUP_WINDOW`` of its result (groups keep no reverse index).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

#: Events shown at most for one task (a task retried many times has many).
MAX_EVENTS = 500
#: How long after a task's last event its children are looked for.
CHILD_WINDOW = timedelta(minutes=10)
#: Children listed at most.
MAX_CHILDREN = 100
#: Saved groups examined: those created this close to the task's result.
GROUP_WINDOW = timedelta(minutes=10)
MAX_GROUPS = 500


def seconds(value: float) -> str:
    """A run time as people read it: ``850 µs``, ``12.5 ms``, ``3.20 s``."""
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1000:.3g} ms"
    return f"{value:.3g} s" if value < 100 else f"{value:.0f} s"


@dataclass(frozen=True, slots=True)
class Step:
    """One event as the story shows it."""

    type: str
    when: datetime
    hostname: str
    details: dict[str, Any]


@dataclass
class Story:
    """Everything stored about one task id."""

    task_id: str
    task_name: str = ""
    steps: list[Step] = field(default_factory=list)
    result: Any = None  # the TaskResult row, when results are in a database
    parent_id: str = ""
    root_id: str = ""
    children: list[tuple[str, str]] = field(default_factory=list)  # (task id, name)
    group_id: str = ""
    group_size: int = 0

    @property
    def known(self) -> bool:
        """Whether anything at all is stored about the task."""
        return bool(self.steps) or self.result is not None


#: Event fields shown beside each step (the rest is in the raw event).
SHOWN_FIELDS = ("args", "kwargs", "queue", "retries", "eta", "expires", "pid", "result",
                "runtime", "exception", "requeue", "terminated", "expired", "signum")


def story(task_id: str, events: str | None, results: str | None) -> Story:
    """The story of ``task_id`` from the events database and the results database."""
    told = Story(task_id)
    if results is not None:
        from ..models import TaskResult

        told.result = TaskResult.objects.using(results).filter(task_id=task_id).first()
        if told.result is not None:
            told.task_name = told.result.task_name
    if events is not None:
        _events(told, events)
    if results is not None and told.known:
        _group(told, results)
    return told


def _events(told: Story, alias: str) -> None:
    from ..events.models import TaskEvent

    rows = list(TaskEvent.objects.using(alias).filter(task_id=told.task_id)
                .order_by("timestamp", "id")[:MAX_EVENTS])
    for row in rows:
        fields = row.fields or {}
        shown = {k: fields[k] for k in SHOWN_FIELDS if fields.get(k) not in (None, "", [], {})}
        if isinstance(shown.get("runtime"), (int, float)):
            shown["runtime"] = seconds(shown["runtime"])
        told.steps.append(Step(row.type, row.timestamp, row.hostname, shown))
        told.task_name = told.task_name or row.task_name
        told.parent_id = told.parent_id or str(fields.get("parent_id") or "")
        told.root_id = told.root_id or str(fields.get("root_id") or "")
    if told.root_id == told.task_id:
        told.root_id = ""
    if rows:
        told.children = children(alias, told.task_id, rows[0].timestamp,
                                 rows[-1].timestamp + CHILD_WINDOW)


def children(alias: str, task_id: str, start: datetime, end: datetime) -> list[tuple[str, str]]:
    """Tasks sent or received between ``start`` and ``end`` whose parent is ``task_id``."""
    from ..events.models import TaskEvent

    found = (TaskEvent.objects.using(alias)
             .filter(type__in=("task-received", "task-sent"), timestamp__gte=start,
                     timestamp__lte=end, fields__parent_id=task_id)
             .exclude(task_id=task_id).order_by("timestamp")
             .values_list("task_id", "task_name")[:MAX_CHILDREN * 2])
    return list(dict.fromkeys(found))[:MAX_CHILDREN]


def _group(told: Story, alias: str) -> None:
    from ..models import GroupResultRecord

    when = told.result.date_created if told.result is not None else told.steps[0].when
    for group_id, task_ids in (GroupResultRecord.objects.using(alias)
                               .filter(date_created__gte=when - GROUP_WINDOW,
                                       date_created__lte=when + GROUP_WINDOW)
                               .values_list("group_id", "task_ids")[:MAX_GROUPS]):
        if told.task_id in (task_ids or []):
            told.group_id, told.group_size = group_id, len(task_ids)
            return
