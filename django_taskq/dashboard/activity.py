"""What tasks did lately: per-minute counts, per-task totals, running tasks, recent failures.

Counts come from ``taskq_taskminute`` (one row per minute and task name, written with the
events), so a chart over hours reads a few hundred rows whatever the number of results.
Running tasks are read from events: the latest ``task-started`` events of the window that no
final event followed (bounded by ``RUNNING_SCAN``); the workers' heartbeats give the total.
Recent failures come from the database result backend's (state, -date_done) index, or from
``task-failed`` events when results live elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Sum

from .. import states
from ..events.models import MINUTE_COUNTS

#: Event types after which a started run is over.
FINAL_EVENTS = ("task-succeeded", "task-failed", "task-retried", "task-rejected", "task-revoked")
#: The latest task-started events examined for running tasks.
RUNNING_SCAN = 500
#: Recent failures listed.
FAILURES_SHOWN = 20
#: Task names listed in the per-task table.
TASKS_SHOWN = 50


@dataclass(frozen=True, slots=True)
class Minute:
    """One minute's counts over every task name (``MINUTE_COUNTS`` as attributes)."""

    minute: datetime
    counts: dict[str, int]

    @property
    def finished(self) -> int:
        """Runs that ended this minute, whatever the way."""
        return sum(self.counts[k] for k in ("succeeded", "failed", "retried", "rejected",
                                            "revoked"))


@dataclass(frozen=True, slots=True)
class TaskTotals:
    """One task name's counts over the window."""

    task_name: str
    counts: dict[str, int]
    runtime_sum: float

    @property
    def mean_runtime(self) -> float | None:
        """Seconds per finished run (succeeded or failed), None when none finished."""
        runs = self.counts["succeeded"] + self.counts["failed"]
        return self.runtime_sum / runs if runs else None


@dataclass(frozen=True, slots=True)
class Running:
    """A task that started and has not ended (as far as the events tell)."""

    task_id: str
    task_name: str
    hostname: str
    started: datetime


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed task: from its result row or its ``task-failed`` event."""

    task_id: str
    task_name: str
    worker: str
    when: datetime | None
    exception: str
    traceback: str
    has_arguments: bool | None = None  # None: not known (no result row)
    extra: dict[str, Any] = field(default_factory=dict)


def minutes(alias: str, start: datetime, end: datetime) -> list[Minute]:
    """Every minute from ``start`` to ``end`` (missing minutes as zeros), oldest first."""
    from ..events.models import TaskMinute

    first = start.replace(second=0, microsecond=0)
    rows = (TaskMinute.objects.using(alias).filter(minute__gte=first, minute__lte=end)
            .values("minute").annotate(**{c: Sum(c) for c in MINUTE_COUNTS}).order_by("minute"))
    found = {row["minute"]: {c: int(row[c] or 0) for c in MINUTE_COUNTS} for row in rows}
    zero = dict.fromkeys(MINUTE_COUNTS, 0)
    span = int((end - first).total_seconds() // 60) + 1
    stamps = [first + timedelta(minutes=i) for i in range(span)]
    return [Minute(stamp, found.get(stamp, zero)) for stamp in stamps]


def task_totals(alias: str, start: datetime) -> list[TaskTotals]:
    """Counts per task name since ``start``, busiest first."""
    from ..events.models import TaskMinute

    sums = {c: Sum(c) for c in (*MINUTE_COUNTS, "runtime_sum")}
    rows = (TaskMinute.objects.using(alias).filter(minute__gte=start).values("task_name")
            .annotate(**sums).order_by("-received", "task_name")[:TASKS_SHOWN])
    return [TaskTotals(row["task_name"], {c: int(row[c] or 0) for c in MINUTE_COUNTS},
                       float(row["runtime_sum"] or 0.0)) for row in rows]


def running(alias: str, since: datetime, offline: set[str]) -> list[Running]:
    """Tasks whose latest ``task-started`` (among the last RUNNING_SCAN since ``since``) no final
    event followed, on workers not known to be offline; newest first."""
    from ..events.models import TaskEvent

    events = TaskEvent.objects.using(alias)
    latest: dict[str, Running] = {}
    for task_id, name, host, when in (
            events.filter(type="task-started", timestamp__gte=since).order_by("-timestamp")
            .values_list("task_id", "task_name", "hostname", "timestamp")[:RUNNING_SCAN]):
        latest.setdefault(task_id, Running(task_id, name, host, when))
    ended = events.filter(task_id__in=list(latest), type__in=FINAL_EVENTS).values_list(
        "task_id", "timestamp")
    for task_id, when in ended:
        if task_id in latest and when >= latest[task_id].started:
            del latest[task_id]
    return [run for run in latest.values() if run.hostname not in offline]


def failures(results: str | None, events: str | None, since: datetime) -> list[Failure]:
    """The latest failures: result rows when results are in a database, else events."""
    if results is not None:
        return _failed_results(results)
    if events is not None:
        return _failed_events(events, since)
    return []


def _failed_results(alias: str) -> list[Failure]:
    from ..models import TaskResult

    rows = (TaskResult.objects.using(alias).filter(state=states.FAILURE).order_by("-date_done")
            .only("task_id", "task_name", "worker", "date_done", "traceback", "result",
                  "task_args", "task_kwargs")[:FAILURES_SHOWN])
    return [Failure(row.task_id, row.task_name, row.worker, row.date_done,
                    exception_line(row.traceback or "", row.result or ""), row.traceback or "",
                    has_arguments=row.task_args is not None or row.task_kwargs is not None)
            for row in rows]


def _failed_events(alias: str, since: datetime) -> list[Failure]:
    from ..events.models import TaskEvent

    rows = (TaskEvent.objects.using(alias).filter(type="task-failed", timestamp__gte=since)
            .order_by("-timestamp")[:FAILURES_SHOWN])
    return [Failure(e.task_id, e.task_name, e.hostname, e.timestamp,
                    str(e.fields.get("exception") or ""), str(e.fields.get("traceback") or ""))
            for e in rows]


def exception_line(traceback: str, fallback: str) -> str:
    """The exception as one line: a traceback's last line, else the stored result text."""
    lines = [line for line in traceback.strip().splitlines() if line.strip()]
    text = lines[-1].strip() if lines else fallback
    return text if len(text) <= 200 else text[:199] + "…"
