"""``taskq purge QUEUE...``: delete every message waiting in queues (Celery's ``celery purge``).

It asks first (``--yes`` skips the question); without a terminal to ask on, it refuses rather
than assume a yes. Messages held by workers are not touched (they finish or come back).
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from .base import Group, add_json, write_json
from .status import known_queues, worker_rows


class Purge(Group):
    """``taskq purge QUEUE... [--yes]``."""

    name = "purge"
    help = "delete every message waiting in the given queues (cannot be undone)"

    def add_parsers(self, parser: CommandParser) -> None:
        parser.add_argument("queues", nargs="+", metavar="QUEUE")
        parser.add_argument("--yes", "--noinput", "--no-input", action="store_true",
                            dest="yes", help="do not ask for confirmation")
        add_json(parser)
        parser.set_defaults(handler=purge)


def purge(command: BaseCommand, options: dict[str, Any]) -> None:
    from ...brokers import get_broker

    broker = get_broker()
    queues = list(dict.fromkeys(options["queues"]))
    waiting = {queue: broker.size(queue) for queue in queues}
    check_known(waiting)
    if not options["yes"]:
        confirm(command, waiting)
    purged = {queue: broker.purge(queue) for queue in queues}
    if options["json"]:
        write_json(command, {"purged": purged})
        return
    for queue, count in purged.items():
        command.stdout.write(f"Purged {count} message(s) from queue {queue!r}.")


def check_known(waiting: dict[str, int]) -> None:
    """An empty queue no worker consumes and the settings do not name is most likely a typo."""
    known = known_queues(worker_rows(), [])
    unknown = [queue for queue, count in waiting.items() if not count and queue not in known]
    if unknown:
        raise CommandError(
            f"Unknown queue(s): {', '.join(map(repr, unknown))}: empty, not DEFAULT_QUEUE and "
            f"consumed by no online worker. Known queues: {', '.join(known)} "
            "(see `manage.py taskq status`).")


def confirm(command: BaseCommand, waiting: dict[str, int]) -> None:
    """Ask on a terminal; refuse when nobody can answer (a script, cron, a pipe)."""
    total = sum(waiting.values())
    what = ", ".join(f"{queue!r} ({count})" for queue, count in waiting.items())
    if not sys.stdin.isatty():
        raise CommandError(f"Not purging {total} message(s) from {what}: there is no terminal "
                           "to confirm on; pass --yes to purge without a question.")
    command.stdout.write(f"Purge {total} message(s) from {what}? This cannot be undone. "
                         "Type 'yes': ", ending="")
    command.stdout.flush()
    answer = sys.stdin.readline()
    if answer.strip().lower() != "yes":
        raise CommandError("Not purged: the answer was not 'yes'.")
