"""``taskq status``: workers, queues (depth, scheduled, in flight) and dead letters at a glance.

Workers come from the stored worker events (``taskq_worker`` in EVENTS_DATABASE), so the
command answers without asking any worker; queues are DEFAULT_QUEUE, those the listed workers
consume and any named with ``--queue``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from ...conf import get_settings
from ...exceptions import TaskqError
from .base import Group, add_json, ago, table, when, write_json
from .queues import counts

#: Workers gone offline longer ago than this are left out unless --all-workers.
RECENT = timedelta(hours=1)
NO_EVENTS = ("workers are not recorded: EVENTS_DATABASE is None (set it to a database alias, "
             "or use `taskq inspect ping`)")


class Status(Group):
    """``taskq status``."""

    name = "status"
    help = "workers, queue depths, scheduled and in-flight tasks, dead letters"

    def add_parsers(self, parser: CommandParser) -> None:
        parser.add_argument("-Q", "--queue", action="append", default=[], metavar="QUEUE",
                            help="also show this queue (repeat, or separate with commas)")
        parser.add_argument("--all-workers", action="store_true",
                            help="also list workers offline for more than an hour")
        add_json(parser)
        parser.set_defaults(handler=status)


def worker_rows(*, everyone: bool = False, now: datetime | None = None
                ) -> list[dict[str, Any]] | None:
    """The stored workers (online ones, and recently offline ones unless ``everyone``), or
    None when EVENTS_DATABASE is None."""
    alias = get_settings().EVENTS_DATABASE
    if alias is None:
        return None
    from ...events.models import WorkerState

    now = now or timezone.now()
    found = WorkerState.objects.using(alias).order_by("hostname")
    if not everyone:
        found = found.filter(last_heartbeat__gte=now - RECENT)
    return [{"hostname": w.hostname, "online": w.online, "active": w.active,
             "processed": w.processed, "last_heartbeat": w.last_heartbeat,
             "pool": w.pool, "concurrency": w.concurrency, "queues": list(w.queues or []),
             "pid": w.pid, "started_at": w.started_at, "stopped_at": w.stopped_at,
             "loadavg": w.loadavg} for w in found]


def known_queues(workers: list[dict[str, Any]] | None, named: list[str]) -> list[str]:
    """DEFAULT_QUEUE, the queues the (online) workers consume, and ``named``; in that order."""
    queues = [get_settings().DEFAULT_QUEUE]
    for worker in workers or []:
        if worker["online"]:
            queues.extend(worker["queues"])
    queues.extend(name.strip() for given in named for name in given.split(","))
    return list(dict.fromkeys(q for q in queues if q))


def snapshot(options: dict[str, Any]) -> dict[str, Any]:
    """What ``taskq status`` shows, as plain data."""
    from ... import deadletters
    from ...brokers import get_broker

    workers = worker_rows(everyone=options.get("all_workers", False))
    broker = get_broker()
    queues = [c.as_json() for c in counts(broker, known_queues(workers, options["queue"]))]
    try:
        dead: int | None = deadletters.count(broker)
    except TaskqError:  # a broker whose dead letters cannot be counted
        dead = None
    return {"workers": workers, "queues": queues, "dead_letters": dead,
            "broker": type(broker).__name__.removesuffix("Broker").lower()}


def status(command: BaseCommand, options: dict[str, Any]) -> None:
    found = snapshot(options)
    if options["json"]:
        write_json(command, found)
        return
    for line in worker_lines(found["workers"]):
        command.stdout.write(line)
    command.stdout.write("")
    command.stdout.write(f"Queues ({found['broker']} broker)")
    for line in table([("QUEUE", "DEPTH", "SCHEDULED", "IN FLIGHT")] + [
            (q["name"], str(q["depth"]), _maybe(q["scheduled"]), _maybe(q["in_flight"]))
            for q in found["queues"]]):
        command.stdout.write(line)
    command.stdout.write("")
    dead = found["dead_letters"]
    command.stdout.write(f"Dead letters: {_maybe(dead)}"
                         + (" (see `manage.py taskq dead list`)" if dead else ""))


def worker_lines(workers: list[dict[str, Any]] | None) -> list[str]:
    """The workers as a titled table."""
    if workers is None:
        return [f"Workers: {NO_EVENTS}"]
    online = sum(1 for w in workers if w["online"])
    lines = [f"Workers ({online} online, {len(workers) - online} offline)"]
    if not workers:
        return [*lines, "  none seen in the last hour (is a worker running? "
                        "`manage.py taskworker`)"]
    now = timezone.now()
    return lines + table([("HOSTNAME", "STATE", "ACTIVE", "PROCESSED", "POOL", "LAST HEARTBEAT")]
                         + [(w["hostname"], "online" if w["online"] else "offline",
                             str(w["active"]), str(w["processed"]),
                             f"{w['pool']} ({w['concurrency']})" if w["pool"] else "-",
                             f"{when(w['last_heartbeat'])} ({ago(w['last_heartbeat'], now)})")
                            for w in workers])


def _maybe(value: int | None) -> str:
    return "n/a" if value is None else str(value)
