"""``manage.py taskq <command>``: watch and operate the queue (thin: parse, call a library).

``status``, ``inspect``, ``control``, ``purge``, ``events``, ``dead`` and ``revoke``; each is a
``Group`` in ``django_taskq/management/taskq/`` (see its ``__init__``).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...exceptions import TaskqError
from ...service_url import mask_text
from ..taskq import GROUPS, Handler


class Command(BaseCommand):
    help = ("Operate django_taskq: taskq status | inspect <what> | control <command> | "
            "purge QUEUE | events | dead list|show|requeue|purge | revoke ID (each with "
            "--help; most take --json).")

    def add_arguments(self, parser: CommandParser) -> None:
        groups = parser.add_subparsers(dest="group", metavar="<command>", required=True)
        for group in GROUPS:
            group.add_parsers(groups.add_parser(group.name, help=group.help,
                                                description=group.help))

    def handle(self, *args: Any, **options: Any) -> None:
        handler: Handler = options["handler"]
        try:
            handler(self, options)
        except TaskqError as exc:
            raise CommandError(mask_text(str(exc))) from exc
