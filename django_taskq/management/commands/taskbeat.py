"""``manage.py taskbeat``: run beat, which sends periodic tasks when they are due.

Any number of beats may run (on one host or many): each tick of each schedule is sent once.
"""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...beat.service import BeatService
from ...conf import get_settings
from ...exceptions import ConfigurationError
from ...log import setup_worker_logging
from ...service_url import mask, mask_text


class Command(BaseCommand):
    help = "Run beat: send periodic tasks (schedules in the database, edited in the admin)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-l", "--loglevel", default="INFO",
                            choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                            type=str.upper, help="log level when logging is not configured")
        parser.add_argument("-f", "--logfile", help="log to this file instead of stderr")
        parser.add_argument("--max-interval", type=float, metavar="SECONDS",
                            help="longest sleep between steps (default: BEAT_MAX_LOOP_INTERVAL)")
        parser.add_argument("-S", "--scheduler", help=(
            "accepted for Celery's command line and ignored: schedules always live in the "
            "database (django-celery-beat's DatabaseScheduler is built in)"))

    def handle(self, *args: Any, **options: Any) -> None:
        setup_worker_logging(options["loglevel"], options["logfile"])
        interval = options["max_interval"]
        if interval is not None and interval <= 0:
            raise CommandError("--max-interval must be a positive number of seconds.")
        try:
            beat = BeatService(max_interval=interval)
        except ConfigurationError as exc:
            raise CommandError(mask_text(str(exc))) from exc
        conf = get_settings()
        self.stdout.write(
            f"taskbeat {beat.scheduler.ident}\n"
            f"  broker   {mask(conf.BROKER_URL)}\n"
            f"  database {beat.scheduler.alias} (schedules, claims; edits in the admin apply "
            f"within {conf.BEAT_SYNC_INTERVAL:g}s)\n")
        self.stdout.flush()

        def handle_signal(signum: int, frame: Any) -> None:
            beat.stop()

        signal.signal(signal.SIGTERM, handle_signal)
        signal.signal(signal.SIGINT, handle_signal)
        try:
            beat.run()
        except ConfigurationError as exc:
            raise CommandError(f"beat cannot start: {mask_text(str(exc))}") from exc
