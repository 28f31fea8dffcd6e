"""``taskq events``: a live, top-like view of the workers and the latest task events.

It reads what workers stored (EVENTS_DATABASE: ``taskq_worker``, ``taskq_event``,
``taskq_taskminute``), so it shows the same picture from any machine and after restarts. The
screen is redrawn every ``--interval`` seconds until Ctrl-C; ``--once`` prints one frame.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from ...conf import get_settings
from .base import Group, add_json, positive, seconds, table, when, write_json
from .status import worker_lines, worker_rows

#: Minutes the totals line covers.
WINDOW_MINUTES = 5
CLEAR = "\x1b[H\x1b[2J"
COLUMNS = ("received", "started", "succeeded", "failed", "retried", "rejected", "revoked")


class Events(Group):
    """``taskq events [--once] [--limit N] [--interval S]``."""

    name = "events"
    help = "live view of workers and task events (Ctrl-C to quit)"

    def add_parsers(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="print one frame and exit")
        parser.add_argument("--limit", type=positive, default=20,
                            help="task events shown (default 20)")
        parser.add_argument("--interval", type=seconds, default=1.0,
                            help="seconds between refreshes (default 1)")
        add_json(parser)
        parser.set_defaults(handler=events)


def frame(limit: int, now: datetime | None = None) -> dict[str, Any]:
    """One picture: workers, the last minutes' totals and the newest ``limit`` task events."""
    from django.db.models import Sum

    from ...events.models import TaskEvent, TaskMinute

    alias = get_settings().EVENTS_DATABASE
    if alias is None:
        raise CommandError("taskq events shows stored events, and EVENTS_DATABASE is None: set "
                           "TASKQ['EVENTS_DATABASE'] to a database alias (\"default\").")
    now = now or timezone.now()
    since = (now - timedelta(minutes=WINDOW_MINUTES - 1)).replace(second=0, microsecond=0)
    sums = TaskMinute.objects.using(alias).filter(minute__gte=since).aggregate(
        **{column: Sum(column) for column in COLUMNS})
    found = (TaskEvent.objects.using(alias).filter(type__startswith="task-")
             .order_by("-timestamp", "-id")[:limit])
    return {"time": now, "workers": worker_rows(now=now),
            "totals": {"minutes": WINDOW_MINUTES,
                       **{column: int(sums[column] or 0) for column in COLUMNS}},
            "events": [{"type": e.type, "task_id": e.task_id, "name": e.task_name,
                        "hostname": e.hostname, "timestamp": e.timestamp,
                        "detail": detail(e.type, e.fields)} for e in found]}


def detail(kind: str, fields: dict[str, Any]) -> str:
    """The one thing worth reading about an event: its runtime and result, error, arguments."""
    if kind == "task-succeeded":
        return f"{fields.get('runtime', 0):.3f}s result={fields.get('result', '')}"
    if kind in ("task-failed", "task-retried", "task-rejected"):
        return str(fields.get("exception") or "")
    if kind in ("task-received", "task-sent"):
        return f"args={fields.get('args', '')} kwargs={fields.get('kwargs', '')}"
    if kind == "task-revoked":
        how = [word for word in ("terminated", "expired") if fields.get(word)]
        return ", ".join(how)
    return ""


def lines(found: dict[str, Any], interval: float | None) -> list[str]:
    """A frame as text."""
    head = f"taskq events - {when(found['time'])}"
    if interval is not None:
        head += f" (every {interval:g}s; Ctrl-C to quit)"
    totals = found["totals"]
    out = [head, "", *worker_lines(found["workers"]), "",
           f"Last {totals['minutes']} minutes: "
           + "  ".join(f"{column} {totals[column]}" for column in COLUMNS), ""]
    if not found["events"]:
        return [*out, "No task events stored yet."]
    rows = [("TIME", "TYPE", "TASK", "ID", "WORKER", "DETAIL")]
    rows += [(e["timestamp"].strftime("%H:%M:%S"), e["type"], e["name"][:40], e["task_id"],
              e["hostname"], _short(e["detail"], 60)) for e in found["events"]]
    return [*out, "Latest task events", *table(rows)]


def _short(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


def show(command: BaseCommand, options: dict[str, Any], interval: float | None) -> None:
    found = frame(options["limit"])
    if options["json"]:
        write_json(command, found, compact=interval is not None)
        return
    if interval is not None and command.stdout.isatty():
        command.stdout.write(CLEAR, ending="")
    for line in lines(found, interval):
        command.stdout.write(line)


def events(command: BaseCommand, options: dict[str, Any]) -> None:
    if options["once"]:
        show(command, options, None)
        return
    try:
        while True:
            show(command, options, options["interval"])
            command.stdout.flush()
            time.sleep(options["interval"])
    except KeyboardInterrupt:
        command.stdout.write("")
