"""``taskq inspect <what>`` and ``taskq control <command>``: Celery's ``celery inspect`` and
``celery control``, through ``control.remote.Control`` (so they reach workers on every broker).

Replies are printed per worker (``-> hostname: OK`` then the answer), or as ``{hostname:
reply}`` with ``--json``. No reply within ``--timeout``, a destination that did not answer, or
an ``{"error": ...}`` reply ends the command with a non-zero status.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...control.rate import parse_rate
from ...exceptions import RateLimitError
from .base import Group, add_json, ago, positive, seconds, write_json

#: ``taskq inspect`` actions → what they show.
INSPECT = {"active": "tasks running now", "reserved": "tasks prefetched, not started yet",
           "scheduled": "tasks held for an ETA (always empty: they wait in the broker; see "
                        "`taskq status`)",
           "registered": "task names the worker knows", "stats": "worker statistics",
           "active_queues": "queues the worker consumes from", "ping": "which workers answer",
           "query_task": "where the given task ids are (active or reserved)"}


def add_remote_options(parser: CommandParser) -> None:
    """``--destination/-d`` (repeatable, or comma-separated), ``--timeout``, ``--json``."""
    parser.add_argument("-d", "--destination", action="append", default=[], metavar="HOST",
                        help="only this worker (hostname); repeat or separate with commas")
    parser.add_argument("-t", "--timeout", type=seconds, default=1.0,
                        help="seconds to wait for replies (default 1)")
    add_json(parser)


class InspectGroup(Group):
    """``taskq inspect active|reserved|scheduled|registered|stats|active_queues|ping``."""

    name = "inspect"
    help = "ask workers what they are doing (read-only)"

    def add_parsers(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", metavar="<what>", required=True)
        for action, what in INSPECT.items():
            sub = actions.add_parser(action, help=what, description=what)
            if action == "query_task":
                sub.add_argument("task_ids", nargs="+", metavar="task_id")
            add_remote_options(sub)
            sub.set_defaults(handler=inspect)


class ControlGroup(Group):
    """``taskq control ping|shutdown|pool_grow|pool_shrink|rate_limit|time_limit|...``."""

    name = "control"
    help = "tell workers to change (pool size, limits, queues) or stop"

    def add_parsers(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", metavar="<command>", required=True)
        simple = {"ping": "which workers answer", "shutdown": "warm shutdown: running tasks "
                  "finish", "enable_events": "send task events",
                  "disable_events": "stop sending task events"}
        subs = {name: actions.add_parser(name, help=what) for name, what in simple.items()}
        for name, what in (("pool_grow", "add N execution slots (prefork children or threads)"),
                           ("pool_shrink", "remove N execution slots (busy ones after their "
                                           "task)")):
            subs[name] = actions.add_parser(name, help=what)
            subs[name].add_argument("n", type=positive, nargs="?", default=1)
        subs["autoscale"] = actions.add_parser(
            "autoscale", help="set the range of workers started with --autoscale (MAX [MIN])")
        subs["autoscale"].add_argument("max", type=positive)
        subs["autoscale"].add_argument("min", type=int, nargs="?")
        subs["rate_limit"] = actions.add_parser(
            "rate_limit", help='set a task\'s rate limit ("10/m"; 0 removes it)')
        subs["rate_limit"].add_argument("task_name")
        subs["rate_limit"].add_argument("rate")
        subs["time_limit"] = actions.add_parser(
            "time_limit", help="set a task's soft and hard time limits (seconds; none given "
                               "removes them)")
        subs["time_limit"].add_argument("task_name")
        subs["time_limit"].add_argument("--soft", type=seconds, help="soft limit, seconds")
        subs["time_limit"].add_argument("--hard", type=seconds, help="hard limit, seconds")
        for name, what in (("add_consumer", "start consuming from QUEUE"),
                           ("cancel_consumer", "stop consuming from QUEUE")):
            subs[name] = actions.add_parser(name, help=what)
            subs[name].add_argument("queue")
        for sub in subs.values():
            add_remote_options(sub)
            sub.set_defaults(handler=control)


def destinations(options: dict[str, Any]) -> list[str] | None:
    names = [name.strip() for given in options["destination"] for name in given.split(",")]
    return [name for name in names if name] or None


def inspect(command: BaseCommand, options: dict[str, Any]) -> None:
    from ...control.remote import Control

    action, destination = options["action"], destinations(options)
    asked = Control().inspect(destination=destination, timeout=options["timeout"])
    if action == "query_task":
        replies = asked.query_task(*options["task_ids"])
    elif action in ("active", "reserved"):  # arguments as reprs: one line each
        replies = getattr(asked, action)(safe=True)
    else:
        replies = getattr(asked, action)()
    report(command, options, replies or {}, destination, SHOW.get(action, show_value))


def control(command: BaseCommand, options: dict[str, Any]) -> None:
    from ...control.remote import Control

    destination = destinations(options)
    replies = Control().broadcast(options["action"], control_arguments(options),
                                  destination=destination, reply=True,
                                  timeout=options["timeout"])
    merged = {host: answer for reply in replies for host, answer in reply.items()}
    report(command, options, merged, destination, show_value)


def control_arguments(options: dict[str, Any]) -> dict[str, Any]:
    """The command's arguments, checked here so a typo fails before it reaches any worker."""
    action = options["action"]
    if action in ("pool_grow", "pool_shrink"):
        return {"n": options["n"]}
    if action == "autoscale":
        return {"max": options["max"], "min": options["min"]}
    if action == "rate_limit":
        try:
            parse_rate(options["rate"])
        except RateLimitError as exc:
            raise CommandError(str(exc)) from exc
        return {"task_name": options["task_name"], "rate_limit": options["rate"]}
    if action == "time_limit":
        soft, hard = options["soft"], options["hard"]
        if soft is not None and hard is not None and soft >= hard:
            raise CommandError(f"--soft ({soft:g}) must be below --hard ({hard:g}): the soft "
                               "limit warns the task before the hard one kills it.")
        return {"task_name": options["task_name"], "soft": soft, "hard": hard}
    if action in ("add_consumer", "cancel_consumer"):
        return {"queue": options["queue"]}
    return {}


