"""Import django-celery-beat's periodic tasks into django_taskq's (``manage.py import_celery_beat``).

Each django-celery-beat row becomes a periodic task of the same name here, with schedule rows
found or created; running the import again updates those rows (by name) instead of adding
more. What cannot be carried over is reported per row, and the rest is still imported (see
:mod:`.importer_plan`). A periodic task declared in code here (``source = settings``) keeps the
code's definition: the row of that name is skipped.

An update takes everything from django-celery-beat but the switch and the history: ``enabled``
stays as it is here (``--disable-source`` switched django-celery-beat's off, and importing again
must not switch ours off too), and ``last_run_at``/``total_run_count`` never move backwards
(beat here may have run it since). Interval ticks of a new row count from its ``last_run_at``
(django-celery-beat runs an interval task ``every`` after its last run), so it keeps its phase.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, transaction

from . import importer_source
from .importer_plan import Plan, Refusal, plan
from .importer_source import SourceUnreadable

__all__ = ["ImportReport", "RowOutcome", "SourceUnreadable", "import_celery_beat"]

IMPORTED, UPDATED, SKIPPED = "imported", "updated", "skipped"


@dataclass(frozen=True)
class RowOutcome:
    """What became of one django-celery-beat row, and what could not be carried over."""

    name: str
    status: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImportReport:
    """The result of an import: one outcome per django-celery-beat row, in id order."""

    source_alias: str
    target_alias: str
    dry_run: bool
    rows: tuple[RowOutcome, ...]
    #: How many django-celery-beat rows were switched off (None: not asked to).
    disabled_in_source: int | None = None

    def count(self, status: str) -> int:
        return sum(1 for row in self.rows if row.status == status)

    @property
    def imported(self) -> int:
        return self.count(IMPORTED)

    @property
    def updated(self) -> int:
        return self.count(UPDATED)

    @property
    def skipped(self) -> int:
        return self.count(SKIPPED)

    def problems(self) -> list[tuple[str, str, str]]:
        """(row name, "skipped" or "note", what) for every note and every reason to skip."""
        return [(row.name, "skipped" if row.status == SKIPPED else "note", note)
                for row in self.rows for note in row.notes]

    def text(self) -> str:
        """The summary table and one line per problem, as the command prints it."""
        lines = [f"django-celery-beat (database {self.source_alias!r}) -> django_taskq "
                 f"periodic tasks (database {self.target_alias!r})",
                 f"  imported  {self.imported}", f"  updated   {self.updated}",
                 f"  skipped   {self.skipped}"]
        if self.disabled_in_source is not None:
            lines.append(f"  disabled in django-celery-beat  {self.disabled_in_source}")
        problems = self.problems()
        if problems:
            lines.append(f"Problems ({len(problems)}):")
            lines.extend(f"  {kind:<7}  {name}: {what}" for name, kind, what in problems)
        if self.dry_run:
            lines.append("Dry run: nothing was written (the import ran in a transaction that "
                         "was rolled back).")
        return "\n".join(lines) + "\n"


def import_celery_beat(source_alias: str = "default", *, target_alias: str | None = None,
                       dry_run: bool = False, disable_source: bool = False) -> ImportReport:
    """Import django-celery-beat's periodic tasks and schedules.

    Args:
        source_alias: the database holding django-celery-beat's tables.
        target_alias: where our periodic tasks go (None: ``TASKQ['BEAT_DATABASE']``).
        dry_run: do everything in a transaction that is rolled back: the same report, no
            writes.
        disable_source: switch off, in django-celery-beat, every row that beat here now sends
            (imported or updated, and enabled here), so both beats never send it.

    Returns:
        The report: a row per django-celery-beat periodic task.

    Raises:
        SourceUnreadable: django-celery-beat's tables are missing or unreadable.
    """
    from ..conf import get_settings

    target = target_alias or get_settings().BEAT_DATABASE
    source = importer_source.read(source_alias)
    outcomes: list[RowOutcome] = []
    moved: list[Any] = []
    with _transactions({source_alias, target}, rollback=dry_run):
        for row in source.tasks:
            outcome, runs_here = _import_row(plan(row, source), target)
            outcomes.append(outcome)
            if runs_here:
                moved.append(row["id"])
        disabled = importer_source.disable(source_alias, moved) if disable_source else None
    return ImportReport(source_alias, target, dry_run, tuple(outcomes), disabled)


@contextmanager
def _transactions(aliases: set[str], *, rollback: bool) -> Iterator[None]:
    """One transaction per database, all rolled back at the end when ``rollback``."""
    with ExitStack() as stack:
        for alias in sorted(aliases):
            stack.enter_context(transaction.atomic(using=alias))
        yield
        if rollback:
            for alias in aliases:
                transaction.set_rollback(True, using=alias)


def _import_row(planned: Plan | Refusal, alias: str) -> tuple[RowOutcome, bool]:
    """Write one planned row (in a savepoint); returns its outcome and whether beat here now
    sends it."""
    from .models import PeriodicTask

    if isinstance(planned, Refusal):
        return RowOutcome(planned.name, SKIPPED, planned.reasons), False
    existing = PeriodicTask.objects.using(alias).filter(name=planned.name).first()
    if existing is not None and existing.source == PeriodicTask.SETTINGS:
        return RowOutcome(planned.name, SKIPPED, (
            "a periodic task of this name is declared in code here (TASKQ['BEAT_SCHEDULE'] or "
            "add_periodic_task): the code's definition is kept",)), False
    try:
        with transaction.atomic(using=alias):
            task = _save(planned, existing, alias)
    except ValidationError as exc:
        return RowOutcome(planned.name, SKIPPED, tuple(
            f"refused by django_taskq: {message}" for message in exc.messages)), False
    except (IntegrityError, DataError) as exc:
        return RowOutcome(planned.name, SKIPPED, (f"refused by the database: {exc}",)), False
    status = IMPORTED if existing is None else UPDATED
    return RowOutcome(planned.name, status, planned.notes), task.enabled


def _save(planned: Plan, existing: Any, alias: str) -> Any:
    from .models import SCHEDULE_FIELDS, PeriodicTask

    values = dict(planned.values)
    if existing is None:
        task = PeriodicTask(name=planned.name, source=PeriodicTask.ADMIN)
        last, start = values["last_run_at"], values.get("start_time")
        if last is not None:
            task.anchor = last  # an interval keeps its phase: django-celery-beat counts from here
            if start is not None and start <= last:
                values["start_time"] = None  # passed already; it would outrank the anchor
    else:
        task = existing
        values["enabled"] = existing.enabled and planned.registered
        values["total_run_count"] = max(existing.total_run_count, values["total_run_count"])
        if existing.last_run_at is not None and (values["last_run_at"] is None
                                                 or existing.last_run_at > values["last_run_at"]):
            values["last_run_at"] = existing.last_run_at
    for name in SCHEDULE_FIELDS:
        setattr(task, name, None)
    setattr(task, planned.kind, _schedule_row(planned, alias))
    for key, value in values.items():
        setattr(task, key, value)
    task.full_clean(exclude=["anchor"], validate_unique=False)
    task.save(using=alias)
    return task


def _schedule_row(planned: Plan, alias: str) -> Any:
    """Our schedule row with these fields: the first that exists, or a new one."""
    from .models import ClockedSchedule, CrontabSchedule, IntervalSchedule, SolarSchedule

    model: Any = {"interval": IntervalSchedule, "crontab": CrontabSchedule,
                  "solar": SolarSchedule, "clocked": ClockedSchedule}[planned.kind]
    return model.find_or_create(alias, **planned.schedule_fields)
