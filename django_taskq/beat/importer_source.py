"""django-celery-beat's tables, read (and switched off) with raw SQL.

Raw SQL, not its models, so that the import works whether or not ``django_celery_beat`` is in
INSTALLED_APPS (a project that moved to django_taskq has usually removed it). Table and column
names are those of django-celery-beat 2.9.0 (migration 0019); columns added by later migrations
than a project ran (``clocked_id`` in 0011, ``expire_seconds`` in 0012, ...) read as absent.
Raw cursors return values as the driver gives them, so they are normalised here: SQLite gives
naive datetimes (``datetime`` columns) and floats (``decimal`` columns), MySQL/MariaDB naive
datetimes and 0/1 booleans, PostgreSQL aware datetimes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import DatabaseError, connections
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ..exceptions import TaskqError

TASK_TABLE = "django_celery_beat_periodictask"
#: The single-row change marker (``ident = 1``): django-celery-beat's beat reloads its schedule
#: when ``last_update`` moves, so a raw UPDATE of its tasks must move it too.
CHANGE_TABLE = "django_celery_beat_periodictasks"
SCHEDULE_TABLES = {
    "interval": "django_celery_beat_intervalschedule",
    "crontab": "django_celery_beat_crontabschedule",
    "solar": "django_celery_beat_solarschedule",
    "clocked": "django_celery_beat_clockedschedule",
}
#: Columns read from each table, as in django-celery-beat's latest migration state.
COLUMNS = {
    TASK_TABLE: ("id", "name", "task", "interval_id", "crontab_id", "solar_id", "clocked_id",
                 "args", "kwargs", "queue", "exchange", "routing_key", "headers", "priority",
                 "expires", "expire_seconds", "one_off", "start_time", "enabled",
                 "last_run_at", "total_run_count", "description"),
    SCHEDULE_TABLES["interval"]: ("id", "every", "period"),
    SCHEDULE_TABLES["crontab"]: ("id", "minute", "hour", "day_of_week", "day_of_month",
                                 "month_of_year", "timezone"),
    SCHEDULE_TABLES["solar"]: ("id", "event", "latitude", "longitude"),
    SCHEDULE_TABLES["clocked"]: ("id", "clocked_time"),
}

Row = dict[str, Any]


class SourceUnreadable(TaskqError):
    """django-celery-beat's tables are missing or cannot be read: nothing was imported."""


@dataclass(frozen=True)
class Source:
    """Everything read from django-celery-beat: its periodic tasks and schedules by id."""

    alias: str
    tasks: tuple[Row, ...]
    schedules: Mapping[str, Mapping[Any, Row]]


def read(alias: str) -> Source:
    """Read django-celery-beat's periodic tasks and schedule rows from database ``alias``.

    Raises:
        SourceUnreadable: the periodic task table is missing, or a query failed.
    """
    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            tables = set(connection.introspection.table_names(cursor))
            if TASK_TABLE not in tables:
                raise SourceUnreadable(f"no django-celery-beat tables in database {alias!r} "
                                       f"({TASK_TABLE}): nothing to import")
            tasks = tuple(_select(alias, cursor, TASK_TABLE))
            found = {kind: {row["id"]: row for row in _select(alias, cursor, table)}
                     for kind, table in SCHEDULE_TABLES.items() if table in tables}
    except DatabaseError as exc:
        raise SourceUnreadable(f"cannot read django-celery-beat's tables in database "
                               f"{alias!r}: {exc}") from exc
    return Source(alias, tasks, found)


def _select(alias: str, cursor: Any, table: str) -> list[Row]:
    """Every row of ``table`` as a dict of the known columns (absent ones are None)."""
    connection = connections[alias]
    present = {info.name for info in connection.introspection.get_table_description(cursor,
                                                                                     table)}
    wanted = [column for column in COLUMNS[table] if column in present]
    quote = connection.ops.quote_name
    cursor.execute(f"SELECT {', '.join(map(quote, wanted))} FROM {quote(table)} "
                   f"ORDER BY {quote('id')}")
    rows = [dict(zip(wanted, values, strict=True)) for values in cursor.fetchall()]
    return [{column: row.get(column) for column in COLUMNS[table]} for row in rows]


def moment(alias: str, value: object) -> datetime | None:
    """A datetime column's value as an aware datetime (naive ones are in the database's zone:
    UTC with USE_TZ, else TIME_ZONE), None for NULL."""
    if value is None:
        return None
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValueError(f"not a datetime: {value!r}")
        value = parsed
    if not isinstance(value, datetime):
        raise ValueError(f"not a datetime: {value!r}")
    if timezone.is_aware(value):
        return value
    zone = connections[alias].timezone or timezone.get_default_timezone()
    return timezone.make_aware(value, zone)


def flag(value: object) -> bool:
    """A boolean column's value (SQLite and MySQL may give 0/1 or b"1")."""
    if isinstance(value, (bytes, str)):
        return value in (b"1", "1", "t", "true", "True")
    return bool(value)


def decimal6(value: object) -> Decimal:
    """A ``numeric(9, 6)`` column's value (SQLite gives a float) with six decimal places."""
    try:
        return Decimal(str(value)).quantize(Decimal("0.000001"))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"not a number: {value!r}") from exc


def disable(alias: str, ids: Iterable[Any]) -> int:
    """Disable these django-celery-beat periodic tasks and move its change marker, so that its
    beat (if one still runs) reloads and stops sending them. Returns how many were enabled."""
    ids = list(ids)
    if not ids:
        return 0
    connection = connections[alias]
    quote = connection.ops.quote_name
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        marks = ", ".join(["%s"] * len(ids))
        cursor.execute(f"UPDATE {quote(TASK_TABLE)} SET {quote('enabled')} = %s, "
                       f"{quote('date_changed')} = %s WHERE {quote('id')} IN ({marks}) "
                       f"AND {quote('enabled')} = %s", [False, now, *ids, True])
        changed = cursor.rowcount
        if CHANGE_TABLE in connection.introspection.table_names(cursor):
            cursor.execute(f"UPDATE {quote(CHANGE_TABLE)} SET {quote('last_update')} = %s "
                           f"WHERE {quote('ident')} = 1", [now])
            if cursor.rowcount == 0:
                cursor.execute(f"INSERT INTO {quote(CHANGE_TABLE)} ({quote('ident')}, "
                               f"{quote('last_update')}) VALUES (1, %s)", [now])
    return int(changed)