def report(command: BaseCommand, options: dict[str, Any], replies: dict[str, Any],
           destination: list[str] | None, show: Callable[[Any], list[str]]) -> None:
    """Print the replies; fail when none came, a destination was silent, or one is an error."""
    if not replies:
        who = f"of {', '.join(destination)} " if destination else ""
        raise CommandError(
            f"No worker {who}replied within {options['timeout']:g}s. Is a worker running "
            "(manage.py taskworker) against this broker, with this hostname? A busy worker "
            "may need a longer --timeout.")
    if options["json"]:
        write_json(command, replies)
    else:
        for host, answer in sorted(replies.items()):
            failed = isinstance(answer, dict) and "error" in answer
            command.stdout.write(f"-> {host}: {'ERROR' if failed else 'OK'}")
            for line in ([str(answer["error"])] if failed else show(answer)):
                command.stdout.write(f"    {line}")
        count = len(replies)
        command.stdout.write(f"\n{count} node{'s' if count != 1 else ''} online.")
    missing = sorted(set(destination or ()) - set(replies))
    errors = sorted(host for host, answer in replies.items()
                    if isinstance(answer, dict) and "error" in answer)
    if missing:
        raise CommandError(f"No reply within {options['timeout']:g}s from: "
                           f"{', '.join(missing)} (check the hostname, or raise --timeout).")
    if errors:
        raise CommandError(f"The command failed on: {', '.join(errors)} (see the reply).")


def show_value(answer: Any) -> list[str]:
    """An ``{"ok": ...}`` reply as its text, anything else as indented JSON."""
    if isinstance(answer, dict) and set(answer) == {"ok"}:
        return [str(answer["ok"])]
    return json.dumps(answer, indent=2, sort_keys=True, default=repr).splitlines()


def show_requests(answer: Any) -> list[str]:
    """One line per request of ``inspect active``/``reserved``."""
    if not answer:
        return ["- empty -"]
    now = datetime.now(timezone.utc)
    lines = []
    for request in answer:
        started = request.get("time_start")
        since = (f" started {ago(datetime.fromtimestamp(started, timezone.utc), now)}"
                 if started else "")
        lines.append(f"* {request.get('id')} {request.get('name')} "
                     f"args={request.get('args')} kwargs={request.get('kwargs')}{since}")
    return lines


def show_names(answer: Any) -> list[str]:
    """One line per name (``registered``), or per queue (``active_queues``)."""
    names = [item.get("name") if isinstance(item, dict) else item for item in answer or []]
    return [f"* {name}" for name in names] or ["- empty -"]


def show_found(answer: Any) -> list[str]:
    """``query_task``: where each id is."""
    return [f"* {task_id}: {where} {info.get('name')}"
            for task_id, (where, info) in sorted((answer or {}).items())] or ["- not found -"]


SHOW: dict[str, Callable[[Any], list[str]]] = {
    "active": show_requests, "reserved": show_requests, "scheduled": show_requests,
    "registered": show_names, "active_queues": show_names, "query_task": show_found,
    "ping": show_value, "stats": show_value}
