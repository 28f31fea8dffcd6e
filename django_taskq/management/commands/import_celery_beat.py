"""``manage.py import_celery_beat``: copy django-celery-beat's periodic tasks into django_taskq's.

Reads django-celery-beat's tables with raw SQL (``django_celery_beat`` need not be installed),
prints how many rows were imported, updated and skipped and one line per problem, and exits 0
even when rows were skipped: only tables that cannot be read are an error.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...beat.importer import SourceUnreadable, import_celery_beat


class Command(BaseCommand):
    help = ("Import django-celery-beat's periodic tasks (interval, crontab, solar, clocked) "
            "into django_taskq's beat; running it again updates them by name.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default="default", metavar="ALIAS",
                            help="the database holding django-celery-beat's tables (default: "
                                 "'default'); periodic tasks go to TASKQ['BEAT_DATABASE']")
        parser.add_argument("--dry-run", action="store_true",
                            help="report what would be imported, write nothing")
        parser.add_argument("--disable-source", action="store_true",
                            help="switch off, in django-celery-beat, the rows now sent by "
                                 "django_taskq's beat, so the two beats never both send them")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = import_celery_beat(options["database"], dry_run=options["dry_run"],
                                        disable_source=options["disable_source"])
        except SourceUnreadable as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(report.text(), ending="")
