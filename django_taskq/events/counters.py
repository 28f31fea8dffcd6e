"""Add to counter rows in one statement per batch: insert, or add to the row that exists.

``ON CONFLICT ... DO UPDATE`` on PostgreSQL and SQLite (3.24+), ``ON DUPLICATE KEY UPDATE`` on
MySQL/MariaDB; several workers adding to the same minute never lose a count and never fail on
the unique key. Other vendors get a read-modify-write under a row lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connections, transaction

#: Rows per statement (SQLite allows 32,766 parameters; rows here have at most 10 columns).
CHUNK = 500

Key = tuple[Any, ...]


def increment(alias: str, table: str, key_columns: Sequence[str],
              rows: Mapping[Key, Mapping[str, float]]) -> None:
    """For every ``key → {column: amount}``: add the amounts to the row with that key."""
    if not rows:
        return
    connection = connections[alias]
    columns = sorted({column for amounts in rows.values() for column in amounts})
    items = [(key, [amounts.get(column, 0) for column in columns])
             for key, amounts in rows.items()]
    vendor = connection.vendor
    if vendor not in ("postgresql", "sqlite", "mysql"):
        _increment_slowly(alias, table, key_columns, columns, items)
        return
    quote = connection.ops.quote_name
    names = ", ".join(quote(c) for c in (*key_columns, *columns))
    if vendor == "mysql":
        updates = ", ".join(f"{quote(c)} = {quote(c)} + VALUES({quote(c)})" for c in columns)
        tail = f"ON DUPLICATE KEY UPDATE {updates}"
    else:
        updates = ", ".join(f"{quote(c)} = {quote(table)}.{quote(c)} + excluded.{quote(c)}"
                            for c in columns)
        tail = f"ON CONFLICT ({', '.join(quote(c) for c in key_columns)}) DO UPDATE SET {updates}"
    row_marks = "(" + ", ".join(["%s"] * (len(key_columns) + len(columns))) + ")"
    # A fixed order of keys: two workers upserting the same rows lock them in the same order.
    items.sort(key=lambda item: tuple(str(part) for part in item[0]))
    with connection.cursor() as cursor:
        for start in range(0, len(items), CHUNK):
            chunk = items[start:start + CHUNK]
            params = [_adapt(connection, v) for key, amounts in chunk for v in (*key, *amounts)]
            cursor.execute(f"INSERT INTO {quote(table)} ({names}) VALUES "
                           f"{', '.join([row_marks] * len(chunk))} {tail}", params)


def _adapt(connection: Any, value: Any) -> Any:
    if hasattr(value, "tzinfo"):  # a datetime: stored as the backend stores DateTimeFields
        return connection.ops.adapt_datetimefield_value(value)
    return value


def _increment_slowly(alias: str, table: str, key_columns: Sequence[str],
                      columns: Sequence[str], items: list[tuple[Key, list[float]]]) -> None:
    connection = connections[alias]
    quote = connection.ops.quote_name
    where = " AND ".join(f"{quote(c)} = %s" for c in key_columns)
    sets = ", ".join(f"{quote(c)} = {quote(c)} + %s" for c in columns)
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        for key, amounts in items:
            params = [_adapt(connection, v) for v in key]
            cursor.execute(f"UPDATE {quote(table)} SET {sets} WHERE {where}",
                           [*amounts, *params])
            if cursor.rowcount == 0:
                names = ", ".join(quote(c) for c in (*key_columns, *columns))
                marks = ", ".join(["%s"] * (len(key_columns) + len(columns)))
                cursor.execute(f"INSERT INTO {quote(table)} ({names}) VALUES ({marks})",
                               [*params, *amounts])
